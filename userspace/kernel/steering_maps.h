// Typed access to the steering maps of one port (their layout and lifecycle: pinned_state.h):
// what the controller, the verbs and doctor read and write, each call a few bpf() calls on the
// map's fd. The key and value types are the ABI structs of bpf/sio_steer.h.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "bpf/sio_steer.h"
#include "kernel/session_table.h"
#include "logic/unique_fd.h"

namespace sio_steer {

// Now, on the clock of session.last_seen_ns (bpf_ktime_get_coarse_ns: CLOCK_MONOTONIC_COARSE).
std::uint64_t session_clock_ns();

class steering_maps {
public:
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
    // The set of the sessions table that holds `key`, or would: the one the program looks it up in.
    std::uint32_t session_set_of(const client_key& key) const { return table_->set_of(key); }
    // Writes a record into the sessions table only.
    void write_session(const client_key& key, const session& s) const;
    // Records a client where the program would: in moved if `off_ring` (its slot is not the ring's
    // first choice for the key) and moved has room, else in sessions; and out of the other map.
    // Returns false if it belonged in moved but moved was full.
    bool record_client(const client_key& key, const session& s, bool off_ring) const;
    // Moves a record out of the sessions table into moved, unless moved has one for the key already
    // (the program's, newer). Returns false if moved is full (the record stays in the table).
    bool keep_apart(const client_key& key, const session& s) const;
    // Moves a record from moved back into the sessions table (its client is on the ring again),
    // unless the table has one for the key already (the program's, newer).
    void move_back(const client_key& key, const session& s) const;
    void forget_moved(const client_key& key) const;
    bool is_kept_apart(const client_key& key) const;                    // in the moved map
    std::vector<std::pair<client_key, session>> read_sessions() const;  // the sessions table
    std::vector<std::pair<client_key, session>> read_moved() const;
    std::size_t count_sessions() const;  // the sessions table
    std::size_t count_moved() const;
    std::size_t flush_sessions() const;  // both maps
    std::uint32_t max_sessions() const;  // clients the sessions table holds: its sets x SIO_STEER_SESSION_WAYS
    std::uint32_t max_moved() const;
    void insert_worker(std::uint32_t index, int socket_fd) const;
    // SO_COOKIE of the socket in slot `index` of the workers map, 0 if the slot is empty (the
    // kernel empties it when the socket closes; `bpftool map delete` empties it too).
    std::uint64_t worker_cookie(std::uint32_t index) const;

protected:
    steering_maps() = default;  // filled by pinned_state::open() and load()

    // The maps' fds in the order of their pin names: workers slots sessions moved ring config stats.
    std::array<unique_fd*, 7> map_fds() { return {&workers_, &slots_, &sessions_, &moved_, &ring_, &config_, &stats_}; }

    std::string dir_;  // the pin folder, for messages
    unique_fd program_, workers_, slots_, sessions_, moved_, ring_, config_, stats_;
    std::optional<session_table> table_;  // sessions_, mapped (pinned_state::open() maps it)
};

}  // namespace sio_steer
