// Wakes the controller when a socket on the port starts or stops listening, from the BPF
// listener watch (bpf/sio_steer_watch.bpf.c) through a ring buffer.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "logic/follow_status.h"
#include "logic/unique_fd.h"

struct bpf_link;
struct ring_buffer;
struct sio_steer_watch_bpf;

namespace sio_steer {

// What the controller learned from one batch of events.
struct listener_changes {
    int events = 0;           // how many (0: nothing happened on the port)
    std::vector<pid_t> pids;  // processes that started listening on it: their fd tables hold the new sockets
    bool stopped = false;     // a listener closed: sock_diag may list it until its close completes
};

class listener_watch {
public:
    // Attaches the first watch the kernel allows, in this order: fexit and tp_btf, cgroup sock_ops
    // and tp_btf (both through bpf() links: no tracefs, no perf events), then tracefs tracepoints. Filtered to `port` in
    // this process's network namespace. Throws steer_error(environment) saying why each was refused.
    explicit listener_watch(std::uint16_t port);
    ~listener_watch();
    listener_watch(const listener_watch&) = delete;
    listener_watch& operator=(const listener_watch&) = delete;

    // mode "events" and what carries them.
    const follow_status& status() const { return status_; }
    // An fd that becomes readable when events are waiting (for poll()).
    int fd() const;
    // Consumes the waiting events.
    listener_changes drain();

private:
    // Loads the programs named `came` and `went` and links them; a negative errno on failure.
    int attach(const char* came, const char* went, std::uint16_t port, std::uint32_t netns, std::uint64_t netns_cookie,
               bool sock_ops_knows_pid);
    void close();
    static int on_event(void* self, void* data, size_t size);

    sio_steer_watch_bpf* skel_ = nullptr;
    std::vector<bpf_link*> links_;
    ring_buffer* events_ = nullptr;
    follow_status status_;
    listener_changes pending_;
};

// The cgroup v2 hierarchy's root as this process sees it (cgroup2_mount_point() of its mountinfo:
// /sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid hosts), opened; the sock_ops watch attaches
// there and sees every process under it. Empty with errno set if there is none.
unique_fd cgroup2_root();

}  // namespace sio_steer
