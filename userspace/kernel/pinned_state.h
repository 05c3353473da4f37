// The steering state of one port, pinned in bpffs so that it outlives the controller:
//
//   <pin root>/<port>/program   the steering program
//                     workers   REUSEPORT_SOCKARRAY  slot -> listening socket
//                     slots     ARRAY                slot -> struct slot (cookie, pid, instance, ...)
//                     sessions  ARRAY, mmapable      set -> struct session_set (clients and their sessions)
//                     moved     HASH                 struct client_key -> struct session, for clients
//                                                    off the ring (not evictable)
//                     ring      ARRAY                Maglev bucket -> slot
//                     config    ARRAY[1]             struct config
//                     stats     PERCPU_ARRAY[1]      struct stats
//
// A new folder is built under a temporary name and renamed into place, so it is never half-written.
// This is the layout and the lifecycle (open, load, remove); reading and writing the maps is
// steering_maps' (steering_maps.h), which a pinned_state is.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "kernel/steering_maps.h"
#include "logic/options.h"

namespace sio_steer {

// Throws steer_error(environment) for a pin folder or pinned object that this user may not read.
[[noreturn]] void throw_pins_unreadable(const std::string& path, int err);

class pinned_state : public steering_maps {
public:
    // The state pinned in `dir`, or nullopt if nothing is pinned there (no config map).
    // Throws steer_error(incompatible) if it was written by another ABI version, or if a map's
    // type, key or value size differs from this build's (checked before anything is read).
    static std::optional<pinned_state> open(const std::string& dir);

    // `dir` holds pins but no config map: what a detach killed halfway leaves (or a hand-made
    // removal). open() says nothing is pinned; load() and remove() clear it.
    static bool half_removed(const std::string& dir);

    // Loads this build's program onto the pinned maps (or onto new ones, which it pins), and pins
    // the program; returns the state and whether it was created. Existing sessions are kept.
    // First removes, saying so, what killed runs left: new_/old_<port>_<pid> folders of pids
    // that are gone, and a half-removed `dir`.
    static std::pair<pinned_state, bool> load(const steer_options& options);

    // Removes the pinned folder (maps and program live on only while something still uses them):
    // renamed to <pin root>/old_<port>_<pid> first, then emptied.
    static void remove(const std::string& dir);

    // SO_COOKIEs of the sockets in the pinned workers map of `dir`, whatever version wrote it (the
    // map is the kernel's REUSEPORT_SOCKARRAY, not one of our layouts); empty if it cannot be read.
    // Lets detach remove state that open() refuses as incompatible.
    static std::set<std::uint64_t> socket_cookies(const std::string& dir);

private:
    pinned_state() = default;
};

// The state pinned for `options.port`, for a verb that needs it, or a refusal the user can act
// on: steer_error(not_attached) "nothing is pinned for port N in <pin root>" with `why` and `fix`
// (by default: not attached; run `sio-steer attach --port N` first), steer_error(incompatible)
// and the errors of pinned_state::open().
pinned_state open_pinned_state(const steer_options& options, std::string why = {}, std::string fix = {});

}  // namespace sio_steer
