// sio-steer sessions: the recorded clients of a port, or where one client goes and why.

#include <cstdio>
#include <iostream>

#include <nlohmann/json.hpp>

#include "cli.h"
#include "client_key.h"
#include "errors.h"
#include "options.h"
#include "pinned_state.h"
#include "slot_table.h"

namespace po = boost::program_options;

namespace sio_steer {

namespace {

double age_seconds(const session& s, std::uint64_t now)
{
    return now > s.last_seen_ns ? static_cast<double>(now - s.last_seen_ns) / 1e9 : 0.0;
}

nlohmann::json worker_json(const std::vector<slot>& slots, std::uint32_t index)
{
    if (index >= slots.size())
        return {{"slot", nullptr}};
    const slot& s = slots[index];
    return {{"slot", index},
            {"pid", s.pid},
            {"instance", s.instance == no_instance ? nlohmann::json(nullptr) : nlohmann::json(s.instance)},
            {"live", s.cookie != 0}};
}

// Where the program sends `address` now: its recorded session if it still binds, else the ring.
nlohmann::json explain_client(const pinned_state& state, const std::string& address)
{
    std::optional<client_key> parsed = parse_address(address);
    if (!parsed)
        throw steer_error(exit_code::usage, "--client " + address + " is not an IP address", {},
                          "give an IPv4 or IPv6 address, e.g. --client 192.0.2.7");
    config c = state.read_config();
    std::vector<slot> slots = state.read_slots();
    client_key key = key_for(*parsed, c);
    std::uint64_t now = session_clock_ns();
    nlohmann::json r = {{"client", address}, {"key", format_key(key, c)}};

    if (std::optional<session> s = state.find_session(key)) {
        bool fresh = now - s->last_seen_ns <= c.session_ttl_ns;
        bool same_socket = s->slot < slots.size() && slots[s->slot].generation == s->generation && slots[s->slot].cookie;
        r["last_seen_s"] = age_seconds(*s, now);
        if (fresh && same_socket) {
            r["reason"] = "recorded";
            r["worker"] = worker_json(slots, s->slot);
            return r;
        }
        if (fresh && s->slot < slots.size() && slots[s->slot].generation == s->generation &&
            slots[s->slot].successor != SIO_STEER_SLOT_NONE) {
            r["reason"] = "successor";  // its socket closed; the instance's newer socket takes it
            r["worker"] = worker_json(slots, slots[s->slot].successor);
            return r;
        }
        r["recorded_but"] = fresh ? "its worker socket closed" : "idle past the session TTL";
    }
    std::uint32_t bucket = SIO_STEER_KEY_RECORDS(c.key_mode) ? ring_bucket(key, c) : 0;
    std::vector<std::uint32_t> ring = state.read_ring();
    r["reason"] = SIO_STEER_KEY_RECORDS(c.key_mode) ? "ring" : "ring (per connection: depends on the source port)";
    r["bucket"] = bucket;
    r["worker"] = worker_json(slots, ring[bucket]);
    return r;
}

std::string worker_text(const nlohmann::json& w)
{
    if (w["slot"].is_null())
        return "no worker";
    std::string s = "slot " + std::to_string(w["slot"].get<unsigned>()) + " (pid " + std::to_string(w["pid"].get<unsigned>());
    if (!w["instance"].is_null())
        s += ", instance " + std::to_string(w["instance"].get<unsigned>());
    return s + (w["live"].get<bool>() ? ")" : ", gone)");
}

}  // namespace

int run_sessions(const args& a)
{
    steer_options o;
    std::string port, client;
    bool json_out = false, flush = false;
    po::options_description options("sessions options");
    options.add_options()
        ("port", po::value(&port)->required(), "TCP port")
        ("client", po::value(&client), "tell which worker this client address goes to, and why")
        ("flush", po::bool_switch(&flush), "forget every recorded session (clients are placed anew by the ring)")
        ("json", po::bool_switch(&json_out), "print JSON");
    add_pin_root(options, o.pin_root);
    po::variables_map vm;
    if (!parse_args("sessions", "--port N [--client ADDR | --flush] [--json]", a, options, vm))
        return 0;
    o.port = parse_port(port);
    pinned_state state = open_pinned_state(o);

    if (flush) {
        std::size_t n = state.flush_sessions();
        if (json_out)
            std::cout << nlohmann::json{{"flushed", n}}.dump() << "\n";
        else
            std::printf("flushed %zu sessions of port %s\n", n, port.c_str());
        return 0;
    }
    if (!client.empty()) {
        nlohmann::json r = explain_client(state, client);
        if (json_out) {
            std::cout << r.dump(2) << "\n";
        } else {
            std::printf("%s (key %s) -> %s: %s", client.c_str(), r["key"].get<std::string>().c_str(),
                        worker_text(r["worker"]).c_str(), r["reason"].get<std::string>().c_str());
            if (r.contains("last_seen_s"))
                std::printf(", last seen %.0fs ago", r["last_seen_s"].get<double>());
            if (r.contains("recorded_but"))
                std::printf(" (a recorded session no longer binds: %s)", r["recorded_but"].get<std::string>().c_str());
            std::printf("\n");
        }
        return 0;
    }

    config c = state.read_config();
    std::vector<slot> slots = state.read_slots();
    std::uint64_t now = session_clock_ns();
    nlohmann::json all = nlohmann::json::array();
    if (!json_out)
        std::printf("%-40s %-6s %-8s %-9s %s\n", "client", "slot", "pid", "instance", "last seen");
    for (const auto& [key, s] : state.read_sessions()) {
        nlohmann::json w = worker_json(slots, s.slot);
        bool current = s.slot < slots.size() && slots[s.slot].generation == s.generation;
        if (json_out) {
            all.push_back({{"client", format_key(key, c)}, {"worker", w}, {"last_seen_s", age_seconds(s, now)},
                           {"current", current && slots[s.slot].cookie}});
            continue;
        }
        std::string instance = w["instance"].is_null() ? "-" : std::to_string(w["instance"].get<unsigned>());
        std::printf("%-40s %-6u %-8u %-9s %.0fs ago%s\n", format_key(key, c).c_str(), s.slot,
                    w["pid"].is_null() ? 0u : w["pid"].get<unsigned>(), instance.c_str(), age_seconds(s, now),
                    current && slots[s.slot].cookie ? "" : " (worker gone: moves on next connection)");
    }
    if (json_out)
        std::cout << all.dump(2) << "\n";
    return 0;
}

}  // namespace sio_steer
