// nginx_conf: the maps give every client one loopback source (checked by running the map rules the
// way nginx does, on addresses printed the way nginx prints them), and the configuration proxies
// Socket.IO as it must. tests/integration/nginx_test.cpp runs it in a real nginx.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <map>
#include <cstdio>
#include <random>
#include <regex>
#include <set>

#include "logic/errors.h"
#include "logic/nginx_conf.h"

namespace {

using namespace sio_steer;
using ::testing::HasSubstr;
using ::testing::Not;

// What an nginx regex map yields for `text`: the first matching rule's value with its captures,
// or "" when none matches (nginx then takes the default).
std::string map_value(const std::vector<nginx_map_rule>& rules, const std::string& text)
{
    for (const auto& r : rules) {
        std::smatch m;
        if (std::regex_search(text, m, std::regex(r.regex)))
            return m.format(r.value);
    }
    return "";
}

// $remote_addr of an IPv6 client as nginx writes it: lowercase hex without leading zeros; the first
// longest run of two or more zero groups as "::"; and when that run starts the address and is 5
// groups before ffff, 6 groups, or 7 groups before a last group other than 0 and 1 (high byte
// nonzero), the last 32 bits as a dotted quad.
std::string nginx_v6_text(const std::array<std::uint16_t, 8>& g)
{
    int best = -1, best_len = 1;
    for (int i = 0; i < 8;) {
        int j = i;
        while (j < 8 && g[j] == 0)
            j++;
        if (j - i > best_len) {
            best = i;
            best_len = j - i;
        }
        i = j == i ? i + 1 : j;
    }
    int end = 8;  // groups written in hex
    bool dotted = false;
    if (best == 0 && ((best_len == 5 && g[5] == 0xffff) || best_len == 6 ||
                      (best_len == 7 && (g[7] >> 8) != 0 && (g[7] & 0xff) != 1))) {
        dotted = true;
        end = 6;
    }
    std::string s;
    char buf[8];
    for (int i = 0; i < end; i++) {
        if (i == best) {
            s += i == 0 ? "::" : ":";
            i += best_len - 1;
            continue;
        }
        std::snprintf(buf, sizeof(buf), "%x", g[i]);
        s += buf;
        if (i < 7)
            s += ':';
    }
    if (dotted)
        s += std::to_string(g[6] >> 8) + "." + std::to_string(g[6] & 0xff) + "." + std::to_string(g[7] >> 8) + "." +
             std::to_string(g[7] & 0xff);
    return s;
}

TEST(NginxV6Text, MatchesTheUsualTextForm)
{
    // The printer above agrees with inet_ntop where RFC 5952 and nginx agree.
    for (const char* text : {"2001:db8::1", "2001:db8:0:1::", "fe80::1:2:3:4", "::1", "1::", "2001:db8:1:2:3:4:5:6",
                             "2001:db8::1:0:0:1", "::ffff:192.0.2.1"}) {
        in6_addr a{};
        ASSERT_EQ(inet_pton(AF_INET6, text, &a), 1);
        std::array<std::uint16_t, 8> g{};
        for (int i = 0; i < 8; i++)
            g[i] = static_cast<std::uint16_t>(a.s6_addr[2 * i] << 8 | a.s6_addr[2 * i + 1]);
        EXPECT_EQ(nginx_v6_text(g), text);
    }
}

TEST(NginxSourceMap, IPv4ClientsKeepTheirLastThreeBytes)
{
    auto rules = nginx_source_rules();
    EXPECT_EQ(map_value(rules, "203.0.113.7"), "127.0.113.7");
    EXPECT_EQ(map_value(rules, "198.51.100.250"), "127.51.100.250");
    EXPECT_EQ(map_value(rules, "10.1.2.3"), map_value(rules, "192.1.2.3")) << "only the first byte goes";
    EXPECT_EQ(map_value(rules, "::ffff:198.51.100.9"), "127.51.100.9") << "IPv4 on a dual-stack listener";
    EXPECT_EQ(map_value(rules, "8.255.255.255"), "127.255.255.254") << "never the loopback broadcast address";
}

TEST(NginxSourceMap, ThreeHundredIPv4ClientsGetThreeHundredSources)
{
    auto rules = nginx_source_rules();
    std::set<std::string> sources;
    for (int i = 0; i < 300; i++)
        sources.insert(map_value(rules, "198." + std::to_string(18 + i / 250) + "." + std::to_string(i % 250) + ".77"));
    EXPECT_EQ(sources.size(), 300u);
}

TEST(NginxSourceMap, IPv6ClientsUseTheHashedSources)
{
    auto rules = nginx_source_rules();
    EXPECT_EQ(map_value(rules, "2001:db8::1"), "127.255.$sio_steer_v6_hi.$sio_steer_v6_lo");
    EXPECT_EQ(map_value(rules, "::1"), "127.255.$sio_steer_v6_hi.$sio_steer_v6_lo");
    EXPECT_EQ(map_value(rules, "unix:"), "") << "anything else: the default";
}

TEST(NginxV6PrefixMap, EveryAddressOfA64GivesThatSameText)
{
    // Every pattern of zero and nonzero groups, so that "::" lands everywhere it can.
    auto rules = nginx_v6_prefix_rules();
    std::mt19937 rng(7);
    std::uniform_int_distribution<int> nonzero(1, 0xffff);
    int checked = 0;
    for (int pattern = 0; pattern < 256; pattern++)
        for (int round = 0; round < 8; round++) {
            std::array<std::uint16_t, 8> g{};
            for (int i = 0; i < 8; i++)
                g[i] = pattern >> i & 1 ? static_cast<std::uint16_t>(round == 7 && i == 5 ? 0xffff : nonzero(rng)) : 0;
            char want[40];
            std::snprintf(want, sizeof(want), "%x:%x:%x:%x", g[0], g[1], g[2], g[3]);
            std::string text = nginx_v6_text(g);
            if (text.find('.') != std::string::npos && g[5] == 0xffff && !g[0] && !g[1] && !g[2] && !g[3] && !g[4])
                continue;  // IPv4-mapped: the source map treats it as IPv4 before asking for a /64
            EXPECT_EQ(map_value(rules, text), want) << text;
            checked++;
        }
    EXPECT_GT(checked, 2000);
}

TEST(NginxV6PrefixMap, PrivacyAddressesOfOneHomeShareTheirText)
{
    auto rules = nginx_v6_prefix_rules();
    for (const char* text : {"2001:db8:0:0:1::", "2001:db8::1:2:3:4", "2001:db8::1", "2001:db8::a:0:0:1"})
        EXPECT_EQ(map_value(rules, text), "2001:db8:0:0") << text;
    EXPECT_EQ(map_value(rules, "2001:db8:0:1::5"), "2001:db8:0:1");
    EXPECT_EQ(map_value(rules, "fd00::5:1:2:3:4"), "fd00:0:0:5");
    EXPECT_EQ(map_value(rules, "::1"), "0:0:0:0");
}

// The configuration's lines without comments and indentation.
std::vector<std::string> directives(const std::string& conf)
{
    std::vector<std::string> out;
    std::size_t start = 0;
    while (start < conf.size()) {
        std::size_t end = conf.find('\n', start);
        std::string line = conf.substr(start, end - start);
        start = end == std::string::npos ? conf.size() : end + 1;
        line = line.substr(0, line.find('#'));
        line.erase(0, line.find_first_not_of(' '));
        if (!line.empty())
            out.push_back(line);
    }
    return out;
}

TEST(NginxConf, ServerProxiesSocketIOWithTheClientsSourceAndNoKeepalive)
{
    nginx_conf_options o;
    o.listen = "127.0.0.1:8080";
    o.upstream = "127.0.0.1:5001";
    std::string conf = nginx_conf(o);
    EXPECT_THAT(conf, HasSubstr("map $remote_addr $sio_steer_src {"));
    EXPECT_THAT(conf, HasSubstr("server {\n    listen 127.0.0.1:8080;"));
    EXPECT_THAT(conf, HasSubstr("proxy_pass http://127.0.0.1:5001;"));
    EXPECT_THAT(conf, HasSubstr("proxy_bind $sio_steer_src;"));
    EXPECT_THAT(conf, HasSubstr("proxy_http_version 1.1;"));
    EXPECT_THAT(conf, HasSubstr("proxy_set_header Upgrade $http_upgrade;"));
    EXPECT_THAT(conf, HasSubstr("proxy_set_header Connection $sio_steer_connection;"));
    EXPECT_THAT(conf, HasSubstr("\"\"      close;")) << "a plain request closes its upstream connection";
    EXPECT_THAT(conf, HasSubstr("proxy_read_timeout 75s;")) << "above pingInterval + pingTimeout (45 s)";
    for (const std::string& d : directives(conf)) {
        EXPECT_FALSE(d.starts_with("upstream")) << d;
        EXPECT_FALSE(d.starts_with("keepalive")) << "upstream keepalive would mix clients' sources: " << d;
    }
    EXPECT_THAT(conf, Not(HasSubstr("real_ip_header")));
}

TEST(NginxConf, WithoutListenTheLocationDirectivesAreCommentedOutForTheHttpContext)
{
    std::string conf = nginx_conf({});
    EXPECT_THAT(conf, Not(HasSubstr("server {")));
    EXPECT_THAT(conf, HasSubstr("#     proxy_bind $sio_steer_src;"));
    EXPECT_THAT(conf, Not(HasSubstr("\nproxy_bind"))) << "proxy_bind in http {} would reach every other upstream";

    std::string snippet = nginx_location_snippet({});
    EXPECT_THAT(snippet, HasSubstr("\nproxy_pass http://127.0.0.1:5001;"));
    EXPECT_THAT(snippet, HasSubstr("\nproxy_bind $sio_steer_src;"));
    EXPECT_THAT(snippet, Not(HasSubstr("map ")));
}

TEST(NginxConf, BehindACdnTheVisitorAddressComesFromTheTrustedHeader)
{
    nginx_conf_options o;
    o.listen = "443";
    o.real_ip_header = "CF-Connecting-IP";
    o.trusted = {"173.245.48.0/20", "2400:cb00::/32"};
    std::string conf = nginx_conf(o);
    EXPECT_THAT(conf, HasSubstr("    real_ip_header CF-Connecting-IP;\n"));
    EXPECT_THAT(conf, HasSubstr("    set_real_ip_from 173.245.48.0/20;\n    set_real_ip_from 2400:cb00::/32;\n"));
    EXPECT_THAT(conf, HasSubstr("real_ip_recursive on;"));
    EXPECT_LT(conf.find("real_ip_header"), conf.find("location /")) << "for the whole server";

    o.listen.clear();
    EXPECT_THAT(nginx_location_snippet(o), HasSubstr("\nreal_ip_header CF-Connecting-IP;\n"));
}

TEST(NginxConf, ProxyProtocolFromTheBalancerIsEnabledOnTheListener)
{
    nginx_conf_options o;
    o.listen = "[::]:8443";
    o.real_ip_header = "proxy_protocol";
    o.trusted = {"10.0.0.0/8"};
    EXPECT_THAT(nginx_conf(o), HasSubstr("listen [::]:8443 proxy_protocol;"));
}

nginx_conf_options destination_options()
{
    nginx_conf_options o;
    o.listen = "127.0.0.1:8443";
    o.upstream = "127.1.0.1:5001";
    o.destination_key = true;
    return o;
}

// The upstream {} blocks of a configuration: name -> its directives inside the braces.
std::map<std::string, std::string> upstream_blocks(const std::string& conf)
{
    std::map<std::string, std::string> out;
    std::regex block(R"(upstream (\S+) \{([^}]*)\})");
    for (std::sregex_iterator i(conf.begin(), conf.end(), block), end; i != end; ++i)
        out[(*i)[1]] = (*i)[2];
    return out;
}

TEST(NginxConfDestination, EachDestinationIsAnUpstreamOfOneServerWithKeepalive)
{
    std::string conf = nginx_conf(destination_options());
    auto blocks = upstream_blocks(conf);
    ASSERT_EQ(blocks.size(), 256u);
    std::set<std::string> servers;
    for (const auto& [name, body] : blocks) {
        EXPECT_TRUE(name.starts_with("sio_steer_5001_")) << name;
        std::smatch m;
        ASSERT_TRUE(std::regex_search(
            body, m,
            std::regex(R"(^ server (127\.\d+\.\d+\.\d+):5001 max_fails=0; server \1:5001 max_fails=0 backup; )")))
            << body;
        servers.insert(m[1]);
        EXPECT_EQ(body.find("server", m.length()), std::string::npos) << "one address: a retry stays on it";
        EXPECT_THAT(body, HasSubstr("keepalive 8;"));
        EXPECT_THAT(body, HasSubstr("keepalive_timeout 4s;")) << "below Node's keepAliveTimeout (5 s)";
        EXPECT_THAT(body, HasSubstr("keepalive_time 300s;"));
    }
    EXPECT_EQ(servers.size(), 256u) << "a destination address per upstream";
    EXPECT_EQ(blocks.count("sio_steer_5001_0"), 1u);
    EXPECT_THAT(blocks["sio_steer_5001_0"], HasSubstr("server 127.1.0.1:5001 max_fails=0;"));
    EXPECT_THAT(blocks["sio_steer_5001_255"], HasSubstr("server 127.1.1.0:5001 max_fails=0;"));

    EXPECT_THAT(conf, HasSubstr("split_clients \"$sio_steer_client\" $sio_steer_upstream {"));
    EXPECT_THAT(conf, HasSubstr("proxy_pass http://$sio_steer_upstream;"));
    EXPECT_THAT(conf, HasSubstr("proxy_next_upstream error non_idempotent;"));
    EXPECT_THAT(conf, HasSubstr("\"\"      \"\";")) << "a plain request keeps its upstream connection";
    EXPECT_THAT(conf, HasSubstr("proxy_set_header Upgrade $http_upgrade;"));
    EXPECT_THAT(conf, Not(HasSubstr("proxy_bind")));
    EXPECT_THAT(conf, Not(HasSubstr("$sio_steer_src")));
}

TEST(NginxConfDestination, KeptAliveConnectionsReconnectWithinTheSessionTtl)
{
    // A destination in use opens a new connection at least every keepalive_time (plus the longest
    // request, proxy_read_timeout 75 s): each SYN refreshes its session, so it never expires while a
    // kept-alive connection to its worker is open. The default --session-ttl is 600 s.
    EXPECT_LT(nginx_keepalive_time_s + 75 + 1, 600u);
    EXPECT_LT(nginx_keepalive_timeout_s, 5u) << "nginx closes idle connections before Node does";
}

TEST(NginxConfDestination, TheSplitGivesEveryDestinationAnEqualShare)
{
    for (unsigned n : {1u, 2u, 3u, 7u, 256u, 1000u, 4096u, 10000u}) {
        auto shares = nginx_destination_shares(n);
        ASSERT_EQ(shares.size(), n);
        unsigned sum = 0, lo = 10000, hi = 0;
        for (unsigned x : shares) {
            sum += x;
            lo = std::min(lo, x);
            hi = std::max(hi, x);
        }
        EXPECT_EQ(sum, 10000u) << n;
        EXPECT_LE(hi - lo, 1u) << n;
        EXPECT_GE(lo, 1u) << n;
    }
    // In the configuration: the shares as percentages, the last one "*", every upstream named once.
    nginx_conf_options o = destination_options();
    o.destinations = 7;
    std::string conf = nginx_conf(o);
    std::size_t at = conf.find("split_clients");
    std::string split = conf.substr(at, conf.find('}', at) - at);
    std::regex entry(R"((\d+\.\d\d%|\*) (sio_steer_5001_\d+);)");
    unsigned sum = 0, entries = 0;
    std::set<std::string> names;
    for (std::sregex_iterator i(split.begin(), split.end(), entry), end; i != end; ++i, ++entries) {
        names.insert((*i)[2]);
        std::string share = (*i)[1];
        if (share == "*")
            EXPECT_EQ(entries, 6u) << "the last share is the rest";
        else
            sum += static_cast<unsigned>(std::lround(std::stod(share) * 100));
    }
    EXPECT_EQ(entries, 7u);
    EXPECT_EQ(names.size(), 7u);
    EXPECT_EQ(sum, 10000u - nginx_destination_shares(7).back());
}

TEST(NginxConfDestination, DestinationsFollowTheFirstAddress)
{
    nginx_conf_options o = destination_options();
    o.upstream = "127.0.0.254:6000";
    o.destinations = 4;
    EXPECT_EQ(nginx_destinations(o),
              (std::vector<std::string>{"127.0.0.254", "127.0.0.255", "127.0.1.0", "127.0.1.1"}));
    o.upstream = "127.255.255.200:6000";
    o.destinations = 54;
    EXPECT_EQ(nginx_destinations(o).back(), "127.255.255.253");
}

TEST(NginxConfDestination, TheClientIsItsIPv4AddressOrItsIPv6Network)
{
    std::string conf = nginx_conf(destination_options());
    std::smatch m;
    ASSERT_TRUE(std::regex_search(conf, m,
                                  std::regex(R"re(map \$remote_addr \$sio_steer_client \{\n    "~([^"]+)"\s+\$1;)re")));
    std::vector<nginx_map_rule> rules = {{m[1], "$1"}};
    EXPECT_EQ(map_value(rules, "203.0.113.7"), "203.0.113.7");
    EXPECT_EQ(map_value(rules, "::ffff:203.0.113.7"), "203.0.113.7") << "IPv4 on a dual-stack listener";
    EXPECT_EQ(map_value(rules, "2001:db8::1"), "") << "IPv6: the default, $sio_steer_v6_net";
    EXPECT_THAT(conf, HasSubstr("default                                         $sio_steer_v6_net;"));
    EXPECT_THAT(conf, HasSubstr("map $remote_addr $sio_steer_v6_net {"));
}

TEST(NginxConfDestination, TheSnippetAndTheHttpPartWithoutListen)
{
    nginx_conf_options o = destination_options();
    o.listen.clear();
    std::string conf = nginx_conf(o);
    EXPECT_THAT(conf, Not(HasSubstr("server {")));
    EXPECT_THAT(conf, HasSubstr("#     proxy_pass http://$sio_steer_upstream;"));
    EXPECT_EQ(upstream_blocks(conf).size(), 256u);
    std::string snippet = nginx_location_snippet(o);
    EXPECT_THAT(snippet, HasSubstr("\nproxy_pass http://$sio_steer_upstream;"));
    EXPECT_THAT(snippet, Not(HasSubstr("upstream sio_steer")));
    EXPECT_THAT(snippet, HasSubstr("--key destination"));
    EXPECT_THAT(snippet, Not(HasSubstr("proxy_bind")));
}

TEST(NginxConf, TlsOnTheListenWithTheGivenCertificate)
{
    nginx_conf_options o = destination_options();
    o.ssl_certificate = "/etc/ssl/chat.pem";
    o.ssl_certificate_key = "/etc/ssl/private/chat.key";
    std::string conf = nginx_conf(o);
    EXPECT_THAT(conf, HasSubstr("    listen 127.0.0.1:8443 ssl;\n    ssl_certificate /etc/ssl/chat.pem;\n"
                                "    ssl_certificate_key /etc/ssl/private/chat.key;\n"));
    o.destination_key = false;
    EXPECT_THAT(nginx_conf(o), HasSubstr("listen 127.0.0.1:8443 ssl;"));
}

exit_code usage_error(const nginx_conf_options& o)
{
    try {
        validate(o);
    } catch (const steer_error& e) {
        EXPECT_FALSE(e.fix().empty()) << e.what();
        return e.code();
    }
    return exit_code::ok;
}

TEST(NginxConf, BadOptionsAreUsageErrorsThatSayWhatToDo)
{
    auto with = [](auto change) {
        nginx_conf_options o;
        change(o);
        return usage_error(o);
    };
    EXPECT_EQ(with([](auto& o) { o.upstream = "localhost:5001"; }), exit_code::usage) << "may resolve to ::1";
    EXPECT_EQ(with([](auto& o) { o.upstream = "10.0.0.5:5001"; }), exit_code::usage) << "not on this host";
    EXPECT_EQ(with([](auto& o) { o.upstream = "127.0.0.1"; }), exit_code::usage);
    EXPECT_EQ(with([](auto& o) { o.upstream = "127.0.0.1:70000"; }), exit_code::usage);
    EXPECT_EQ(with([](auto& o) { o.listen = "example.com:80"; }), exit_code::usage);
    EXPECT_EQ(with([](auto& o) { o.listen = "[::]"; }), exit_code::usage);
    EXPECT_EQ(with([](auto& o) { o.real_ip_header = "X-Forwarded-For"; }), exit_code::usage) << "trusting anyone";
    EXPECT_EQ(with([](auto& o) { o.trusted = {"10.0.0.0/8"}; }), exit_code::usage);
    EXPECT_EQ(with([](auto& o) {
                  o.real_ip_header = "X-Forwarded-For";
                  o.trusted = {"10.0.0.0/33"};
              }),
              exit_code::usage);
    EXPECT_EQ(with([](auto& o) {
                  o.real_ip_header = "X Forwarded";
                  o.trusted = {"10.0.0.0/8"};
              }),
              exit_code::usage);
    EXPECT_EQ(with([](auto& o) {
                  o.destination_key = true;
                  o.destinations = 0;
              }),
              exit_code::usage);
    EXPECT_EQ(with([](auto& o) {
                  o.destination_key = true;
                  o.destinations = 10001;
              }),
              exit_code::usage)
        << "split_clients counts in hundredths of a percent";
    EXPECT_EQ(with([](auto& o) {
                  o.destination_key = true;
                  o.upstream = "127.255.255.200:5001";
                  o.destinations = 56;
              }),
              exit_code::usage)
        << "the last destination would be the loopback broadcast address";
    EXPECT_EQ(with([](auto& o) {
                  o.destination_key = true;
                  o.keepalive = 0;
              }),
              exit_code::usage);
    EXPECT_EQ(with([](auto& o) {
                  o.listen = "443";
                  o.ssl_certificate = "/etc/ssl/chat.pem";
              }),
              exit_code::usage)
        << "a certificate without its key";
    EXPECT_EQ(with([](auto& o) {
                  o.ssl_certificate = "/etc/ssl/chat.pem";
                  o.ssl_certificate_key = "/etc/ssl/chat.key";
              }),
              exit_code::usage)
        << "TLS without --listen";
    EXPECT_EQ(with([](auto& o) {
                  o.listen = "443";
                  o.ssl_certificate = "/etc/ssl/chat.pem; include /x";
                  o.ssl_certificate_key = "/etc/ssl/chat.key";
              }),
              exit_code::usage);
    EXPECT_EQ(with([](auto& o) {
                  o.destination_key = true;
                  o.upstream = "127.1.0.1:5001";
                  o.destinations = 1000;
                  o.listen = "443";
                  o.ssl_certificate = "/etc/ssl/chat.pem";
                  o.ssl_certificate_key = "/etc/ssl/chat.key";
              }),
              exit_code::ok);
    EXPECT_EQ(with([](auto& o) {
                  o.listen = "[::1]:8080";
                  o.upstream = "127.0.0.2:5001";
                  o.real_ip_header = "X-Forwarded-For";
                  o.trusted = {"127.0.0.1", "2001:db8::/32"};
              }),
              exit_code::ok);
}

}  // namespace

// Found by tests/fuzz (corpus/nginx_conf/nul_in_path): a NUL or another control character passed
// the checks and went into nginx's configuration as it was; inet_pton read an address up to a NUL.
// Found by the nginx_conf fuzz target: nginx reads a backslash in a token as an escape, so a path
// ending in one ("/x\\" then ";") would carry the directive on into the next line.
TEST(NginxConf, ABackslashInAPathIsRefused)
{
    for (const char* path : {"/etc/ssl/site\\", "/etc/ssl/sit\\npem"}) {
        nginx_conf_options o;
        o.listen = "443";
        o.ssl_certificate = path;
        o.ssl_certificate_key = "/etc/ssl/site.key";
        EXPECT_EQ(usage_error(o), exit_code::usage) << path;
    }
}

TEST(NginxConf, ControlCharactersAndNulsAreRefused)
{
    using namespace std::string_literals;
    auto with = [](auto change) {
        nginx_conf_options o;
        o.listen = "443";
        change(o);
        return usage_error(o);
    };
    EXPECT_EQ(with([](auto& o) {
                  o.ssl_certificate = "/etc/ssl/site.pem";
                  o.ssl_certificate_key = "/e\0\0\0\0gl/site.key"s;
              }),
              exit_code::usage);
    EXPECT_EQ(with([](auto& o) {
                  o.ssl_certificate = "/etc/ssl/\x1b[2Jsite.pem";
                  o.ssl_certificate_key = "/etc/ssl/site.key";
              }),
              exit_code::usage);
    EXPECT_EQ(with([](auto& o) { o.upstream = "127.0.0.1\0;evil:5001"s; }), exit_code::usage);
    EXPECT_EQ(with([](auto& o) { o.listen = "127.0.0.1\0;evil:443"s; }), exit_code::usage);
    EXPECT_EQ(with([](auto& o) {
                  o.real_ip_header = "X-Forwarded-For";
                  o.trusted = {"10.0.0.0\0;evil"s};
              }),
              exit_code::usage);
}
