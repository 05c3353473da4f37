#include "kernel/controller.h"

#include <bpf/bpf.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <string>

#include <spdlog/spdlog.h>

#include "logic/client_key.h"
#include "logic/errors.h"
#include "logic/maglev.h"
#include "logic/moved_clients.h"
#include "logic/slot_table.h"

namespace sio_steer {

std::string describe_owner(const listener& l)
{
    if (!l.pid)
        return "no visible owner process";
    std::string s = "pid " + std::to_string(l.pid) + " (" + l.process + ")";
    if (l.instance)
        s += ", instance " + std::to_string(*l.instance);
    return s;
}

namespace {

std::string describe_group(const listener& l)
{
    return l.family == AF_INET6 ? "[" + l.address + "]:" + std::to_string(l.port)
                                : l.address + ":" + std::to_string(l.port);
}

std::uint64_t socket_cookie(int fd)
{
    std::uint64_t cookie = 0;
    socklen_t len = sizeof(cookie);
    return getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &len) == 0 ? cookie : 0;
}

// The socket at fd `l.fd` of `l.pid`, if it is still the listener sock_diag listed: between
// discovery and pidfd_getfd the worker may have closed it and reused the number.
unique_fd take_socket(const listener& l)
{
    unique_fd fd = duplicate_socket(l.pid, l.fd);
    if (std::uint64_t cookie = socket_cookie(fd.get()); cookie != l.cookie) {
        spdlog::warn("fd {} of pid {} is no longer the listener of cookie {} (now cookie {}): left to the next resync",
                     l.fd, l.pid, l.cookie, cookie);
        return unique_fd();
    }
    return fd;
}

bool has_reuseport(int fd)
{
    int on = 0;
    socklen_t len = sizeof(on);
    return getsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, &len) == 0 && on;
}

// Writes a plan: successors and records first, then sockets, then (the caller) the ring, so the
// program never reads a ring entry whose slot is not filled yet. A socket the workers map refuses
// undoes what this pass wrote (the previous records, the slots emptied again) and is returned:
// the caller plans again without it. Any other failure undoes the same, and throws.
std::optional<std::size_t> write_plan(const pinned_state& state, const std::vector<slot>& current,
                                      const slot_plan& plan, const worker_sockets& sockets,
                                      const std::vector<std::size_t>& listener_of,
                                      const std::map<std::uint64_t, std::size_t>& live_index, sync_report& report)
{
    std::vector<std::uint32_t> written, inserted;
    auto undo = [&] {
        try {
            for (std::uint32_t s : inserted)
                if (bpf_map_delete_elem(state.workers(), &s) && errno != ENOENT)
                    throw_system_error("cannot empty slot " + std::to_string(s) + " of the workers map", errno);
            for (std::uint32_t s : written)
                state.write_slot(s, current[s]);
        } catch (const steer_error& e) {
            spdlog::error("undoing a failed sync: {}", e.what());
        }
    };
    std::vector<std::string> came;
    // Tries one insert; nullopt when done, else the errno.
    auto insert = [&](std::uint32_t s, std::size_t i) -> std::optional<int> {
        try {
            state.insert_worker(s, sockets.fds[i].get());
        } catch (const sys_error& e) {
            return e.errnum();
        }
        inserted.push_back(s);
        return std::nullopt;
    };
    auto refuse = [&](std::size_t i, std::uint32_t s, int err) {
        undo();
        spdlog::warn("worker socket left out: {}, cookie {}: the workers map refuses it in slot {} ({}); "
                     "steering stays as it was for it, tried again at the next resync",
                     describe_owner(sockets.listeners[i]), sockets.listeners[i].cookie, s, std::strerror(err));
        return std::optional<std::size_t>(i);
    };
    try {
        for (std::uint32_t s : plan.changed) {
            state.write_slot(s, plan.slots[s]);
            written.push_back(s);
        }
        for (auto [s, k] : plan.inserts) {
            std::size_t i = listener_of[k];
            if (std::optional<int> err = insert(s, i))
                return refuse(i, s, *err);
            came.push_back(fmt::format("worker socket came: slot {}, {}, cookie {}", s,
                                       describe_owner(sockets.listeners[i]), sockets.listeners[i].cookie));
        }
        // A socket the slots map records but the workers map lost (emptied with bpftool in an
        // emergency, see docs/runbook.md) goes back in, so that attaching again restores steering.
        for (std::uint32_t s = 0; s < plan.slots.size(); s++) {
            auto it = live_index.find(plan.slots[s].cookie);
            if (!plan.slots[s].cookie || it == live_index.end() || !sockets.fds[it->second] ||
                state.worker_cookie(s) == plan.slots[s].cookie)
                continue;
            // The kernel also empties the slot of a socket that is closing right now, which sock_diag
            // may still list: that one is refused (EINVAL: no longer hashed) and goes in the next
            // resync as removed.
            if (std::optional<int> err = insert(s, it->second)) {
                if (*err == EINVAL)
                    continue;
                return refuse(it->second, s, *err);
            }
            came.push_back(fmt::format("worker socket restored: slot {}, {} (the workers map had lost it)", s,
                                       describe_owner(sockets.listeners[it->second])));
        }
    } catch (...) {
        undo();
        throw;
    }
    report.added = inserted;
    for (const std::string& line : came)
        spdlog::info("{}", line);
    return std::nullopt;
}

// Moves into the moved map every record of the sessions map seen at or after `since_ns` whose
// client the ring `ring` would send to another worker than its record does (must_keep_apart()):
// the LRU may evict such a record, and a flood of new sources does. Adds to `report`.
void keep_off_ring_apart(const pinned_state& state, const config& c, const std::vector<slot>& slots,
                         const std::vector<std::uint32_t>& ring, std::uint64_t since_ns, sync_report& report)
{
    const std::uint64_t now = session_clock_ns();
    for (const auto& [key, s] : state.read_sessions()) {
        if (s.last_seen_ns < since_ns || !must_keep_apart(s, slots, ring[ring_bucket(key, c)], now, c.session_ttl_ns))
            continue;
        if (report.moved_full == 0 && state.keep_apart(key, s))
            report.kept_apart++;
        else
            report.moved_full++;  // full: the rest stays in the LRU, evictable as before
    }
}

// The config the options ask for, written if it differs (the pinned hash seed is kept, and so are
// the sessions table's sets: the pinned map's size, whatever --max-sessions says now).
config write_wanted_config(const pinned_state& state, const steer_options& options)
{
    config old = state.read_config();
    config wanted = make_config(options, old.hash_seed);
    wanted.session_sets = old.session_sets;
    if (std::memcmp(&old, &wanted, sizeof(config)) != 0) {
        if (old.key_mode != wanted.key_mode || old.v4_prefix != wanted.v4_prefix || old.v6_prefix != wanted.v6_prefix)
            spdlog::warn("client key changed (key {} /{} /{} -> {} /{} /{}): recorded sessions no longer match",
                         key_mode_name(old.key_mode), old.v4_prefix, old.v6_prefix, key_mode_name(wanted.key_mode),
                         wanted.v4_prefix, wanted.v6_prefix);
        state.write_config(wanted);
    }
    return wanted;
}

// Plans the slots and writes the plan; a socket the workers map refuses goes into `refused` (and
// report.skipped) and the plan is made again without it, so this ends after at most one pass per
// socket.
slot_plan write_slots(const pinned_state& state, const std::vector<slot>& current, const worker_sockets& sockets,
                      sync_report& report, std::set<std::uint64_t>& refused)
{
    // A socket we could not take (its worker is starting or exiting) counts only if it already
    // sits in a slot: the kernel keeps it there without us.
    std::set<std::uint64_t> in_map;
    for (const slot& s : current)
        if (s.cookie)
            in_map.insert(s.cookie);
    std::map<std::uint64_t, std::size_t> live_index;
    for (std::size_t i = 0; i < sockets.listeners.size(); i++)
        live_index[sockets.listeners[i].cookie] = i;
    for (;;) {
        std::vector<live_socket> live;
        std::vector<std::size_t> listener_of;  // live[k] is sockets.listeners[listener_of[k]]
        for (std::size_t i = 0; i < sockets.listeners.size(); i++) {
            const listener& l = sockets.listeners[i];
            if ((!sockets.fds[i] && !in_map.count(l.cookie)) || refused.count(l.cookie))
                continue;
            live.push_back({l.cookie, l.instance, l.pid});
            listener_of.push_back(i);
        }
        slot_plan plan = plan_slots(current, live);
        std::optional<std::size_t> failed = write_plan(state, current, plan, sockets, listener_of, live_index, report);
        if (!failed)
            return plan;
        const listener& l = sockets.listeners[*failed];
        refused.insert(l.cookie);
        report.skipped.push_back(l.cookie);
    }
}

// Builds the ring of the plan and writes the entries that change. Clients the new ring no longer
// chooses for go into the moved map before it is published, then those recorded meanwhile under
// the old ring (last_seen_ns is the program's clock, bpf_ktime_get_coarse_ns: the same as
// session_clock_ns()).
void publish_ring(const pinned_state& state, const config& wanted, const slot_plan& plan,
                  const std::vector<std::uint32_t>& ring_now, sync_report& report)
{
    const std::vector<std::uint32_t> ring_before =
        ring_now.size() == SIO_STEER_RING_SIZE ? ring_now : state.read_ring();
    std::vector<std::uint32_t> ring = maglev_table(plan.ring_members, SIO_STEER_RING_SIZE);
    for (std::size_t i = 0; i < ring.size(); i++)
        report.ring_changes += ring[i] != ring_before[i];
    if (report.ring_changes && SIO_STEER_KEY_RECORDS(wanted.key_mode)) {
        const std::uint64_t since = session_clock_ns();
        keep_off_ring_apart(state, wanted, plan.slots, ring, 0, report);
        state.write_ring(ring, ring_before);
        keep_off_ring_apart(state, wanted, plan.slots, ring, since, report);
        if (report.kept_apart)
            spdlog::info("{} recorded clients off the new ring kept apart in the moved map", report.kept_apart);
        if (report.moved_full)
            spdlog::warn("the moved map is full: {} recorded clients off the ring stay in the sessions map, where a "
                         "flood of new clients can evict them (raise --max-moved, now {})",
                         report.moved_full, state.max_moved());
    } else {
        state.write_ring(ring, ring_before);
    }
    report.ring = std::move(ring);
}

// Any member attaches the program to the whole group; it replaces whatever was attached. A group
// whose sockets were all taken before still has it: it goes when the group goes.
void attach_program(const pinned_state& state, std::uint16_t port, const worker_sockets& sockets,
                    const std::set<std::uint64_t>& refused)
{
    int prog = state.program();
    for (std::size_t i = 0; i < sockets.fds.size(); i++) {
        const unique_fd& fd = sockets.fds[i];
        if (!fd || refused.count(sockets.listeners[i].cookie))
            continue;
        if (setsockopt(fd.get(), SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF, &prog, sizeof(prog)))
            throw_system_error("cannot attach the steering program to port " + std::to_string(port), errno);
        break;
    }
}

}  // namespace

moved_tidy tidy_moved(const pinned_state& state, const std::vector<std::uint32_t>& ring_now)
{
    moved_tidy done;
    const std::vector<std::pair<client_key, session>> records = state.read_moved();
    if (records.empty())
        return done;
    const config c = state.read_config();
    const std::vector<slot> slots = state.read_slots();
    const std::vector<std::uint32_t> ring = ring_now.size() == SIO_STEER_RING_SIZE ? ring_now : state.read_ring();
    const std::uint64_t now = session_clock_ns();
    for (const auto& [key, s] : records) {
        std::optional<std::uint32_t> to = recorded_destination(s, slots, now, c.session_ttl_ns);
        if (!to) {
            state.forget_moved(key);  // the ring places it anew, as the program would
            done.forgotten++;
        } else if (*to == ring[ring_bucket(key, c)]) {
            state.move_back(key, s);
            done.moved_back++;
        }
    }
    return done;
}

bound_listener bound(const listener& l) { return {l.family, l.address, l.uid}; }

void leave_out_foreign(std::vector<listener>& listeners, const worker_group& group, std::vector<listener>& foreign)
{
    auto first_foreign = std::stable_partition(listeners.begin(), listeners.end(),
                                               [&](const listener& l) { return belongs(group, bound(l)); });
    foreign.insert(foreign.end(), std::make_move_iterator(first_foreign), std::make_move_iterator(listeners.end()));
    listeners.erase(first_foreign, listeners.end());
}

worker_sockets take_listeners(std::uint16_t port, take_mode mode)
{
    return take_sockets(port, find_listeners(port), mode);
}

worker_sockets take_sockets(std::uint16_t port, std::vector<listener> listeners, take_mode mode,
                            const std::set<std::uint64_t>& steered)
{
    worker_sockets ws;
    ws.listeners = std::move(listeners);
    const std::string p = std::to_string(port);
    if (ws.listeners.empty() && mode == take_mode::attach)
        throw steer_error(exit_code::no_listeners, "nothing listens on TCP port " + p,
                          "sio-steer steers the connections of workers that already listen on the port",
                          "start the workers first (e.g. pm2 start ecosystem.config.cjs), or check the port number");

    std::map<std::string, std::vector<const listener*>> groups;
    for (const listener& l : ws.listeners)
        groups[describe_group(l)].push_back(&l);
    if (groups.size() > 1) {
        std::string names;
        for (const auto& [name, members] : groups)
            names += (names.empty() ? "" : ", ") + name + " (" + std::to_string(members.size()) + " sockets)";
        throw steer_error(exit_code::not_steerable, "port " + p + " has several listening groups: " + names,
                          "each bound address forms its own reuseport group, and one steering program serves one group",
                          "let every worker listen on the same address, e.g. server.listen({port: " + p +
                              ", reusePort: true}) without a host (dual-stack [::])");
    }

    for (const listener& l : ws.listeners) {
        if (steered.contains(l.cookie)) {
            ws.fds.emplace_back();  // the workers map holds it already: no need to take it
            continue;
        }
        if (mode == take_mode::follow) {
            // A worker in the middle of starting or exiting: its socket may have no visible owner
            // yet, or be gone by the time we reach it (ESRCH: the process, EBADF: its fd). Leave
            // it to the next resync. Anything else (EPERM, ENOMEM) refuses the resync, and says so.
            try {
                ws.fds.push_back(l.pid ? take_socket(l) : unique_fd());
            } catch (const sys_error& e) {
                if (e.errnum() != ESRCH && e.errnum() != EBADF)
                    throw;
                ws.fds.emplace_back();
            }
            continue;
        }
        if (!l.pid)
            throw steer_error(
                exit_code::not_steerable,
                "the listener " + describe_group(l) + " (inode " + std::to_string(l.inode) +
                    ") has no owner process visible here",
                "sio-steer finds a socket's owner in /proc/PID/fd, which it cannot read for processes of "
                "another PID namespace, nor without CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH",
                "run sio-steer as root in the workers' PID namespace (on the host, not in another container)");
        ws.fds.push_back(take_socket(l));
    }
    for (std::size_t i = 0; i < ws.listeners.size(); i++) {
        if (!ws.fds[i] || has_reuseport(ws.fds[i].get()))
            continue;
        const listener& l = ws.listeners[i];
        std::string count =
            ws.listeners.size() == 1 ? "one listener" : std::to_string(ws.listeners.size()) + " listeners";
        throw steer_error(
            exit_code::not_steerable,
            "port " + p + " has " + count + " without SO_REUSEPORT, owned by " + describe_owner(l),
            "the workers do not each own a listener, so the kernel cannot choose among them "
            "(under PM2 cluster mode, the God daemon then holds the only socket and hands out connections itself)",
            "listen with server.listen({port: " + p +
                ", reusePort: true}) on Node >= 22.12 "
                "(see docs/pm2.md), restart the app, then attach again");
    }
    return ws;
}

sync_report sync(const pinned_state& state, const steer_options& options, const worker_sockets& sockets,
                 const std::vector<std::uint32_t>& ring_now)
{
    const config wanted = write_wanted_config(state, options);
    const std::vector<slot> current = state.read_slots();
    sync_report report;
    std::set<std::uint64_t> refused;  // sockets the workers map refused in this sync
    slot_plan plan = write_slots(state, current, sockets, report, refused);
    for (std::uint32_t s : plan.removed) {
        report.removed.push_back(s);
        const slot& rec = current[s];
        spdlog::info("worker socket went: slot {}, pid {}, instance {}, clients move to {}", s, rec.pid,
                     rec.instance == no_instance ? std::string("-") : std::to_string(rec.instance),
                     plan.slots[s].successor == SIO_STEER_SLOT_NONE
                         ? std::string("the ring's choice")
                         : "slot " + std::to_string(plan.slots[s].successor));
    }
    publish_ring(state, wanted, plan, ring_now, report);
    for (std::uint32_t s = 0; s < plan.slots.size(); s++)
        if (plan.slots[s].cookie)
            report.recorded[plan.slots[s].cookie] = s;
    attach_program(state, options.port, sockets, refused);
    return report;
}

}  // namespace sio_steer
