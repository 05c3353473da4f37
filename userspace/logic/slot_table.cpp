#include "logic/slot_table.h"

#include <algorithm>
#include <map>
#include <cstring>
#include <unordered_map>

#include "logic/errors.h"

namespace sio_steer {

std::uint64_t member_id(std::uint32_t instance, pid_t pid)
{
    return instance != no_instance ? instance : (1ull << 32) | static_cast<std::uint32_t>(pid);
}

std::vector<slot> empty_slots()
{
    std::vector<slot> slots(SIO_STEER_MAX_SLOTS);
    for (auto& s : slots)
        s.successor = SIO_STEER_SLOT_NONE;
    return slots;
}

slot_plan plan_slots(const std::vector<slot>& current, const std::vector<live_socket>& live)
{
    slot_plan plan;
    plan.slots = current;
    plan.slots.resize(SIO_STEER_MAX_SLOTS);

    std::unordered_map<std::uint64_t, std::size_t> live_by_cookie;
    for (std::size_t i = 0; i < live.size(); i++)
        live_by_cookie.emplace(live[i].cookie, i);

    std::uint32_t generation = 0;
    std::vector<bool> placed(live.size(), false);
    for (std::uint32_t s = 0; s < plan.slots.size(); s++) {
        slot& rec = plan.slots[s];
        generation = std::max(generation, rec.generation);
        if (!rec.cookie)
            continue;
        if (auto it = live_by_cookie.find(rec.cookie); it != live_by_cookie.end()) {
            placed[it->second] = true;  // already in the map: re-inserting would be EBUSY
        } else {
            rec.cookie = 0;  // closed; the generation stays so its sessions still find the successor
            plan.removed.push_back(s);
        }
    }

    // New sockets take the free slot that was filled longest ago, so that a slot index (and the
    // successor its stale sessions rely on) is reused as late as possible.
    for (std::size_t i = 0; i < live.size(); i++) {
        if (placed[i])
            continue;
        std::optional<std::uint32_t> best;
        for (std::uint32_t s = 0; s < plan.slots.size(); s++)
            if (!plan.slots[s].cookie && (!best || plan.slots[s].generation < plan.slots[*best].generation))
                best = s;
        if (!best)
            throw steer_error(exit_code::not_steerable,
                              "more than " + std::to_string(SIO_STEER_MAX_SLOTS) + " listening sockets on the port",
                              "the workers map has one slot per listening socket", "run fewer workers on this port");
        plan.slots[*best] = slot{live[i].cookie, ++generation, live[i].instance.value_or(no_instance),
                                 SIO_STEER_SLOT_NONE, static_cast<std::uint32_t>(live[i].pid)};
        plan.inserts.emplace_back(*best, i);
    }

    // The newest live socket of every instance receives its ring entries and its predecessors' clients.
    std::map<std::uint64_t, std::uint32_t> newest;
    for (std::uint32_t s = 0; s < plan.slots.size(); s++) {
        const slot& rec = plan.slots[s];
        if (!rec.cookie)
            continue;
        auto [it, fresh] = newest.emplace(member_id(rec.instance, rec.pid), s);
        if (!fresh && plan.slots[it->second].generation < rec.generation)
            it->second = s;
    }
    for (auto [id, s] : newest)
        plan.ring_members.push_back({id, s});

    for (std::uint32_t s = 0; s < plan.slots.size(); s++) {
        slot& rec = plan.slots[s];
        std::uint32_t successor = SIO_STEER_SLOT_NONE;
        if (rec.generation) {
            auto it = newest.find(member_id(rec.instance, rec.pid));
            if (it != newest.end() && it->second != s)
                successor = it->second;
        }
        rec.successor = successor;
        if (s >= current.size() || std::memcmp(&rec, &current[s], sizeof(slot)) != 0)
            plan.changed.push_back(s);
    }
    return plan;
}

}  // namespace sio_steer
