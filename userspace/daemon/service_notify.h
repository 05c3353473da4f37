// Tells systemd how `sio-steer attach` is doing (Type=notify in packaging/sio-steer@.service).
// Every call is a no-op when systemd did not start the process (no $NOTIFY_SOCKET).
#pragma once

#include <string>

namespace sio_steer {

// READY=1 with a STATUS= line: the first sync is done, steering is attached and in sync.
void notify_ready(const std::string& status);

// A new STATUS= line (shown by `systemctl status`), e.g. after a worker came or went.
void notify_status(const std::string& status);

// WATCHDOG=1: the follow loop is alive (only matters if the unit sets WatchdogSec=).
void notify_watchdog();

// STOPPING=1: exiting; steering stays attached for the next start to adopt.
void notify_stopping();

}  // namespace sio_steer
