// What an operator chooses for a port, validated before anything is touched.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "bpf/sio_steer.h"

namespace sio_steer {

struct steer_options {
    std::uint16_t port = 0;
    sio_steer_key_mode key_mode = SIO_STEER_KEY_ADDRESS;
    std::uint32_t v4_prefix = 32;
    std::uint32_t v6_prefix = 64;
    std::uint32_t max_sessions = 262144;
    // Clients off the ring (the moved map, not evictable): half of the default sessions, so that a
    // reload of half the workers at a time (PM2's default: 2 of 4) or a scale-up that at most
    // doubles the workers, with the default sessions map full, fits. About 12 MiB, preallocated.
    std::uint32_t max_moved = 131072;
    std::chrono::seconds session_ttl{600};
    std::string pin_root = "/sys/fs/bpf/sio-steer";
    std::string lock_dir = "/run/sio-steer";

    std::string pin_dir() const { return pin_root + "/" + std::to_string(port); }
};

// Parsers for option values; each throws steer_error(usage) naming the option and the rule.
std::uint16_t parse_port(const std::string& text);
sio_steer_key_mode parse_key_mode(const std::string& text);  // "address" | "address,port" | "destination"
std::string key_mode_name(std::uint32_t mode);
// A whole number in [min, max] written with digits only (no sign, no space, no suffix).
std::uint64_t parse_number(const std::string& option, const std::string& text, std::uint64_t min, std::uint64_t max);
std::chrono::seconds parse_duration(const std::string& option, const std::string& text);  // 600, 600s, 10m, 1h

// Range checks of the combination (prefixes, sizes); throws steer_error(usage).
void validate(const steer_options& options);

// Sets of the sessions table that hold `max_sessions` clients, SIO_STEER_SESSION_WAYS a set.
std::uint32_t session_sets_for(std::uint32_t max_sessions);

// The config map value the options stand for (abi version, masks, TTL, sessions table sets), with
// the given seed.
config make_config(const steer_options& options, std::uint32_t hash_seed);

}  // namespace sio_steer
