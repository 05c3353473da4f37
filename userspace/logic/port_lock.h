// One controller per port: an exclusive flock on <lock dir>/<port>.lock, and what its holder
// publishes in the file (its pid; how it follows the port) for `status`, `doctor` and /metrics.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "logic/follow_status.h"
#include "logic/unique_fd.h"

namespace sio_steer {

// The pid holding the lock of `port` (a following attach), read from /proc/locks without
// touching the lock; nullopt if nobody holds it. Where /proc/locks names another device than
// stat() (overlayfs, as in containers), the pid recorded in the lock file must show the lock on
// one of its own fds of that file (/proc/PID/fdinfo).
std::optional<pid_t> lock_holder(const std::string& lock_dir, std::uint16_t port);

// How the controller holding the lock of `port` follows the port, as it published it
// (port_lock::publish); mode "unknown" while a holder has published nothing (starting, or an
// attach that does not follow); nullopt when no live process holds the lock.
std::optional<follow_status> read_follow_status(const std::string& lock_dir, std::uint16_t port);

// The cookies of the worker sockets whose process has connected to the control socket of the
// controller holding the lock of `port` (port_lock::publish_control_peers), since that
// controller started: nullopt when no live process holds the lock, or its holder publishes none
// (an older sio-steer, or one starting).
std::optional<std::vector<std::uint64_t>> read_control_peers(const std::string& lock_dir, std::uint16_t port);

// Line 2 of a lock file, "follow <mode> <reason>", and back (nullopt if `line` is not one).
std::string follow_line(const follow_status& status);
std::optional<follow_status> parse_follow_line(const std::string& line);

// An exclusive flock held for as long as this object lives: one controller per port, whatever
// pin root each uses (two would attach their own programs to the same group in turn).
class port_lock {
public:
    // Throws steer_error(busy) naming the holder's pid when another process holds it, and
    // steer_error(environment) when the lock file is a symbolic link, not a regular file, or
    // another user's (it is never followed, truncated or written then).
    port_lock(const std::string& lock_dir, std::uint16_t port);
    // Waits up to `timeout` for the holder to let go (e.g. a following attach that is exiting).
    static port_lock wait(const std::string& lock_dir, std::uint16_t port, std::chrono::milliseconds timeout);
    // Rewrites the lock file as "<pid>\nfollow <mode> <reason>\ncontrol <cookie>...\n", for `status`
    // and `doctor`: how it follows the port, and (once published) which worker sockets' processes
    // have connected to its control socket.
    void publish(const follow_status& status);
    void publish_control_peers(const std::vector<std::uint64_t>& cookies);

private:
    void write_out();
    unique_fd fd_;
    std::optional<follow_status> follow_;
    std::optional<std::vector<std::uint64_t>> control_peers_;
};

}  // namespace sio_steer
