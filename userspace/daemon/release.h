// Hand-over of one client from a stopping worker to the worker taking over from it.
//
// A worker that drains (docs/pm2.md) tells each of its clients to reconnect. Those reconnects must
// reach its successor, while its other clients, not told yet, must still reach it: so the worker
// releases its clients one at a time, over the controller's control socket (control_socket.h).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "daemon/control_socket.h"
#include "kernel/pinned_state.h"

namespace sio_steer {

// The one answer to a peer that is not a recorded worker of the port, whatever it asked: it says
// nothing about any client (the sessions are root's, pin folder mode 0700).
inline constexpr std::string_view control_refusal =
    "error refused: only a worker listening on this port may release clients, and only its own";

// The slots whose socket `peer` owns: the slot records the peer's pid, its socket is still in the
// workers map, the socket was created by the peer's uid (sock_diag), and the peer has not exited
// since it connected (its pidfd). A pid alone could be another process's by now. Empty: a stranger,
// who may not use the control socket at all (control_refusal).
std::vector<std::uint32_t> slots_of_peer(const pinned_state& state, std::uint16_t port, const control_peer& peer);

// Executes one request line from `peer` and returns the reply line. The peer is checked first,
// before the request is even parsed; a stranger gets control_refusal, and the connection closes.
//   release ADDRESS  ->  "ok ADDRESS slot N -> slot M"   the session now points at the successor
//                        "none ADDRESS: WHY"             nothing changed (not a client of the peer,
//                                                        no successor)
//                        "error WHY"                     a bad request
// catch_up: how to bring the slots up to date (a resync) when the peer's slot has no live successor
// yet; called at most once, before answering "none".
control_reply handle_control_request(const pinned_state& state, std::uint16_t port, const control_peer& peer,
                                     std::string_view line, const std::function<void()>& catch_up = {});

}  // namespace sio_steer
