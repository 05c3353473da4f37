// Which recorded clients the moved map must hold (docs/architecture.md, "Maps"): those whose
// worker would change if their record were lost. The sessions map is an LRU, and a flood of new
// sources (spoofed SYNs) evicts its entries; a client whom the ring would send where its record
// sends it loses nothing then, any other client loses its Socket.IO session. Pure: the caller
// reads the maps (userspace/kernel/controller.cpp, daemon/release.cpp).
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "bpf/sio_steer.h"

namespace sio_steer {

// Where the program sends a client with record `s` at `now_ns` while the record binds, as
// bpf/sio_steer.bpf.c decides it: its slot if that slot still holds the socket it was recorded on
// (same generation, live), else that slot's live successor; nullopt when the record no longer binds
// (idle past `ttl_ns`, or its socket closed with no live successor): the ring places it then, as
// any new client. A slot is live when its record holds a socket (`cookie`).
std::optional<std::uint32_t> recorded_destination(const session& s, const std::vector<slot>& slots,
                                                  std::uint64_t now_ns, std::uint64_t ttl_ns);

// Whether the client must be kept apart from the LRU: its record binds and sends it to another
// slot than `ring_choice`, the ring's first choice for its key.
bool must_keep_apart(const session& s, const std::vector<slot>& slots, std::uint32_t ring_choice, std::uint64_t now_ns,
                     std::uint64_t ttl_ns);

}  // namespace sio_steer
