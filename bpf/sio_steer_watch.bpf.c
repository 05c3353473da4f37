// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The listener watch: tells the controller at once when a TCP socket on the steered port, in the
 * controller's network namespace, starts or stops listening (a worker started, crashed, reloaded),
 * so it fills or empties slots within milliseconds instead of waiting for its periodic resync.
 * Not pinned: it lives with the controller.
 *
 * Two ways to attach, tried in this order by userspace/kernel/listener_watch.cpp:
 *
 * 1. BTF (needs vmlinux BTF and BPF trampolines, nothing else): fexit/inet_listen sees every
 *    successful listen() on an INET socket, with its sock; tp_btf/inet_sock_set_state sees a
 *    listener close. Both attach through bpf() links: no tracefs, no perf_event_open(), so they
 *    work where tracefs is not mounted and where kernel.perf_event_paranoid = 3 (Debian).
 *    Filtered here to the port and the network namespace: nothing else wakes the controller.
 * 2. cgroup sock_ops (where trampolines are refused, e.g. under some lockdown policies): the
 *    BPF_SOCK_OPS_TCP_LISTEN_CB callback on the cgroup v2 root sees every listen() of a process
 *    in that hierarchy; tp_btf/inet_sock_set_state again for a close. Also bpf() links only.
 * 3. tracefs tracepoints (older kernels): sock:inet_sock_set_state for a listener that closes,
 *    syscalls:sys_exit_listen for any listen(), which has no socket to filter on: the
 *    controller then checks the port's listeners, one sock_diag dump.
 *
 * Starting to listen stores TCP_LISTEN without the inet_sock_set_state tracepoint, hence the
 * separate hook. Every accepted connection shows in that tracepoint as LISTEN -> SYN_RECV (it is
 * born a clone of its listener) and must not wake the controller: only LISTEN -> CLOSE does.
 */
#include <linux/bpf.h>
#include <linux/types.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "sio_steer_watch.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define TCP_CLOSE 7
#define TCP_LISTEN 10
#define IPPROTO_TCP 6

/* The few kernel fields read, relocated against the running kernel's BTF (CO-RE). */
struct ns_common {
	unsigned int inum;
} __attribute__((preserve_access_index));

struct net {
	struct ns_common ns;
} __attribute__((preserve_access_index));

typedef struct {
	struct net *net;
} possible_net_t;

struct sock_common {
	__u16 skc_num; /* local port, host byte order */
	possible_net_t skc_net;
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
	__u16 sk_protocol;
} __attribute__((preserve_access_index));

struct socket {
	struct sock *sk;
} __attribute__((preserve_access_index));

/* Set by the controller before load. */
const volatile __u16 watch_port = 0;
const volatile __u32 watch_netns = 0;        /* inode of the controller's network namespace */
const volatile __u64 watch_netns_cookie = 0; /* and its cookie (SO_NETNS_COOKIE), for sock_ops */
const volatile __u8 sock_ops_knows_pid = 0;  /* sock_ops may call bpf_get_current_pid_tgid (6.10+) */

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} listener_events SEC(".maps");

static __always_inline int watched(const struct sock *sk)
{
	return BPF_CORE_READ(sk, __sk_common.skc_num) == watch_port &&
	       BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum) == watch_netns;
}

static __always_inline void tell(__u32 change, void *sk)
{
	struct listener_event ev = {
		.change = change,
		.pid = bpf_get_current_pid_tgid() >> 32,
		.cookie = sk ? bpf_get_socket_cookie(sk) : 0,
	};

	/* A full ring only means the controller is already behind: it resyncs everything anyway. */
	bpf_ringbuf_output(&listener_events, &ev, sizeof(ev), 0);
}

/* ---- 1. BTF: trampolines and BTF tracepoints ---- */

SEC("fexit/inet_listen")
int BPF_PROG(listen_started, struct socket *sock, int backlog, int ret)
{
	struct sock *sk = sock->sk;

	if (ret == 0 && sk && watched(sk))
		tell(LISTENER_STARTED, sk);
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(listener_closed, struct sock *sk, int oldstate, int newstate)
{
	if (oldstate == TCP_LISTEN && newstate == TCP_CLOSE && watched(sk))
		tell(LISTENER_STOPPED, sk);
	return 0;
}

/* ---- 2. cgroup sock_ops ---- */

SEC("sockops")
int listen_started_sock_ops(struct bpf_sock_ops *ops)
{
	if (ops->op != BPF_SOCK_OPS_TCP_LISTEN_CB || ops->local_port != watch_port ||
	    bpf_get_netns_cookie(ops) != watch_netns_cookie)
		return 1;
	struct listener_event ev = {
		.change = LISTENER_STARTED,
		/* Older kernels refuse the helper here: the constant removes the call before the
		 * verifier sees it, and the controller then looks for the owner in every process. */
		.pid = sock_ops_knows_pid ? bpf_get_current_pid_tgid() >> 32 : 0,
		.cookie = bpf_get_socket_cookie(ops),
	};

	bpf_ringbuf_output(&listener_events, &ev, sizeof(ev), 0);
	return 1;
}

/* ---- 3. tracefs tracepoints ---- */

/* The stable record of sock:inet_sock_set_state (events/sock/inet_sock_set_state/format). */
struct inet_sock_set_state_args {
	__u64 common;
	const void *skaddr;
	int oldstate;
	int newstate;
	__u16 sport;
	__u16 dport;
	__u16 family;
	__u16 protocol;
};

/* The stable record of syscalls:sys_exit_listen. */
struct sys_exit_listen_args {
	__u64 common;
	__s64 syscall_nr;
	__s64 ret;
};

SEC("tracepoint/syscalls/sys_exit_listen")
int any_listen(struct sys_exit_listen_args *ctx)
{
	if (ctx->ret == 0)
		tell(LISTEN_ANYWHERE, 0);
	return 0;
}

SEC("tracepoint/sock/inet_sock_set_state")
int listener_closed_tp(struct inet_sock_set_state_args *ctx)
{
	const struct sock *sk = ctx->skaddr;

	if (ctx->protocol != IPPROTO_TCP || ctx->sport != watch_port)
		return 0;
	if (ctx->oldstate != TCP_LISTEN || ctx->newstate != TCP_CLOSE)
		return 0;
	if (BPF_CORE_READ(sk, __sk_common.skc_net.net, ns.inum) != watch_netns)
		return 0;
	tell(LISTENER_STOPPED, 0);
	return 0;
}
