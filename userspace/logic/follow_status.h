// How a following `attach` learns that listeners came or went, for status, doctor and /metrics.
#pragma once

#include <string>

namespace sio_steer {

struct follow_status {
    // "events": a BPF watch wakes the controller when a listener on the port starts or stops;
    // "polling": no watch could be attached, so the port's listeners are listed every 100 ms.
    std::string mode;
    // With events, what carries them (e.g. "fexit/inet_listen and tp_btf/inet_sock_set_state");
    // with polling, why each watch was refused, and what would make events work.
    std::string reason;
    // Polling because it was asked for (--follow polling), not because the kernel refused every
    // watch: /metrics labels it, so that an alert can leave a chosen polling alone.
    bool asked = false;
};

}  // namespace sio_steer
