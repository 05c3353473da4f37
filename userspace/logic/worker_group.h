// Which listeners of a port belong to the reuseport group the controller steers. Any local user
// may listen on the port too: on another address of it, or on the group's own address once every
// worker is gone. The group is therefore recorded at the first attach (pinned_state.h, the
// `group` pin) as its bound address and its workers' uids, and nothing else is ever adopted.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace sio_steer {

struct worker_group {
    int family = 0;                   // AF_INET or AF_INET6
    std::string address;              // the bound address as sock_diag gives it: "::", "127.0.0.1"
    std::vector<std::uint32_t> uids;  // the workers' uids; empty: any uid (--worker-uid any)
    bool operator==(const worker_group&) const = default;
};

// A listener as far as group membership goes.
struct bound_listener {
    int family = 0;
    std::string address;
    std::uint32_t uid = 0;
};

// "127.0.0.1:5001" or "[::]:5001".
std::string address_text(int family, const std::string& address, std::uint16_t port);
// "[::]:5001 of uid 1000", "... of uids 1000, 1001", "... of any uid".
std::string group_text(const worker_group& group, std::uint16_t port);

bool belongs(const worker_group& group, const bound_listener& l);

// The group to record at the first attach: the one (family, address) the listeners share, after
// leaving out those of other uids than `uids` (--worker-uid; nullopt: not given, then the group's
// own listeners' uids are recorded). Throws steer_error: no_listeners when none is left,
// not_steerable when several addresses are.
worker_group first_group(const std::vector<bound_listener>& listeners,
                         const std::optional<std::vector<std::uint32_t>>& uids, std::uint16_t port);

// The warning logged once per listener left out, also shown by `status` and `doctor`.
std::string foreign_listener_text(const worker_group& group, const bound_listener& l, std::uint16_t port);

// --worker-uid: "1000", "1000,1001", a user name ("pm2"), or "any" (no uid check: empty).
// Throws steer_error(usage) for anything else, an unknown user, or more than `max_uids` uids.
std::vector<std::uint32_t> parse_worker_uids(const std::string& text, std::size_t max_uids);

}  // namespace sio_steer
