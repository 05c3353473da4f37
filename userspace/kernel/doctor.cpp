#include "kernel/doctor.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "kernel/controller.h"
#include "kernel/discovery.h"
#include "kernel/group_pin.h"
#include "kernel/pinned_state.h"
#include "kernel/preflight.h"
#include "kernel/report.h"
#include "logic/cpu_share.h"
#include "logic/errors.h"
#include "logic/mountinfo.h"
#include "logic/node_version.h"
#include "logic/port_lock.h"
#include "logic/slot_table.h"
#include "logic/proxy_check.h"

namespace sio_steer {

namespace {

std::string first_line(const std::string& path)
{
    std::ifstream in(path);
    std::string line;
    std::getline(in, line);
    return line;
}

// At most `limit` bytes of a small kernel file (/proc, /sys): never more, whatever is there.
std::string read_small(const std::string& path, std::size_t limit = 65536)
{
    std::ifstream in(path, std::ios::binary);
    std::string text(limit, '\0');
    in.read(text.data(), static_cast<std::streamsize>(limit));
    text.resize(static_cast<std::size_t>(in.gcount()));
    return text;
}

std::string joined(const std::vector<std::string>& parts, std::size_t at_most = 6)
{
    std::string out;
    for (std::size_t i = 0; i < parts.size() && i < at_most; i++)
        out += (i ? ", " : "") + parts[i];
    if (parts.size() > at_most)
        out += ", and " + std::to_string(parts.size() - at_most) + " more";
    return out;
}

// Loads the smallest program of the steering program's type and attach type: does the kernel
// know BPF_SK_REUSEPORT_SELECT_OR_MIGRATE (Linux >= 5.14)?
bool kernel_can_migrate()
{
    bpf_insn insns[2] = {};
    insns[0].code = BPF_ALU64 | BPF_MOV | BPF_K;  // r0 = SK_PASS
    insns[0].dst_reg = BPF_REG_0;
    insns[0].imm = SK_PASS;
    insns[1].code = BPF_JMP | BPF_EXIT;
    bpf_prog_load_opts opts{};
    opts.sz = sizeof(opts);
    opts.expected_attach_type = BPF_SK_REUSEPORT_SELECT_OR_MIGRATE;
    int fd = bpf_prog_load(BPF_PROG_TYPE_SK_REUSEPORT, nullptr, "GPL", insns, 2, &opts);
    if (fd < 0)
        return false;
    close(fd);
    return true;
}

finding check_kernel(bool can_probe)
{
    utsname u{};
    uname(&u);
    const std::string linux_release = std::string("Linux ") + u.release;
    if (!can_probe)
        return {"kernel", verdict::skip, linux_release + ": cannot probe BPF features without CAP_BPF", ""};
    std::vector<std::string> missing;
    if (libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_SK_REUSEPORT, nullptr) != 1)
        missing.push_back("sk_reuseport programs");
    if (!kernel_can_migrate())
        missing.push_back("select-or-migrate attach type (Linux >= 5.14)");
    if (libbpf_probe_bpf_map_type(BPF_MAP_TYPE_REUSEPORT_SOCKARRAY, nullptr) != 1)
        missing.push_back("REUSEPORT_SOCKARRAY maps");
    if (!missing.empty())
        return {"kernel", verdict::fail, linux_release + " lacks " + joined(missing),
                "run sio-steer on Linux >= 5.14 built with CONFIG_BPF_SYSCALL"};
    return {"kernel", verdict::ok,
            linux_release + ": sk_reuseport programs, select-or-migrate, REUSEPORT_SOCKARRAY maps", ""};
}

finding check_bpffs(const std::string& pin_root)
{
    try {
        require_bpffs(pin_root);
        return {"bpffs", verdict::ok, pin_root + " is on a BPF filesystem", ""};
    } catch (const steer_error& e) {
        return {"bpffs", verdict::fail, e.what(), e.fix()};
    }
}

finding check_privileges(const std::vector<capability_check>& caps)
{
    std::vector<std::string> present, missing;
    for (const capability_check& c : caps)
        (c.present ? present : missing).push_back(c.name);
    if (!missing.empty())
        return {"privileges", verdict::fail, "missing " + joined(missing, 99),
                "run sio-steer as root; the systemd unit grants exactly these (CapabilityBoundingSet=)"};
    return {"privileges", verdict::ok, joined(present, 99), ""};
}

std::string owner_text(const listener& l)
{
    return "pid " + std::to_string(l.pid) + (l.instance ? " (instance " + std::to_string(*l.instance) + ")" : "");
}

// The group recorded at the first attach, if the pinned state can tell.
std::optional<worker_group> recorded_group(const std::string& pin_dir)
{
    try {
        return read_group(pin_dir);
    } catch (const steer_error&) {
        // the steering check reports it
    }
    return std::nullopt;
}

finding check_listeners(std::uint16_t port, const std::string& pin_dir)
{
    try {
        std::vector<listener> members = find_listeners(port), foreign;
        std::optional<worker_group> recorded = recorded_group(pin_dir);
        if (recorded)
            leave_out_foreign(members, *recorded, foreign);
        worker_sockets ws = take_sockets(port, std::move(members), take_mode::attach);  // the very checks attach makes
        if (!foreign.empty()) {
            std::string what;
            for (const listener& l : foreign)
                what += (what.empty() ? "" : "; ") + foreign_listener_text(*recorded, bound(l), port) + ", " +
                        owner_text(l);
            return {"listeners", verdict::warn, what,
                    "another user listens on the port: sio-steer ignores it; if it should not, find and stop it"};
        }
        std::map<pid_t, int> per_pid;
        std::vector<std::string> owners;
        for (const listener& l : ws.listeners) {
            per_pid[l.pid]++;
            owners.push_back(owner_text(l));
        }
        for (auto [pid, n] : per_pid)
            if (n > 1)
                return {"listeners", verdict::warn,
                        "pid " + std::to_string(pid) + " holds " + std::to_string(n) + " of the port's listeners",
                        "let each worker listen once; a worker's listeners share its clients between them"};
        const listener& first = ws.listeners.front();
        std::string group = first.family == AF_INET6 ? "[" + first.address + "]" : first.address;
        return {"listeners", verdict::ok,
                std::to_string(ws.listeners.size()) + " SO_REUSEPORT listener" + (ws.listeners.size() > 1 ? "s" : "") +
                    " on " + group + ":" + std::to_string(port) + ", one per worker: " + joined(owners),
                ""};
    } catch (const steer_error& e) {
        std::string detail = e.what();
        if (!e.why().empty())
            detail += ": " + e.why();
        return {"listeners", verdict::fail, detail, e.fix()};
    }
}

finding check_node(const std::vector<listener>& seen)
{
    std::vector<std::string> good, unknown, too_old;
    std::set<pid_t> done;
    for (const listener& l : seen) {
        if (!l.pid || !done.insert(l.pid).second)
            continue;
        node_runtime node = node_runtime_of(l.pid);
        if (!node.is_node)
            continue;
        std::string who = "pid " + std::to_string(l.pid) + " (" + l.process + ")";
        if (!node.version)
            unknown.push_back(who);
        else if (!supports_reuse_port(*node.version))
            too_old.push_back(who + " runs Node " + node.version->text());
        else
            good.push_back(who + " Node " + node.version->text());
    }
    if (!too_old.empty())
        return {"node", verdict::fail,
                joined(too_old) + ": server.listen({reusePort: true}) needs Node >= 22.12 (or >= 23.1); older Node "
                                  "ignores it and one socket serves every worker",
                "run the app on Node >= 22.12 (under PM2 cluster mode the workers run on the PM2 daemon's Node: "
                "`pm2 kill`, then start PM2 with the newer node)"};
    if (!unknown.empty())
        return {"node", verdict::skip,
                "Node version unknown for " + joined(unknown) +
                    " (not in pm2_env, NODE_VERSION, include/node/node_version.h or the binary's path)",
                ""};
    if (good.empty())
        return {"node", verdict::skip, "no listener belongs to a Node process", ""};
    return {"node", verdict::ok, joined(good) + ": reusePort is supported", ""};
}

// Is the process scheduled by a cgroup with the cpu controller rather than by its autogroup? The
// kernel uses the autogroup only for a task in the root task group.
bool under_cpu_cgroup(pid_t pid)
{
    std::optional<cpu_cgroup_path> cg = parse_cpu_cgroup(read_small("/proc/" + std::to_string(pid) + "/cgroup"));
    if (!cg || cg->path == "/" || cg->path.empty())
        return false;
    if (cg->v1)
        return true;
    // cgroup v2: the cpu controller applies if the parent enables it for its children
    std::string parent = cg->path.substr(0, cg->path.rfind('/'));
    std::string mount = cgroup2_mount();
    if (mount.empty())
        return false;
    std::istringstream enabled(read_small(mount + parent + "/cgroup.subtree_control"));
    for (std::string c; enabled >> c;)
        if (c == "cpu")
            return true;
    return false;
}

finding check_scheduler(const std::vector<listener>& seen)
{
    std::vector<worker_schedule> workers;
    std::set<pid_t> done;
    for (const listener& l : seen) {
        if (!l.pid || !done.insert(l.pid).second)
            continue;
        workers.push_back({l.pid, parse_autogroup(read_small("/proc/" + std::to_string(l.pid) + "/autogroup", 256)),
                           under_cpu_cgroup(l.pid)});
    }
    if (workers.size() < 2)
        return {"scheduler", verdict::skip, "fewer than two workers to compare", ""};
    std::string enabled = first_line("/proc/sys/kernel/sched_autogroup_enabled");
    std::optional<bool> autogroups;
    if (!enabled.empty())
        autogroups = enabled != "0";
    cpu_share_finding f = cpu_share_check(autogroups, workers);
    return {"scheduler", f.shared ? verdict::note : verdict::ok, f.detail, f.fix};
}

finding check_migration()
{
    const std::string value = first_line("/proc/sys/net/ipv4/tcp_migrate_req");
    if (value.empty())
        return {"migration", verdict::fail,
                "net.ipv4.tcp_migrate_req does not exist: this kernel cannot hand a closing worker's queued "
                "connections to another",
                "run Linux >= 5.14"};
    if (value == "0")
        return {"migration", verdict::ok,
                "net.ipv4.tcp_migrate_req = 0: enough while steering is attached (the select-or-migrate program "
                "moves a closing worker's queued connections itself); after a detach they would be reset",
                ""};
    return {"migration", verdict::ok,
            "net.ipv4.tcp_migrate_req = " + value +
                ": queued connections of a closing worker are migrated, "
                "by the steering program or, when detached, by the kernel's hash",
            ""};
}

finding check_steering(const pinned_state& state, std::uint16_t port, const std::string& lock_dir)
{
    nlohmann::json r = status_report(state, port, lock_dir);
    const std::size_t sessions = r["sessions"]["count"], capacity = r["sessions"]["capacity"];
    const std::size_t moved = r["moved"]["count"], moved_capacity = r["moved"]["capacity"];
    const std::uint64_t moved_full = r["counters"]["moved_full"];
    std::size_t live = 0, lost = 0;
    for (const auto& w : r["workers"]) {
        live += w["live"].get<bool>();
        lost += w["live"].get<bool>() && !w["in_map"].get<bool>();
    }
    const std::string counts = std::to_string(live) + " worker sockets, " + std::to_string(sessions) + " of " +
                               std::to_string(capacity) + " sessions, " + std::to_string(moved) + " of " +
                               std::to_string(moved_capacity) + " moved";
    const std::string p = std::to_string(port);
    if (!r["attached"].get<bool>())
        return {"steering", verdict::fail,
                "pinned in " + state.dir() + " but NOT attached: no worker socket of the map listens",
                "start `sio-steer attach --port " + p + "` (systemctl restart sio-steer@" + p +
                    "): it re-attaches to the workers listening now"};
    if (!r["in_sync"].get<bool>())
        return {"steering", verdict::fail,
                "attached but NOT in sync (" + counts + "; " + std::to_string(r["unmanaged_listeners"].size()) +
                    " listeners not in the workers map, " + std::to_string(lost) + " worker sockets missing from it)",
                "make sure a following `sio-steer attach --port " + p + "` runs (systemctl status sio-steer@" + p +
                    ")"};
    if (sessions * 10 >= capacity * 9)
        return {"steering", verdict::warn, "attached, in sync, but the sessions map is nearly full (" + counts + ")",
                "the least recently seen clients are forgotten and may change worker: raise max-sessions"};
    if (moved * 10 >= moved_capacity * 9 || moved_full)
        return {"steering", verdict::warn,
                "attached, in sync, but the moved map is " + std::string(moved_full ? "or was " : "") +
                    "nearly full (" + counts +
                    (moved_full ? "; the program recorded " + std::to_string(moved_full) +
                                      " clients off the ring in the sessions map instead"
                                : "") +
                    ")",
                "clients off the ring beyond it can be evicted by a flood of new clients and change worker: raise "
                "max-moved"};
    return {"steering", verdict::ok, "attached, in sync: " + counts, ""};
}

finding check_controller(const doctor_settings& s)
{
    const std::string p = std::to_string(s.port);
    std::optional<pid_t> pid = lock_holder(s.lock_dir, s.port);
    if (!pid)
        return {
            "controller", verdict::warn,
            "no `sio-steer attach` follows port " + p + ": a worker restart, reload or scale change is not followed",
            "systemctl enable --now sio-steer@" + p + " (or run `sio-steer attach --port " + p + "` without --once)"};
    const std::string who =
        "pid " + std::to_string(*pid) + " (" + first_line("/proc/" + std::to_string(*pid) + "/comm") + ")";
    std::optional<follow_status> f = read_follow_status(s.lock_dir, s.port);
    if (f && f->mode == "events")
        return {"controller", verdict::ok, who + " follows the workers by events: " + f->reason, ""};
    // Polling works, but lists the port's listeners every 100 ms and reacts later than a watch.
    if (f && f->mode == "polling")
        return {"controller", verdict::warn, who + " follows the workers by polling, not by events: " + f->reason,
                "let it follow by events: give it what the reason says a listener watch lacks (or drop --follow "
                "polling, `follow = polling` in its config), then restart it (systemctl restart sio-steer@" +
                    p + ", or restart `sio-steer attach --port " + p + "`)"};
    return {"controller", verdict::ok,
            who + " follows the workers" + (f ? " (" + f->mode + ": " + f->reason + ")" : std::string()), ""};
}

// Which workers of the group have connected to the control socket since they started, as the
// controller saw them (it publishes them in the port's lock file). A worker that never did will
// not release its clients to its successor on a reload: they reconnect to the closing worker.
finding check_drain(const pinned_state& state, const doctor_settings& s)
{
    const std::string p = std::to_string(s.port);
    std::optional<pid_t> controller = lock_holder(s.lock_dir, s.port);
    if (!controller)
        return {"drain", verdict::skip,
                "cannot know which workers connect to the control socket: no `sio-steer attach` follows port " + p +
                    " (only the following controller sees them connect)",
                ""};
    const std::string who = "pid " + std::to_string(*controller);
    std::optional<std::vector<std::uint64_t>> peers = read_control_peers(s.lock_dir, s.port);
    if (!peers)
        return {"drain", verdict::skip,
                "cannot know which workers connect to the control socket: the controller, " + who +
                    ", does not say (it is starting, or a sio-steer that does not record them)",
                ""};
    const std::set<std::uint64_t> connected(peers->begin(), peers->end());
    const std::optional<std::uint64_t> controller_start = process_start_ticks(*controller);
    std::set<std::uint64_t> listening;
    for (const listener& l : list_listeners(s.port))
        listening.insert(l.cookie);
    std::vector<std::string> yes, never, unknown;
    for (const slot& w : state.read_slots()) {
        if (!w.cookie || !listening.contains(w.cookie))
            continue;
        const std::string worker = "pid " + std::to_string(w.pid) +
                                   (w.instance == no_instance ? "" : " (instance " + std::to_string(w.instance) + ")");
        std::optional<std::uint64_t> start = process_start_ticks(static_cast<pid_t>(w.pid));
        if (connected.contains(w.cookie))
            yes.push_back(worker);
        else if (start && controller_start && *start > *controller_start)  // a later tick (10 ms): surely younger
            never.push_back(worker);
        else
            unknown.push_back(worker);  // it may have connected to an earlier controller
    }
    const std::string socket = s.lock_dir + "/" + p + ".sock";
    std::string detail;
    if (!yes.empty())
        detail = joined(yes) + (yes.size() == 1 ? " has" : " have") + " connected to the control socket " + socket +
                 " since starting";
    if (!never.empty())
        detail += (detail.empty() ? "" : "; ") + joined(never) + (never.size() == 1 ? " has" : " have") +
                  " not connected to " + socket +
                  " since starting: on a reload, a worker that never did does not release its clients to its "
                  "successor";
    if (!unknown.empty())
        detail += (detail.empty() ? "" : "; ") + std::string("cannot know for ") + joined(unknown) +
                  ": started before the controller (" + who + "), which sees only the connections made since";
    if (detail.empty())
        return {"drain", verdict::skip, "no worker socket of the group listens", ""};
    if (!never.empty())
        return {"drain", verdict::note, detail,
                "stop the app's workers with sio-steer-drain (docs/pm2.md: npm install "
                "/usr/share/sio-steer/sio-steer-drain-" SIO_STEER_VERSION
                ".tgz) and let the workers' user connect (control-group in /etc/sio-steer/" +
                    p + ".conf)"};
    return {"drain", unknown.empty() ? verdict::ok : verdict::skip, detail, ""};
}

finding check_proxy(const pinned_state& state)
{
    if (std::optional<std::string> warning = proxy_warning(state))
        return {"proxy", verdict::warn, *warning, ""};
    std::uint64_t connections = 0;
    for (std::uint64_t n : state.read_stats().selections)
        connections += n;
    if (connections < proxy_min_connections)
        return {"proxy", verdict::skip,
                "too little traffic to tell whether clients come through a proxy (" + std::to_string(connections) +
                    " connections so far)",
                ""};
    return {"proxy", verdict::ok, "clients arrive with addresses of their own (no single proxy address in front)", ""};
}

}  // namespace

std::string cgroup2_mount() { return cgroup2_mount_point(read_small("/proc/self/mountinfo", 1 << 20)).value_or(""); }

std::vector<finding> examine(const doctor_settings& s)
{
    const std::string pin_dir = s.pin_root + "/" + std::to_string(s.port);
    std::vector<capability_check> caps = check_capabilities();
    // Without CAP_BPF every probe fails as if the feature were missing.
    bool can_probe = std::any_of(caps.begin(), caps.end(), [](const capability_check& c) {
        return c.name == std::string("CAP_BPF") && c.present;
    });

    std::vector<finding> out = {check_kernel(can_probe), check_bpffs(s.pin_root), check_privileges(caps)};
    std::vector<listener> seen;
    try {
        seen = find_listeners(s.port);
    } catch (const steer_error&) {
        // take_listeners below reports the same failure
    }
    out.push_back(check_listeners(s.port, pin_dir));
    out.push_back(check_node(seen));
    out.push_back(check_migration());
    out.push_back(check_scheduler(seen));

    if (!can_probe) {
        out.push_back({"steering", verdict::skip, "cannot read the pinned maps without CAP_BPF", ""});
        return out;
    }
    std::optional<pinned_state> state;
    try {
        state = pinned_state::open(pin_dir);
        if (!state)
            out.push_back({"steering", verdict::fail,
                           "nothing is pinned for port " + std::to_string(s.port) + " in " + s.pin_root,
                           "sio-steer attach --port " + std::to_string(s.port) +
                               " (or systemctl enable --now sio-steer@" + std::to_string(s.port) + ")"});
    } catch (const steer_error& e) {
        out.push_back({"steering", verdict::fail, e.what(), e.fix()});
    }
    if (state) {
        out.push_back(check_steering(*state, s.port, s.lock_dir));
        out.push_back(check_controller(s));
        out.push_back(check_drain(*state, s));
        out.push_back(check_proxy(*state));
    }
    return out;
}

bool all_well(const std::vector<finding>& findings)
{
    for (const finding& f : findings)
        if (f.result == verdict::warn || f.result == verdict::fail)
            return false;
    return true;
}

}  // namespace sio_steer
