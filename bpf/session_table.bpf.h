/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * session_table.bpf.h — the sessions table as the steering program uses it: find a client in its
 * set, record it, forget it, refresh its last_seen. An entry is written and read in the order
 * struct session_set (sio_steer.h) describes, which the controller follows too
 * (userspace/kernel/session_table.cpp). The client key is passed as its two 64-bit words.
 */
#ifndef SIO_STEER_SESSION_TABLE_BPF_H
#define SIO_STEER_SESSION_TABLE_BPF_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#include "sio_steer.h"

/* Volatile accesses: the compiler keeps them, and keeps them in this order. */
#define SESSION_LOAD(p) (*(volatile __u64 *)(p))
#define SESSION_STORE(p, v) (*(volatile __u64 *)(p) = (v))

/* The two words of a key (on the stack, 8-byte aligned by the caller). */
static __always_inline void session_key_words(const struct client_key *key, __u64 *k0, __u64 *k1)
{
	__builtin_memcpy(k0, key->addr, 8);
	__builtin_memcpy(k1, key->addr + 8, 8);
}

/* The entry of the client (k0, k1) in `set`, with a copy of its record in *rec; NULL if the set has
 * none. Reads the client, the record, last_seen_ns, then the client again: a record being written
 * (or replaced by another client's) is not taken. */
static __always_inline struct recorded_client *session_find(struct session_set *set, __u64 k0, __u64 k1,
							    struct session *rec)
{
#pragma unroll
	for (int i = 0; i < SIO_STEER_SESSION_WAYS; i++) {
		struct recorded_client *c = &set->clients[i];

		if (SESSION_LOAD(c->client.addr) != k0 || SESSION_LOAD(c->client.addr + 8) != k1)
			continue;
		__u64 placed = SESSION_LOAD(&c->session.slot); /* slot and generation, one load */
		__u64 seen = SESSION_LOAD(&c->session.last_seen_ns);

		if (seen <= SIO_STEER_SESSION_WRITING || SESSION_LOAD(c->client.addr) != k0 ||
		    SESSION_LOAD(c->client.addr + 8) != k1)
			continue;
		__builtin_memcpy(rec, &placed, 8);
		rec->last_seen_ns = seen;
		return c;
	}
	return NULL;
}

/* Takes entry c for writing if its last_seen_ns is still `seen`: of two writers, one wins. */
static __always_inline int session_claim(struct recorded_client *c, __u64 seen)
{
	return __sync_val_compare_and_swap(&c->session.last_seen_ns, seen, SIO_STEER_SESSION_WRITING) == seen;
}

/* Records the client (k0, k1) in `set`: over `own` (its entry, whose last_seen_ns read `own_seen`)
 * if it has one, else over an empty entry, else one idle past `ttl_ns` at rec->last_seen_ns (now),
 * else the least recently seen. Returns 0, or -1 if another writer took the entry first: nothing is recorded then, and the
 * client's next connection records it. */
static __always_inline int session_record(struct session_set *set, struct recorded_client *own, __u64 own_seen,
					  __u64 k0, __u64 k1, const struct session *rec, __u64 ttl_ns)
{
	struct recorded_client *c = own;
	__u64 seen = own_seen;

	if (!c) {
		/* rank: 0 for an empty or expired entry, else its last_seen_ns; the lowest goes. */
		__u64 lowest = ~0ULL;
		__u32 victim = SIO_STEER_SESSION_WAYS;

#pragma unroll
		for (int i = 0; i < SIO_STEER_SESSION_WAYS; i++) {
			__u64 t = SESSION_LOAD(&set->clients[i].session.last_seen_ns);
			__u64 rank = t == SIO_STEER_SESSION_EMPTY || t + ttl_ns < rec->last_seen_ns ? 0 : t;

			if (t != SIO_STEER_SESSION_WRITING && rank < lowest) {
				lowest = rank;
				victim = i;
				seen = t;
			}
		}
		if (victim >= SIO_STEER_SESSION_WAYS)
			return -1; /* every entry being written */
		c = &set->clients[victim];
	}
	if (!session_claim(c, seen))
		return -1;
	__u64 placed;

	__builtin_memcpy(&placed, &rec->slot, 8);
	SESSION_STORE(c->client.addr, k0);
	SESSION_STORE(c->client.addr + 8, k1);
	SESSION_STORE(&c->session.slot, placed);
	SESSION_STORE(&c->session.last_seen_ns, rec->last_seen_ns);
	return 0;
}

/* Empties entry c if its last_seen_ns is still `seen` (the client moves to the moved map). */
static __always_inline void session_forget(struct recorded_client *c, __u64 seen)
{
	if (session_claim(c, seen))
		SESSION_STORE(&c->session.last_seen_ns, SIO_STEER_SESSION_EMPTY);
}

/* A hit rewrites last_seen_ns, unless a writer took the entry since it was read. */
static __always_inline void session_refresh(struct recorded_client *c, __u64 seen, __u64 now)
{
	__sync_val_compare_and_swap(&c->session.last_seen_ns, seen, now);
}

#endif /* SIO_STEER_SESSION_TABLE_BPF_H */
