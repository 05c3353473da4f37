// sio-steer sessions: the recorded clients of a port, or where one client goes and why.

#include <ostream>

#include <nlohmann/json.hpp>

#include "cli/cli.h"
#include "kernel/pinned_state.h"
#include "logic/client_key.h"
#include "logic/client_route.h"
#include "logic/errors.h"
#include "logic/options.h"

namespace po = boost::program_options;

namespace sio_steer {

namespace {

// Where the program sends `address` now: its recorded session if it still binds, else the ring;
// and the client's set of the sessions table (which holds its record, or would).
nlohmann::json where_client_goes(const pinned_state& state, const std::string& address)
{
    std::optional<client_key> parsed = parse_address(address);
    if (!parsed)
        throw steer_error(exit_code::usage, "--client " + address + " is not an IP address", {},
                          "give an IPv4 or IPv6 address, e.g. --client 192.0.2.7");
    client_maps maps;
    maps.cfg = state.read_config();
    maps.slots = state.read_slots();
    client_key key = key_for(*parsed, maps.cfg);
    maps.recorded = state.find_session(key);
    maps.kept_apart = maps.recorded && state.is_kept_apart(key);
    maps.ring_at = [&](std::uint32_t bucket) { return state.read_ring()[bucket]; };
    nlohmann::json r = explain_client(address, key, maps, session_clock_ns());
    if (SIO_STEER_KEY_RECORDS(maps.cfg.key_mode)) {
        // The set the program looks the key up in, and how bpftool reads just that set.
        std::uint32_t set = state.session_set_of(key);
        r["set"] = set;
        r["bpftool"] = bpftool_set_lookup(state.dir() + "/sessions", set);
    }
    return r;
}

}  // namespace

int run_sessions(const args& a, std::ostream& out)
{
    steer_options o;
    std::string port, client;
    bool json_out = false, flush = false;
    po::options_description options("sessions options");
    add_port_options(options, port, o, {.port_help = "TCP port", .lock_dir = false});
    // one option per line, as --help lists them
    // clang-format off
    options.add_options()
        ("client", po::value(&client), "tell which worker this client address goes to and why, and its set of the sessions table")
        ("flush", po::bool_switch(&flush), "forget every recorded session, moved ones too (clients are placed anew by the ring)")
        ("json", po::bool_switch(&json_out), "print JSON");
    // clang-format on
    po::variables_map vm;
    if (!parse_args("sessions", "--port N [--client ADDR | --flush] [--json]", a, options, vm, out))
        return 0;
    o.port = parse_port(port);
    pinned_state state = open_pinned_state(o);

    if (flush) {
        std::size_t n = state.flush_sessions();
        if (json_out)
            out << nlohmann::json{{"flushed", n}}.dump() << "\n";
        else
            print(out, "flushed %zu sessions of port %s\n", n, port.c_str());
        return 0;
    }
    if (!client.empty()) {
        nlohmann::json r = where_client_goes(state, client);
        out << (json_out ? r.dump(2) : explanation_line(r)) << "\n";
        return 0;
    }

    config c = state.read_config();
    std::vector<slot> slots = state.read_slots();
    std::uint64_t now = session_clock_ns();
    nlohmann::json all = nlohmann::json::array();
    if (!json_out)
        print(out, "%-40s %-6s %-8s %-9s %s\n", "client", "slot", "pid", "instance", "last seen");
    // The LRU's clients, then those kept apart in the moved map (off the ring).
    for (bool moved : {false, true})
        for (const auto& [key, s] : moved ? state.read_moved() : state.read_sessions()) {
            nlohmann::json w = worker_json(slots, s.slot);
            bool current = s.slot < slots.size() && slots[s.slot].generation == s.generation;
            if (json_out) {
                all.push_back({{"client", format_key(key, c)},
                               {"worker", w},
                               {"last_seen_s", session_age_s(s, now)},
                               {"current", current && slots[s.slot].cookie},
                               {"map", moved ? "moved" : "sessions"}});
                continue;
            }
            std::string instance = w["instance"].is_null() ? "-" : std::to_string(w["instance"].get<unsigned>());
            print(out, "%-40s %-6u %-8u %-9s %.0fs ago%s%s\n", format_key(key, c).c_str(), s.slot,
                  w["pid"].is_null() ? 0u : w["pid"].get<unsigned>(), instance.c_str(), session_age_s(s, now),
                  moved ? " (moved: off the ring)" : "",
                  current && slots[s.slot].cookie ? "" : " (worker gone: moves on next connection)");
        }
    if (json_out)
        out << all.dump(2) << "\n";
    return 0;
}

}  // namespace sio_steer
