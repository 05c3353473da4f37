#include "logic/proxy_check.h"

#include <algorithm>

#include "logic/client_key.h"

namespace sio_steer {

namespace {

bool is_loopback(const client_key& key)
{
    static const client_key v6_loopback = {{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}};
    return (is_v4_mapped(key) && key.addr[12] == 127) || std::equal(key.addr, key.addr + 16, v6_loopback.addr);
}

}  // namespace

std::optional<std::string> proxy_warning(const proxy_sample& s, const config& c)
{
    std::vector<client_key> keys = s.recent;
    auto less = [](const client_key& a, const client_key& b) {
        return std::lexicographical_compare(a.addr, a.addr + 16, b.addr, b.addr + 16);
    };
    auto same = [](const client_key& a, const client_key& b) { return std::equal(a.addr, a.addr + 16, b.addr); };
    std::sort(keys.begin(), keys.end(), less);
    keys.erase(std::unique(keys.begin(), keys.end(), same), keys.end());

    if (!s.address_keys || s.connections < proxy_min_connections || keys.empty() || keys.size() > proxy_max_addresses ||
        s.new_sessions > std::max(proxy_max_new_sessions, s.connections / 1000))
        return std::nullopt;

    std::string list;
    bool loopback = true;
    for (const client_key& k : keys) {
        list += (list.empty() ? "" : ", ") + format_key(k, c);
        loopback = loopback && is_loopback(k);
    }
    std::string who = loopback ? "a proxy on this host (nginx?) connects for them"
                               : "a proxy or load balancer in front connects for them";
    return std::to_string(s.connections) + " connections, but only " + std::to_string(s.new_sessions) + " new client" +
           (s.new_sessions == 1 ? "" : "s") + " recorded and " + std::to_string(keys.size()) + " client address" +
           (keys.size() == 1 ? "" : "es") + " seen recently (" + list + "): " + who +
           ", so every client lands on the same worker. Give each client its own source address: "
           "`sio-steer nginx-conf` prints the nginx configuration (docs/nginx.md).";
}

}  // namespace sio_steer
