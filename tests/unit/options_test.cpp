// Option parsing and the client key as the program computes it.
#include <gtest/gtest.h>

#include <cstring>

#include "logic/client_key.h"
#include "logic/errors.h"
#include "logic/options.h"

namespace sio_steer {
namespace {

exit_code code_of(auto&& f)
{
    try {
        f();
    } catch (const steer_error& e) {
        return e.code();
    }
    return exit_code::ok;
}

TEST(Options, PortsOutsideOneTo65535AreUsageErrors)
{
    EXPECT_EQ(parse_port("5001"), 5001);
    for (const char* bad : {"0", "65536", "-1", "50x", "", " 80"})
        EXPECT_EQ(code_of([&] { parse_port(bad); }), exit_code::usage) << bad;
}

TEST(Options, DurationsTakeUnits)
{
    EXPECT_EQ(parse_duration("--session-ttl", "600").count(), 600);
    EXPECT_EQ(parse_duration("--session-ttl", "10m").count(), 600);
    EXPECT_EQ(parse_duration("--session-ttl", "2h").count(), 7200);
    for (const char* bad : {"0", "10d", "m", "1.5h", "999h"})
        EXPECT_EQ(code_of([&] { parse_duration("--session-ttl", bad); }), exit_code::usage) << bad;
}

TEST(Options, KeyModesParseAndNameBothWays)
{
    for (const char* name : {"address", "address,port", "destination"})
        EXPECT_EQ(key_mode_name(parse_key_mode(name)), name);
    EXPECT_EQ(parse_key_mode("destination"), SIO_STEER_KEY_DESTINATION);
    for (const char* bad : {"", "dest", "port", "address,destination"})
        EXPECT_EQ(code_of([&] { parse_key_mode(bad); }), exit_code::usage) << bad;
}

TEST(Options, OnlyPerConnectionModeRecordsNoSessions)
{
    EXPECT_TRUE(SIO_STEER_KEY_RECORDS(SIO_STEER_KEY_ADDRESS));
    EXPECT_TRUE(SIO_STEER_KEY_RECORDS(SIO_STEER_KEY_DESTINATION));
    EXPECT_FALSE(SIO_STEER_KEY_RECORDS(SIO_STEER_KEY_ADDRESS_PORT));
}

TEST(Options, PrefixesAndSizesAreRangeChecked)
{
    steer_options o;
    o.v4_prefix = 33;
    EXPECT_EQ(code_of([&] { validate(o); }), exit_code::usage);
    o = {};
    o.v6_prefix = 0;
    EXPECT_EQ(code_of([&] { validate(o); }), exit_code::usage);
    o = {};
    o.max_sessions = 10;
    EXPECT_EQ(code_of([&] { validate(o); }), exit_code::usage);
    EXPECT_EQ(code_of([&] { validate(steer_options{}); }), exit_code::ok);
}

TEST(Options, NumbersAreDigitsOnlyAndNeverWrap)
{
    EXPECT_EQ(parse_number("--resync-interval", "2000", 100, 3600000), 2000u);
    for (const char* bad : {"-1", "-4294967272", "+5", " 5", "5 ", "5ms", "", "0x10", "99999999999999999999999"})
        EXPECT_EQ(code_of([&] { parse_number("--v4-prefix", bad, 0, UINT32_MAX); }), exit_code::usage) << bad;
    EXPECT_EQ(code_of([&] { parse_number("--resync-interval", "99", 100, 3600000); }), exit_code::usage);
    EXPECT_EQ(code_of([&] { parse_number("--resync-interval", "3600001", 100, 3600000); }), exit_code::usage);
}

TEST(ClientKey, Ipv4IsMappedAndMaskedToItsPrefix)
{
    steer_options o;
    o.v4_prefix = 24;
    config c = make_config(o, 1);
    client_key k = key_for(*parse_address("192.0.2.77"), c);
    EXPECT_TRUE(is_v4_mapped(k));
    EXPECT_EQ(format_key(k, c), "192.0.2.0/24");
    EXPECT_EQ(key_for(*parse_address("192.0.2.1"), c).addr[15], 0);
}

TEST(ClientKey, Ipv6KeepsTheFirst64BitsByDefault)
{
    config c = make_config(steer_options{}, 1);
    client_key a = key_for(*parse_address("2001:db8:1:2:aaaa::1"), c);
    client_key b = key_for(*parse_address("2001:db8:1:2:bbbb::9"), c);
    EXPECT_EQ(std::memcmp(a.addr, b.addr, 16), 0) << "one /64, one client";
    EXPECT_EQ(format_key(a, c), "2001:db8:1:2::/64");
    EXPECT_NE(std::memcmp(a.addr, key_for(*parse_address("2001:db8:1:3::1"), c).addr, 16), 0);
}

TEST(ClientKey, PrefixMaskKeepsExactlyThatManyBits)
{
    for (std::uint32_t bits = 0; bits <= 128; bits++) {
        client_key m = sio_steer_prefix_mask(bits);
        std::uint32_t ones = 0;
        for (auto byte : m.addr)
            ones += static_cast<std::uint32_t>(__builtin_popcount(byte));
        EXPECT_EQ(ones, bits);
        if (bits > 0) {
            EXPECT_TRUE(m.addr[(bits - 1) / 8] & (0x80 >> ((bits - 1) % 8))) << "leading bits, not trailing";
        }
    }
}

TEST(ClientKey, HashDependsOnTheSeedAndSpreads)
{
    client_key k = *parse_address("10.1.2.3");
    EXPECT_NE(sio_steer_hash(&k, 0, 1), sio_steer_hash(&k, 0, 2));
    std::vector<int> buckets(16);
    for (int i = 0; i < 16000; i++) {
        client_key c = *parse_address("10.0." + std::to_string(i / 256) + "." + std::to_string(i % 256));
        buckets[sio_steer_hash(&c, 0, 7) % 16]++;
    }
    for (int n : buckets)
        EXPECT_NEAR(n, 1000, 150);
    EXPECT_FALSE(parse_address("not-an-address"));
}

}  // namespace
}  // namespace sio_steer
