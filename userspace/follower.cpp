#include "follower.h"

#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <memory>
#include <vector>

#include <spdlog/spdlog.h>

#include "control_socket.h"
#include "controller.h"
#include "errors.h"
#include "listener_watch.h"
#include "release.h"

namespace sio_steer {

using namespace std::chrono;

namespace {

// SIGINT and SIGTERM as a readable fd, so that one poll() waits for signals and events alike.
unique_fd stop_signals()
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    if (sigprocmask(SIG_BLOCK, &set, nullptr))
        throw_system_error("cannot block SIGINT/SIGTERM", errno);
    int fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (fd < 0)
        throw_system_error("cannot create a signalfd", errno);
    return unique_fd(fd);
}

}  // namespace

int follow(const steer_options& options, const pinned_state& state, const follow_settings& settings)
{
    unique_fd signals = stop_signals();
    std::unique_ptr<listener_watch> watch;
    try {
        watch = std::make_unique<listener_watch>(options.port);
        spdlog::info("following port {}: listener events from the listen() and sock state tracepoints, full resync every {} ms",
                     options.port, settings.resync_interval.count());
    } catch (const steer_error& e) {
        spdlog::warn("{}; following port {} by polling every 100 ms instead", e.what(), options.port);
    }
    // Where draining workers release their clients one by one (release.h).
    const std::string control_path = control_socket_path(options.lock_dir, options.port);
    control_socket control(control_path, [&](pid_t peer, std::string_view line) {
        std::string reply = handle_control_request(state, peer, line);
        if (settings.after_request)
            settings.after_request(reply);
        return reply;
    });
    spdlog::info("control socket for draining workers: {}", control_path);
    const milliseconds resync = watch ? settings.resync_interval : milliseconds(100);
    // Wake at least this often to notice a detach (removed pins) without inotify on bpffs.
    const milliseconds tick = std::min(resync, milliseconds(200));
    const std::string config_pin = state.dir() + "/config";
    auto last_sync = steady_clock::now();

    for (;;) {
        std::vector<pollfd> fds = {{signals.get(), POLLIN, 0}, {watch ? watch->fd() : -1, POLLIN, 0}};
        for (int fd : control.fds())
            fds.push_back({fd, POLLIN, 0});
        if (poll(fds.data(), fds.size(), static_cast<int>(tick.count())) < 0 && errno != EINTR)
            throw_system_error("poll", errno);
        if (fds[0].revents & POLLIN) {
            signalfd_siginfo info{};
            (void)!read(signals.get(), &info, sizeof(info));
            spdlog::info("{}: exiting; steering stays attached and pinned in {} for the next attach to adopt",
                         strsignal(static_cast<int>(info.ssi_signo)), state.dir());
            return 0;
        }
        if (!std::filesystem::exists(config_pin)) {
            spdlog::info("the pinned state in {} was removed (sio-steer detach): exiting", state.dir());
            return 0;
        }
        control.serve();
        bool event = watch && (fds[1].revents & POLLIN) && watch->drain() > 0;
        if (!event && steady_clock::now() - last_sync < resync)
            continue;
        last_sync = steady_clock::now();
        try {
            worker_sockets sockets = take_listeners(options.port, take_mode::follow);
            sync_report report = sync(state, options, sockets);
            if (report.changed())
                spdlog::info("port {}: {} worker sockets, {} came, {} went, {} ring entries moved", options.port,
                             sockets.listeners.size(), report.added.size(), report.removed.size(), report.ring_changes);
            if (settings.after_sync)
                settings.after_sync(report.changed());
        } catch (const steer_error& e) {
            // Keep steering what is there; say what is wrong once per resync.
            spdlog::warn("port {}: {}{}", options.port, e.what(), e.fix().empty() ? "" : " (" + e.fix() + ")");
        }
    }
}

}  // namespace sio_steer
