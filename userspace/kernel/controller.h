// Keeps the pinned steering state of a port in step with the sockets listening on it.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <vector>

#include "kernel/discovery.h"
#include "kernel/pinned_state.h"
#include "logic/options.h"
#include "logic/unique_fd.h"
#include "logic/worker_group.h"

namespace sio_steer {

// The listeners on a port with the controller's own reference to each socket.
struct worker_sockets {
    std::vector<listener> listeners;
    std::vector<unique_fd> fds;  // fds[i] duplicates listeners[i] (empty if it could not be taken)
};

enum class take_mode {
    attach,  // every listener must be taken: refuse (steer_error) if one cannot be
    follow,  // no listener is fine; one that cannot be taken now (worker starting or exiting)
             // gets an empty fd and is left to the next resync
};

// Finds and duplicates the listeners. Throws steer_error when there is nothing to steer:
// no listener (no_listeners, in attach mode), no SO_REUSEPORT or several reuseport groups
// (not_steerable). Drop the result soon: while the controller holds a worker's socket, that
// socket outlives its worker.
worker_sockets take_listeners(std::uint16_t port, take_mode mode = take_mode::attach);

// The same checks on listeners found already (a following controller remembers their owners);
// sockets whose cookie is in `steered` (the workers map holds them) are not taken: empty fd.
// A socket whose fd number names another socket by the time it is taken (SO_COOKIE differs
// from sock_diag's) is not taken either: empty fd, left to the next resync.
worker_sockets take_sockets(std::uint16_t port, std::vector<listener> listeners, take_mode mode,
                            const std::set<std::uint64_t>& steered = {});

// Moves the listeners not of `group` (another address, family or uid: another local user's)
// from `listeners` to `foreign`.
void leave_out_foreign(std::vector<listener>& listeners, const worker_group& group, std::vector<listener>& foreign);
bound_listener bound(const listener& l);

struct sync_report {
    std::vector<std::uint32_t> added;                 // slots filled with a new socket
    std::vector<std::uint32_t> removed;               // slots whose socket closed
    std::size_t ring_changes = 0;                     // ring entries rewritten
    std::map<std::uint64_t, std::uint32_t> recorded;  // cookie -> slot of each socket the slots map records
    std::vector<std::uint32_t> ring;                  // the ring map as this sync left it
    std::vector<std::uint64_t> skipped;  // cookies of sockets the workers map refused: left out of this sync
    std::size_t kept_apart = 0;  // records moved from sessions into moved: the new ring sends their clients elsewhere
    std::size_t moved_full = 0;  // records that belonged in moved, left in sessions: moved was full
    bool changed() const { return !added.empty() || !removed.empty() || ring_changes; }
};

// Puts every socket into the workers map (keeping those already there), rebuilds the ring,
// writes the config from `options` (keeping the pinned hash seed) and attaches the program to
// the reuseport group. Logs one line per socket that came or went. A socket the workers map
// refuses undoes this sync's slot records and inserts and is left out (report.skipped): the
// sync is planned again without it, so a failure never leaves the maps half-updated.
// `ring_now`: the ring map as the caller knows it (the last sync's report.ring), which spares
// reading 65,537 entries back; empty: read it.
sync_report sync(const pinned_state& state, const steer_options& options, const worker_sockets& sockets,
                 const std::vector<std::uint32_t>& ring_now = {});

// What tidy_moved() did with the moved map's records.
struct moved_tidy {
    std::size_t moved_back = 0;  // their client is on the ring again: back into sessions (the LRU)
    std::size_t forgotten = 0;   // idle past the TTL, or their worker gone with no successor
};

// Takes out of the moved map the records that no longer need it (the ring chooses their worker
// again, or they no longer bind), given `ring_now` (the ring map as the caller knows it; empty:
// read it). One batch walk of the moved map, bounded by its size (--max-moved); nothing more
// when it is empty.
moved_tidy tidy_moved(const pinned_state& state, const std::vector<std::uint32_t>& ring_now = {});

// One line naming a listener's owner, e.g. "pid 812 (PM2 v7.0.4: God), instance 2".
std::string describe_owner(const listener& l);

}  // namespace sio_steer
