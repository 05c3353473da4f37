#include "logic/client_route.h"

#include <cstdio>
#include <cstring>

#include "logic/client_key.h"
#include "logic/slot_table.h"

namespace sio_steer {

namespace {

std::string worker_text(const nlohmann::json& w)
{
    if (w["slot"].is_null())
        return "no worker";
    std::string s =
        "slot " + std::to_string(w["slot"].get<unsigned>()) + " (pid " + std::to_string(w["pid"].get<unsigned>());
    if (!w["instance"].is_null())
        s += ", instance " + std::to_string(w["instance"].get<unsigned>());
    return s + (w["live"].get<bool>() ? ")" : ", gone)");
}

}  // namespace

double session_age_s(const session& s, std::uint64_t now)
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

nlohmann::json explain_client(const std::string& address, const client_key& key, const client_maps& maps,
                              std::uint64_t now)
{
    const config& c = maps.cfg;
    const std::vector<slot>& slots = maps.slots;
    nlohmann::json r = {{"client", address}, {"key", format_key(key, c)}};

    if (const std::optional<session>& s = maps.recorded) {
        bool fresh = now - s->last_seen_ns <= c.session_ttl_ns;
        bool same_socket =
            s->slot < slots.size() && slots[s->slot].generation == s->generation && slots[s->slot].cookie;
        r["last_seen_s"] = session_age_s(*s, now);
        r["map"] = maps.kept_apart ? "moved" : "sessions";
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
    r["reason"] = SIO_STEER_KEY_RECORDS(c.key_mode) ? "ring" : "ring (per connection: depends on the source port)";
    r["bucket"] = bucket;
    r["worker"] = worker_json(slots, maps.ring_at(bucket));
    return r;
}

std::string bpftool_set_lookup(const std::string& sessions_path, std::uint32_t set)
{
    unsigned char bytes[sizeof(set)];
    std::memcpy(bytes, &set, sizeof(set));  // the key as the kernel reads it
    std::string command = "bpftool map lookup pinned " + sessions_path + " key";
    for (unsigned char b : bytes) {
        char hex[8];
        std::snprintf(hex, sizeof(hex), " 0x%02x", b);
        command += hex;
    }
    return command;
}

std::string explanation_line(const nlohmann::json& r)
{
    std::string line = r["client"].get<std::string>() + " (key " + r["key"].get<std::string>() + ") -> " +
                       worker_text(r["worker"]) + ": " + r["reason"].get<std::string>();
    if (r.contains("last_seen_s")) {
        char seen[64];
        std::snprintf(seen, sizeof(seen), ", last seen %.0fs ago", r["last_seen_s"].get<double>());
        line += seen;
    }
    if (r.contains("map") && r["map"] == "moved")
        line += " (moved map: its worker is not the ring's choice, kept apart from the LRU)";
    if (r.contains("recorded_but"))
        line += " (a recorded session no longer binds: " + r["recorded_but"].get<std::string>() + ")";
    if (r.contains("set") && r.contains("bpftool"))
        line += "\n  sessions set " + std::to_string(r["set"].get<std::uint32_t>()) + ": " +
                r["bpftool"].get<std::string>();
    return line;
}

}  // namespace sio_steer
