#include "nginx_conf.h"

#include <arpa/inet.h>

#include <cctype>
#include <charconv>
#include <cstdio>

#include "errors.h"

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

bool is_v4(const std::string& text)
{
    in_addr a{};
    return inet_pton(AF_INET, text.c_str(), &a) == 1;
}

bool is_v6(const std::string& text)
{
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
    line("proxy_pass http://" + o.upstream + ";  # a plain address: no upstream {} and no keepalive");
    line("proxy_bind $sio_steer_src;        # the client's own loopback source: sio-steer steers by it");
    line("proxy_http_version 1.1;");
    line("proxy_set_header Host $host;");
    line("proxy_set_header Upgrade $http_upgrade;");
    line("proxy_set_header Connection $sio_steer_connection;  # WebSocket upgrade, else close");
    line("proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;");
    line("proxy_set_header X-Forwarded-Proto $scheme;");
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

}  // namespace

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
        {"^::(" + h + ":" + h + ")(?::" + h + "){4}$", "0:0:$1"},     // ::c:d + four more
        {"^::(" + h + ")(?::" + h + "){4}$", "0:0:0:$1"},             // ::d + four more
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
}

std::string nginx_location_snippet(const nginx_conf_options& o)
{
    validate(o);
    return "# Socket.IO to the workers, each client from its own loopback source (sio-steer nginx-conf).\n"
           "# Needs the maps of `sio-steer nginx-conf` in http {}. docs/nginx.md explains.\n" +
           location_lines(o, "", true);
}

std::string nginx_conf(const nginx_conf_options& o, const std::string& command_line)
{
    validate(o);
    std::string s;
    s += "# " + (command_line.empty() ? std::string("sio-steer nginx-conf") : command_line) + "\n";
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
    if (o.listen.empty()) {
        s += "\n# In the location {} that proxies Socket.IO to the workers (e.g. location /socket.io/), or\n"
             "# `include` the output of `sio-steer nginx-conf --location-snippet` there:\n";
        s += location_lines(o, "#     ", true);
        return s;
    }
    s += "\nserver {\n";
    s += "    listen " + o.listen + (o.real_ip_header == "proxy_protocol" ? " proxy_protocol" : "") +
         ";  # TLS: add `ssl` and your ssl_certificate lines\n";
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
