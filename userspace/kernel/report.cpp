#include "kernel/report.h"

#include <map>

#include "kernel/controller.h"
#include "kernel/discovery.h"
#include "kernel/group_pin.h"
#include "kernel/preflight.h"
#include "logic/options.h"
#include "logic/slot_table.h"

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

}  // namespace

nlohmann::json status_report(const pinned_state& state, std::uint16_t port, const std::string& lock_dir,
                             const report_scope& scope)
{
    config c = state.read_config();
    stats st = state.read_stats();
    std::vector<slot> slots = state.read_slots();

    std::map<std::uint64_t, const listener*> by_cookie;
    std::vector<listener> listeners = scope.owners ? find_listeners(port) : list_listeners(port), foreign;
    // Other users' listeners on the port: never steered, so not what "in sync" is about.
    std::optional<worker_group> group = read_group(state.dir());
    if (group)
        leave_out_foreign(listeners, *group, foreign);
    for (const listener& l : listeners)
        by_cookie[l.cookie] = &l;

    json workers = json::array();
    std::size_t live = 0, steered = 0;
    for (std::uint32_t i = 0; i < slots.size(); i++) {
        const slot& s = slots[i];
        if (!s.cookie)
            continue;
        auto it = by_cookie.find(s.cookie);
        const listener* l = it == by_cookie.end() ? nullptr : it->second;
        live += l != nullptr;
        // The program can choose a live socket only if the workers map still holds it.
        bool in_map = l && state.worker_cookie(i) == s.cookie;
        steered += in_map;
        workers.push_back({{"slot", i},
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
    json unmanaged = json::array();
    for (auto [cookie, l] : by_cookie)
        unmanaged.push_back({{"pid", l->pid}, {"process", l->process}, {"cookie", cookie}, {"address", l->address}});

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
        {"attached", live > 0},
        {"in_sync", live > 0 && live == workers.size() && steered == live && unmanaged.empty()},
        {"config",
         {{"key", key_mode_name(c.key_mode)},
          {"v4_prefix", c.v4_prefix},
          {"v6_prefix", c.v6_prefix},
          {"session_ttl_s", c.session_ttl_ns / 1'000'000'000ull},
          {"abi_version", c.abi_version}}},
        {"sessions",
         {{"count", scope.sessions ? *scope.sessions : state.count_sessions()}, {"capacity", state.max_sessions()}}},
        {"moved", {{"count", scope.moved ? *scope.moved : state.count_moved()}, {"capacity", state.max_moved()}}},
        {"counters",
         {{"session_hits", st.session_hits},
          {"new_sessions", st.new_sessions},
          {"expired", st.expired},
          {"fallbacks", st.fallbacks},
          {"migrations", st.migrations},
          {"errors", st.errors},
          {"moved_full", st.moved_full}}},
        {"workers", workers},
        {"unmanaged_listeners", unmanaged},
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
