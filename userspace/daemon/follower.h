// The foreground part of `sio-steer attach`: follows worker restarts, reloads and scale changes.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kernel/pinned_state.h"
#include "logic/follow_status.h"
#include "logic/options.h"

namespace sio_steer {

// How the follower learns of listeners (attach --follow).
enum class follow_mode {
    automatic,  // a BPF listener watch if the kernel allows one, else polling
    events,     // a listener watch, or refuse to follow (exit 5)
    polling,    // list the port's listeners every 100 ms (or --resync-interval, if shorter)
};

// "auto", "events" or "polling"; throws steer_error(usage) otherwise.
follow_mode parse_follow_mode(const std::string& text);

struct follow_settings {
    follow_mode mode = follow_mode::automatic;
    // A full resync however quiet the watch is: the safety net under the event-driven path.
    std::chrono::milliseconds resync_interval{2000};
    // Called after every sync (metrics, sd_notify); may be empty.
    std::function<void(bool changed)> after_sync;
    // The control socket's group (attach --control-group): mode 0660 with it, 0666 without.
    std::optional<gid_t> control_group;
    // Called with the reply to every control socket request (metrics); may be empty.
    std::function<void(const std::string& reply)> after_request;
    // Called once the follower knows how it follows the port (events or polling, and why); may be empty.
    std::function<void(const follow_status&)> on_follow_mode;
    // Called for every control socket peer refused because it is not a worker of the port (metrics);
    // may be empty.
    std::function<void()> on_refusal;
    // Called with the cookies of the worker sockets whose process has connected to the control
    // socket since this follower started (the live ones), first empty, then whenever a worker
    // connects for the first time (the lock file, for doctor); may be empty.
    std::function<void(const std::vector<std::uint64_t>& cookies)> on_control_peers;
};

// Resyncs the port whenever a listener starts or stops (the listener watch,
// bpf/sio_steer_watch.bpf.c; polling every 100 ms if the kernel refuses every watch) and every
// resync_interval. Returns 0 on SIGINT/SIGTERM, leaving steering attached and pinned, or when
// the pinned state disappears (`sio-steer detach`).
int follow(const steer_options& options, const pinned_state& state, const follow_settings& settings);

}  // namespace sio_steer
