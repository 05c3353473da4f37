// nginx configuration for the production path browser -> (CDN) -> nginx -> workers on this host.
//
// sio-steer sees only the addresses of a connection, and behind nginx the source is nginx's own.
// Two ways to give it the client back (docs/nginx.md):
//   key address (default): nginx connects to the workers from a loopback source derived from the
//     client address (`proxy_bind $sio_steer_src`; all of 127.0.0.0/8 is local, no route to add),
//     with no upstream keepalive: a cached connection would carry another client's source;
//   key destination (`sio-steer attach --key destination`): nginx hashes each client onto one of
//     many loopback *destination* addresses of the workers' port, one upstream {} with keepalive
//     per destination; nginx reuses a cached connection only within its upstream, so all of a
//     client's requests reach the destination's worker, over kept-alive connections.
//
// Pure text generation, no I/O: `sio-steer nginx-conf` prints it, tests feed it to a real nginx.
#pragma once

#include <string>
#include <vector>

namespace sio_steer {

struct nginx_conf_options {
    std::string listen;                       // "443", "ADDR:PORT", "[V6]:PORT"; empty: no server {}
    std::string upstream = "127.0.0.1:5001";  // the workers: an IPv4 loopback address and port
    std::string real_ip_header;               // header carrying the visitor address (behind a CDN)
    std::vector<std::string> trusted;         // CIDRs whose real_ip_header is believed
    // key destination: `upstream` is the first destination, the next ones follow it (127.0.0.1,
    // 127.0.0.2, ...); each is an upstream {} of its own with `keepalive` idle connections per
    // nginx worker process.
    bool destination_key = false;
    unsigned destinations = 256;
    unsigned keepalive = 8;
    // TLS on the listen (both or neither; only with `listen`)
    std::string ssl_certificate, ssl_certificate_key;
};

constexpr unsigned nginx_max_destinations = 10000;  // split_clients shares are in hundredths of a percent
// Upstream keepalive in destination mode: idle connections close before Node's own keep-alive
// timeout (server.keepAliveTimeout, 5 s) could close them under nginx, and live at most
// nginx_keepalive_time_s, so that a destination in use opens a connection (the program refreshes
// its session) well within the session TTL (600 s): keepalive_time + proxy_read_timeout < TTL.
constexpr unsigned nginx_keepalive_timeout_s = 4;
constexpr unsigned nginx_keepalive_time_s = 300;

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

// key destination: the destination addresses, in order, and the share (in hundredths of a percent,
// summing to 10000) of the clients split_clients sends to each.
std::vector<std::string> nginx_destinations(const nginx_conf_options& options);
std::vector<unsigned> nginx_destination_shares(unsigned destinations);

// $remote_addr -> $sio_steer_src. IPv4 a.b.c.d -> 127.b.c.d; IPv6 -> 127.255.<hi>.<lo>, where
// hi and lo are two independent hashes (split_clients) of the client's /64, each in [0, 250).
std::vector<nginx_map_rule> nginx_source_rules();
// $remote_addr of an IPv6 client (nginx's text form) -> its /64 as "a:b:c:d" (hex, no leading zeros).
std::vector<nginx_map_rule> nginx_v6_prefix_rules();

constexpr int nginx_v6_buckets = 250;  // per hash: 250 x 250 = 62,500 sources for IPv6 clients

}  // namespace sio_steer
