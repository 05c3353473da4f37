#include "logic/nginx_conf.h"

#include <arpa/inet.h>

#include <cctype>
#include <charconv>
#include <cstdio>

#include "logic/errors.h"

namespace sio_steer {

namespace {

// Engine.IO's defaults: a silent connection is dead after pingInterval + pingTimeout = 45 s, so
// nginx must wait longer than that for the workers before it gives up on a request.
constexpr const char* read_timeout = "75s";

bool parse_port_text(const std::string& text, unsigned& port)
{
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), port);
    return ec == std::errc() && end == text.data() + text.size() && port >= 1 && port <= 65535;
}

// inet_pton reads a C string: a NUL would end the address early and the rest be printed as is.
bool is_v4(const std::string& text)
{
    if (text.find('\0') != std::string::npos)
        return false;
    in_addr a{};
    return inet_pton(AF_INET, text.c_str(), &a) == 1;
}

bool is_v6(const std::string& text)
{
    if (text.find('\0') != std::string::npos)
        return false;
    in6_addr a{};
    return inet_pton(AF_INET6, text.c_str(), &a) == 1;
}

// "443", "*:443", "0.0.0.0:443", "[::]:443": what nginx's `listen` takes, minus host names.
bool valid_listen(const std::string& text)
{
    unsigned port = 0;
    if (parse_port_text(text, port))
        return true;
    if (text.starts_with('[')) {
        std::size_t close = text.find("]:");
        return close != std::string::npos && is_v6(text.substr(1, close - 1)) &&
               parse_port_text(text.substr(close + 2), port);
    }
    std::size_t colon = text.rfind(':');
    if (colon == std::string::npos)
        return false;
    std::string host = text.substr(0, colon);
    return (host == "*" || is_v4(host)) && parse_port_text(text.substr(colon + 1), port);
}

bool valid_cidr(const std::string& text)
{
    std::size_t slash = text.find('/');
    std::string address = text.substr(0, slash);
    unsigned bits = 0, max = is_v4(address) ? 32 : is_v6(address) ? 128 : 0;
    if (!max)
        return false;
    if (slash == std::string::npos)
        return true;
    std::string prefix = text.substr(slash + 1);
    auto [end, ec] = std::from_chars(prefix.data(), prefix.data() + prefix.size(), bits);
    return ec == std::errc() && end == prefix.data() + prefix.size() && !prefix.empty() && bits <= max;
}

bool valid_header_name(const std::string& name)
{
    if (name.empty() || name.size() > 64)
        return false;
    for (char ch : name)
        if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '-' && ch != '_')
            return false;
    return true;
}

std::string quoted(const std::string& regex) { return "\"~" + regex + "\""; }

// A file path nginx reads as one unquoted argument.
bool valid_path(const std::string& path)
{
    if (path.empty() || path.size() > 4096)
        return false;
    for (char ch : path)
        if (std::isspace(static_cast<unsigned char>(ch)) || std::iscntrl(static_cast<unsigned char>(ch)) || ch == ';' ||
            ch == '{' || ch == '}' || ch == '"' || ch == '\'' || ch == '$' || ch == '#' ||
            ch == '\\')  // nginx reads a backslash as an escape: "\\;" ends nothing
            return false;
    return true;
}

std::string upstream_host(const nginx_conf_options& o) { return o.upstream.substr(0, o.upstream.rfind(':')); }
std::string upstream_port(const nginx_conf_options& o) { return o.upstream.substr(o.upstream.rfind(':') + 1); }

// The name of destination i's upstream {}: the port keeps two apps' sets apart.
std::string destination_upstream(const nginx_conf_options& o, unsigned i)
{
    return "sio_steer_" + upstream_port(o) + "_" + std::to_string(i);
}

// The location-level directives, each line prefixed with `indent`.
std::string location_lines(const nginx_conf_options& o, const std::string& indent, bool with_real_ip)
{
    std::string s;
    auto line = [&](const std::string& text) { s += indent + text + "\n"; };
    if (with_real_ip && !o.real_ip_header.empty()) {
        line("# the visitor's address from " + o.real_ip_header + ", believed only from these senders:");
        line("real_ip_header " + o.real_ip_header + ";");
        for (const auto& cidr : o.trusted)
            line("set_real_ip_from " + cidr + ";");
        line("real_ip_recursive on;");
    }
    if (o.destination_key) {
        line("proxy_pass http://$sio_steer_upstream;  # the client's destination: one of the upstream {} blocks");
    } else {
        line("proxy_pass http://" + o.upstream + ";  # a plain address: no upstream {} and no keepalive");
        line("proxy_bind $sio_steer_src;        # the client's own loopback source: sio-steer steers by it");
    }
    line("proxy_http_version 1.1;");
    line("proxy_set_header Host $host;");
    line("proxy_set_header Upgrade $http_upgrade;");
    line(std::string("proxy_set_header Connection $sio_steer_connection;  # WebSocket upgrade, else ") +
         (o.destination_key ? "keep-alive" : "close"));
    line("proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;");
    line("proxy_set_header X-Forwarded-Proto $scheme;");
    if (o.destination_key) {
        line("# a request the worker dropped unanswered (it is handing the destination over): once more, on a");
        line("# new connection to the same destination (its upstream's backup)");
        line("proxy_next_upstream error non_idempotent;");
    }
    line(std::string("proxy_read_timeout ") + read_timeout + ";  # > pingInterval + pingTimeout (25 s + 20 s)");
    line(std::string("proxy_send_timeout ") + read_timeout + ";");
    return s;
}

std::string map_block(const std::string& from, const std::string& to, const std::vector<nginx_map_rule>& rules,
                      const std::string& fallback)
{
    std::string s = "map " + from + " " + to + " {\n";
    for (const auto& r : rules) {
        std::string key = quoted(r.regex);
        s += "    " + key + std::string(key.size() < 48 ? 48 - key.size() : 1, ' ') + r.value + ";\n";
    }
    return s + "    default" + std::string(41, ' ') + fallback + ";\n}\n";
}

std::string split_block(const std::string& key, const std::string& to)
{
    // Equal shares: 0.4% x 250 = 100% (nginx counts in hundredths of a percent).
    std::string s = "split_clients \"" + key + "\" " + to + " {";
    char entry[32];
    for (int i = 0; i + 1 < nginx_v6_buckets; i++) {
        std::snprintf(entry, sizeof(entry), "%.2f%% %d;", 100.0 / nginx_v6_buckets, i);
        s += (i % 10 ? " " : "\n    ") + std::string(entry);
    }
    return s + " * " + std::to_string(nginx_v6_buckets - 1) + ";\n}\n";
}

std::string shares_text(unsigned hundredths)
{
    char text[16];
    std::snprintf(text, sizeof(text), "%u.%02u%%", hundredths / 100, hundredths % 100);
    return text;
}

// The http {} part of address mode: the source map, the /64 map and its hashes, the Connection map.
std::string address_blocks()
{
    std::string s;
    s += "# For the http {} context. sio-steer steers by the address a connection comes from, and behind\n"
         "# nginx that is nginx's: so nginx connects to the workers from a loopback source derived from\n"
         "# the client address (all of 127.0.0.0/8 is local), and keeps no idle upstream connection (one\n"
         "# would carry another client's source). docs/nginx.md explains.\n\n";
    s += "# IPv4 a.b.c.d -> 127.b.c.d (clients differing only in the first byte share a worker).\n"
         "# IPv6: two hashes of the client's /64 -> 127.255.<0-249>.<0-249>.\n";
    s += map_block("$remote_addr", "$sio_steer_src", nginx_source_rules(), "127.0.0.1");
    s += "\n# An IPv6 client's /64, the same text for every address in it.\n";
    s += map_block("$remote_addr", "$sio_steer_v6_net", nginx_v6_prefix_rules(), "$remote_addr");
    s += "\n";
    s += split_block("hi:$sio_steer_v6_net", "$sio_steer_v6_hi");
    s += split_block("lo:$sio_steer_v6_net", "$sio_steer_v6_lo");
    s += "\n# Upgrade for WebSocket; otherwise close, so that no upstream connection is reused.\n"
         "map $http_upgrade $sio_steer_connection {\n"
         "    default upgrade;\n"
         "    \"\"      close;\n"
         "}\n";
    return s;
}

// The http {} part of destination mode after the /64 map: the client map, the split onto the
// destinations, one upstream {} per destination, the Connection map.
std::string destination_blocks(const nginx_conf_options& o)
{
    const std::vector<std::string> dests = nginx_destinations(o);
    const std::vector<unsigned> shares = nginx_destination_shares(o.destinations);
    const std::string port = upstream_port(o);
    std::string s;
    s += "\n# Each client onto one of " + std::to_string(dests.size()) +
         " destinations (MurmurHash2 of the client; equal shares).\n";
    s += "split_clients \"$sio_steer_client\" $sio_steer_upstream {";
    for (unsigned i = 0; i < dests.size(); i++) {
        std::string entry = (i + 1 == dests.size() ? std::string("*") : shares_text(shares[i])) + " " +
                            destination_upstream(o, i) + ";";
        s += (i % 6 ? " " : "\n    ") + entry;
    }
    s += "\n}\n";
    s += "\n# One upstream per destination: nginx reuses a kept-alive connection only within its upstream,\n"
         "# so a connection to " +
         dests[0] + ":" + port +
         " carries only the clients of that destination, whose\n"
         "# worker sio-steer keeps. The destination is its own backup: a request that fails there (a stopping\n"
         "# worker hands the destination over) is sent once more, on a new connection, to the same address.\n"
         "# Idle connections close after " +
         std::to_string(nginx_keepalive_timeout_s) +
         " s (before Node's keepAliveTimeout, 5 s), and each lives at most " + std::to_string(nginx_keepalive_time_s) +
         " s:\n"
         "# a destination in use reconnects well within sio-steer's session TTL.\n";
    for (unsigned i = 0; i < dests.size(); i++) {
        const std::string server = dests[i] + ":" + port;
        s += "upstream " + destination_upstream(o, i) + " { server " + server + " max_fails=0; server " + server +
             " max_fails=0 backup; keepalive " + std::to_string(o.keepalive) + "; keepalive_timeout " +
             std::to_string(nginx_keepalive_timeout_s) + "s; keepalive_time " + std::to_string(nginx_keepalive_time_s) +
             "s; }\n";
    }
    s += "\n# Upgrade for WebSocket; otherwise nothing, so that the upstream connection stays open.\n"
         "map $http_upgrade $sio_steer_connection {\n"
         "    default upgrade;\n"
         "    \"\"      \"\";\n"
         "}\n";
    return s;
}

}  // namespace

std::vector<std::string> nginx_destinations(const nginx_conf_options& o)
{
    in_addr base{};
    inet_pton(AF_INET, upstream_host(o).c_str(), &base);
    std::vector<std::string> out;
    for (unsigned i = 0; i < o.destinations; i++) {
        in_addr a{htonl(ntohl(base.s_addr) + i)};
        char text[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &a, text, sizeof(text));
        out.push_back(text);
    }
    return out;
}

std::vector<unsigned> nginx_destination_shares(unsigned destinations)
{
    std::vector<unsigned> shares(destinations, 10000 / destinations);
    for (unsigned i = 0; i < 10000 % destinations; i++)
        shares[i]++;
    return shares;
}

std::vector<nginx_map_rule> nginx_source_rules()
{
    return {
        // Loopback broadcast: a bind to it connects from 127.0.0.1 (nginx's own address) instead.
        {R"(^(?:::ffff:)?\d+\.255\.255\.255$)", "127.255.255.254"},
        // IPv4, and IPv4 on a dual-stack listener (::ffff:a.b.c.d): the first byte goes.
        {R"(^(?:::ffff:)?\d+\.(\d+)\.(\d+)\.(\d+)$)", "127.$1.$2.$3"},
        {R"(^[0-9a-f.]*:[0-9a-f:.]*$)", "127.255.$sio_steer_v6_hi.$sio_steer_v6_lo"},  // IPv6
    };
}

std::vector<nginx_map_rule> nginx_v6_prefix_rules()
{
    // nginx prints IPv6 like RFC 5952: lowercase, no leading zeros, the longest run of two or more
    // zero groups (the first of equal runs) as "::". Addresses of one /64 can compress differently
    // (2001:db8:0:0:1:: and 2001:db8::1:2:3:4), so each case names the same four groups.
    const std::string h = "[0-9a-f]+";
    return {
        {"^(" + h + ":" + h + ":" + h + ":" + h + "):", "$1"},         // first four groups written out
        {"^::(" + h + ":" + h + ")(?::" + h + "){4}$", "0:0:$1"},      // ::c:d + four more
        {"^::(" + h + ")(?::" + h + "){4}$", "0:0:0:$1"},              // ::d + four more
        {"^(" + h + ")::(" + h + ")(?::" + h + "){4}$", "$1:0:0:$2"},  // a::d + four more
        {"^(" + h + ":" + h + ":" + h + ")::", "$1:0"},                // a:b:c:: ...
        {"^(" + h + ":" + h + ")::", "$1:0:0"},                        // a:b:: ...
        {"^(" + h + ")::", "$1:0:0:0"},                                // a:: ...
        {"^::", "0:0:0:0"},                                            // ::..., ::a.b.c.d
    };
}

void validate(const nginx_conf_options& o)
{
    if (!o.listen.empty() && !valid_listen(o.listen))
        throw steer_error(exit_code::usage, "--listen " + o.listen + " is not an address and port",
                          "nginx listens on a port, optionally on one address",
                          "write it like 443, 0.0.0.0:8080 or [::]:8080");
    std::size_t colon = o.upstream.rfind(':');
    unsigned port = 0;
    if (colon == std::string::npos || !parse_port_text(o.upstream.substr(colon + 1), port))
        throw steer_error(exit_code::usage, "--upstream " + o.upstream + " is not HOST:PORT", {},
                          "give the workers' address and port, e.g. --upstream 127.0.0.1:5001");
    std::string host = o.upstream.substr(0, colon);
    if (!is_v4(host) || !host.starts_with("127."))
        throw steer_error(exit_code::usage, "--upstream " + o.upstream + " is not an IPv4 loopback address",
                          "nginx connects from 127.x.y.z sources, which reach only 127.0.0.0/8: nginx must run "
                          "on the workers' host and reach them over IPv4 loopback (a name such as localhost may "
                          "resolve to ::1)",
                          "use --upstream 127.0.0.1:" + std::to_string(port) +
                              " (workers listening on :: or 0.0.0.0 accept it)");
    if (!o.real_ip_header.empty() && !valid_header_name(o.real_ip_header))
        throw steer_error(exit_code::usage, "--real-ip-header " + o.real_ip_header + " is not a header name",
                          "a header name is letters, digits, '-' and '_'",
                          "use the header your CDN sets, e.g. X-Forwarded-For or CF-Connecting-IP");
    if (!o.real_ip_header.empty() && o.trusted.empty())
        throw steer_error(exit_code::usage, "--real-ip-header needs --trusted",
                          "believed from anyone, the header would let any client choose its address, and so "
                          "its worker and what the logs say",
                          "add --trusted with your CDN's address ranges (or the proxy in front), e.g. "
                          "--trusted 173.245.48.0/20 --trusted 2400:cb00::/32");
    if (o.real_ip_header.empty() && !o.trusted.empty())
        throw steer_error(exit_code::usage, "--trusted needs --real-ip-header",
                          "the trusted senders pass the visitor's address in a header nginx must be told",
                          "add --real-ip-header with your CDN's header, e.g. --real-ip-header X-Forwarded-For");
    for (const auto& cidr : o.trusted)
        if (!valid_cidr(cidr))
            throw steer_error(exit_code::usage, "--trusted " + cidr + " is not an address or CIDR", {},
                              "write it like 203.0.113.0/24, 2001:db8::/32 or 127.0.0.1");
    if (o.destination_key) {
        if (o.destinations < 1 || o.destinations > nginx_max_destinations)
            throw steer_error(exit_code::usage, "--destinations " + std::to_string(o.destinations) + " is out of range",
                              "nginx splits clients in hundredths of a percent: 1 to 10,000 destinations",
                              "use a few times more destinations than workers, e.g. --destinations 256");
        in_addr base{};
        inet_pton(AF_INET, host.c_str(), &base);
        if (std::uint64_t{ntohl(base.s_addr)} + o.destinations - 1 >= 0x7fffffffu)
            throw steer_error(exit_code::usage,
                              "--upstream " + o.upstream + " with --destinations " + std::to_string(o.destinations) +
                                  " runs past 127.255.255.254",
                              "the destinations are the addresses from --upstream's on, all in 127.0.0.0/8",
                              "start lower, e.g. --upstream 127.1.0.1:" + std::to_string(port));
        if (o.keepalive < 1 || o.keepalive > 1024)
            throw steer_error(exit_code::usage, "--keepalive " + std::to_string(o.keepalive) + " is out of range",
                              "idle connections per destination and nginx worker process: 1 to 1024",
                              "a few per destination is plenty, e.g. --keepalive 8");
    }
    if (o.ssl_certificate.empty() != o.ssl_certificate_key.empty())
        throw steer_error(exit_code::usage, "--ssl-certificate and --ssl-certificate-key go together",
                          "nginx needs the certificate and its key for TLS", "give both, or neither");
    if (!o.ssl_certificate.empty() && o.listen.empty())
        throw steer_error(exit_code::usage, "--ssl-certificate needs --listen",
                          "the certificate belongs to the server {} that --listen prints",
                          "add --listen 443, or put the certificate lines in your own server");
    for (const auto* path : {&o.ssl_certificate, &o.ssl_certificate_key})
        if (!path->empty() && !valid_path(*path))
            throw steer_error(exit_code::usage, *path + " is not a file path nginx takes as it is",
                              "no spaces, quotes, backslashes, ';', '{', '}', '$' or '#'",
                              "give the path without them");
}

std::string nginx_location_snippet(const nginx_conf_options& o)
{
    validate(o);
    if (o.destination_key)
        return "# Socket.IO to the workers, each client through its destination (sio-steer nginx-conf --key\n"
               "# destination). Needs the maps and upstreams of `sio-steer nginx-conf --key destination` in\n"
               "# http {}. docs/nginx.md explains.\n" +
               location_lines(o, "", true);
    return "# Socket.IO to the workers, each client from its own loopback source (sio-steer nginx-conf).\n"
           "# Needs the maps of `sio-steer nginx-conf` in http {}. docs/nginx.md explains.\n" +
           location_lines(o, "", true);
}

std::string nginx_conf(const nginx_conf_options& o, const std::string& command_line)
{
    validate(o);
    std::string s;
    s += "# " + (command_line.empty() ? std::string("sio-steer nginx-conf") : command_line) + "\n";
    if (o.destination_key) {
        s += "# For the http {} context, with `sio-steer attach --key destination`: sio-steer steers by the\n"
             "# address a connection was made to. nginx hashes each client onto one of " +
             std::to_string(o.destinations) +
             " loopback destinations of\n"
             "# the workers' port and keeps connections alive per destination; every connection to one\n"
             "# destination reaches one worker. The workers must listen on 0.0.0.0 or :: (not 127.0.0.1).\n"
             "# docs/nginx.md explains.\n\n";
        s += "# The client: an IPv4 address as it is, an IPv6 client by its /64.\n"
             "map $remote_addr $sio_steer_client {\n"
             "    \"~^(?:::ffff:)?(\\d+\\.\\d+\\.\\d+\\.\\d+)$\"          $1;\n"
             "    default                                         $sio_steer_v6_net;\n"
             "}\n";
        s += "\n# An IPv6 client's /64, the same text for every address in it.\n";
        s += map_block("$remote_addr", "$sio_steer_v6_net", nginx_v6_prefix_rules(), "$remote_addr");
        s += destination_blocks(o);
    } else {
        s += address_blocks();
    }
    if (o.listen.empty()) {
        s += "\n# In the location {} that proxies Socket.IO to the workers (e.g. location /socket.io/), or\n"
             "# `include` the output of `sio-steer nginx-conf --location-snippet` there:\n";
        s += location_lines(o, "#     ", true);
        return s;
    }
    s += "\nserver {\n";
    const bool tls = !o.ssl_certificate.empty();
    s += "    listen " + o.listen + (tls ? " ssl" : "") +
         (o.real_ip_header == "proxy_protocol" ? " proxy_protocol" : "") +
         (tls ? ";\n" : ";  # TLS: add `ssl` and your ssl_certificate lines (or --ssl-certificate)\n");
    if (tls) {
        s += "    ssl_certificate " + o.ssl_certificate + ";\n";
        s += "    ssl_certificate_key " + o.ssl_certificate_key + ";\n";
    }
    if (!o.real_ip_header.empty()) {
        s += "    # the visitor's address from " + o.real_ip_header + ", believed only from these senders:\n";
        s += "    real_ip_header " + o.real_ip_header + ";\n";
        for (const auto& cidr : o.trusted)
            s += "    set_real_ip_from " + cidr + ";\n";
        s += "    real_ip_recursive on;\n";
    }
    s += "\n    location / {\n";
    s += location_lines(o, "        ", false);
    s += "    }\n}\n";
    return s;
}

}  // namespace sio_steer
