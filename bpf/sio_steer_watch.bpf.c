// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The listener watch: tells the controller at once when a TCP socket on the steered port starts or
 * stops listening (a worker started, crashed, reloaded), so it can fill or empty slots within
 * milliseconds instead of waiting for its periodic resync. Not pinned: it lives with the controller.
 */
#include <linux/bpf.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

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

/* One event: a listener came (newstate LISTEN) or went (oldstate LISTEN). */
struct listener_event {
	__s32 oldstate;
	__s32 newstate;
};

const volatile __u16 watch_port = 0; /* set by the controller before load */

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} listener_events SEC(".maps");

SEC("tracepoint/sock/inet_sock_set_state")
int watch_listeners(struct inet_sock_set_state_args *ctx)
{
	if (ctx->protocol != IPPROTO_TCP || ctx->sport != watch_port)
		return 0;
	if (ctx->newstate != TCP_LISTEN && ctx->oldstate != TCP_LISTEN)
		return 0;
	struct listener_event ev = { .oldstate = ctx->oldstate, .newstate = ctx->newstate };

	/* A full ring only means the controller is already behind: it resyncs everything anyway. */
	bpf_ringbuf_output(&listener_events, &ev, sizeof(ev), 0);
	return 0;
}
