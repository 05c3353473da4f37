// Wakes the controller when a socket on the port starts or stops listening, from the
// syscalls:sys_exit_listen and sock:inet_sock_set_state tracepoints (bpf/sio_steer_watch.bpf.c),
// through a BPF ring buffer.
#pragma once

#include <cstdint>
#include <memory>

struct ring_buffer;
struct sio_steer_watch_bpf;

namespace sio_steer {

class listener_watch {
public:
    // Loads and attaches the watch for `port`. Throws steer_error if the kernel refuses it; the
    // controller then falls back to polling.
    explicit listener_watch(std::uint16_t port);
    ~listener_watch();
    listener_watch(const listener_watch&) = delete;
    listener_watch& operator=(const listener_watch&) = delete;

    // An fd that becomes readable when events are waiting (for poll()).
    int fd() const;
    // Consumes the waiting events; returns how many there were.
    int drain();

private:
    sio_steer_watch_bpf* skel_ = nullptr;
    ring_buffer* events_ = nullptr;
    int pending_ = 0;
};

}  // namespace sio_steer
