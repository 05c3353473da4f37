#include "listener_watch.h"

#include <bpf/libbpf.h>

#include <cstring>

#include "errors.h"
#include "sio_steer_watch.skel.h"

namespace sio_steer {

listener_watch::listener_watch(std::uint16_t port)
{
    skel_ = sio_steer_watch_bpf__open();
    if (!skel_)
        throw steer_error(exit_code::environment, "cannot open the listener watch");
    skel_->rodata->watch_port = port;
    int err = sio_steer_watch_bpf__load(skel_);
    if (!err)
        err = sio_steer_watch_bpf__attach(skel_);
    if (!err) {
        events_ = ring_buffer__new(
            bpf_map__fd(skel_->maps.listener_events),
            [](void* self, void*, size_t) {
                static_cast<listener_watch*>(self)->pending_++;
                return 0;
            },
            this, nullptr);
        err = events_ ? 0 : -errno;
    }
    if (err) {
        sio_steer_watch_bpf__destroy(skel_);
        throw steer_error(exit_code::environment,
                          std::string("cannot watch the listen and sock state tracepoints: ") + std::strerror(-err));
    }
}

listener_watch::~listener_watch()
{
    ring_buffer__free(events_);
    sio_steer_watch_bpf__destroy(skel_);
}

int listener_watch::fd() const { return ring_buffer__epoll_fd(events_); }

int listener_watch::drain()
{
    pending_ = 0;
    ring_buffer__consume(events_);
    return pending_;
}

}  // namespace sio_steer
