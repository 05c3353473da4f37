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

/* A libbpf map definition (BTF-defined, so bpftool shows the key and value types), one line a map. */
#define SIO_STEER_MAP(map_type, entries, key_type, value_type) \
	struct {                                               \
		__uint(type, map_type);                        \
		__uint(max_entries, entries);                  \
		__type(key, key_type);                         \
		__type(value, value_type);                     \
	}

/* slot -> listening socket; the kernel empties a slot when its socket closes. */
SIO_STEER_MAP(BPF_MAP_TYPE_REUSEPORT_SOCKARRAY, SIO_STEER_MAX_SLOTS, __u32, __u64) workers SEC(".maps");

/* slot -> who holds it (cookie, generation, instance, successor, pid). */
SIO_STEER_MAP(BPF_MAP_TYPE_ARRAY, SIO_STEER_MAX_SLOTS, __u32, struct slot) slots SEC(".maps");

/* set -> up to SIO_STEER_SESSION_WAYS clients, each with the slot it was given and when it was last
 * seen (struct session_set: how entries are found, replaced and written). 65536 sets (262144
 * clients) until the controller resizes it (--max-sessions) before load. Mappable: the controller
 * writes single entries in place, as the program does. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_MMAPABLE);
	__type(key, __u32);
	__type(value, struct session_set);
} sessions SEC(".maps");

/* client key -> session, for the clients recorded on a slot that is not the ring's first choice
 * for their key (moved by a scale change, a reload, a crash or a release): a plain hash, so a flood
 * of new clients, which fills the LRU, cannot evict them. Preallocated: the program's insert
 * never allocates, and fails (E2BIG) only when the map is full. 131072 entries until the
 * controller resizes it (--max-moved) before load. */
SIO_STEER_MAP(BPF_MAP_TYPE_HASH, 131072, struct client_key, struct session) moved SEC(".maps");

/* Maglev bucket -> slot. */
SIO_STEER_MAP(BPF_MAP_TYPE_ARRAY, SIO_STEER_RING_SIZE, __u32, __u32) ring SEC(".maps");

/* The one struct config the controller writes. */
SIO_STEER_MAP(BPF_MAP_TYPE_ARRAY, 1, __u32, struct config) config SEC(".maps");

/* One struct stats per CPU; the controller sums them. */
SIO_STEER_MAP(BPF_MAP_TYPE_PERCPU_ARRAY, 1, __u32, struct stats) stats SEC(".maps");

#endif /* SIO_STEER_MAPS_BPF_H */
