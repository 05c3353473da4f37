// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Steps between select_fixed (empty.bpf.c) and hash_only (hash_only.bpf.c), for
 * `bpf_cost --profile`: where the time of the hash-only path goes.
 *
 *   select_spread  selects a random one of the live slots (bpf_get_prandom_u32): the floor of a
 *               program that spreads clients over several workers, where select_fixed always
 *               selects the same socket
 *   read_only   read_client() only, then the fixed slot
 *   hash_fixed  read_client(), config, mask, sio_steer_hash(); the fixed slot (no ring lookup)
 *   small_ring  as hash_only, with a ring of SMALL_RING_SIZE entries (8 KiB, kmalloc'ed) instead of
 *               65537 (512 KiB, vmalloc'ed): what the ring's memory footprint costs
 *   direct_mapped  a prototype of another session table: an ARRAY of DIRECT_SIZE entries indexed by
 *               the client hash, holding the client key (a different client overwrites it), instead
 *               of the LRU_HASH: one access to map memory per recorded client instead of a bucket and
 *               an element. No slot generations and no stats (the benchmark measured neither to matter).
 */
#include "bench_common.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define SMALL_RING_SIZE 1021

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SMALL_RING_SIZE);
	__type(key, __u32);
	__type(value, __u32);
} ring_small SEC(".maps");

#define DIRECT_SIZE (1u << 20)

struct direct_entry {
	struct client_key key;
	__u32 slot;
	__u32 unused;
	__u64 last_seen_ns;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, DIRECT_SIZE);
	__type(key, __u32);
	__type(value, struct direct_entry);
} direct_sessions SEC(".maps");

const volatile __u32 fixed_slot = 0;
const volatile __u32 live_slots[SIO_STEER_MAX_SLOTS] = {};
const volatile __u32 live_count = 1;

static __always_inline __u32 client_hash(struct sk_reuseport_md *ctx, int *ok)
{
	__u32 zero = 0;
	struct config *cfg = bpf_map_lookup_elem(&config, &zero);
	struct client_key key = {};
	__u32 port = 0;
	int is_v4 = 0;

	*ok = 0;
	if (!cfg || read_client(ctx, &key, &port, &is_v4))
		return 0;
	if (cfg->key_mode == SIO_STEER_KEY_ADDRESS) {
		sio_steer_apply_mask(&key, is_v4 ? &cfg->v4_mask : &cfg->v6_mask);
		port = 0;
	}
	*ok = 1;
	return sio_steer_hash(&key, port, cfg->hash_seed);
}

SEC("sk_reuseport/migrate")
int select_spread(struct sk_reuseport_md *ctx)
{
	__u32 i = bpf_get_prandom_u32() % live_count;
	__u32 slot;

	if (i >= SIO_STEER_MAX_SLOTS)
		return SK_PASS;
	slot = live_slots[i];
	bpf_sk_select_reuseport(ctx, &workers, &slot, 0);
	return SK_PASS;
}

SEC("sk_reuseport/migrate")
int read_only(struct sk_reuseport_md *ctx)
{
	struct client_key key = {};
	__u32 port = 0, slot = fixed_slot;
	int is_v4 = 0;

	/* The helper calls stay, whether or not the key is used. */
	if (read_client(ctx, &key, &port, &is_v4))
		return SK_PASS;
	bpf_sk_select_reuseport(ctx, &workers, &slot, 0);
	return SK_PASS;
}

SEC("sk_reuseport/migrate")
int hash_fixed(struct sk_reuseport_md *ctx)
{
	int ok;
	__u32 h = client_hash(ctx, &ok);
	__u32 slot = fixed_slot + (h == 0x5eed5eed); /* keeps the hash live */

	if (ok)
		bpf_sk_select_reuseport(ctx, &workers, &slot, 0);
	return SK_PASS;
}

SEC("sk_reuseport/migrate")
int small_ring(struct sk_reuseport_md *ctx)
{
	int ok;
	__u32 bucket = client_hash(ctx, &ok) % SMALL_RING_SIZE;
	__u32 *slot = ok ? bpf_map_lookup_elem(&ring_small, &bucket) : 0;

	if (slot && *slot < SIO_STEER_MAX_SLOTS) {
		__u32 s = *slot;

		bpf_sk_select_reuseport(ctx, &workers, &s, 0);
	}
	return SK_PASS;
}

SEC("sk_reuseport/migrate")
int direct_mapped(struct sk_reuseport_md *ctx)
{
	__u32 zero = 0;
	struct config *cfg = bpf_map_lookup_elem(&config, &zero);
	struct client_key key = {};
	__u32 port = 0;
	int is_v4 = 0;

	if (!cfg || read_client(ctx, &key, &port, &is_v4))
		return SK_PASS;
	if (cfg->key_mode == SIO_STEER_KEY_ADDRESS) {
		sio_steer_apply_mask(&key, is_v4 ? &cfg->v4_mask : &cfg->v6_mask);
		port = 0;
	}
	__u32 h = sio_steer_hash(&key, port, cfg->hash_seed);
	__u32 index = h & (DIRECT_SIZE - 1);
	struct direct_entry *e = bpf_map_lookup_elem(&direct_sessions, &index);
	__u64 now = bpf_ktime_get_coarse_ns();

	if (!e)
		return SK_PASS;
	int same = 1;
#pragma unroll
	for (int i = 0; i < 16; i++)
		same &= e->key.addr[i] == key.addr[i];
	if (same && now - e->last_seen_ns <= cfg->session_ttl_ns) {
		__u32 recorded = e->slot;

		if (bpf_sk_select_reuseport(ctx, &workers, &recorded, 0) == 0) {
			if (now - e->last_seen_ns > cfg->refresh_ns)
				e->last_seen_ns = now;
			return SK_PASS;
		}
	}
	__u32 bucket = h % SIO_STEER_RING_SIZE;
	__u32 *slot = bpf_map_lookup_elem(&ring, &bucket);

	if (!slot || *slot >= SIO_STEER_MAX_SLOTS)
		return SK_PASS;
	__u32 chosen = *slot;

	if (bpf_sk_select_reuseport(ctx, &workers, &chosen, 0) == 0) {
		e->key = key;
		e->slot = chosen;
		e->last_seen_ns = now;
	}
	return SK_PASS;
}
