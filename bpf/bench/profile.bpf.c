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
 * (A direct-mapped session table prototyped here, -29 % against the LRU_HASH, led to the
 * set-associative sessions table of ABI 3.)
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
