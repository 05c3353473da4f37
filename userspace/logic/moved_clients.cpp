#include "logic/moved_clients.h"

namespace sio_steer {

std::optional<std::uint32_t> recorded_destination(const session& s, const std::vector<slot>& slots,
                                                  std::uint64_t now_ns, std::uint64_t ttl_ns)
{
    // A record newer than `now_ns` is fresh: the caller took `now_ns` before its walk, and the
    // program refreshes records meanwhile.
    if (now_ns > s.last_seen_ns && now_ns - s.last_seen_ns > ttl_ns)
        return std::nullopt;
    if (s.slot >= slots.size())
        return std::nullopt;
    const slot& recorded = slots[s.slot];
    if (recorded.generation == s.generation && recorded.cookie)
        return s.slot;
    // As the program: the successor of the slot as it is now, whatever generation it holds.
    if (recorded.successor < slots.size() && slots[recorded.successor].cookie)
        return recorded.successor;
    return std::nullopt;
}

bool must_keep_apart(const session& s, const std::vector<slot>& slots, std::uint32_t ring_choice, std::uint64_t now_ns,
                     std::uint64_t ttl_ns)
{
    std::optional<std::uint32_t> to = recorded_destination(s, slots, now_ns, ttl_ns);
    return to && *to != ring_choice;
}

}  // namespace sio_steer
