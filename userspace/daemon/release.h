// Hand-over of one client from a stopping worker to the worker taking over from it.
//
// A worker that drains (docs/pm2.md) tells each of its clients to reconnect. Those reconnects must
// reach its successor, while its other clients, not told yet, must still reach it: so the worker
// releases its clients one at a time, over the controller's control socket (control_socket.h).
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>

#include "pinned_state.h"

namespace sio_steer {

// Executes one request line from the worker `peer` and returns the reply line:
//   release ADDRESS  ->  "ok ADDRESS slot N -> slot M"   the session now points at the successor
//                        "none ADDRESS: WHY"             nothing changed (no session, no successor)
//                        "error WHY"                     refused (not the peer's client, bad request)
// A worker may release only clients recorded on a socket it owns.
std::string handle_control_request(const pinned_state& state, pid_t peer, std::string_view line);

}  // namespace sio_steer
