// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The steering program: runs for every SYN that reaches the reuseport group on the port, and
 * for every connection queued on a listener that closes. It picks the worker socket by client
 * address so that all TCP connections of one client land in the same worker's accept queue.
 *
 *   key  = source address, masked to a prefix (--key destination: the address connected to)
 *   h    = sio_steer_hash(key)
 *   slot = sessions[set of h] or moved[key]   if recorded and not idle past the TTL
 *        else ring[h % M]                     Maglev table built by the controller
 *   bpf_sk_select_reuseport(workers[slot]); a gone worker => its successor, else the next ring entry
 *
 * A client recorded on a slot that is not the ring's first choice for its key goes to `moved`,
 * which new clients cannot evict; the others to `sessions`, a set-associative table whose sets
 * evict their least recently seen (a flood of new sources evicts only clients whom the ring sends
 * where they are anyway). A key is in one map at a time.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "sio_steer.h"
#include "sio_steer_maps.bpf.h"
#include "read_client.bpf.h"
#include "session_table.bpf.h"

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

/* A client, and its record as found. */
struct client {
	__u64 k0, k1;                 /* the key's two words (session_table.bpf.h) */
	__u32 hash;                   /* sio_steer_hash() of the key */
	int found;                    /* FOUND_* */
	struct session rec;           /* a copy of the record (FOUND_SESSIONS, FOUND_MOVED) */
	struct session_set *set;      /* the key's set of the sessions table */
	struct recorded_client *entry; /* FOUND_SESSIONS: its entry there */
	struct session *moved;        /* FOUND_MOVED: its element of moved */
};

/* The client's record, from sessions or moved. Returns 1 if there is one and it is not idle past
 * the TTL (an idle one is overwritten as a new session). */
static __always_inline int find_record(struct config *cfg, struct stats *st, struct client *c, struct client_key *key,
				       __u64 now)
{
	/* sessions first: most recorded clients are on the ring, and pay no second lookup. */
	__u32 set = sio_steer_session_set(c->hash, cfg->session_sets);

	c->set = bpf_map_lookup_elem(&sessions, &set);
	if (c->set)
		c->entry = session_find(c->set, c->k0, c->k1, &c->rec);
	if (c->entry) {
		c->found = FOUND_SESSIONS;
	} else {
		c->moved = bpf_map_lookup_elem(&moved, key);
		if (!c->moved)
			return 0;
		c->found = FOUND_MOVED;
		c->rec = *c->moved;
	}
	if (c->rec.last_seen_ns + cfg->session_ttl_ns < now) { /* not now - last_seen: another CPU's may be newer */
		st->expired++;
		return 0;
	}
	return 1;
}

/* A recorded client: its socket if it still listens (returns 1: selected, nothing to write but a
 * stale last_seen). Else the client moves once, to the socket that replaced it (same PM2 instance)
 * if there is one (*slot, with *off_ring if that is not the ring's first choice), else *slot stays
 * SLOT_NONE for the ring to choose; returns 0. */
static __always_inline int follow_record(struct sk_reuseport_md *ctx, struct config *cfg, struct stats *st,
					 struct client *c, __u64 now, __u32 *slot, int *off_ring)
{
	__u32 recorded = c->rec.slot;
	struct slot *sl = bpf_map_lookup_elem(&slots, &recorded);

	if (sl && sl->generation == c->rec.generation && select_slot(ctx, recorded) == 0) {
		/* The hot path: read only, unless last_seen is getting stale. */
		if (now - c->rec.last_seen_ns > cfg->refresh_ns) {
			if (c->entry)
				session_refresh(c->entry, c->rec.last_seen_ns, now);
			else if (c->moved)
				c->moved->last_seen_ns = now;
		}
		st->session_hits++;
		count_selection(st, recorded);
		return 1;
	}
	st->fallbacks++;
	if (sl && sl->successor != SIO_STEER_SLOT_NONE && select_slot(ctx, sl->successor) == 0) {
		__u32 bucket = c->hash % SIO_STEER_RING_SIZE;
		__u32 *first = bpf_map_lookup_elem(&ring, &bucket);

		*slot = sl->successor;
		*off_ring = !first || *first != *slot;
	}
	return 0;
}

/* Records where the client went: in moved if it is off the ring (losing the record would send it
 * to another worker), else in the sessions table; and out of the other map. */
static __always_inline void record_client(struct config *cfg, struct stats *st, struct client *c,
					  struct client_key *key, int recorded, __u32 slot, int off_ring, __u64 now)
{
	struct slot *chosen_slot = bpf_map_lookup_elem(&slots, &slot);
	struct session rec = {
		.slot = slot,
		.generation = chosen_slot ? chosen_slot->generation : 0,
		.last_seen_ns = now,
	};

	if (!recorded)
		st->new_sessions++;
	if (off_ring) {
		if (c->moved) {
			*c->moved = rec;
			return;
		}
		if (bpf_map_update_elem(&moved, key, &rec, BPF_ANY) == 0) {
			if (c->entry)
				session_forget(c->entry, c->rec.last_seen_ns);
			return;
		}
		st->moved_full++; /* recorded in the sessions table instead: evictable, as before the moved map */
	}
	if (c->set)
		session_record(c->set, c->entry, c->rec.last_seen_ns, c->k0, c->k1, &rec, cfg->session_ttl_ns);
	if (c->moved)
		bpf_map_delete_elem(&moved, key); /* back on the ring, or expired */
}

SEC("sk_reuseport/migrate")
int steer(struct sk_reuseport_md *ctx)
{
	__u32 zero = 0;
	struct config *cfg = bpf_map_lookup_elem(&config, &zero);
	struct stats *st = bpf_map_lookup_elem(&stats, &zero);
	struct client_key key __attribute__((aligned(8))) = {};
	struct client c = {};
	__u32 port = 0, slot = SIO_STEER_SLOT_NONE;
	int is_v4 = 0, recorded = 0, off_ring = 0;
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
	}
	c.hash = sio_steer_hash(&key, port, cfg->hash_seed);
	if (records) {
		session_key_words(&key, &c.k0, &c.k1);
		recorded = find_record(cfg, st, &c, &key, now);
	}
	if (recorded && follow_record(ctx, cfg, st, &c, now, &slot, &off_ring))
		return SK_PASS;
	if (slot == SIO_STEER_SLOT_NONE) {
		int chosen = select_by_ring(ctx, c.hash);

		if (chosen < 0 || (__u32)chosen == SIO_STEER_SLOT_NONE) {
			st->errors++; /* no live worker in the map: the kernel's hash rather than a reset */
			return SK_PASS;
		}
		slot = (__u32)chosen & ~SELECT_FELL_BACK;
		off_ring = ((__u32)chosen & SELECT_FELL_BACK) != 0;
		if (off_ring && !recorded)
			st->fallbacks++;
	}
	count_selection(st, slot);
	if (records)
		record_client(cfg, st, &c, &key, recorded, slot, off_ring, now);
	return SK_PASS;
}
