// Which worker a client goes to, and why (`sessions --client`), as the steering program decides it
// (bpf/sio_steer.bpf.c, "The program, step by step" in docs/architecture.md), from what the maps
// hold. Pure: the caller reads the maps.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bpf/sio_steer.h"

namespace sio_steer {

// What the maps hold about one client key.
struct client_maps {
    config cfg;                       // the config map
    std::vector<slot> slots;          // the slots map
    std::optional<session> recorded;  // sessions[key] or moved[key], if any
    bool kept_apart = false;          // the record is in moved: off the ring, not evictable
    // ring[bucket]; asked only when the ring decides (reading the ring is 65,537 entries).
    std::function<std::uint32_t(std::uint32_t bucket)> ring_at;
};

// Seconds since `s` was last seen, at `now_ns` on the session clock (0 if in the future).
double session_age_s(const session& s, std::uint64_t now_ns);

// {"slot", "pid", "instance" (null without one), "live"} of slot `index`; {"slot": null} past the end.
nlohmann::json worker_json(const std::vector<slot>& slots, std::uint32_t index);

// Where the program sends `key` (the key of the client `address`) at `now_ns`:
// {"client", "key", "reason", "worker", "last_seen_s" (recorded), "map" (recorded: "sessions" or
// "moved"), "recorded_but" (a recorded
// session that no longer binds), "bucket" (ring)}. The reasons: "recorded" (its session, fresh,
// on the same socket), "successor" (its socket closed; the instance's newer socket takes it),
// "ring", "ring (per connection: depends on the source port)".
nlohmann::json explain_client(const std::string& address, const client_key& key, const client_maps& maps,
                              std::uint64_t now_ns);

// The bpftool command that reads set `set` of the sessions map pinned at `sessions_path` alone: an
// ARRAY map's key is the index as its 4 bytes in memory (little-endian on x86-64), e.g.
// "bpftool map lookup pinned /sys/fs/bpf/sio-steer/5001/sessions key 0x2a 0x01 0x00 0x00".
std::string bpftool_set_lookup(const std::string& sessions_path, std::uint32_t set);

// What `sessions --client` prints: "ADDR (key KEY) -> slot 2 (pid 812, instance 1): recorded, last seen 3s ago",
// and, if the explanation has a "set" and its "bpftool" command, a second line
// "  sessions set 298: bpftool map lookup pinned ...".
std::string explanation_line(const nlohmann::json& explanation);

}  // namespace sio_steer
