// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Benchmark floors for the steering program (tests/bench/bpf_cost.cpp), same program type and
 * attach type as bpf/sio_steer.bpf.c:
 *
 *   empty         returns SK_PASS and selects nothing: the cost of running *any* program on a SYN,
 *                 i.e. the dispatch and the kernel.bpf_stats_enabled accounting themselves.
 *   select_fixed  selects slot 0 of the workers map: the floor of any program that steers, since
 *                 every steering program pays one bpf_sk_select_reuseport().
 *
 * The benchmark reuses the pinned maps of the real program (bpf_map__reuse_fd).
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "../sio_steer.h"
#include "../sio_steer_maps.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* The slot select_fixed picks; the benchmark sets it to a live slot before load. */
const volatile __u32 fixed_slot = 0;

SEC("sk_reuseport/migrate")
int empty(struct sk_reuseport_md *ctx)
{
	return SK_PASS;
}

SEC("sk_reuseport/migrate")
int select_fixed(struct sk_reuseport_md *ctx)
{
	__u32 slot = fixed_slot;

	bpf_sk_select_reuseport(ctx, &workers, &slot, 0);
	return SK_PASS;
}
