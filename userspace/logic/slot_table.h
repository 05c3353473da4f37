// Which listening socket sits in which slot of the workers map: pure bookkeeping, no syscalls.
//
// A slot is one socket (by SO_COOKIE), never an instance: during `pm2 reload` the old and the new
// worker of one instance both listen, and the old one's clients must keep reaching it. The ring
// sends new clients to the newest socket of each instance; when a socket closes, its recorded
// clients move to its successor (the instance's newest socket), else to the ring's choice.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <vector>

#include "bpf/sio_steer.h"
#include "logic/maglev.h"

namespace sio_steer {

inline constexpr std::uint32_t no_instance = 0xffffffffu;

struct live_socket {
    std::uint64_t cookie;
    std::optional<std::uint32_t> instance;  // PM2 instance; without one the owner pid identifies it
    pid_t pid;
};

struct slot_plan {
    std::vector<slot> slots;                                     // the whole slots map as it must become
    std::vector<std::uint32_t> changed;                          // slots whose record changed (write these)
    std::vector<std::pair<std::uint32_t, std::size_t>> inserts;  // (slot, index in live) for workers[]
    std::vector<std::uint32_t> removed;                          // slots whose socket is gone since last time
    std::vector<maglev_member> ring_members;                     // one per instance: its newest socket
};

// The identity a worker keeps across restarts: its PM2 instance, else its pid.
std::uint64_t member_id(std::uint32_t instance, pid_t pid);

// Fresh slot records (never used, no successor).
std::vector<slot> empty_slots();

// Plans the slots for the sockets now listening, keeping every socket already in a slot where it is.
// Throws steer_error(not_steerable) if there are more sockets than SIO_STEER_MAX_SLOTS.
slot_plan plan_slots(const std::vector<slot>& current, const std::vector<live_socket>& live);

}  // namespace sio_steer
