// What a following controller remembers between resyncs, so that a resync that finds nothing new
// costs one sock_diag dump and a few map lookups: no walk of every process's fd table.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <vector>

#include "kernel/controller.h"
#include "kernel/discovery.h"
#include "kernel/pinned_state.h"
#include "logic/options.h"

namespace sio_steer {

class listener_tracker {
public:
    // `rescan_interval`: how often to look again for the owner of a listener not found before
    // (e.g. one in another PID namespace), with a walk of every process.
    listener_tracker(const steer_options& options, const pinned_state& state,
                     std::chrono::milliseconds rescan_interval);

    // Lists the port's listeners and syncs the maps if they changed or the workers map lost a
    // socket; nullopt when there was nothing to do. `hints`: processes that just listened on the
    // port (listener watch), whose fd tables hold the new sockets. Throws steer_error as sync() does.
    std::optional<sync_report> resync(const std::vector<pid_t>& hints);

    // tidy_moved() at most every 2 s (a resync may come every 100 ms): the records of the moved
    // map that no longer need it leave it. Throws steer_error as the map reads do.
    void tidy_moved_now_and_then();

private:
    bool unchanged(const std::set<std::uint64_t>& cookies) const;
    void leave_out_foreign(std::vector<listener>& listeners);
    void remember_parents(const std::vector<listener>& listeners);

    const steer_options& options_;
    const pinned_state& state_;
    const std::chrono::milliseconds rescan_interval_;
    std::map<std::uint64_t, listener> known_;          // by cookie: the listeners of the last resync
    std::map<std::uint64_t, std::uint32_t> recorded_;  // cookie -> slot the slots map records since the last sync
    std::vector<std::uint32_t> ring_;                  // the ring map as the last sync wrote it
    bool synced_ = false;              // recorded_ is the outcome of a sync (the maps were written after attach's)
    std::set<std::uint64_t> refused_;  // a set of listeners the last sync refused
    std::chrono::steady_clock::time_point last_scan_{}, last_refusal_{}, last_tidy_{};
    std::set<pid_t> parents_;  // the workers' parents (PM2's daemon): their children are where new workers are
    std::optional<worker_group> group_;  // recorded at the first attach; listeners not of it are ignored
    std::set<std::uint64_t> foreign_;    // cookies of the ignored listeners, each warned about once
};

}  // namespace sio_steer
