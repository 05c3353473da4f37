#include "kernel/listener_watch.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "bpf/sio_steer_watch.h"
#include "bpf/sio_steer_watch.skel.h"
#include "kernel/libbpf_log.h"
#include "logic/errors.h"
#include "logic/mountinfo.h"
#include "logic/small_file.h"
#include "logic/unique_fd.h"

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif

namespace sio_steer {

namespace {

// One way of attaching the watch: the two programs it loads (bpf/sio_steer_watch.bpf.c) and
// what to call it in status and doctor.
struct watch_kind {
    const char* name;
    const char* programs[2];  // a listener came, a listener went
};

constexpr watch_kind kinds[] = {
    {"fexit/inet_listen and tp_btf/inet_sock_set_state (BPF links: no tracefs, no perf events)",
     {"listen_started", "listener_closed"}},
    {"cgroup sock_ops on the cgroup v2 root and tp_btf/inet_sock_set_state (BPF links: no tracefs, no perf events)",
     {"listen_started_sock_ops", "listener_closed"}},
    {"tracepoints syscalls/sys_exit_listen and sock/inet_sock_set_state (tracefs and perf events)",
     {"any_listen", "listener_closed_tp"}},
};

std::uint32_t netns_inode()
{
    struct stat st {};
    if (stat("/proc/self/ns/net", &st))
        throw_system_error("cannot read this process's network namespace (/proc/self/ns/net)", errno);
    return static_cast<std::uint32_t>(st.st_ino);
}

std::uint64_t netns_cookie()
{
    unique_fd s(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    std::uint64_t cookie = 0;
    socklen_t len = sizeof(cookie);
    if (!s || getsockopt(s.get(), SOL_SOCKET, SO_NETNS_COOKIE, &cookie, &len))
        return 0;  // before Linux 5.14: the sock_ops watch then matches nothing and is not used
    return cookie;
}

}  // namespace

unique_fd cgroup2_root()
{
    std::optional<std::string> text = read_small_file("/proc/self/mountinfo", 1 << 20);
    std::optional<std::string> point = cgroup2_mount_point(text.value_or(""));
    if (!point) {
        errno = ENOENT;
        return unique_fd();
    }
    return unique_fd(open(point->c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
}

listener_watch::listener_watch(std::uint16_t port)
{
    const std::uint32_t netns = netns_inode();
    const std::uint64_t netns_ck = netns_cookie();
    const bool sock_ops_pid =
        libbpf_probe_bpf_helper(BPF_PROG_TYPE_SOCK_OPS, BPF_FUNC_get_current_pid_tgid, nullptr) == 1;
    std::string refused;
    for (const watch_kind& kind : kinds) {
        // libbpf explains a refusal in its log: keep its first warning for the reason shown.
        libbpf_log_capture capture;
        int err = attach(kind.programs[0], kind.programs[1], port, netns, netns_ck, sock_ops_pid);
        if (!err) {
            status_ = {"events", kind.name};
            return;
        }
        close();
        std::string name = kind.name;
        refused += (refused.empty() ? "" : "; ") + name.substr(0, name.find(" (")) + ": " + std::strerror(-err) +
                   capture.last_error();
    }
    throw steer_error(exit_code::environment, "no listener watch could be attached (" + refused + ")",
                      "the watch needs kernel BTF (/sys/kernel/btf/vmlinux) with BPF trampolines or a cgroup v2 "
                      "mount, or else tracefs mounted and perf events allowed",
                      "use a kernel with CONFIG_DEBUG_INFO_BTF (Debian's since 11) and mount cgroup2 "
                      "(systemd does), or mount tracefs (mount -t tracefs nodev /sys/kernel/tracing)");
}

int listener_watch::attach(const char* came, const char* went, std::uint16_t port, std::uint32_t netns,
                           std::uint64_t netns_ck, bool sock_ops_pid)
{
    skel_ = sio_steer_watch_bpf__open();
    if (!skel_)
        return -errno;
    skel_->rodata->watch_port = port;
    skel_->rodata->watch_netns = netns;
    skel_->rodata->watch_netns_cookie = netns_ck;
    skel_->rodata->sock_ops_knows_pid = sock_ops_pid;
    bpf_program* p = nullptr;
    bpf_object__for_each_program(p, skel_->obj)
    {
        std::string_view name = bpf_program__name(p);
        bpf_program__set_autoload(p, name == came || name == went);
    }
    if (int err = sio_steer_watch_bpf__load(skel_))
        return err;
    bpf_object__for_each_program(p, skel_->obj)
    {
        if (!bpf_program__autoload(p))
            continue;
        bpf_link* link = nullptr;
        if (bpf_program__type(p) == BPF_PROG_TYPE_SOCK_OPS) {
            unique_fd cgroup = cgroup2_root();
            if (!cgroup)
                return -errno;
            link = bpf_program__attach_cgroup(p, cgroup.get());
        } else {
            link = bpf_program__attach(p);
        }
        if (!link)
            return -errno;
        links_.push_back(link);
    }
    events_ = ring_buffer__new(bpf_map__fd(skel_->maps.listener_events), on_event, this, nullptr);
    return events_ ? 0 : -errno;
}

void listener_watch::close()
{
    ring_buffer__free(events_);
    events_ = nullptr;
    for (bpf_link* link : links_)
        bpf_link__destroy(link);
    links_.clear();
    sio_steer_watch_bpf__destroy(skel_);
    skel_ = nullptr;
}

int listener_watch::on_event(void* self, void* data, size_t size)
{
    auto* watch = static_cast<listener_watch*>(self);
    watch->pending_.events++;
    if (size >= sizeof(listener_event)) {
        const auto* ev = static_cast<const listener_event*>(data);
        auto& pids = watch->pending_.pids;
        watch->pending_.stopped = watch->pending_.stopped || ev->change == LISTENER_STOPPED;
        if (ev->change != LISTENER_STOPPED && ev->pid && std::find(pids.begin(), pids.end(), ev->pid) == pids.end())
            pids.push_back(static_cast<pid_t>(ev->pid));
    }
    return 0;
}

listener_watch::~listener_watch() { close(); }

int listener_watch::fd() const { return ring_buffer__epoll_fd(events_); }

listener_changes listener_watch::drain()
{
    pending_ = {};
    ring_buffer__consume(events_);
    return std::move(pending_);
}

}  // namespace sio_steer
