#include "daemon/follower.h"

#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <filesystem>
#include <memory>
#include <set>
#include <vector>

#include <spdlog/spdlog.h>

#include "daemon/control_socket.h"
#include "daemon/release.h"
#include "daemon/stop_signals.h"
#include "kernel/controller.h"
#include "kernel/listener_tracker.h"
#include "kernel/listener_watch.h"
#include "logic/errors.h"

namespace sio_steer {

using namespace std::chrono;

namespace {

// SIGINT and SIGTERM as a readable fd, so that one poll() waits for signals and events alike.
unique_fd stop_signals()
{
    const sigset_t set = stop_signal_set();
    if (sigprocmask(SIG_BLOCK, &set, nullptr))
        throw_system_error("cannot block SIGINT/SIGTERM", errno);
    int fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (fd < 0)
        throw_system_error("cannot create a signalfd", errno);
    return unique_fd(fd);
}

// One resync: logs what changed, or what is wrong (steering what is there meanwhile).
void resync_and_tell(const steer_options& options, listener_tracker& tracker, const std::vector<pid_t>& hints,
                     const follow_settings& settings)
{
    bool changed = false;
    try {
        if (std::optional<sync_report> report = tracker.resync(hints)) {
            changed = report->changed();
            if (changed)
                spdlog::info("port {}: {} worker sockets, {} came, {} went, {} ring entries moved", options.port,
                             report->recorded.size(), report->added.size(), report->removed.size(),
                             report->ring_changes);
        }
        if (SIO_STEER_KEY_RECORDS(options.key_mode))
            tracker.tidy_moved_now_and_then();
    } catch (const steer_error& e) {
        spdlog::warn("port {}: {}{}", options.port, e.what(), e.fix().empty() ? "" : " (" + e.fix() + ")");
    }
    if (settings.after_sync)
        settings.after_sync(changed);
}

// The watch asked for with --follow, or why there is none (then the port is polled).
std::unique_ptr<listener_watch> start_watch(std::uint16_t port, follow_mode wanted, follow_status& status)
{
    if (wanted == follow_mode::polling) {
        status = {"polling", "asked for with --follow polling", true};
        return nullptr;
    }
    try {
        auto watch = std::make_unique<listener_watch>(port);
        status = watch->status();
        return watch;
    } catch (const steer_error& e) {
        if (wanted == follow_mode::events)
            throw;
        status = {"polling", e.what() + std::string("; to fix: ") + e.fix()};
        return nullptr;
    }
}

// When to resync besides the events: every `resync`, and twice shortly after a listener closed
// (its event comes before the kernel unhashes it, so sock_diag may still list it).
class resync_clock {
public:
    void synced(bool a_listener_stopped)
    {
        last_sync_ = steady_clock::now();
        if (a_listener_stopped)
            rechecks_ = {last_sync_ + milliseconds(20), last_sync_ + milliseconds(200)};
    }
    // How long poll() may wait: `limit` ms, or less if a recheck comes first.
    int timeout(int limit) const
    {
        if (rechecks_.empty())
            return limit;
        return std::clamp(
            static_cast<int>(duration_cast<milliseconds>(rechecks_.front() - steady_clock::now()).count()) + 1, 0,
            limit);
    }
    // Is a resync due now (events came, a recheck is due, or `resync` has passed)? Drops the
    // rechecks that are past.
    bool due(bool events, milliseconds resync)
    {
        const auto now = steady_clock::now();
        const bool recheck_due = !rechecks_.empty() && now >= rechecks_.front();
        while (!rechecks_.empty() && rechecks_.front() <= now)
            rechecks_.erase(rechecks_.begin());
        return events || recheck_due || now - last_sync_ >= resync;
    }

private:
    steady_clock::time_point last_sync_ = steady_clock::now();
    std::vector<steady_clock::time_point> rechecks_;
};

// The worker sockets whose process has connected to the control socket (was admitted): a drain
// that never connects will not release its clients to its successor.
class control_peers {
public:
    control_peers(const pinned_state& state, const follow_settings& settings) : state_(state), settings_(settings)
    {
        if (settings_.on_control_peers)
            settings_.on_control_peers({});
    }
    // `slots`: those of an admitted peer. Forgets the sockets no slot holds any more, so that
    // the set stays as small as the workers map.
    void connected(const std::vector<std::uint32_t>& slots)
    {
        const std::vector<slot> all = state_.read_slots();
        std::set<std::uint64_t> live;
        for (const slot& s : all)
            if (s.cookie)
                live.insert(s.cookie);
        bool changed = std::erase_if(cookies_, [&](std::uint64_t c) { return !live.contains(c); }) > 0;
        for (std::uint32_t i : slots)
            if (i < all.size() && all[i].cookie)
                changed = cookies_.insert(all[i].cookie).second || changed;
        if (changed && settings_.on_control_peers)
            settings_.on_control_peers({cookies_.begin(), cookies_.end()});
    }

private:
    const pinned_state& state_;
    const follow_settings& settings_;
    std::set<std::uint64_t> cookies_;
};

// A stop signal came, or the pinned state was removed (`sio-steer detach`): says so, returns true.
bool told_to_stop(const pollfd& signal_fd, int signals, const std::string& pin_dir)
{
    if (signal_fd.revents & POLLIN) {
        signalfd_siginfo info{};
        (void)!read(signals, &info, sizeof(info));
        spdlog::info("{}: exiting; steering stays attached and pinned in {} for the next attach to adopt",
                     strsignal(static_cast<int>(info.ssi_signo)), pin_dir);
        return true;
    }
    if (!std::filesystem::exists(pin_dir + "/config")) {
        spdlog::info("the pinned state in {} was removed (sio-steer detach): exiting", pin_dir);
        return true;
    }
    return false;
}

// The lines that say the port is followed, and how (tests, scripts and the unit wait for them).
void say_how_it_follows(std::uint16_t port, const follow_settings& settings, const std::string& control_path,
                        bool events, const follow_status& status, milliseconds resync)
{
    if (settings.control_group)
        spdlog::info("control socket for draining workers: {} (mode 0660, group {})", control_path,
                     *settings.control_group);
    else
        spdlog::info("control socket for draining workers: {} (mode 0666: set --control-group to let only the "
                     "workers' group connect)",
                     control_path);
    if (events)
        spdlog::info("following port {}: listener events from {}, resync every {} ms", port, status.reason,
                     resync.count());
    else
        spdlog::warn("following port {} by polling every {} ms: {}", port, resync.count(), status.reason);
    if (settings.on_follow_mode)
        settings.on_follow_mode(status);
}

}  // namespace

follow_mode parse_follow_mode(const std::string& text)
{
    if (text == "auto")
        return follow_mode::automatic;
    if (text == "events")
        return follow_mode::events;
    if (text == "polling")
        return follow_mode::polling;
    throw steer_error(exit_code::usage, "--follow " + text + ": not a way to follow",
                      "auto: listener events if the kernel allows a watch, else polling; events: a watch or nothing; "
                      "polling: list the listeners every 100 ms",
                      "use --follow auto, events or polling");
}

int follow(const steer_options& options, const pinned_state& state, const follow_settings& settings)
{
    unique_fd signals = stop_signals();
    follow_status status;
    std::unique_ptr<listener_watch> watch = start_watch(options.port, settings.mode, status);
    // Without events, the port's listeners are listed this often (a sock_diag dump, no /proc walk).
    const milliseconds resync =
        watch ? settings.resync_interval : std::min(settings.resync_interval, milliseconds(100));
    // The first resync finds the owners of the sockets attach took (one walk of /proc) before any
    // event, so that the log line below means: followed from now on.
    listener_tracker tracker(options, state, std::max(settings.resync_interval, milliseconds(2000)));
    resync_and_tell(options, tracker, {}, settings);
    resync_clock clock;
    // What the watch reported (none when polling), then a resync.
    auto follow_changes = [&](const listener_changes& changes) {
        clock.synced(changes.stopped);
        resync_and_tell(options, tracker, changes.pids, settings);
    };
    // Where draining workers release their clients one by one (release.h); open before the line
    // below, which tells tests, scripts and the unit that the port is followed and served.
    const std::string control_path = control_socket_path(options.lock_dir, options.port);
    // A release that finds no successor resyncs first: each one, as the replacement it waits for
    // may have listened a moment ago (a sock_diag dump, tens of µs, at most 32 per pass).
    auto catch_up = [&] { follow_changes(watch ? watch->drain() : listener_changes{}); };
    control_peers peers(state, settings);
    auto refused = [&] {
        if (settings.on_refusal)
            settings.on_refusal();
    };
    control_socket control(
        control_path, settings.control_group,
        [&](const control_peer& peer) -> std::optional<std::string> {
            std::vector<std::uint32_t> mine = slots_of_peer(state, options.port, peer);
            if (mine.empty()) {
                refused();
                return std::string(control_refusal);
            }
            peers.connected(mine);
            return std::nullopt;
        },
        [&](const control_peer& peer, std::string_view line) {
            control_reply reply = handle_control_request(state, options.port, peer, line, catch_up);
            if (reply.line == control_refusal)
                refused();  // it was a worker of the port when it connected, and is not now
            if (settings.after_request)
                settings.after_request(reply.line);
            return reply;
        });
    say_how_it_follows(options.port, settings, control_path, watch != nullptr, status, resync);

    // Wake at least this often to notice a detach (removed pins) without inotify on bpffs.
    const milliseconds tick = std::min(resync, milliseconds(200));
    bool control_busy = false;  // the control socket left work for the next pass

    for (;;) {
        std::vector<pollfd> fds = {{signals.get(), POLLIN, 0}, {watch ? watch->fd() : -1, POLLIN, 0}};
        for (int fd : control.fds())
            fds.push_back({fd, POLLIN, 0});
        if (poll(fds.data(), fds.size(), clock.timeout(control_busy ? 0 : static_cast<int>(tick.count()))) < 0 &&
            errno != EINTR)
            throw_system_error("poll", errno);
        if (told_to_stop(fds[0], signals.get(), state.dir()))
            return 0;
        listener_changes changes = watch && (fds[1].revents & POLLIN) ? watch->drain() : listener_changes{};
        if (clock.due(changes.events != 0, resync))
            follow_changes(changes);
        // After the resync: a release that came with its replacement's listen finds the replacement.
        // A bounded amount per pass: a peer that writes without pause delays the checks above and
        // the resync by one pass, not forever.
        control_busy = control.serve();
    }
}

}  // namespace sio_steer
