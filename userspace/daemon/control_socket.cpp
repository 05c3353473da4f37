#include "control_socket.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <spdlog/spdlog.h>

#include "errors.h"

namespace sio_steer {

namespace {

constexpr std::size_t max_connections = 256;  // one per worker is the normal case
constexpr std::size_t max_line = 512;

}  // namespace

std::string control_socket_path(const std::string& lock_dir, std::uint16_t port)
{
    return lock_dir + "/" + std::to_string(port) + ".sock";
}

void check_control_socket_path(const std::string& path)
{
    if (path.size() >= sizeof(sockaddr_un::sun_path))
        throw steer_error(exit_code::usage, "the control socket path " + path + " is too long for a Unix socket",
                          "Unix socket paths are limited to 107 bytes", "use a shorter --lock-dir");
}

control_socket::control_socket(std::string path, handler on_request)
    : path_(std::move(path)),
      on_request_(std::move(on_request))
{
    check_control_socket_path(path_);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path_.c_str(), path_.size() + 1);
    listener_ = unique_fd(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!listener_)
        throw_system_error("cannot create the control socket", errno);
    ::unlink(path_.c_str());  // left by a controller that was killed; the port lock is ours
    if (bind(listener_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) || chmod(path_.c_str(), 0666) ||
        listen(listener_.get(), 64))
        throw_system_error("cannot listen on the control socket " + path_, errno);
}

control_socket::~control_socket() { ::unlink(path_.c_str()); }

std::vector<int> control_socket::fds() const
{
    std::vector<int> out{listener_.get()};
    for (const connection& c : connections_)
        out.push_back(c.fd.get());
    return out;
}

void control_socket::serve()
{
    for (;;) {
        unique_fd fd(accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
        if (!fd)
            break;
        ucred cred{};
        socklen_t len = sizeof(cred);
        if (getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) || connections_.size() >= max_connections)
            continue;
        connections_.push_back({std::move(fd), cred.pid, {}});
    }
    std::erase_if(connections_, [this](connection& c) { return !serve(c); });
}

bool control_socket::serve(connection& c)
{
    char buf[4096];
    for (;;) {
        ssize_t n = read(c.fd.get(), buf, sizeof(buf));
        if (n == 0)
            return false;
        if (n < 0)
            return errno == EAGAIN || errno == EINTR;
        c.pending.append(buf, static_cast<std::size_t>(n));
        for (std::size_t eol; (eol = c.pending.find('\n')) != std::string::npos;) {
            std::string line = c.pending.substr(0, eol);
            c.pending.erase(0, eol + 1);
            if (!line.empty() && line.back() == '\r')
                line.pop_back();
            std::string reply;
            try {
                reply = on_request_(c.peer, line);
            } catch (const std::exception& e) {
                reply = std::string("error ") + e.what();
            }
            spdlog::debug("control: pid {}: {} -> {}", c.peer, line, reply);
            reply += '\n';
            // Replies are short and the peer reads them: one that does not is dropped.
            if (send(c.fd.get(), reply.data(), reply.size(), MSG_DONTWAIT | MSG_NOSIGNAL) !=
                static_cast<ssize_t>(reply.size()))
                return false;
        }
        if (c.pending.size() > max_line)
            return false;
    }
}

}  // namespace sio_steer
