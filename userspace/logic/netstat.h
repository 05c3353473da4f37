// /proc/net/netstat, parsed: the kernel's own counters of a network namespace, in pairs of lines
// "TcpExt: NAME NAME ..." then "TcpExt: VALUE VALUE ...". sio-steer reads the two that say what
// became of the connections queued on a closing listener: moved to another one, or reset.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace sio_steer {

// The value of `name` in `group` ("TcpExt", "IpExt", ...); nullopt when the text does not have it,
// or a header line and its value line disagree on the number of fields, or the value is not a
// number that fits 64 bits.
std::optional<std::uint64_t> netstat_counter(std::string_view netstat, std::string_view group, std::string_view name);

// TcpExt's TCPMigrateReqSuccess and TCPMigrateReqFailure (Linux >= 5.14), counted by the kernel
// for every request socket a closing listener hands over (net.ipv4.tcp_migrate_req or a
// select-or-migrate program): success, another listener took it; failure, it was reset.
struct migrate_req_counters {
    std::uint64_t success = 0;
    std::uint64_t failure = 0;
};

// nullopt unless both counters are there (a kernel before 5.14 has neither).
std::optional<migrate_req_counters> migrate_req_from_netstat(std::string_view netstat);

}  // namespace sio_steer
