#include "kernel/listener_tracker.h"

#include <algorithm>

#include <spdlog/spdlog.h>

#include "kernel/group_pin.h"
#include "logic/errors.h"

namespace sio_steer {

using std::chrono::steady_clock;

listener_tracker::listener_tracker(const steer_options& options, const pinned_state& state,
                                   std::chrono::milliseconds rescan_interval)
    : options_(options),
      state_(state),
      rescan_interval_(rescan_interval),
      group_(read_group(state.dir()))
{}

void listener_tracker::leave_out_foreign(std::vector<listener>& listeners)
{
    if (!group_)
        return;
    std::vector<listener> foreign;
    sio_steer::leave_out_foreign(listeners, *group_, foreign);
    std::set<std::uint64_t> now;
    for (const listener& l : foreign) {
        now.insert(l.cookie);
        if (!foreign_.contains(l.cookie))
            spdlog::warn("port {}: {} (cookie {})", options_.port,
                         foreign_listener_text(*group_, bound(l), options_.port), l.cookie);
    }
    foreign_ = std::move(now);  // forget the closed ones
}

bool listener_tracker::unchanged(const std::set<std::uint64_t>& cookies) const
{
    if (!synced_ || cookies.size() != recorded_.size())
        return false;
    for (auto [cookie, slot] : recorded_)
        if (!cookies.contains(cookie) || state_.worker_cookie(slot) != cookie)
            return false;  // a listener went, or the workers map lost it (bpftool, see docs/runbook.md)
    return true;
}

void listener_tracker::tidy_moved_now_and_then()
{
    const auto now = steady_clock::now();
    if (now - last_tidy_ < std::chrono::seconds(2))
        return;
    last_tidy_ = now;
    moved_tidy done = tidy_moved(state_, ring_);
    if (done.moved_back || done.forgotten)
        spdlog::info("port {}: moved map: {} clients back on the ring (sessions map), {} records no longer binding "
                     "dropped",
                     options_.port, done.moved_back, done.forgotten);
}

void listener_tracker::remember_parents(const std::vector<listener>& listeners)
{
    std::set<pid_t> parents;
    for (const listener& l : listeners)
        if (auto parent = l.pid ? parent_of(l.pid) : std::nullopt; parent && *parent > 1)
            parents.insert(*parent);  // not init: every orphan is its child
    if (!parents.empty())
        parents_ = std::move(parents);  // else the last ones: a lone worker restarting has none alive
}

std::optional<sync_report> listener_tracker::resync(const std::vector<pid_t>& hints)
{
    std::vector<listener> listeners = list_listeners(options_.port);
    // Before anything else: another user's listener costs no /proc walk and never reaches the maps.
    leave_out_foreign(listeners);
    std::set<std::uint64_t> cookies;
    for (const listener& l : listeners)
        cookies.insert(l.cookie);
    const auto now = steady_clock::now();
    if (unchanged(cookies))
        return std::nullopt;
    // The same listeners as a sync refused (e.g. one without SO_REUSEPORT): say so again only now and then.
    if (cookies == refused_ && now - last_refusal_ < rescan_interval_)
        return std::nullopt;

    // Owners remembered are checked (one readlink each), new ones looked for in the fd tables of
    // the processes that just listened, then of the workers' siblings (where the watch cannot say
    // who listened: polling, or sockops before Linux 6.10), and only then, if still missing, in
    // every process's.
    bool new_listener = false;
    for (listener& l : listeners) {
        auto it = known_.find(l.cookie);
        if (it != known_.end() && still_owns(it->second))
            l = it->second;
        new_listener = new_listener || it == known_.end();
    }
    auto missing = [&] { return std::any_of(listeners.begin(), listeners.end(), [](const listener& l) { return !l.pid; }); };
    const bool may_scan_all = missing() && (new_listener || now - last_scan_ >= rescan_interval_);
    find_owners(listeners, hints, false);
    if (missing() && !parents_.empty())
        find_owners(listeners, children_of(parents_), false);
    if (may_scan_all && missing()) {
        const auto started = steady_clock::now();
        find_owners(listeners, {}, true);
        last_scan_ = now;
        spdlog::info("port {}: looked for listeners' owners in every process's fd table ({} ms)", options_.port,
                     std::chrono::duration_cast<std::chrono::milliseconds>(steady_clock::now() - started).count());
    }
    remember_parents(listeners);
    sort_listeners(listeners);
    known_.clear();
    for (const listener& l : listeners)
        known_[l.cookie] = l;

    std::set<std::uint64_t> in_map;
    for (auto [cookie, slot] : recorded_)
        if (cookies.contains(cookie) && state_.worker_cookie(slot) == cookie)
            in_map.insert(cookie);
    try {
        worker_sockets sockets = take_sockets(options_.port, listeners, take_mode::follow, in_map);
        // Only this controller writes the ring (the port lock): what it wrote last is what is there.
        sync_report report = sync(state_, options_, sockets, ring_);
        ring_ = report.ring;
        recorded_ = report.recorded;
        synced_ = true;
        refused_.clear();
        return report;
    } catch (const steer_error&) {
        refused_ = cookies;
        last_refusal_ = now;
        throw;
    }
}

}  // namespace sio_steer
