/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * sio_steer_maps.bpf.h — the pinned maps of the steering program, declared once: included by
 * bpf/sio_steer.bpf.c and by the benchmark variants (bpf/bench/), which reuse the pinned maps
 * (bpf_map__reuse_fd) and so must declare them exactly as the program does.
 * Key and value types are the ABI structs of sio_steer.h; the table in docs/architecture.md says
 * who writes and reads each map.
 */
#ifndef SIO_STEER_MAPS_BPF_H
#define SIO_STEER_MAPS_BPF_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "sio_steer.h"

/* slot -> listening socket; the kernel empties a slot when its socket closes. */
struct {
	__uint(type, BPF_MAP_TYPE_REUSEPORT_SOCKARRAY);
	__uint(max_entries, SIO_STEER_MAX_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} workers SEC(".maps");

/* slot -> who holds it (cookie, generation, instance, successor, pid). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SIO_STEER_MAX_SLOTS);
	__type(key, __u32);
	__type(value, struct slot);
} slots SEC(".maps");

/* client key -> the slot it was given, and when it was last seen. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 262144); /* resized by the controller (--max-sessions) before load */
	__type(key, struct client_key);
	__type(value, struct session);
} sessions SEC(".maps");

/* client key -> session, for the clients recorded on a slot that is not the ring's first choice
 * for their key (moved by a scale change, a reload, a crash or a release): a plain hash, so a flood
 * of new clients, which fills the LRU, cannot evict them. Preallocated: the program's insert
 * never allocates, and fails (E2BIG) only when the map is full. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 131072); /* resized by the controller (--max-moved) before load */
	__type(key, struct client_key);
	__type(value, struct session);
} moved SEC(".maps");

/* Maglev bucket -> slot. */
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

/* One struct stats per CPU; the controller sums them. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct stats);
} stats SEC(".maps");

#endif /* SIO_STEER_MAPS_BPF_H */
