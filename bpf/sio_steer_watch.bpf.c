// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The listener watch: tells the controller at once when a TCP socket on the steered port starts or
 * stops listening (a worker started, crashed, reloaded), so it can fill or empty slots within
 * milliseconds instead of waiting for its periodic resync. Not pinned: it lives with the controller.
 *
 * Stopping shows in the sock:inet_sock_set_state tracepoint (LISTEN -> CLOSE). Every accepted
 * connection shows there too, as LISTEN -> SYN_RECV (it is born a clone of its listener), and must
 * not wake the controller: a resync per connection would cost a core under load. Starting does not:
 * inet_csk_listen_start() stores TCP_LISTEN without that tracepoint, so the end of every successful
 * listen() syscall is watched instead (fentry/kprobes on the kernel function are not available on
 * every kernel; syscall tracepoints are).
 */
#include <linux/bpf.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define TCP_CLOSE 7
#define TCP_LISTEN 10
#define IPPROTO_TCP 6

/* The stable tracepoint record of sock:inet_sock_set_state
 * (/sys/kernel/tracing/events/sock/inet_sock_set_state/format). */
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

/* One event: a listener came (newstate LISTEN) or went (LISTEN -> CLOSE). */
struct listener_event {
	__s32 oldstate;
	__s32 newstate;
};

const volatile __u16 watch_port = 0; /* set by the controller before load */

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} listener_events SEC(".maps");

/* The stable tracepoint record of syscalls:sys_exit_listen. */
struct sys_exit_listen_args {
	__u64 common;
	__s64 syscall_nr;
	__s64 ret;
};

/* Any successful listen(): which port is not known here, but listen() is rare and a resync that
 * finds nothing new costs one filtered sock_diag dump. */
SEC("tracepoint/syscalls/sys_exit_listen")
int watch_listen(struct sys_exit_listen_args *ctx)
{
	if (ctx->ret != 0)
		return 0;
	struct listener_event ev = { .oldstate = TCP_CLOSE, .newstate = TCP_LISTEN };

	bpf_ringbuf_output(&listener_events, &ev, sizeof(ev), 0);
	return 0;
}

SEC("tracepoint/sock/inet_sock_set_state")
int watch_listeners(struct inet_sock_set_state_args *ctx)
{
	if (ctx->protocol != IPPROTO_TCP || ctx->sport != watch_port)
		return 0;
	int came = ctx->newstate == TCP_LISTEN;
	int went = ctx->oldstate == TCP_LISTEN && ctx->newstate == TCP_CLOSE;

	if (!came && !went)
		return 0;
	struct listener_event ev = { .oldstate = ctx->oldstate, .newstate = ctx->newstate };

	/* A full ring only means the controller is already behind: it resyncs everything anyway. */
	bpf_ringbuf_output(&listener_events, &ev, sizeof(ev), 0);
	return 0;
}
