// Maglev consistent hashing (Eisenbud et al., NSDI 2016): the lookup table behind the ring map.
// Every member gets an almost equal share of the table (within 0.1%), and a change of members moves
// little more than the entries that must move (about 0.5% of the table besides). Members are
// identified by a stable id (the PM2 instance), so a restarted worker gets back exactly its entries.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace sio_steer {

struct maglev_member {
    std::uint64_t id;    // stable identity: the PM2 instance number
    std::uint32_t slot;  // what its entries hold: the workers-map slot of its newest socket
};

// A table of `size` entries (size must be prime), each the slot of one member; every entry is
// SIO_STEER_SLOT_NONE when there are no members. The result depends only on the set of members
// (not on their order). Throws std::invalid_argument on a non-prime size or duplicate ids.
std::vector<std::uint32_t> maglev_table(std::span<const maglev_member> members, std::uint32_t size);

}  // namespace sio_steer
