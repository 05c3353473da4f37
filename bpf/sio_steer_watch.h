/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * sio_steer_watch.h — what the listener watch (bpf/sio_steer_watch.bpf.c) tells the controller
 * (userspace/kernel/listener_watch.cpp). Not pinned, not ABI: both sides are built together.
 */
#ifndef SIO_STEER_WATCH_H
#define SIO_STEER_WATCH_H

#include <linux/types.h>

enum listener_change {
	LISTENER_STARTED = 1, /* a socket on the port started listening */
	LISTENER_STOPPED = 2, /* a listener on the port closed (LISTEN -> CLOSE) */
	LISTEN_ANYWHERE = 3,  /* some listen() succeeded, port unknown (the tracefs fallback) */
};

/* One ring buffer record. */
struct listener_event {
	__u32 change; /* enum listener_change */
	__u32 pid;    /* the process that listened or closed (thread group id) */
	__u64 cookie; /* SO_COOKIE of the socket, as sock_diag reports it; 0 if unknown */
};

#endif /* SIO_STEER_WATCH_H */
