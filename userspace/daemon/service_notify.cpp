#include "daemon/service_notify.h"

#include <systemd/sd-daemon.h>

namespace sio_steer {

namespace {

void send(const std::string& message)
{
    // A failure to notify must not stop steering: systemd reports a unit that never got READY.
    (void)sd_notify(0, message.c_str());
}

}  // namespace

void notify_ready(const std::string& status) { send("READY=1\nSTATUS=" + status); }

void notify_status(const std::string& status) { send("STATUS=" + status); }

void notify_watchdog() { send("WATCHDOG=1"); }

void notify_stopping() { send("STOPPING=1\nSTATUS=stopping; steering stays attached for the next start to adopt"); }

}  // namespace sio_steer
