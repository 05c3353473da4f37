// parse_control_request: the one line a local peer sends on the control socket.
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "logic/client_key.h"
#include "logic/control_request.h"

namespace {

using sio_steer::parse_control_request;
using sio_steer::release_request;

std::string refusal(std::string_view line)
{
    auto r = parse_control_request(line);
    return std::holds_alternative<std::string>(r) ? std::get<std::string>(r) : "(accepted)";
}

TEST(ControlRequest, ReleaseOfAnIpv4OrIpv6Address)
{
    auto r = parse_control_request("release 192.0.2.7");
    ASSERT_TRUE(std::holds_alternative<release_request>(r));
    EXPECT_EQ(std::get<release_request>(r).address, "192.0.2.7");
    const client_key expected = *sio_steer::parse_address("192.0.2.7");
    EXPECT_EQ(0, std::memcmp(&std::get<release_request>(r).key, &expected, sizeof(expected)));

    r = parse_control_request("release 2001:db8::1");
    ASSERT_TRUE(std::holds_alternative<release_request>(r));
    EXPECT_EQ(std::get<release_request>(r).address, "2001:db8::1");
}

TEST(ControlRequest, AnythingElseGetsOneErrorLine)
{
    const std::string unknown = "error unknown request; the one request is: release ADDRESS";
    EXPECT_EQ(refusal(""), unknown);
    EXPECT_EQ(refusal("release"), unknown);
    EXPECT_EQ(refusal("release "), unknown);
    EXPECT_EQ(refusal("RELEASE 192.0.2.7"), unknown);
    EXPECT_EQ(refusal("status"), unknown);
    EXPECT_EQ(refusal("release 192.0.2"), "error 192.0.2 is not an IP address");
    EXPECT_EQ(refusal("release  192.0.2.7"), "error  192.0.2.7 is not an IP address");  // one space only
    EXPECT_EQ(refusal("release 192.0.2.7 "), "error 192.0.2.7  is not an IP address");
    EXPECT_EQ(refusal("release 192.0.2.0/24"), "error 192.0.2.0/24 is not an IP address");
}

// Found by tests/fuzz (corpus/control_request/nul_in_address): inet_pton stops at a NUL, so
// "release 192.0.2.7<NUL>junk" released 192.0.2.7 and echoed the NUL back.
TEST(ControlRequest, AnAddressWithANulInsideIsRefused)
{
    using namespace std::string_literals;
    EXPECT_EQ(refusal("release 192.0.2.7\0junk"s), "error 192.0.2.7\0junk is not an IP address"s);
    EXPECT_EQ(refusal("release ::ff\0\0\0\0" "0.7"s), "error ::ff\0\0\0\0" "0.7 is not an IP address"s);
    EXPECT_FALSE(sio_steer::parse_address("2001:db8::1\0"s));
}

}  // namespace
