// sio-steer detach: take the program off the port's reuseport group and remove the pinned state.
#include <sys/socket.h>

#include <cerrno>
#include <set>

#include <spdlog/spdlog.h>

#include "cli/cli.h"
#include "kernel/discovery.h"
#include "kernel/pinned_state.h"
#include "kernel/preflight.h"
#include "logic/errors.h"
#include "logic/options.h"

namespace sio_steer {

int run_detach(const args& a, std::ostream& out)
{
    std::optional<steer_options> parsed =
        parse_port_args("detach", "--port N [--pin-root DIR]", a, out, {.port_help = "TCP port to stop steering"});
    if (!parsed)
        return 0;
    const steer_options& o = *parsed;
    require_capabilities();

    std::optional<pinned_state> state;
    std::set<std::uint64_t> ours;
    if (pinned_state::half_removed(o.pin_dir())) {
        // A detach killed halfway (no config map left): finish it.
        spdlog::warn("{} has pins but no config map (a detach was interrupted): removing the rest", o.pin_dir());
        ours = pinned_state::socket_cookies(o.pin_dir());
    } else {
        try {
            state = open_pinned_state(o, "sio-steer was not attached to this port (or was detached already)",
                                      "see `sio-steer status` for the ports it steers");
        } catch (const steer_error& e) {
            // Another version's (or incomplete) state: detach is the way out that attach and status
            // point to, so remove it anyway, taking the sockets from the kernel's own workers map.
            if (e.code() != exit_code::incompatible)
                throw;
            spdlog::warn("{}; removing it anyway", e.what());
            ours = pinned_state::socket_cookies(o.pin_dir());
        }
    }
    if (state)
        for (const slot& s : state->read_slots())
            if (s.cookie)
                ours.insert(s.cookie);
    const bool followed = lock_holder(o.lock_dir, o.port).has_value();
    // Pins first (one rename): a following `attach` sees them gone and exits 0, which its unit does
    // not restart; once it has released the lock it can no longer re-attach behind our back.
    pinned_state::remove(o.pin_dir());
    state.reset();
    port_lock lock = port_lock::wait(o.lock_dir, o.port, std::chrono::seconds(5));
    if (!followed)
        spdlog::info("no controller was following port {}: a service that is restarting (systemctl status "
                     "sio-steer@{}) would attach it again; `systemctl stop sio-steer@{}` keeps it detached",
                     o.port, o.port, o.port);

    // Detach from the group that holds our sockets: one member is enough for the whole group.
    std::size_t detached = 0;
    for (const listener& l : find_listeners(o.port)) {
        if (!ours.count(l.cookie) || !l.pid)
            continue;
        unique_fd fd = duplicate_socket(l.pid, l.fd);
        int unused = 0;
        if (setsockopt(fd.get(), SOL_SOCKET, SO_DETACH_REUSEPORT_BPF, &unused, sizeof(unused)) == 0)
            detached++;
        else if (errno != ENOENT)
            throw_system_error("cannot detach the steering program from port " + std::to_string(o.port), errno);
        break;
    }
    spdlog::info("detached from port {}{}; removed {}", o.port, detached ? "" : " (no live group had the program)",
                 o.pin_dir());
    return 0;
}

}  // namespace sio_steer
