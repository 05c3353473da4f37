#include "daemon/release.h"

#include <algorithm>
#include <functional>

#include "kernel/discovery.h"
#include "logic/client_key.h"
#include "logic/control_request.h"

namespace sio_steer {

namespace {

std::string release(const pinned_state& state, const std::vector<std::uint32_t>& mine, pid_t pid,
                    const release_request& request, const std::function<void()>& catch_up)
{
    const std::string& address = request.address;
    const config c = state.read_config();
    if (!SIO_STEER_KEY_RECORDS(c.key_mode))
        return "error sessions are per connection (--key address,port): there is no client to release";
    const client_key key = key_for(request.key, c);
    // Two looks at most: PM2 stops a worker once its replacement listens, which the controller may
    // not have seen yet (an event still queued, or the next poll); the second follows a resync.
    for (bool first_look = true;; first_look = false) {
        std::optional<session> s = state.find_session(key);
        const std::vector<slot> slots = state.read_slots();
        // No session, a stale one, or another worker's client: one answer, the peer learns nothing
        // about clients that are not its own.
        if (!s || std::find(mine.begin(), mine.end(), s->slot) == mine.end() || s->slot >= slots.size() ||
            slots[s->slot].generation != s->generation)
            return "none " + address + ": not a recorded client of pid " + std::to_string(pid);
        const std::uint32_t to = slots[s->slot].successor;
        if (to != SIO_STEER_SLOT_NONE && to < slots.size() && slots[to].cookie != 0 &&
            state.worker_cookie(to) == slots[to].cookie) {
            // Where the program would record it: in moved if the ring sends the key elsewhere.
            const bool off_ring = state.ring_at(ring_bucket(key, c)) != to;
            state.record_client(key, session{to, slots[to].generation, session_clock_ns()}, off_ring);
            return "ok " + address + " slot " + std::to_string(s->slot) + " -> slot " + std::to_string(to);
        }
        if (!first_look || !catch_up)
            return "none " + address + ": slot " + std::to_string(s->slot) +
                   " has no live successor (no replacement listens yet); its clients move when it closes";
        catch_up();
    }
}

}  // namespace

std::vector<std::uint32_t> slots_of_peer(const pinned_state& state, std::uint16_t port, const control_peer& peer)
{
    std::vector<std::uint32_t> mine;
    if (peer.pid <= 0)
        return mine;
    const std::vector<slot> slots = state.read_slots();
    for (std::uint32_t i = 0; i < slots.size(); i++)
        if (slots[i].cookie && slots[i].pid == static_cast<std::uint32_t>(peer.pid) &&
            state.worker_cookie(i) == slots[i].cookie)
            mine.push_back(i);
    if (mine.empty())
        return mine;  // the usual stranger: no sock_diag dump
    const std::vector<listener> listeners = list_listeners(port);
    std::erase_if(mine, [&](std::uint32_t i) {
        auto l = std::find_if(listeners.begin(), listeners.end(),
                              [&](const listener& x) { return x.cookie == slots[i].cookie; });
        return l == listeners.end() || l->uid != peer.uid;
    });
    // Checked last: the pid compared above is still the process that connected.
    if (!peer.alive())
        mine.clear();
    return mine;
}

control_reply handle_control_request(const pinned_state& state, std::uint16_t port, const control_peer& peer,
                                     std::string_view line, const std::function<void()>& catch_up)
{
    // Who asks first: a stranger learns nothing, not even whether its line would parse.
    const std::vector<std::uint32_t> mine = slots_of_peer(state, port, peer);
    if (mine.empty())
        return {std::string(control_refusal), true};
    auto request = parse_control_request(line);
    if (auto* refusal = std::get_if<std::string>(&request))
        return {*refusal};
    return {release(state, mine, peer.pid, std::get<release_request>(request), catch_up)};
}

}  // namespace sio_steer
