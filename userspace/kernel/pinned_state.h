// The steering state of one port, pinned in bpffs so that it outlives the controller:
//
//   <pin root>/<port>/program   the steering program
//                     workers   REUSEPORT_SOCKARRAY  slot -> listening socket
//                     slots     ARRAY                slot -> struct slot (cookie, pid, instance, ...)
//                     sessions  LRU_HASH             struct client_key -> struct session
//                     moved     HASH                 the same, for clients off the ring (not evictable)
//                     ring      ARRAY                Maglev bucket -> slot
//                     config    ARRAY[1]             struct config
//                     stats     PERCPU_ARRAY[1]      struct stats
//
// A new folder is built under a temporary name and renamed into place, so it is never half-written.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "bpf/sio_steer.h"
#include "logic/options.h"
#include "logic/unique_fd.h"

namespace sio_steer {

// Now, on the clock of session.last_seen_ns (bpf_ktime_get_coarse_ns: CLOCK_MONOTONIC_COARSE).
std::uint64_t session_clock_ns();

// Throws steer_error(environment) for a pin folder or pinned object that this user may not read.
[[noreturn]] void throw_pins_unreadable(const std::string& path, int err);

class pinned_state {
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

    const std::string& dir() const { return dir_; }
    int program() const { return program_.get(); }
    int workers() const { return workers_.get(); }

    config read_config() const;
    void write_config(const config& c) const;
    std::vector<slot> read_slots() const;
    void write_slot(std::uint32_t index, const slot& s) const;
    std::vector<std::uint32_t> read_ring() const;
    std::uint32_t ring_at(std::uint32_t bucket) const;  // one entry
    void write_ring(const std::vector<std::uint32_t>& ring, const std::vector<std::uint32_t>& current) const;
    stats read_stats() const;  // summed over CPUs
    // A client's record, from sessions or moved (a key is in one of them).
    std::optional<session> find_session(const client_key& key) const;
    // Writes a record into the sessions map (the LRU) only.
    void write_session(const client_key& key, const session& s) const;
    // Records a client where the program would: in moved if `off_ring` (its slot is not the ring's
    // first choice for the key) and moved has room, else in sessions; and out of the other map.
    // Returns false if it belonged in moved but moved was full.
    bool record_client(const client_key& key, const session& s, bool off_ring) const;
    // Moves a record out of the LRU into moved, unless moved has one for the key already (the
    // program's, newer). Returns false if moved is full (the record stays in the LRU).
    bool keep_apart(const client_key& key, const session& s) const;
    // Moves a record from moved back into the LRU (its client is on the ring again).
    void move_back(const client_key& key, const session& s) const;
    void forget_moved(const client_key& key) const;
    bool is_kept_apart(const client_key& key) const;                    // in the moved map
    std::vector<std::pair<client_key, session>> read_sessions() const;  // the LRU
    std::vector<std::pair<client_key, session>> read_moved() const;
    std::size_t count_sessions() const;  // the LRU
    std::size_t count_moved() const;
    std::size_t flush_sessions() const;  // both maps
    std::uint32_t max_sessions() const;
    std::uint32_t max_moved() const;
    void insert_worker(std::uint32_t index, int socket_fd) const;
    // SO_COOKIE of the socket in slot `index` of the workers map, 0 if the slot is empty (the
    // kernel empties it when the socket closes; `bpftool map delete` empties it too).
    std::uint64_t worker_cookie(std::uint32_t index) const;

private:
    pinned_state() = default;

    std::string dir_;
    unique_fd program_, workers_, slots_, sessions_, moved_, ring_, config_, stats_;
};

// The state pinned for `options.port`, for a verb that needs it, or a refusal the user can act
// on: steer_error(not_attached) "nothing is pinned for port N in <pin root>" with `why` and `fix`
// (by default: not attached; run `sio-steer attach --port N` first), steer_error(incompatible)
// and the errors of pinned_state::open().
pinned_state open_pinned_state(const steer_options& options, std::string why = {}, std::string fix = {});

}  // namespace sio_steer
