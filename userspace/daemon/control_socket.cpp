#include "daemon/control_socket.h"

#include <grp.h>
#include <linux/capability.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <spdlog/spdlog.h>

#include "logic/errors.h"

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77  // Linux 6.5
#endif

namespace sio_steer {

using std::chrono::steady_clock;

namespace {

// The work one pass of the follow loop may do here, so that a peer writing as fast as it can
// delays a resync, a signal or a detach by one pass at most (each request costs a few map lookups).
constexpr std::size_t max_accepts_per_pass = 16;
constexpr std::size_t max_lines_per_pass = 32;
constexpr std::size_t max_lines_per_connection = 8;  // so that one connection cannot take the whole pass
constexpr std::size_t max_line = 512;

// Says `line` and closes. What the peer sent is read first: closing a Unix socket with unread
// data makes the peer's next read fail (ECONNRESET) instead of returning the line.
void refuse(unique_fd fd, const std::string& line)
{
    char discard[1024];
    (void)!recv(fd.get(), discard, sizeof(discard), MSG_DONTWAIT);
    const std::string out = line + "\n";
    (void)!send(fd.get(), out.data(), out.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
}

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
    // Only a socket (a killed controller's) may be there to be replaced: anything else, above all a
    // symbolic link, may be a trap set by another user who can write in the lock folder.
    struct stat st {};
    if (lstat(path.c_str(), &st) == 0 && !S_ISSOCK(st.st_mode))
        throw steer_error(exit_code::environment,
                          "the control socket path " + path +
                              (S_ISLNK(st.st_mode) ? " is a symbolic link" : " is not a socket"),
                          "root creates the control socket there: another user who can write in the lock folder may "
                          "have put it there",
                          "remove it, and keep the lock folder writable by root only (/run/sio-steer is mode 0755)");
}

gid_t parse_control_group(const std::string& name)
{
    group g{}, *found = nullptr;
    std::vector<char> buf(16384);
    int rc = name.empty() ? ENOENT : getgrnam_r(name.c_str(), &g, buf.data(), buf.size(), &found);
    if (rc == 0 && found)
        return found->gr_gid;
    throw steer_error(exit_code::usage,
                      "--control-group " + name + ": no such group" +
                          (rc && rc != ENOENT ? std::string(" (") + std::strerror(rc) + ")" : ""),
                      "the control socket gets this group and mode 0660, so that only its members (the workers' user) "
                      "can connect",
                      "create the group and add the workers' user to it (groupadd sio-steer; usermod -aG sio-steer "
                      "USER), or name an existing one");
}

void require_control_group(gid_t group, std::uint16_t port)
{
    // Root may give a file its own groups; any other group takes CAP_CHOWN, which the unit leaves out.
    std::vector<gid_t> mine(static_cast<std::size_t>(std::max(getgroups(0, nullptr), 0)) + 1);
    mine.resize(static_cast<std::size_t>(std::max(getgroups(static_cast<int>(mine.size()), mine.data()), 0)));
    mine.push_back(getegid());
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2]{};
    syscall(SYS_capget, &header, data);
    if (std::find(mine.begin(), mine.end(), group) != mine.end() || ((data[0].effective >> CAP_CHOWN) & 1u))
        return;
    const std::string g = std::to_string(group);
    throw steer_error(exit_code::environment,
                      "cannot give the control socket group " + g + ": missing privileges: CAP_CHOWN, and not a member",
                      "a process may give a file only its own groups unless it has CAP_CHOWN",
                      "run it in that group: SupplementaryGroups= with the group in a drop-in of the unit "
                      "(systemctl edit sio-steer@" +
                          std::to_string(port) + "), or grant CAP_CHOWN");
}

bool control_peer::alive() const
{
    if (!pidfd)
        return true;
    pollfd p{pidfd.get(), POLLIN, 0};  // a pidfd is readable once its process has exited
    return poll(&p, 1, 0) == 0;
}

control_socket::control_socket(std::string path, std::optional<gid_t> group, admit_fn admit, handler on_request)
    : path_(std::move(path)),
      admit_(std::move(admit)),
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
    // Born with its final mode (0660 with a group, else 0666) from the umask at bind(): no chmod()
    // by path afterwards, which would follow a link swapped in meanwhile (bind() never follows one).
    const mode_t umask_before = umask(group ? 0117 : 0111);
    const int bound = bind(listener_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    const int bind_errno = errno;
    umask(umask_before);
    if (bound)
        throw_system_error("cannot listen on the control socket " + path_, bind_errno);
    if ((group && lchown(path_.c_str(), static_cast<uid_t>(-1), *group)) || listen(listener_.get(), 64))
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

void control_socket::accept_some(bool& more)
{
    for (std::size_t i = 0; i < max_accepts_per_pass; i++) {
        unique_fd fd(accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
        if (!fd)
            return;
        control_peer peer;
        ucred cred{};
        socklen_t len = sizeof(cred);
        if (getsockopt(fd.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len))
            continue;
        peer.pid = cred.pid;
        peer.uid = cred.uid;
        int pidfd = -1;
        len = sizeof(pidfd);
        if (getsockopt(fd.get(), SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len) == 0)
            peer.pidfd = unique_fd(pidfd);
        else  // before 6.5: the process that has the pid now, a moment after connect()
            peer.pidfd = unique_fd(static_cast<int>(syscall(SYS_pidfd_open, cred.pid, 0)));
        if (connections_.size() >= max_connections) {
            spdlog::debug("control: pid {} uid {}: refused, {} connections open", peer.pid, peer.uid,
                          connections_.size());
            refuse(std::move(fd),
                   "error busy: " + std::to_string(max_connections) +
                       " connections are open to the control socket, the most it serves; try again later");
            continue;
        }
        std::optional<std::string> refusal;
        try {
            refusal = admit_(peer);
        } catch (const std::exception& e) {
            refusal = std::string("error ") + e.what();
        }
        if (refusal) {
            spdlog::debug("control: pid {} uid {}: {}", peer.pid, peer.uid, *refusal);
            refuse(std::move(fd), *refusal);
            continue;
        }
        connections_.push_back({std::move(fd), std::move(peer), {}, steady_clock::now(), false});
    }
    more = true;  // more may be waiting: the next pass takes them
}

bool control_socket::serve(connection& c, std::size_t& budget, bool& more)
{
    // One read a pass, and only when no complete line waits: a peer that writes faster than it is
    // served fills its own socket buffer, not this process's memory.
    if (c.pending.find('\n') == std::string::npos) {
        char buf[4096];
        ssize_t n = recv(c.fd.get(), buf, sizeof(buf), MSG_DONTWAIT);
        if (n == 0)
            return false;
        if (n < 0)
            return errno == EAGAIN || errno == EINTR;
        c.pending.append(buf, static_cast<std::size_t>(n));
    }
    for (std::size_t lines = 0; budget > 0 && lines < max_lines_per_connection; lines++, budget--) {
        std::size_t eol = c.pending.find('\n');
        if (eol == std::string::npos)
            break;
        std::string line = c.pending.substr(0, eol);
        c.pending.erase(0, eol + 1);
        if (!line.empty() && line.back() == '\r')
            line.pop_back();
        c.last_line = steady_clock::now();
        control_reply reply;
        try {
            reply = on_request_(c.peer, line);
        } catch (const std::exception& e) {
            reply = {std::string("error ") + e.what()};
        }
        spdlog::debug("control: pid {} uid {}: {} -> {}", c.peer.pid, c.peer.uid, line, reply.line);
        reply.line += '\n';
        // Replies are short and the peer reads them: one that does not is dropped.
        if (send(c.fd.get(), reply.line.data(), reply.line.size(), MSG_DONTWAIT | MSG_NOSIGNAL) !=
                static_cast<ssize_t>(reply.line.size()) ||
            reply.close)
            return false;
    }
    if (c.pending.find('\n') != std::string::npos) {
        more = true;
        return true;
    }
    if (c.pending.size() > max_line) {
        refuse(std::move(c.fd), "error a request line is at most " + std::to_string(max_line) + " bytes");
        return false;
    }
    return true;
}

bool control_socket::serve()
{
    bool more = false;
    accept_some(more);
    const auto now = steady_clock::now();
    std::size_t budget = max_lines_per_pass;
    const std::size_t n = connections_.size();
    for (std::size_t i = 0; i < n; i++) {
        connection& c = connections_[(next_ + i) % n];
        if (!serve(c, budget, more))
            c.closing = true;
        else if (now - c.last_line > idle_timeout) {
            refuse(std::move(c.fd), "error idle for " + std::to_string(idle_timeout.count()) +
                                        " s: closed (connect again for the next request)");
            c.closing = true;
        }
    }
    next_ = n ? (next_ + 1) % n : 0;
    std::erase_if(connections_, [](const connection& c) { return c.closing; });
    return more;
}

}  // namespace sio_steer
