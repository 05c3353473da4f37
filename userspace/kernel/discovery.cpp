// Finding the listeners on a port (sock_diag), their owners (/proc/*/fd), their PM2 instance
// (/proc/PID/environ, read by pm2_env.h) and taking a reference to them (pidfd_getfd).
#include "kernel/discovery.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <libmnl/libmnl.h>
#include <linux/inet_diag.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <set>
#include <sstream>
#include <tuple>
#include <unordered_map>
#include <unordered_set>

#include "logic/errors.h"
#include "logic/pm2_env.h"

namespace sio_steer {
namespace {

// ---------------------------------------------------------------------------------------------
// sock_diag

struct mnl_socket_closer {
    void operator()(mnl_socket* s) const { mnl_socket_close(s); }
};
using mnl_socket_ptr = std::unique_ptr<mnl_socket, mnl_socket_closer>;

// The kernel-side filter "source port == port". A bytecode program is a list of ops; after each
// op the interpreter jumps forward by `yes` or `no` bytes and accepts the socket if it lands
// exactly on the end. S_EQ takes its operand from a second op's `no` field (host byte order).
// So: match -> jump 8 (end, accept); no match -> jump 12 (past the end, reject).
struct port_filter {
    inet_diag_bc_op test;
    inet_diag_bc_op operand;
};

port_filter source_port_filter(std::uint16_t port)
{
    port_filter f{};
    f.test.code = INET_DIAG_BC_S_EQ;
    f.test.yes = sizeof(port_filter);
    f.test.no = sizeof(port_filter) + 4;
    f.operand.no = port;
    return f;
}

std::string address_text(int family, const __be32* addr)
{
    char text[INET6_ADDRSTRLEN] = {};
    if (!inet_ntop(family, addr, text, sizeof(text)))
        return {};
    return text;
}

// One dump message -> one listener (owner fields left for later).
int on_diag_message(const nlmsghdr* nlh, void* data)
{
    auto* out = static_cast<std::vector<listener>*>(data);
    if (mnl_nlmsg_get_payload_len(nlh) < sizeof(inet_diag_msg))
        return MNL_CB_ERROR;
    const auto* msg = static_cast<const inet_diag_msg*>(mnl_nlmsg_get_payload(nlh));

    listener l;
    l.inode = msg->idiag_inode;
    l.cookie = msg->id.idiag_cookie[0] | static_cast<std::uint64_t>(msg->id.idiag_cookie[1]) << 32;
    l.family = msg->idiag_family;
    l.address = address_text(msg->idiag_family, msg->id.idiag_src);
    l.port = ntohs(msg->id.idiag_sport);
    l.uid = msg->idiag_uid;
    out->push_back(std::move(l));
    return MNL_CB_OK;
}

// One SOCK_DIAG_BY_FAMILY dump for one address family. A dual-stack "::" socket is AF_INET6
// and appears only in the AF_INET6 dump, so the two dumps never overlap.
void dump_listeners(mnl_socket* nl, int family, std::uint16_t port, std::vector<listener>& out)
{
    // libmnl's MNL_SOCKET_DUMP_SIZE (32 KiB, newer libmnl only): room for a whole dump batch.
    std::vector<char> buf(32768);
    nlmsghdr* nlh = mnl_nlmsg_put_header(buf.data());
    nlh->nlmsg_type = SOCK_DIAG_BY_FAMILY;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    const unsigned seq = static_cast<unsigned>(time(nullptr)) + family;
    nlh->nlmsg_seq = seq;

    auto* req = static_cast<inet_diag_req_v2*>(mnl_nlmsg_put_extra_header(nlh, sizeof(inet_diag_req_v2)));
    req->sdiag_family = family;
    req->sdiag_protocol = IPPROTO_TCP;
    req->idiag_states = 1U << TCP_LISTEN;
    const port_filter filter = source_port_filter(port);
    mnl_attr_put(nlh, INET_DIAG_REQ_BYTECODE, sizeof(filter), &filter);

    if (mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) < 0)
        throw_system_error("sock_diag: sending the dump request", errno);

    const unsigned portid = mnl_socket_get_portid(nl);
    for (;;) {
        ssize_t n = mnl_socket_recvfrom(nl, buf.data(), buf.size());
        if (n < 0)
            throw_system_error("sock_diag: reading the dump", errno);
        int ret = mnl_cb_run(buf.data(), n, seq, portid, on_diag_message, &out);
        if (ret == MNL_CB_STOP)
            return;  // NLMSG_DONE
        if (ret == MNL_CB_ERROR)
            throw_system_error("sock_diag: dump of listening TCP sockets", errno ? errno : EPROTO);
    }
}

// ---------------------------------------------------------------------------------------------
// /proc

struct dir_closer {
    void operator()(DIR* d) const { closedir(d); }
};
using dir_ptr = std::unique_ptr<DIR, dir_closer>;

std::optional<std::uint64_t> parse_uint(std::string_view s)
{
    std::uint64_t value = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
    if (s.empty() || ec != std::errc{} || end != s.data() + s.size())
        return std::nullopt;
    return value;
}

// The whole of a (small) /proc file, or nullopt if the process is gone or unreadable.
std::optional<std::string> read_proc_file(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    if (!in)
        return std::nullopt;
    std::string content{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    if (in.bad())
        return std::nullopt;
    return content;
}

// "socket:[12345]" -> 12345
std::optional<std::uint64_t> socket_inode(std::string_view link)
{
    constexpr std::string_view prefix = "socket:[";
    if (!link.starts_with(prefix) || !link.ends_with(']'))
        return std::nullopt;
    return parse_uint(link.substr(prefix.size(), link.size() - prefix.size() - 1));
}

struct owner {
    pid_t pid;
    int fd;
};

// Adds to `owners` every fd of process `pid` that holds one of `wanted`. A process that exits
// meanwhile, or whose fd table we may not read, is skipped: it cannot be steered anyway.
void scan_fds(pid_t pid, const std::unordered_set<std::uint64_t>& wanted,
              std::unordered_map<std::uint64_t, std::vector<owner>>& owners)
{
    const std::string fd_dir = "/proc/" + std::to_string(pid) + "/fd";
    dir_ptr fds(opendir(fd_dir.c_str()));
    if (!fds)
        return;
    while (dirent* fe = readdir(fds.get())) {
        auto fd = parse_uint(fe->d_name);
        if (!fd)
            continue;
        char link[64];
        ssize_t n = readlinkat(dirfd(fds.get()), fe->d_name, link, sizeof(link));
        if (n <= 0 || static_cast<size_t>(n) >= sizeof(link))
            continue;  // closed meanwhile, or far too long to be a socket link
        auto inode = socket_inode(std::string_view(link, n));
        if (inode && wanted.contains(*inode))
            owners[*inode].push_back({pid, static_cast<int>(*fd)});
    }
}

// Every (pid, fd) holding one of `wanted`, in /proc order: a walk of every process's fd table,
// the expensive step of discovery (milliseconds on a busy host), so done only for sockets whose
// owner is not known otherwise.
std::unordered_map<std::uint64_t, std::vector<owner>> scan_all_fds(const std::unordered_set<std::uint64_t>& wanted)
{
    std::unordered_map<std::uint64_t, std::vector<owner>> owners;
    dir_ptr proc(opendir("/proc"));
    if (!proc)
        throw_system_error("opendir /proc", errno);
    while (dirent* pe = readdir(proc.get()))
        if (auto pid = parse_uint(pe->d_name))
            scan_fds(static_cast<pid_t>(*pid), wanted, owners);
    return owners;
}

// The fields of /proc/PID/stat after "pid (comm)", from field 3 (state) on: comm may hold spaces
// and parentheses, so they start after the last ')'.
std::optional<std::istringstream> stat_fields(pid_t pid)
{
    auto stat = read_proc_file("/proc/" + std::to_string(pid) + "/stat");
    if (!stat)
        return std::nullopt;
    auto close = stat->rfind(')');
    if (close == std::string::npos)
        return std::nullopt;
    return std::istringstream(stat->substr(close + 1));
}

// Usually one process holds a listener. When several do, the interesting one is the worker:
// not this controller (which holds duplicates after duplicate_socket), and not a parent that
// forked the worker and kept its copy. Otherwise the first found.
owner pick_owner(const std::vector<owner>& candidates)
{
    std::vector<owner> others;
    const pid_t self = getpid();
    std::copy_if(candidates.begin(), candidates.end(), std::back_inserter(others),
                 [&](const owner& o) { return o.pid != self; });
    if (others.empty())
        return candidates.front();
    if (others.size() == 1)
        return others.front();

    std::unordered_set<pid_t> parents;
    for (const owner& o : others)
        if (auto ppid = parent_of(o.pid))
            parents.insert(*ppid);
    for (const owner& o : others)
        if (!parents.contains(o.pid))
            return o;
    return others.front();
}

std::string process_name(pid_t pid)
{
    auto comm = read_proc_file("/proc/" + std::to_string(pid) + "/comm");
    if (!comm)
        return {};
    while (!comm->empty() && (comm->back() == '\n' || comm->back() == ' '))
        comm->pop_back();
    return *comm;
}

void fill_owner(listener& l, const owner& o)
{
    l.pid = o.pid;
    l.fd = o.fd;
    l.process = process_name(o.pid);
    if (auto environ = read_proc_file("/proc/" + std::to_string(o.pid) + "/environ"))
        l.instance = pm2_instance_from_environ(*environ);
}

}  // namespace

// ---------------------------------------------------------------------------------------------

std::optional<std::uint64_t> process_start_ticks(pid_t pid)
{
    std::optional<std::istringstream> rest = stat_fields(pid);
    if (!rest)
        return std::nullopt;
    std::string field;
    for (int i = 3; i < 22; i++)  // state (3) ... itrealvalue (21)
        if (!(*rest >> field))
            return std::nullopt;
    std::uint64_t ticks = 0;
    if (!(*rest >> ticks))
        return std::nullopt;
    return ticks;
}

std::optional<pid_t> parent_of(pid_t pid)
{
    std::optional<std::istringstream> rest = stat_fields(pid);
    char state = 0;
    pid_t ppid = 0;
    if (!rest || !(*rest >> state >> ppid))
        return std::nullopt;
    return ppid;
}

std::vector<pid_t> children_of(const std::set<pid_t>& parents)
{
    std::vector<pid_t> children;
    for (pid_t parent : parents) {
        const std::string tasks = "/proc/" + std::to_string(parent) + "/task";
        dir_ptr dir(opendir(tasks.c_str()));
        if (!dir)
            continue;  // gone
        while (dirent* te = readdir(dir.get())) {
            if (!parse_uint(te->d_name))
                continue;
            std::istringstream list(read_proc_file(tasks + "/" + te->d_name + "/children").value_or(""));
            for (pid_t child; list >> child;)
                children.push_back(child);
        }
    }
    return children;
}

std::vector<listener> list_listeners(std::uint16_t port)
{
    mnl_socket_ptr nl(mnl_socket_open2(NETLINK_SOCK_DIAG, SOCK_CLOEXEC));
    if (!nl)
        throw_system_error("socket(NETLINK_SOCK_DIAG)", errno);
    if (mnl_socket_bind(nl.get(), 0, MNL_SOCKET_AUTOPID) < 0)
        throw_system_error("bind(NETLINK_SOCK_DIAG)", errno);

    std::vector<listener> listeners;
    dump_listeners(nl.get(), AF_INET, port, listeners);
    dump_listeners(nl.get(), AF_INET6, port, listeners);
    return listeners;
}

void find_owners(std::vector<listener>& listeners, const std::vector<pid_t>& hints, bool scan_all)
{
    std::unordered_set<std::uint64_t> wanted;
    for (const listener& l : listeners)
        if (!l.pid)
            wanted.insert(l.inode);
    if (wanted.empty())
        return;
    // The processes that just listened (from the listener watch) hold the new sockets: a look at
    // their fd tables spares the walk of every process's.
    std::unordered_map<std::uint64_t, std::vector<owner>> owners;
    for (pid_t pid : hints)
        scan_fds(pid, wanted, owners);
    bool all_found = std::all_of(wanted.begin(), wanted.end(), [&](std::uint64_t i) { return owners.contains(i); });
    if (!all_found && scan_all)
        owners = scan_all_fds(wanted);
    for (listener& l : listeners)
        if (auto it = owners.find(l.inode); !l.pid && it != owners.end())
            fill_owner(l, pick_owner(it->second));
}

bool still_owns(const listener& l)
{
    if (!l.pid || l.fd < 0)
        return false;
    char link[64];
    const std::string path = "/proc/" + std::to_string(l.pid) + "/fd/" + std::to_string(l.fd);
    ssize_t n = readlink(path.c_str(), link, sizeof(link));
    return n > 0 && static_cast<size_t>(n) < sizeof(link) && socket_inode(std::string_view(link, n)) == l.inode;
}

void sort_listeners(std::vector<listener>& listeners)
{
    // Workers in instance order first, then listeners with no PM2 instance.
    auto key = [](const listener& l) {
        return std::tuple(!l.instance.has_value(), l.instance.value_or(0), l.pid, l.inode);
    };
    std::sort(listeners.begin(), listeners.end(),
              [&](const listener& a, const listener& b) { return key(a) < key(b); });
}

std::vector<listener> find_listeners(std::uint16_t port)
{
    std::vector<listener> listeners = list_listeners(port);
    find_owners(listeners);
    sort_listeners(listeners);
    return listeners;
}

unique_fd duplicate_socket(pid_t pid, int fd)
{
    const std::string what = "taking socket fd " + std::to_string(fd) + " of process " + std::to_string(pid);
    auto fail = [&](const char* call, int err) -> unique_fd {
        if (err == EPERM)
            throw sys_error(what + ": " + call, err, exit_code::environment,
                            "the controller needs CAP_SYS_PTRACE to take a reference to another "
                            "process's socket (pidfd_getfd)",
                            "run sio-steer as root, or grant it CAP_SYS_PTRACE");
        throw_system_error(what + ": " + call, err);
    };

    unique_fd pidfd(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
    if (!pidfd)
        return fail("pidfd_open", errno);
    // The new fd is O_CLOEXEC, so it does not leak into anything the controller runs.
    unique_fd sock(static_cast<int>(syscall(SYS_pidfd_getfd, pidfd.get(), fd, 0)));
    if (!sock)
        return fail("pidfd_getfd", errno);
    return sock;
}

}  // namespace sio_steer
