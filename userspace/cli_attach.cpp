// sio-steer attach: find the listeners, load and attach the steering program, pin it, and follow.
#include <spdlog/spdlog.h>

#include "cli.h"
#include "controller.h"
#include "errors.h"
#include "follower.h"
#include "options.h"
#include "pinned_state.h"
#include "preflight.h"

namespace po = boost::program_options;

namespace sio_steer {

int run_attach(const args& a)
{
    steer_options o;
    std::string port, key = "address", ttl = "600";
    bool once = false;
    unsigned resync_ms = 2000;
    po::options_description options("attach options");
    options.add_options()
        ("port", po::value(&port)->required(), "TCP port the workers listen on")
        ("once", po::bool_switch(&once), "attach and exit, without following the workers")
        ("key", po::value(&key)->default_value(key), "client key: address | address,port")
        ("v4-prefix", po::value(&o.v4_prefix)->default_value(o.v4_prefix), "leading bits of an IPv4 client address in the key")
        ("v6-prefix", po::value(&o.v6_prefix)->default_value(o.v6_prefix), "leading bits of an IPv6 client address in the key")
        ("max-sessions", po::value(&o.max_sessions)->default_value(o.max_sessions), "clients the sessions map remembers (LRU)")
        ("session-ttl", po::value(&ttl)->default_value(ttl), "idle time after which a client may be placed anew (600, 10m, 1h)")
        ("resync-interval", po::value(&resync_ms)->default_value(resync_ms), "ms between full resyncs (listener events trigger one at once)")
        ("lock-dir", po::value(&o.lock_dir)->default_value(o.lock_dir), "folder of the per-port lock files");
    add_pin_root(options, o.pin_root);
    po::variables_map vm;
    if (!parse_args("attach", "--port N [options]", a, options, vm))
        return 0;
    o.port = parse_port(port);
    o.key_mode = parse_key_mode(key);
    o.session_ttl = parse_duration("--session-ttl", ttl);
    validate(o);

    // Everything that can refuse does so before anything changes.
    require_capabilities();
    require_bpffs(o.pin_root);
    port_lock lock(o.lock_dir, o.pin_dir());
    worker_sockets sockets = take_listeners(o.port);

    auto [state, created] = pinned_state::load(o);
    sync_report report = sync(state, o, sockets);
    spdlog::info("{} port {}: {} worker sockets, {} ring entries set, state in {}",
                 created ? "attached to" : "adopted", o.port, sockets.listeners.size(), report.ring_changes, state.dir());
    sockets = {};  // a worker's socket must close when its worker exits, not live on in here
    if (once)
        return 0;
    follow_settings settings;
    settings.resync_interval = std::chrono::milliseconds(std::max(resync_ms, 100u));
    return follow(o, state, settings);
}

}  // namespace sio_steer
