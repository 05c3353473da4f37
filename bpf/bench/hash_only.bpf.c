// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Benchmark variant of bpf/sio_steer.bpf.c without the sessions map (tests/bench/bpf_cost.cpp):
 * reads the client the same way, masks it with the configured prefix, hashes it with
 * sio_steer_hash() and selects workers[ring[hash % M]]. No session lookup or insert, no stats,
 * no probing past a gone worker (the benchmark's workers all live).
 *
 * The benchmark reuses the pinned workers, ring and config maps of the real program, so both
 * choose the same worker for a new client.
 */
#include "bench_common.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("sk_reuseport/migrate")
int hash_only(struct sk_reuseport_md *ctx)
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
	__u32 bucket = sio_steer_hash(&key, port, cfg->hash_seed) % SIO_STEER_RING_SIZE;
	__u32 *slot = bpf_map_lookup_elem(&ring, &bucket);

	if (slot && *slot < SIO_STEER_MAX_SLOTS) {
		__u32 s = *slot;

		bpf_sk_select_reuseport(ctx, &workers, &s, 0);
	}
	return SK_PASS;
}
