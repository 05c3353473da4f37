// Finding the listening sockets on a port and the worker processes that own them.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "logic/unique_fd.h"

namespace sio_steer {

struct listener {
    std::uint64_t inode = 0;   // socket inode, as in /proc/PID/fd -> socket:[inode]
    std::uint64_t cookie = 0;  // SO_COOKIE, from sock_diag (idiag_cookie)
    int family = 0;            // AF_INET or AF_INET6
    std::string address;       // bound address as text: "0.0.0.0", "::", "127.0.0.1"
    std::uint16_t port = 0;
    std::uint32_t uid = 0;                  // socket owner uid
    pid_t pid = 0;                          // a process holding it (0 if none found, e.g. other netns)
    int fd = -1;                            // its fd number in that process
    std::string process;                    // /proc/PID/comm, e.g. "node" or "PM2 v7.0.4: God"
    std::optional<std::uint32_t> instance;  // PM2 NODE_APP_INSTANCE of the owner, if any
};

// TCP sockets in LISTEN state on `port` in this network namespace, IPv4 and IPv6, via
// NETLINK_SOCK_DIAG with a kernel-side source-port filter, each with its owning process found
// through /proc/*/fd. Sorted by (instance, pid, inode), listeners with no PM2 instance last.
// Throws steer_error on netlink failure.
std::vector<listener> find_listeners(std::uint16_t port);

// The steps of find_listeners, for a controller that remembers owners between resyncs:
// the listeners as sock_diag reports them, owner fields empty (no /proc);
std::vector<listener> list_listeners(std::uint16_t port);
// fills the owner of each listener with pid 0: first from the fd tables of `hints` (processes
// that just listened), then, unless `scan_all` is false, from every process's;
void find_owners(std::vector<listener>& listeners, const std::vector<pid_t>& hints = {}, bool scan_all = true);
// whether l.pid still holds l.inode at fd l.fd (one readlink: a remembered owner is checked, not trusted);
bool still_owns(const listener& l);
// and find_listeners' order.
void sort_listeners(std::vector<listener>& listeners);

// The parent of `pid` (/proc/PID/stat); nullopt if it is gone.
std::optional<pid_t> parent_of(pid_t pid);
// The children of these processes (/proc/PID/task/*/children), where a new worker is when nobody
// says which process listened: PM2's daemon forks every worker.
std::vector<pid_t> children_of(const std::set<pid_t>& parents);

// When `pid` started, in clock ticks after boot (/proc/PID/stat, field 22); nullopt if it is gone.
std::optional<std::uint64_t> process_start_ticks(pid_t pid);

// The owner's socket, duplicated into this process (pidfd_open + pidfd_getfd).
// Throws sys_error: EPERM when not permitted (exit code environment, names CAP_SYS_PTRACE);
// ESRCH or EBADF when the process or its fd is gone (a worker exiting); any other errno.
unique_fd duplicate_socket(pid_t pid, int fd);

}  // namespace sio_steer
