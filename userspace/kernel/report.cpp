#include "kernel/report.h"

#include <map>

#include "kernel/controller.h"
#include "kernel/discovery.h"
#include "kernel/group_pin.h"
#include "kernel/preflight.h"
#include "logic/netstat.h"
#include "logic/options.h"
#include "logic/pm2_env.h"
#include "logic/slot_table.h"
#include "logic/small_file.h"

namespace sio_steer {

using nlohmann::json;

namespace {

json follow_report(const std::string& lock_dir, std::uint16_t port)
{
    std::optional<follow_status> f = read_follow_status(lock_dir, port);
    if (!f)
        return {{"mode", "none"},
                {"reason", "no controller holds the port's lock in " + lock_dir +
                               ": nothing follows worker restarts, reloads or scale changes"},
                {"pid", nullptr}};
    std::optional<pid_t> pid = lock_holder(lock_dir, port);
    return {{"mode", f->mode}, {"reason", f->reason}, {"pid", pid ? json(*pid) : json(nullptr)}};
}

// The slots that hold a socket, and the listeners of the group that no slot holds.
struct worker_table {
    json workers = json::array(), unmanaged = json::array();
    std::size_t live = 0;     // slots whose socket still listens
    std::size_t steered = 0;  // of those, the ones the workers map still holds
    pid_t newest_pid = 0;     // the owner of the live socket that came last (0: none)
};

worker_table worker_rows(const pinned_state& state, const stats& st, const std::vector<listener>& listeners)
{
    std::map<std::uint64_t, const listener*> by_cookie;
    for (const listener& l : listeners)
        by_cookie[l.cookie] = &l;
    worker_table t;
    const std::vector<slot> slots = state.read_slots();
    std::uint32_t newest = 0;
    for (std::uint32_t i = 0; i < slots.size(); i++) {
        const slot& s = slots[i];
        if (!s.cookie)
            continue;
        auto it = by_cookie.find(s.cookie);
        const listener* l = it == by_cookie.end() ? nullptr : it->second;
        t.live += l != nullptr;
        if (l && s.generation > newest) {
            newest = s.generation;
            t.newest_pid = static_cast<pid_t>(s.pid);
        }
        // The program can choose a live socket only if the workers map still holds it.
        bool in_map = l && state.worker_cookie(i) == s.cookie;
        t.steered += in_map;
        t.workers.push_back({{"slot", i},
                             {"pid", s.pid},
                             {"instance", s.instance == no_instance ? json(nullptr) : json(s.instance)},
                             {"process", l ? l->process : ""},
                             {"uid", l ? json(l->uid) : json(nullptr)},
                             {"cookie", s.cookie},
                             {"live", l != nullptr},
                             {"in_map", in_map},
                             {"selections", st.selections[i]}});
        if (l)
            by_cookie.erase(it);
    }
    for (auto [cookie, l] : by_cookie)
        t.unmanaged.push_back({{"pid", l->pid}, {"process", l->process}, {"cookie", cookie}, {"address", l->address}});
    return t;
}

json config_json(const config& c)
{
    return {{"key", key_mode_name(c.key_mode)},
            {"v4_prefix", c.v4_prefix},
            {"v6_prefix", c.v6_prefix},
            {"session_ttl_s", c.session_ttl_ns / 1'000'000'000ull},
            {"abi_version", c.abi_version}};
}

// The kernel's own count of what became of the connections queued on closing listeners
// (TcpExt TCPMigrateReq*), in this process's network namespace: the one where sock_diag found
// the workers' listening sockets, and where the kernel counts their migrations. null when the
// kernel has no such counters (before 5.14).
json kernel_json()
{
    std::optional<migrate_req_counters> m =
        migrate_req_from_netstat(read_small_file("/proc/self/net/netstat", 1 << 16).value_or(""));
    if (!m)
        return nullptr;
    return {{"migrate_req_success", m->success}, {"migrate_req_failure", m->failure}};
}

// PM2's `instances` setting, as the newest worker's pm2_env says (the latest `pm2 start` or
// reload of the ecosystem file): null for workers PM2 did not start, or no live worker.
json pm2_instances_json(pid_t newest_pid)
{
    if (!newest_pid)
        return nullptr;
    // The kernel bounds environ by the process's stack limit; pm2_env is a few tens of KB.
    std::optional<std::uint32_t> n = pm2_instances_from_environ(
        read_small_file("/proc/" + std::to_string(newest_pid) + "/environ", 1 << 20).value_or(""));
    return n ? json(*n) : json(nullptr);
}

json counters_json(const stats& st)
{
    return {{"session_hits", st.session_hits}, {"new_sessions", st.new_sessions}, {"expired", st.expired},
            {"fallbacks", st.fallbacks},       {"migrations", st.migrations},     {"errors", st.errors},
            {"moved_full", st.moved_full}};
}

}  // namespace

nlohmann::json status_report(const pinned_state& state, std::uint16_t port, const std::string& lock_dir,
                             const report_scope& scope)
{
    const config c = state.read_config();
    const stats st = state.read_stats();
    std::vector<listener> listeners = scope.owners ? find_listeners(port) : list_listeners(port), foreign;
    // Other users' listeners on the port: never steered, so not what "in sync" is about.
    std::optional<worker_group> group = read_group(state.dir());
    if (group)
        leave_out_foreign(listeners, *group, foreign);
    const worker_table t = worker_rows(state, st, listeners);

    json warnings = json::array();
    json ignored = json::array();
    for (const listener& l : foreign) {
        ignored.push_back({{"pid", l.pid},
                           {"process", l.process},
                           {"uid", l.uid},
                           {"cookie", l.cookie},
                           {"address", address_text(l.family, l.address, port)}});
        if (scope.warnings)
            warnings.push_back(foreign_listener_text(*group, bound(l), port));
    }
    if (scope.warnings)
        if (std::optional<std::string> w = proxy_warning(state))
            warnings.push_back(*w);

    return {
        {"port", port},
        {"pin_dir", state.dir()},
        // The program stays attached while its group lives, and the group lives while one of our sockets does.
        {"attached", t.live > 0},
        {"in_sync", t.live > 0 && t.live == t.workers.size() && t.steered == t.live && t.unmanaged.empty()},
        {"config", config_json(c)},
        {"sessions",
         {{"count", scope.sessions ? *scope.sessions : state.count_sessions()}, {"capacity", state.max_sessions()}}},
        {"moved", {{"count", scope.moved ? *scope.moved : state.count_moved()}, {"capacity", state.max_moved()}}},
        {"counters", counters_json(st)},
        {"kernel", kernel_json()},
        {"pm2_instances", pm2_instances_json(t.newest_pid)},
        {"workers", t.workers},
        {"unmanaged_listeners", t.unmanaged},
        {"group", group ? json(group_text(*group, port)) : json(nullptr)},
        {"foreign_listeners", ignored},
        {"warnings", warnings},
        {"follow", follow_report(lock_dir, port)},
    };
}

std::optional<std::string> proxy_warning(const pinned_state& state)
{
    config c = state.read_config();
    stats st = state.read_stats();
    proxy_sample s;
    s.address_keys = c.key_mode == SIO_STEER_KEY_ADDRESS;
    for (std::uint64_t n : st.selections)
        s.connections += n;
    s.new_sessions = st.new_sessions;
    if (!s.address_keys || s.connections < proxy_min_connections)
        return std::nullopt;  // nothing to judge: spare the walk over the sessions map
    std::uint64_t now = session_clock_ns();
    for (const auto& records : {state.read_sessions(), state.read_moved()})
        for (const auto& [key, session] : records)
            if (session.last_seen_ns >= now || now - session.last_seen_ns <= c.session_ttl_ns)
                s.recent.push_back(key);
    return proxy_warning(s, c);
}

}  // namespace sio_steer
