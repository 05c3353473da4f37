/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * read_connection(), read_client(): the client of a connection as the steering program keys it. Shared by the
 * steering program and the benchmark variants (bpf/bench/), so both measure the same code.
 */
#ifndef SIO_STEER_READ_CLIENT_BPF_H
#define SIO_STEER_READ_CLIENT_BPF_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "sio_steer.h"

/* A connection a closing listener hands over (no packet): the client is the request or child
 * socket's peer (dst_*), the destination its own end (src_*). */
static __always_inline int read_migrating(struct bpf_sock *msk, struct client_key *key, __u32 *port,
					  int *is_v4, int destination)
{
	/* Read each field once: the verifier rejects a reused computed field address. */
	__u32 family = msk->family;
	__u32 dport = msk->dst_port;

	*port = bpf_ntohs((__u16)dport);
	if (family == 2 /* AF_INET */) {
		/* Both fields read, then chosen: a load from a chosen field offset is rejected
		 * too ("pointer arithmetic on sock_common prohibited"). */
		__u32 src4 = msk->src_ip4, dst4 = msk->dst_ip4;

		barrier_var(src4);
		barrier_var(dst4);
		__u32 v4 = destination ? src4 : dst4;

		key->addr[10] = key->addr[11] = 0xff;
		__builtin_memcpy(key->addr + 12, &v4, 4);
		*is_v4 = 1;
		return 0;
	}
	__u32 s0 = msk->src_ip6[0], s1 = msk->src_ip6[1], s2 = msk->src_ip6[2], s3 = msk->src_ip6[3];
	__u32 d0 = msk->dst_ip6[0], d1 = msk->dst_ip6[1], d2 = msk->dst_ip6[2], d3 = msk->dst_ip6[3];

	barrier_var(s0);
	barrier_var(s1);
	barrier_var(s2);
	barrier_var(s3);
	barrier_var(d0);
	barrier_var(d1);
	barrier_var(d2);
	barrier_var(d3);
	__u32 w0 = destination ? s0 : d0, w1 = destination ? s1 : d1;
	__u32 w2 = destination ? s2 : d2, w3 = destination ? s3 : d3;
	__builtin_memcpy(key->addr + 0, &w0, 4);
	__builtin_memcpy(key->addr + 4, &w1, 4);
	__builtin_memcpy(key->addr + 8, &w2, 4);
	__builtin_memcpy(key->addr + 12, &w3, 4);
	*is_v4 = key->addr[10] == 0xff && key->addr[11] == 0xff && !w0 && !w1 && !key->addr[8] &&
		 !key->addr[9];
	return 0;
}

/* A SYN: the source (or destination) address from the IP header, the client's port from TCP's. */
static __always_inline int read_packet(struct sk_reuseport_md *ctx, struct client_key *key, __u32 *port,
				       int *is_v4, int destination)
{
	__u16 ports[2];

	if (ctx->eth_protocol == bpf_htons(ETH_P_IP)) {
		__u8 vihl;

		if (bpf_skb_load_bytes_relative(ctx, 0, &vihl, 1, BPF_HDR_START_NET) ||
		    bpf_skb_load_bytes_relative(ctx, destination ? 16 : 12, key->addr + 12, 4,
						BPF_HDR_START_NET))
			return -1;
		key->addr[10] = key->addr[11] = 0xff;
		*is_v4 = 1;
		if (bpf_skb_load_bytes_relative(ctx, (vihl & 0xf) * 4, ports, 4, BPF_HDR_START_NET))
			return -1;
	} else if (ctx->eth_protocol == bpf_htons(ETH_P_IPV6)) {
		if (bpf_skb_load_bytes_relative(ctx, destination ? 24 : 8, key->addr, 16, BPF_HDR_START_NET))
			return -1;
		*is_v4 = 0;
		/* A TCP header right after the fixed header: a SYN carries no extension headers in
		 * practice; with one, only per-connection mode reads a wrong port. */
		if (bpf_skb_load_bytes_relative(ctx, 40, ports, 4, BPF_HDR_START_NET))
			return -1;
	} else {
		return -1;
	}
	*port = bpf_ntohs(ports[0]);
	return 0;
}

/* One end of a connection as a key: the client's address (source) or, with `destination`, the
 * address it connected to (IPv4 mapped into IPv6), and the client's source port. From the packet
 * for a SYN; from the request or child socket when a closing listener hands its queue over. */
static __always_inline int read_connection(struct sk_reuseport_md *ctx, struct client_key *key, __u32 *port,
					   int *is_v4, int destination)
{
	struct bpf_sock *msk = ctx->migrating_sk;

	if (msk)
		return read_migrating(msk, key, port, is_v4, destination);
	return read_packet(ctx, key, port, is_v4, destination);
}

/* The client's address (as IPv6, IPv4 mapped) and source port: read_connection() of the source. */
static __always_inline int read_client(struct sk_reuseport_md *ctx, struct client_key *key, __u32 *port,
				       int *is_v4)
{
	return read_connection(ctx, key, port, is_v4, 0);
}

#endif /* SIO_STEER_READ_CLIENT_BPF_H */
