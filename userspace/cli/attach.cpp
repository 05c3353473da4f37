// sio-steer attach: find the listeners, load and attach the steering program, pin it, and follow.
#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <thread>

#include <spdlog/spdlog.h>

#include "cli/cli.h"
#include "cli/config_file.h"
#include "daemon/control_socket.h"
#include "daemon/follower.h"
#include "daemon/metrics_server.h"
#include "daemon/service_notify.h"
#include "kernel/controller.h"
#include "kernel/group_pin.h"
#include "kernel/pinned_state.h"
#include "kernel/preflight.h"
#include "kernel/report.h"
#include "logic/errors.h"
#include "logic/metrics.h"
#include "logic/options.h"
#include "logic/worker_group.h"

namespace po = boost::program_options;

namespace sio_steer {

namespace {

// The STATUS= line systemd shows; right after a sync the map holds exactly the listening sockets.
std::string service_status(const pinned_state& state, std::uint16_t port)
{
    std::size_t live = 0;
    for (const slot& s : state.read_slots())
        live += s.cookie != 0;
    if (!live)
        return "port " + std::to_string(port) + ": no worker listens; steering returns with the workers";
    return "port " + std::to_string(port) + ": steering " + std::to_string(live) + " worker sockets, in sync";
}

// The group this port steers: the one recorded at the first attach (with the uids of --worker-uid,
// if given now), else the one listening now, recorded once the maps are loaded. `news` says what
// changed, logged once it is recorded (a refused attach records nothing, and says only why).
worker_group steered_group(const steer_options& o, const std::optional<std::vector<std::uint32_t>>& worker_uids,
                           std::string& news)
{
    std::optional<worker_group> recorded = read_group(o.pin_dir());
    if (!recorded) {
        std::vector<bound_listener> found;
        for (const listener& l : list_listeners(o.port))
            found.push_back(bound(l));
        worker_group g = first_group(found, worker_uids, o.port);
        news = "steering the group " + group_text(g, o.port) + " (recorded for the next attach)";
        return g;
    }
    if (worker_uids && *worker_uids != recorded->uids) {
        worker_group g = *recorded;
        g.uids = *worker_uids;
        news = "--worker-uid: the group " + group_text(*recorded, o.port) + " is now " + group_text(g, o.port);
        return g;
    }
    return *recorded;
}

// At boot the unit may start before PM2 has started the workers: wait for a first listener (one
// sock_diag dump every 100 ms), holding the port's lock, instead of failing and being restarted.
// Whatever listens then is checked as always.
void wait_for_listeners(std::uint16_t port, std::chrono::seconds limit)
{
    if (limit.count() == 0 || !list_listeners(port).empty())
        return;
    const std::string p = std::to_string(port), s = std::to_string(limit.count());
    spdlog::info("port {}: nothing listens yet; waiting up to {} s for the workers (--wait-for-listeners)", p, s);
    notify_status("port " + p + ": waiting up to " + s + " s for the workers to listen");
    for (auto deadline = std::chrono::steady_clock::now() + limit; std::chrono::steady_clock::now() < deadline;) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        if (!list_listeners(port).empty())
            return;
    }
    throw steer_error(exit_code::no_listeners, "nothing listens on TCP port " + p + " after waiting " + s + " s",
                      "sio-steer steers the connections of workers that already listen on the port",
                      "start the workers (e.g. pm2 start ecosystem.config.cjs), check the port number, or wait "
                      "longer (--wait-for-listeners)");
}

// What `attach` was asked: every option parsed and checked, before anything changes.
struct attach_request {
    steer_options o;
    bool once = false;
    std::chrono::seconds wait_for{0};
    std::chrono::milliseconds resync_interval{2000};
    follow_mode follow = follow_mode::automatic;
    std::optional<gid_t> control_gid;
    std::optional<std::vector<std::uint32_t>> worker_uids;
    std::optional<listen_address> metrics_at;
};

// The options as given. Numbers as text, parsed strictly by parse_values(): an unsigned option
// would wrap "-1" silently.
struct attach_text {
    std::string port, key = "address", ttl = "600", config_path, metrics_listen;
    std::string v4_prefix = "32", v6_prefix = "64", max_sessions, max_moved, resync = "2000";
    std::string follow_with = "auto", control_group, worker_uid, wait = "0";
    bool once = false;
};

void add_attach_options(po::options_description& options, attach_text& t, steer_options& o)
{
    t.max_sessions = std::to_string(o.max_sessions);
    t.max_moved = std::to_string(o.max_moved);
    add_port_options(options, t.port, o);
    // one option per line, as --help lists them
    // clang-format off
    options.add_options()
        ("config", po::value(&t.config_path), "read options from this file too (`name = value` lines; the command line wins)")
        ("once", po::bool_switch(&t.once), "attach and exit, without following the workers")
        ("wait-for-listeners", po::value(&t.wait)->default_value(t.wait), "if nothing listens on the port yet, wait this long for the workers (60, 2m) before saying so (exit 3): at boot, before PM2 has started them")
        ("key", po::value(&t.key)->default_value(t.key), "client key: address | address,port")
        ("v4-prefix", po::value(&t.v4_prefix)->default_value(t.v4_prefix), "leading bits of an IPv4 client address in the key")
        ("v6-prefix", po::value(&t.v6_prefix)->default_value(t.v6_prefix), "leading bits of an IPv6 client address in the key")
        ("max-sessions", po::value(&t.max_sessions)->default_value(t.max_sessions), "clients the sessions map remembers (LRU)")
        ("max-moved", po::value(&t.max_moved)->default_value(t.max_moved), "clients off the ring the moved map keeps apart from the LRU (a flood cannot evict them)")
        ("session-ttl", po::value(&t.ttl)->default_value(t.ttl), "idle time after which a client may be placed anew (600, 10m, 1h)")
        ("resync-interval", po::value(&t.resync)->default_value(t.resync), "ms between resyncs that no listener event asked for (100 to 3600000)")
        ("follow", po::value(&t.follow_with)->default_value(t.follow_with), "how to learn of listeners: auto (events if the kernel allows, else polling) | events | polling")
        ("metrics-listen", po::value(&t.metrics_listen), "serve Prometheus metrics at http://ADDRESS:PORT/metrics (docs/metrics.md)")
        ("worker-uid", po::value(&t.worker_uid), "uids or user names whose listeners form the steered group, e.g. 1000 or pm2 (default: the uid of the workers found at the first attach); any: every uid")
        ("control-group", po::value(&t.control_group), "group of the control socket <lock-dir>/<port>.sock, mode 0660: the workers' group (default: mode 0666, any local user may connect)");
    // clang-format on
}

// Throws the steer_error of the first value that does not parse.
attach_request parse_values(const attach_text& t, const po::variables_map& vm, steer_options o)
{
    attach_request r;
    if (vm.count("worker-uid"))
        r.worker_uids = parse_worker_uids(t.worker_uid, max_group_uids);
    o.port = parse_port(t.port);
    o.key_mode = parse_key_mode(t.key);
    o.session_ttl = parse_duration("--session-ttl", t.ttl);
    if (t.wait != "0")  // 0: no wait (a duration is positive)
        r.wait_for = parse_duration("--wait-for-listeners", t.wait);
    o.v4_prefix = static_cast<std::uint32_t>(parse_number("--v4-prefix", t.v4_prefix, 0, UINT32_MAX));
    o.v6_prefix = static_cast<std::uint32_t>(parse_number("--v6-prefix", t.v6_prefix, 0, UINT32_MAX));
    o.max_sessions = static_cast<std::uint32_t>(parse_number("--max-sessions", t.max_sessions, 0, UINT32_MAX));
    o.max_moved = static_cast<std::uint32_t>(parse_number("--max-moved", t.max_moved, 0, UINT32_MAX));
    r.resync_interval = std::chrono::milliseconds(parse_number("--resync-interval", t.resync, 100, 3'600'000));
    r.follow = parse_follow_mode(t.follow_with);
    validate(o);
    r.once = t.once;
    if (!r.once)
        check_control_socket_path(control_socket_path(o.lock_dir, o.port));
    if (vm.count("control-group"))
        r.control_gid = parse_control_group(t.control_group);
    if (!t.metrics_listen.empty())
        r.metrics_at = parse_listen_address(t.metrics_listen);
    r.o = std::move(o);
    return r;
}

// The command line and the --config file, parsed; nullopt after printing usage for --help.
std::optional<attach_request> parse_attach_args(const args& a, std::ostream& out)
{
    steer_options o;
    attach_text t;
    po::options_description options("attach options");
    add_attach_options(options, t, o);
    po::variables_map vm;
    if (!parse_args("attach", "--port N [--config FILE] [options]", a, options, vm, out))
        return std::nullopt;
    std::optional<config_file> file;
    if (!t.config_path.empty()) {
        file = config_file::read(t.config_path, options, vm);
        po::notify(vm);
    }
    attach_request r;
    try {
        r = parse_values(t, vm, o);
    } catch (const steer_error& e) {
        if (!file)
            throw;
        throw file->locate(e);
    }
    if (r.metrics_at && r.once)
        throw steer_error(exit_code::usage, "--metrics-listen needs a following attach, not --once",
                          "the metrics endpoint is served by the attach that follows the workers",
                          "drop --once, or use `sio-steer status --prometheus` for a one-off reading");
    return r;
}

// Takes the group's listeners, loads (or adopts) the pinned state and fills it: steering is
// attached when this returns. Holds no worker's socket afterwards (it must close with its worker).
pinned_state attach_once(const attach_request& r)
{
    const steer_options& o = r.o;
    std::string group_news;
    worker_group group = steered_group(o, r.worker_uids, group_news);
    std::vector<listener> members = find_listeners(o.port), foreign;
    leave_out_foreign(members, group, foreign);
    for (const listener& l : foreign)
        spdlog::warn("port {}: {} (cookie {})", o.port, foreign_listener_text(group, sio_steer::bound(l), o.port),
                     l.cookie);
    worker_sockets sockets = take_sockets(o.port, std::move(members), take_mode::attach);

    auto [state, created] = pinned_state::load(o);
    record_group(state.dir(), group);
    if (!group_news.empty())
        spdlog::info("port {}: {}", o.port, group_news);
    sync_report report = sync(state, o, sockets);
    spdlog::info("{} port {}: {} worker sockets, {} ring entries set, state in {}", created ? "attached to" : "adopted",
                 o.port, sockets.listeners.size(), report.ring_changes, state.dir());
    return std::move(state);
}

// What the follow loop tells the others: systemd (status, watchdog), the lock file (how it
// follows, and which workers have connected to the control socket, for `status` and `doctor`)
// and /metrics (the counters).
follow_settings follow_wiring(const attach_request& r, const pinned_state& state, port_lock& lock,
                              controller_counters& counters)
{
    follow_settings settings;
    settings.mode = r.follow;
    settings.resync_interval = r.resync_interval;
    settings.control_group = r.control_gid;
    settings.after_sync = [&counters, &state, port = r.o.port](bool changed) {
        counters.syncs++;
        if (changed) {
            counters.reactions++;
            notify_status(service_status(state, port));
        }
        notify_watchdog();
    };
    settings.after_request = [&counters](const std::string& reply) {
        if (reply.starts_with("ok "))
            counters.releases++;
    };
    settings.on_follow_mode = [&lock, &counters](const follow_status& f) {
        lock.publish(f);
        counters.set_follow(f);
    };
    settings.on_refusal = [&counters] { counters.control_refusals++; };
    settings.on_control_peers = [&lock](const std::vector<std::uint64_t>& cookies) {
        lock.publish_control_peers(cookies);
    };
    return settings;
}

// Serves /metrics (if bound) and follows the workers until stopped or detached.
int follow_port(const attach_request& r, const pinned_state& state, port_lock& lock,
                std::unique_ptr<metrics_server> bound)
{
    const steer_options& o = r.o;
    controller_counters counters;
    // Counting the sessions walks the map (in batches): done every few seconds off the request
    // path, so that a scrape costs the same with 10 and with 262,144 clients recorded.
    std::atomic<std::uint64_t> sessions_counted{0}, moved_counted{0};
    // Declared after `counters` and the counts, so it stops serving before they go away.
    std::unique_ptr<metrics_server> metrics = std::move(bound);
    if (metrics) {
        metrics->serve(
            [&] {
                report_scope scope{.owners = false,
                                   .warnings = false,
                                   .sessions = sessions_counted.load(),
                                   .moved = moved_counted.load()};
                return prometheus_text({{o.port, status_report(state, o.port, o.lock_dir, scope), &counters}});
            },
            [&] {
                sessions_counted = state.count_sessions();
                moved_counted = state.count_moved();
            });
        spdlog::info("serving metrics at http://{}:{}/metrics", r.metrics_at->host, r.metrics_at->port);
    }
    notify_ready(service_status(state, o.port));
    int code = follow(o, state, follow_wiring(r, state, lock, counters));
    notify_stopping();
    return code;
}

}  // namespace

int run_attach(const args& a, std::ostream& out)
{
    std::optional<attach_request> r = parse_attach_args(a, out);
    if (!r)
        return 0;
    const steer_options& o = r->o;

    // Everything that can refuse does so before anything changes.
    require_capabilities();
    if (r->control_gid && !r->once)
        require_control_group(*r->control_gid, o.port);
    require_bpffs(o.pin_root);
    port_lock lock(o.lock_dir, o.port);
    // Bound before the wait: a taken address is refused at once, not after up to a minute.
    std::unique_ptr<metrics_server> metrics =
        r->metrics_at ? std::make_unique<metrics_server>(*r->metrics_at) : nullptr;
    wait_for_listeners(o.port, r->wait_for);

    pinned_state state = attach_once(*r);
    if (r->once)
        return 0;
    return follow_port(*r, state, lock, std::move(metrics));
}

}  // namespace sio_steer
