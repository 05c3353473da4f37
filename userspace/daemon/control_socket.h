// The controller's control socket: a Unix stream socket where the port's workers send one-line
// requests and read one-line replies (release.h), e.g. `echo "release 192.0.2.7" | socat - UNIX:PATH`.
// The controller polls it in its one thread, beside the listener watch.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "unique_fd.h"

namespace sio_steer {

// <lock dir>/<port>.sock: where workers find it (examples/chat/drain.js).
std::string control_socket_path(const std::string& lock_dir, std::uint16_t port);
// Throws steer_error(usage) for a path too long for a Unix socket: attach checks it before it
// changes anything.
void check_control_socket_path(const std::string& path);

class control_socket {
public:
    using handler = std::function<std::string(pid_t peer, std::string_view line)>;

    // Listens at `path` (a stale socket file there is replaced), mode 0666: workers run as any
    // user; what a peer may do is decided per request from its pid (SO_PEERCRED).
    control_socket(std::string path, handler on_request);
    ~control_socket();
    control_socket(const control_socket&) = delete;
    control_socket& operator=(const control_socket&) = delete;

    // The descriptors to poll for POLLIN: the listening socket, then each connection.
    std::vector<int> fds() const;
    // Accepts, reads and answers whatever is ready; never blocks.
    void serve();

private:
    struct connection {
        unique_fd fd;
        pid_t peer;
        std::string pending;  // bytes after the last complete line
    };
    bool serve(connection& c);  // false: close it

    std::string path_;
    handler on_request_;
    unique_fd listener_;
    std::vector<connection> connections_;
};

}  // namespace sio_steer
