// Is a proxy hiding the clients? The program steers by the peer address, so behind a proxy that
// connects from one address (nginx on this host without `sio-steer nginx-conf`, a load balancer)
// every client lands on one worker. `status` and `doctor` show the warning (report.h samples the maps).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "bpf/sio_steer.h"

namespace sio_steer {

// What the check looks at, read from the pinned maps (counters count since the maps were created).
struct proxy_sample {
    bool address_keys = true;        // key mode "address" (with "address,port" nothing is recorded)
    std::uint64_t connections = 0;   // stats.selections summed over the slots
    std::uint64_t new_sessions = 0;  // clients the ring placed (first connection, or after the TTL)
    std::vector<client_key> recent;  // keys of the sessions seen within the session TTL
};

// Thresholds: enough traffic to judge, few addresses, and almost no new client ever.
constexpr std::uint64_t proxy_min_connections = 200;
constexpr std::size_t proxy_max_addresses = 3;
constexpr std::uint64_t proxy_max_new_sessions = 10;  // or 0.1% of the connections, if more

// A warning when the workers took many connections (>= proxy_min_connections) but every recent
// session belongs to at most proxy_max_addresses client keys and the ring placed almost no client
// (new_sessions <= max(proxy_max_new_sessions, connections / 1000)): what one proxy address in
// front looks like. Nullopt otherwise. The text names the addresses and points to `nginx-conf`.
std::optional<std::string> proxy_warning(const proxy_sample& sample, const config& c);

}  // namespace sio_steer
