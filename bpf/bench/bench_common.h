/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * What the benchmark variants (bpf/bench/) share with the steering program: its maps
 * (bpf/sio_steer_maps.bpf.h; the benchmark reuses the pinned ones, bpf_map__reuse_fd), and its
 * read_client() (bpf/read_client.bpf.h).
 */
#ifndef SIO_STEER_BENCH_COMMON_H
#define SIO_STEER_BENCH_COMMON_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "../sio_steer.h"
#include "../sio_steer_maps.bpf.h"
#include "../read_client.bpf.h"

#endif /* SIO_STEER_BENCH_COMMON_H */
