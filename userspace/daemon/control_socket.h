// The controller's control socket: a Unix stream socket where the port's workers send one-line
// requests and read one-line replies (release.h), e.g. `echo "release 192.0.2.7" | socat - UNIX:PATH`.
// The controller polls it in its one thread, beside the listener watch, so nothing a peer does may
// hold that thread: each pass does a bounded amount of work, idle connections are closed, and
// their number is capped (docs/architecture.md, "Threat model").
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "logic/unique_fd.h"

namespace sio_steer {

// <lock dir>/<port>.sock: where workers find it (examples/chat/drain.js).
std::string control_socket_path(const std::string& lock_dir, std::uint16_t port);
// Throws steer_error(usage) for a path too long for a Unix socket, steer_error(environment) when
// something other than a socket is there (a symbolic link, a file): attach checks it before it
// changes anything, and the constructor again.
void check_control_socket_path(const std::string& path);
// The group named by --control-group; throws steer_error(usage) naming the option if there is none.
gid_t parse_control_group(const std::string& name);
// Throws steer_error(environment) unless this process may give a file that group (a member, or CAP_CHOWN).
void require_control_group(gid_t group, std::uint16_t port);

// The process at the other end of a connection, as the kernel saw it at connect().
struct control_peer {
    pid_t pid = 0;
    uid_t uid = 0;
    // SO_PEERPIDFD (Linux 6.5+); before, pidfd_open() of the pid at accept: the same process
    // unless it exited and its pid was taken again between connect() and accept().
    unique_fd pidfd;
    // False once that process has exited, so that its pid may name another process now. Without a
    // pidfd (none could be had): true (the uid check in release.cpp still keeps other users out).
    bool alive() const;
};

struct control_reply {
    std::string line;
    bool close = false;  // close the connection after sending it
};

class control_socket {
public:
    // Limits: why each is what it is in control_socket.cpp.
    static constexpr std::size_t max_connections = 64;
    static constexpr std::chrono::seconds idle_timeout{5};

    // nullopt: admitted; else the one line sent before the connection is closed.
    using admit_fn = std::function<std::optional<std::string>(const control_peer&)>;
    using handler = std::function<control_reply(const control_peer&, std::string_view line)>;

    // Listens at `path` (a stale socket file there is replaced). With a group: mode 0660 and that
    // group, so that only the workers' group can connect; without one: mode 0666 (workers run as
    // any user), where every connection is still checked by `admit` at once.
    control_socket(std::string path, std::optional<gid_t> group, admit_fn admit, handler on_request);
    ~control_socket();
    control_socket(const control_socket&) = delete;
    control_socket& operator=(const control_socket&) = delete;

    // The descriptors to poll for POLLIN: the listening socket, then each connection.
    std::vector<int> fds() const;
    // Accepts, reads and answers what is ready, a bounded amount; closes connections idle for
    // idle_timeout. Never blocks. True if work is left for another pass (poll without waiting).
    bool serve();

private:
    struct connection {
        unique_fd fd;
        control_peer peer;
        std::string pending;  // bytes after the last complete line
        std::chrono::steady_clock::time_point last_line;
        bool closing = false;
    };
    void accept_some(bool& more);
    // Up to `budget` lines of `c` (decremented); false: close it.
    bool serve(connection& c, std::size_t& budget, bool& more);

    std::string path_;
    admit_fn admit_;
    handler on_request_;
    unique_fd listener_;
    std::vector<connection> connections_;
    std::size_t next_ = 0;  // where the next pass starts, so that no connection is always served last
};

}  // namespace sio_steer
