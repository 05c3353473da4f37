// nginx configuration for the production path browser -> (CDN) -> nginx -> workers on this host.
//
// sio-steer sees only the peer address of a connection, and behind nginx that is nginx's own. So
// nginx connects to the workers from a loopback source derived from the client address
// (`proxy_bind $sio_steer_src`; all of 127.0.0.0/8 is local, no route to add), with no upstream
// keepalive: a cached connection would carry another client's source. docs/nginx.md explains.
//
// Pure text generation, no I/O: `sio-steer nginx-conf` prints it, tests feed it to a real nginx.
#pragma once

#include <string>
#include <vector>

namespace sio_steer {

struct nginx_conf_options {
    std::string listen;                    // "443", "ADDR:PORT", "[V6]:PORT"; empty: no server {}
    std::string upstream = "127.0.0.1:5001";  // the workers: an IPv4 loopback address and port
    std::string real_ip_header;            // header carrying the visitor address (behind a CDN)
    std::vector<std::string> trusted;      // CIDRs whose real_ip_header is believed
};

// Throws steer_error(usage) naming the option and the rule it breaks.
void validate(const nginx_conf_options& options);

// Configuration valid in the http {} context: the maps from the client address to a loopback
// source, and with `listen` a server {} proxying Socket.IO; without it, the location directives
// as a commented block (nginx_location_snippet() prints them for an `include`).
std::string nginx_conf(const nginx_conf_options& options, const std::string& command_line = {});

// The directives for the user's own location {} (proxy_pass included); needs nginx_conf()'s maps.
std::string nginx_location_snippet(const nginx_conf_options& options);

// One entry of a regex `map`: nginx tries them in order, the first match wins; the value may
// use the captures $1..$9.
struct nginx_map_rule {
    std::string regex;  // PCRE, without nginx's leading "~"
    std::string value;
};

// $remote_addr -> $sio_steer_src. IPv4 a.b.c.d -> 127.b.c.d; IPv6 -> 127.255.<hi>.<lo>, where
// hi and lo are two independent hashes (split_clients) of the client's /64, each in [0, 250).
std::vector<nginx_map_rule> nginx_source_rules();
// $remote_addr of an IPv6 client (nginx's text form) -> its /64 as "a:b:c:d" (hex, no leading zeros).
std::vector<nginx_map_rule> nginx_v6_prefix_rules();

constexpr int nginx_v6_buckets = 250;  // per hash: 250 x 250 = 62,500 sources for IPv6 clients

}  // namespace sio_steer
