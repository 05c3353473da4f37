#include "release.h"

#include "client_key.h"

namespace sio_steer {

namespace {

std::string release(const pinned_state& state, pid_t peer, const std::string& address)
{
    std::optional<client_key> parsed = parse_address(address);
    if (!parsed)
        return "error " + address + " is not an IP address";
    const config c = state.read_config();
    if (!SIO_STEER_KEY_RECORDS(c.key_mode))
        return "error sessions are per connection (--key address,port): there is no client to release";
    const client_key key = key_for(*parsed, c);
    std::optional<session> s = state.find_session(key);
    if (!s)
        return "none " + address + ": no session recorded";

    const std::vector<slot> slots = state.read_slots();
    if (s->slot >= slots.size() || slots[s->slot].generation != s->generation)
        return "none " + address + ": its session is stale";
    const slot& from = slots[s->slot];
    if (from.pid != static_cast<std::uint32_t>(peer))
        return "error " + address + " is a client of pid " + std::to_string(from.pid) + " (slot " +
               std::to_string(s->slot) + "), not of pid " + std::to_string(peer);
    const std::uint32_t to = from.successor;
    if (to == SIO_STEER_SLOT_NONE || to >= slots.size() || slots[to].cookie == 0 ||
        state.worker_cookie(to) != slots[to].cookie)
        return "none " + address + ": slot " + std::to_string(s->slot) +
               " has no live successor (no replacement listens yet); its clients move when it closes";

    state.write_session(key, session{to, slots[to].generation, session_clock_ns()});
    return "ok " + address + " slot " + std::to_string(s->slot) + " -> slot " + std::to_string(to);
}

}  // namespace

std::string handle_control_request(const pinned_state& state, pid_t peer, std::string_view line)
{
    constexpr std::string_view verb = "release ";
    if (!line.starts_with(verb) || line.size() == verb.size())
        return "error unknown request; the one request is: release ADDRESS";
    return release(state, peer, std::string(line.substr(verb.size())));
}

}  // namespace sio_steer
