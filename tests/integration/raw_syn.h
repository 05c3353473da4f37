// Spoofed SYNs from many source addresses: what a SYN flood sends. Raw IPv4 packets (IP_HDRINCL,
// sendmmsg) to 127.0.0.1, so run it in a private network namespace (loopback only). Shared by
// syn_flood_test.cpp and the SYN flood benchmark (tests/bench/bpf_end_to_end.cpp).
#pragma once

#include <chrono>
#include <cstdint>

namespace sio_steer::test {

struct flood_result {
    std::uint64_t sent = 0;
    std::uint32_t sources = 0;
    double seconds = 0;
};

// `sources` distinct spoofed addresses in 127.64.0.0/10 (source i is 127.64.0.0 + (first_source + i)
// * an odd constant mod 2^22: distinct for distinct i, scattered over the /10), each sending `times`
// SYNs to 127.0.0.1:port (a new source port each time, so that each reaches the listeners and the
// program, not a request socket of the previous one). The sources go in groups of 256, each group
// sending its SYNs `times` times in a row, as clients retrying would. Stops after `limit` whatever
// it has sent.
flood_result spoofed_syn_flood(std::uint16_t port, std::uint32_t sources, int times, std::chrono::milliseconds limit,
                               std::uint32_t first_source = 0);

}  // namespace sio_steer::test
