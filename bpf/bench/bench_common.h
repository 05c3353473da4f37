/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * What the benchmark variants (bpf/bench/) share with the steering program: its maps, as
 * declared there (the benchmark reuses the pinned ones, bpf_map__reuse_fd), and its
 * read_client() (bpf/read_client.bpf.h).
 */
#ifndef SIO_STEER_BENCH_COMMON_H
#define SIO_STEER_BENCH_COMMON_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "../sio_steer.h"
#include "../read_client.bpf.h"

struct {
	__uint(type, BPF_MAP_TYPE_REUSEPORT_SOCKARRAY);
	__uint(max_entries, SIO_STEER_MAX_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} workers SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SIO_STEER_RING_SIZE);
	__type(key, __u32);
	__type(value, __u32);
} ring SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct config);
} config SEC(".maps");

#endif /* SIO_STEER_BENCH_COMMON_H */
