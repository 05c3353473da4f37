// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The steering program: runs for every SYN that reaches the reuseport group on the port, and
 * for every connection queued on a listener that closes. It picks the worker socket by client
 * address so that all TCP connections of one client land in the same worker's accept queue.
 *
 *   key  = source address, masked to a prefix (--key destination: the address connected to)
 *   slot = sessions[key] or moved[key]   if recorded and not idle past the TTL
 *        else ring[hash(key) % M]        Maglev table built by the controller
 *   bpf_sk_select_reuseport(workers[slot]); a gone worker => its successor, else the next ring entry
 *
 * A client recorded on a slot that is not the ring's first choice for its key goes to `moved`,
 * which new clients cannot evict; the others to `sessions`, an LRU (a flood of new sources evicts
 * only clients whom the ring sends where they are anyway). A key is in one map at a time.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "sio_steer.h"
#include "sio_steer_maps.bpf.h"
#include "read_client.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

static __always_inline int select_slot(struct sk_reuseport_md *ctx, __u32 slot)
{
	if (slot >= SIO_STEER_MAX_SLOTS)
		return -1;
	return bpf_sk_select_reuseport(ctx, &workers, &slot, 0);
}

/* The ring's choice for hash h; if its worker is gone, the next ring entries (which the Maglev
 * table spreads over the other workers), then any live slot. Returns the slot, with
 * SELECT_FELL_BACK set when it is not the ring's first choice, or SLOT_NONE.
 * A global function: the verifier checks it once, not at every call site. */
#define SELECT_FELL_BACK 0x10000u

__noinline int select_by_ring(struct sk_reuseport_md *ctx, __u32 h)
{
	__u32 bucket = h % SIO_STEER_RING_SIZE;

	for (int i = 0; i < SIO_STEER_RING_PROBES; i++) {
		__u32 *slot = bpf_map_lookup_elem(&ring, &bucket);

		if (slot && *slot != SIO_STEER_SLOT_NONE && select_slot(ctx, *slot) == 0)
			return i ? *slot | SELECT_FELL_BACK : *slot;
		bucket = bucket + 1 == SIO_STEER_RING_SIZE ? 0 : bucket + 1;
	}
	for (__u32 s = 0; s < SIO_STEER_MAX_SLOTS; s++) {
		if (select_slot(ctx, s) == 0)
			return s | SELECT_FELL_BACK;
	}
	return SIO_STEER_SLOT_NONE;
}

static __always_inline void count_selection(struct stats *st, __u32 slot)
{
	if (slot < SIO_STEER_MAX_SLOTS)
		st->selections[slot]++;
}

/* Where a client's record was found. */
enum { FOUND_NONE, FOUND_SESSIONS, FOUND_MOVED };

/* The client's record, from sessions or moved (NULL if none, or idle past the TTL: then it is
 * overwritten as a new session). */
static __always_inline struct session *find_record(struct config *cfg, struct stats *st,
						   struct client_key *key, __u64 now, int *found)
{
	/* sessions first: most recorded clients are on the ring, and pay no second lookup. */
	struct session *s = bpf_map_lookup_elem(&sessions, key);

	if (s) {
		*found = FOUND_SESSIONS;
	} else {
		s = bpf_map_lookup_elem(&moved, key);
		*found = s ? FOUND_MOVED : FOUND_NONE;
	}
	if (s && now - s->last_seen_ns > cfg->session_ttl_ns) {
		st->expired++;
		return NULL;
	}
	return s;
}

/* A recorded client: its socket if it still listens (returns 1: selected, nothing to write but a
 * stale last_seen). Else the client moves once, to the socket that replaced it (same PM2 instance)
 * if there is one (*slot, with *off_ring if that is not the ring's first choice), else *slot stays
 * SLOT_NONE for the ring to choose; returns 0. */
static __always_inline int follow_record(struct sk_reuseport_md *ctx, struct config *cfg, struct stats *st,
					 struct session *s, struct client_key *key, __u32 port, __u64 now,
					 __u32 *slot, int *off_ring)
{
	__u32 recorded = s->slot;
	struct slot *sl = bpf_map_lookup_elem(&slots, &recorded);

	if (sl && sl->generation == s->generation && select_slot(ctx, recorded) == 0) {
		/* The hot path: read only, unless last_seen is getting stale. */
		if (now - s->last_seen_ns > cfg->refresh_ns)
			s->last_seen_ns = now;
		st->session_hits++;
		count_selection(st, recorded);
		return 1;
	}
	st->fallbacks++;
	if (sl && sl->successor != SIO_STEER_SLOT_NONE && select_slot(ctx, sl->successor) == 0) {
		__u32 bucket = sio_steer_hash(key, port, cfg->hash_seed) % SIO_STEER_RING_SIZE;
		__u32 *first = bpf_map_lookup_elem(&ring, &bucket);

		*slot = sl->successor;
		*off_ring = !first || *first != *slot;
	}
	return 0;
}

/* Records where the client went: in moved if it is off the ring (losing the record would send it
 * to another worker), else in the LRU; and out of the other map. */
static __always_inline void record_client(struct stats *st, struct client_key *key, struct session *s,
					  int found, __u32 slot, int off_ring, __u64 now)
{
	struct slot *chosen_slot = bpf_map_lookup_elem(&slots, &slot);
	struct session rec = {
		.slot = slot,
		.generation = chosen_slot ? chosen_slot->generation : 0,
		.last_seen_ns = now,
	};

	if (!s)
		st->new_sessions++;
	if (off_ring) {
		if (s && found == FOUND_MOVED) {
			*s = rec;
			return;
		}
		if (bpf_map_update_elem(&moved, key, &rec, BPF_ANY) == 0) {
			if (found == FOUND_SESSIONS)
				bpf_map_delete_elem(&sessions, key);
			return;
		}
		st->moved_full++; /* recorded in the LRU instead: evictable, as before the moved map */
	}
	if (s && found == FOUND_SESSIONS) {
		*s = rec;
		return;
	}
	bpf_map_update_elem(&sessions, key, &rec, BPF_ANY);
	if (found == FOUND_MOVED)
		bpf_map_delete_elem(&moved, key); /* back on the ring, or expired */
}

SEC("sk_reuseport/migrate")
int steer(struct sk_reuseport_md *ctx)
{
	__u32 zero = 0;
	struct config *cfg = bpf_map_lookup_elem(&config, &zero);
	struct stats *st = bpf_map_lookup_elem(&stats, &zero);
	struct client_key key = {};
	struct session *s = NULL;
	__u32 port = 0, slot = SIO_STEER_SLOT_NONE;
	int is_v4 = 0, found = FOUND_NONE, off_ring = 0;
	__u64 now = 0;

	if (!cfg || !st)
		return SK_PASS;
	if (ctx->migrating_sk)
		st->migrations++;
	int records = SIO_STEER_KEY_RECORDS(cfg->key_mode);

	if (read_connection(ctx, &key, &port, &is_v4, cfg->key_mode == SIO_STEER_KEY_DESTINATION)) {
		st->errors++;
		return SK_PASS; /* not IP: let the kernel choose rather than reset */
	}
	if (records) {
		sio_steer_apply_mask(&key, is_v4 ? &cfg->v4_mask : &cfg->v6_mask);
		port = 0;
		now = bpf_ktime_get_coarse_ns();
		s = find_record(cfg, st, &key, now, &found);
	}
	if (s && follow_record(ctx, cfg, st, s, &key, port, now, &slot, &off_ring))
		return SK_PASS;
	if (slot == SIO_STEER_SLOT_NONE) {
		int chosen = select_by_ring(ctx, sio_steer_hash(&key, port, cfg->hash_seed));

		if (chosen < 0 || (__u32)chosen == SIO_STEER_SLOT_NONE) {
			st->errors++; /* no live worker in the map: the kernel's hash rather than a reset */
			return SK_PASS;
		}
		slot = (__u32)chosen & ~SELECT_FELL_BACK;
		off_ring = ((__u32)chosen & SELECT_FELL_BACK) != 0;
		if (off_ring && !s)
			st->fallbacks++;
	}
	count_selection(st, slot);
	if (records)
		record_client(st, &key, s, found, slot, off_ring, now);
	return SK_PASS;
}
