// One request line of the control socket (daemon/control_socket.h), as a peer sends it: parsed
// here, with no state and no I/O, so that what any local user can send is unit-tested and fuzzed
// apart from what the controller then does with it (daemon/release.h).
#pragma once

#include <string>
#include <string_view>
#include <variant>

#include "bpf/sio_steer.h"

namespace sio_steer {

// `release ADDRESS`: the text as sent (echoed in replies) and the unmasked address it names.
struct release_request {
    std::string address;
    client_key key;
};

// A request, or the "error ..." reply line that refuses it. `line` is one line without its '\n'
// (and without a '\r' before it).
std::variant<release_request, std::string> parse_control_request(std::string_view line);

}  // namespace sio_steer
