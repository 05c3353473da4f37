// The signals that end a following attach: SIGINT and SIGTERM (systemctl stop).
#pragma once

#include <signal.h>

namespace sio_steer {

// The follower reads them from a signalfd, so every thread blocks them: a thread that did not could
// take one, and its default action would kill the process mid-sync.
sigset_t stop_signal_set();

}  // namespace sio_steer
