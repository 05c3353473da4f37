/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * sio_steer.h — the one header shared by the steering program (bpf/sio_steer.bpf.c)
 * and the controller (userspace/). Every struct here is the value or key of a pinned map.
 *
 * ABI: the layout of client_key, session, slot, config and stats, and the set of pinned maps, are
 * read by other versions of sio-steer and by bpftool. Change a layout, a meaning or the map set =>
 * bump SIO_STEER_ABI_VERSION (the controller refuses pinned state of another version).
 * Fields may only be added at the end of config and stats, and only with a version bump too.
 * Version 2: the moved map, stats.moved_full.
 * Version 3: the sessions map is a set-associative table (an ARRAY of struct session_set, in place
 * of an LRU_HASH), config.session_sets in place of config.reserved.
 */
#ifndef SIO_STEER_H
#define SIO_STEER_H

#include <linux/types.h>

#define SIO_STEER_ABI_VERSION 3

/* Listening sockets the workers map can hold (a slot is one socket, not one PM2 instance). */
#define SIO_STEER_MAX_SLOTS 256
/* Maglev lookup table size: a prime well above 100 x SIO_STEER_MAX_SLOTS keeps shares within 1%. */
#define SIO_STEER_RING_SIZE 65537
/* "No slot" in ring entries and successors. */
#define SIO_STEER_SLOT_NONE 0xffffffffu
/* Ring entries tried after the hashed one when its worker is gone. */
#define SIO_STEER_RING_PROBES 8
/* Clients a set of the sessions table holds (struct session_set: 4 x 32 bytes, two cache lines,
 * in one page). A table with room for twice the clients keeps 96 % of them when all are fresh.
 * (8 a set would keep 99 %, at more cost per lookup and 17,000 verified instructions.) */
#define SIO_STEER_SESSION_WAYS 4
/* session.last_seen_ns of an empty entry of the sessions table, and of one being written: no
 * clock reading is ever that small. */
#define SIO_STEER_SESSION_EMPTY 0
#define SIO_STEER_SESSION_WRITING 1

/* How a client is identified. */
enum sio_steer_key_mode {
	SIO_STEER_KEY_ADDRESS = 0,      /* source address masked to a prefix: one worker per client */
	SIO_STEER_KEY_ADDRESS_PORT = 1, /* full source address and port: plain per-connection spread */
	/* Destination address (the worker-side address the connection was made to), masked to the
	 * prefix: one worker per destination. Behind nginx with upstream keepalive, nginx hashes each
	 * visitor onto one of many loopback destinations of the port and reuses a cached connection
	 * only for the same destination (docs/nginx.md). Recorded like ADDRESS: sessions, TTL, release.
	 * Added without an ABI bump: the config layout is unchanged, and a controller that does not
	 * know the mode refuses pinned state whose key mode differs from its own. */
	SIO_STEER_KEY_DESTINATION = 2,
};

/* Does this key mode record sessions (a worker per key), rather than spread per connection? */
#define SIO_STEER_KEY_RECORDS(mode) ((mode) == SIO_STEER_KEY_ADDRESS || (mode) == SIO_STEER_KEY_DESTINATION)

/* Key of the sessions map: the client address (in destination mode: the address the client
 * connected to) as IPv6 (IPv4 as ::ffff:a.b.c.d), masked to the configured prefix. Bytes, not words, so that bpftool prints it in network order. */
struct client_key {
	__u8 addr[16];
};

/* A client's record, in the sessions and moved maps: the slot it was given, and when it was last
 * seen. A client lives in one of the two: moved holds those recorded on a slot that is not the
 * ring's first choice for their key (they would change worker if their session were lost),
 * sessions, which evicts the least recently seen, all the others (losing theirs sends them where
 * they are anyway). */
struct session {
	__u32 slot;
	__u32 generation;   /* slot generation when recorded: a reused slot does not inherit clients */
	__u64 last_seen_ns; /* bpf_ktime_get_coarse_ns(), refreshed at most once per refresh_ns */
};

/* An entry of the sessions table: a client and its record; empty while session.last_seen_ns is
 * SIO_STEER_SESSION_EMPTY. */
struct recorded_client {
	struct client_key client;
	struct session session;
};

/* Value of the sessions map, an ARRAY of config.session_sets sets: the clients whose key hashes to
 * this set (sio_steer_session_set()), in any order, at most SIO_STEER_SESSION_WAYS of them. A new
 * client takes an empty entry, else one idle past the TTL, else the least recently seen one's: an
 * LRU per set. One lookup, one place in memory (the LRU_HASH of ABI 2 walked a bucket, then an
 * element elsewhere).
 *
 * The program and the controller (through mmap, BPF_F_MMAPABLE) write entries concurrently, so an
 * entry is written in an order a reader can check: a writer first claims it by swapping
 * last_seen_ns from the value it read to SIO_STEER_SESSION_WRITING (compare-and-swap: of two
 * writers one wins, the other records nothing), then writes the client, then slot and generation,
 * then last_seen_ns. A reader reads the client, the record, last_seen_ns, then the client again,
 * and takes the record only if last_seen_ns is a time and the client did not change: it never
 * pairs a client with another's slot. Relies on loads and stores staying in program order, as on
 * x86-64 (TSO); other architectures would need load-acquire and store-release. */
struct session_set {
	struct recorded_client clients[SIO_STEER_SESSION_WAYS];
};

/* Value of the slots map: who holds a slot of the workers map. Written by the controller only. */
struct slot {
	__u64 cookie;     /* SO_COOKIE of the listening socket */
	__u32 generation; /* bumped whenever the slot receives a new socket; 0 = never used */
	__u32 instance;   /* PM2 instance (NODE_APP_INSTANCE) of the owner */
	__u32 successor;  /* slot that takes this socket's clients once it closes, or SLOT_NONE */
	__u32 pid;        /* owner process */
};

/* Value of config[0]. Written by the controller, read on every SYN. */
struct config {
	__u32 abi_version;
	__u32 key_mode;       /* enum sio_steer_key_mode */
	__u32 v4_prefix;      /* leading bits of an IPv4 source kept in the key (0..32) */
	__u32 v6_prefix;      /* leading bits of an IPv6 source kept in the key (0..128) */
	__u64 session_ttl_ns; /* a session idle longer than this no longer binds */
	__u64 refresh_ns;     /* last_seen_ns is rewritten only when older than this */
	__u32 hash_seed;
	__u32 session_sets;   /* max_entries of the sessions map: sets of SIO_STEER_SESSION_WAYS clients */
	/* sio_steer_prefix_mask() of 96 + v4_prefix and of v6_prefix: the program ANDs the key
	 * with one of them, branch-free. */
	struct client_key v4_mask;
	struct client_key v6_mask;
};

/* Value of stats[0], one per CPU; the controller sums them. */
struct stats {
	__u64 session_hits; /* a recorded session chose the worker */
	__u64 new_sessions; /* first connection of a client (or after expiry): the ring chose */
	__u64 expired;      /* a recorded session was idle past session_ttl_ns */
	__u64 fallbacks;    /* the chosen worker was gone: a successor or another ring entry chose */
	__u64 migrations;   /* connections handed over from a closing listener */
	__u64 errors;       /* no live worker in the map, or the packet could not be read */
	__u64 selections[SIO_STEER_MAX_SLOTS];
	__u64 moved_full;   /* a client off the ring recorded in sessions (evictable): the moved map was full */
};

/* ---- Logic shared by both sides: the controller predicts what the program does. ---- */

#ifdef __cplusplus
#define SIO_STEER_INLINE inline
#else
#define SIO_STEER_INLINE static __always_inline
#endif

/* The mask that keeps the first prefix_bits bits of a key. For IPv4 clients pass 96 + bits. */
SIO_STEER_INLINE struct client_key sio_steer_prefix_mask(__u32 prefix_bits)
{
	struct client_key mask = {};

	for (int i = 0; i < 16; i++) {
		int keep = (int)prefix_bits - 8 * i;

		mask.addr[i] = keep >= 8 ? 0xff : keep <= 0 ? 0 : (__u8)(0xff << (8 - keep));
	}
	return mask;
}

SIO_STEER_INLINE void sio_steer_apply_mask(struct client_key *key, const struct client_key *mask)
{
#ifndef __cplusplus
#pragma unroll
#endif
	for (int i = 0; i < 16; i++)
		key->addr[i] &= mask->addr[i];
}

SIO_STEER_INLINE __u32 sio_steer_load32(const __u8 *p)
{
	return (__u32)p[0] | (__u32)p[1] << 8 | (__u32)p[2] << 16 | (__u32)p[3] << 24;
}

/* A fast 64-bit multiply-xorshift mix of the key (and source port in per-connection mode). */
SIO_STEER_INLINE __u32 sio_steer_hash(const struct client_key *key, __u32 port, __u32 seed)
{
	__u64 h = seed ^ 0x9e3779b97f4a7c15ULL;
#ifndef __cplusplus
#pragma unroll
#endif
	for (int i = 0; i < 4; i++) {
		h ^= sio_steer_load32(key->addr + 4 * i);
		h *= 0xff51afd7ed558ccdULL;
		h ^= h >> 32;
	}
	h ^= port;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 29;
	return (__u32)h;
}

/* The set of the sessions table that holds a client, from its sio_steer_hash(): the hash scaled to
 * [0, sets) by its high bits (a multiply, no division; the ring takes the hash modulo its size). */
SIO_STEER_INLINE __u32 sio_steer_session_set(__u32 hash, __u32 sets)
{
	return (__u32)(((__u64)hash * sets) >> 32);
}

#endif /* SIO_STEER_H */
