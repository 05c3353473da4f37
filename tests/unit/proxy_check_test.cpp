// proxy_warning: one proxy address in front of the workers is told apart from real clients.
#include <gtest/gtest.h>

#include "logic/client_key.h"
#include "logic/options.h"
#include "logic/proxy_check.h"

namespace {

using namespace sio_steer;

config default_config() { return make_config(steer_options{}, 0); }

proxy_sample sample(std::uint64_t connections, std::uint64_t new_sessions, const std::vector<std::string>& recent)
{
    proxy_sample s;
    s.connections = connections;
    s.new_sessions = new_sessions;
    for (const auto& a : recent)
        s.recent.push_back(*parse_address(a));
    return s;
}

TEST(ProxyWarning, NginxWithoutPerClientSourcesIsNamedAndPointsToNginxConf)
{
    auto w = proxy_warning(sample(5000, 1, {"127.0.0.1"}), default_config());
    ASSERT_TRUE(w);
    EXPECT_NE(w->find("127.0.0.1"), std::string::npos) << *w;
    EXPECT_NE(w->find("5000 connections"), std::string::npos) << *w;
    EXPECT_NE(w->find("on this host"), std::string::npos) << *w;
    EXPECT_NE(w->find("sio-steer nginx-conf"), std::string::npos) << *w;
}

TEST(ProxyWarning, ARemoteBalancerIsNotCalledAProxyOnThisHost)
{
    auto w = proxy_warning(sample(900, 2, {"192.0.2.10", "192.0.2.11"}), default_config());
    ASSERT_TRUE(w);
    EXPECT_NE(w->find("load balancer"), std::string::npos) << *w;
    EXPECT_NE(w->find("192.0.2.10, 192.0.2.11"), std::string::npos) << *w;
}

TEST(ProxyWarning, ALongRunningProxyStillWarnsAfterSomeExpiries)
{
    // Re-recorded after idle nights and restarts: a few dozen new sessions in millions of connections.
    EXPECT_TRUE(proxy_warning(sample(2'000'000, 40, {"127.0.0.1", "::1"}), default_config()));
}

TEST(ProxyWarning, RealClientsDoNotWarn)
{
    std::vector<std::string> many;
    for (int i = 0; i < 50; i++)
        many.push_back("198.51.100." + std::to_string(i));
    EXPECT_FALSE(proxy_warning(sample(5000, 50, many), default_config()));
}

TEST(ProxyWarning, AQuietHourOfARealSiteDoesNotWarn)
{
    // One recent visitor, but the ring placed thousands of clients since attach.
    EXPECT_FALSE(proxy_warning(sample(300'000, 40'000, {"203.0.113.9"}), default_config()));
}

TEST(ProxyWarning, NginxWithTheMappingDoesNotWarn)
{
    std::vector<std::string> mapped;
    for (int i = 0; i < 300; i++)
        mapped.push_back("127.1." + std::to_string(i / 200) + "." + std::to_string(i % 200));
    EXPECT_FALSE(proxy_warning(sample(900, 300, mapped), default_config()));
}

TEST(ProxyWarning, TooLittleTrafficToJudge)
{
    EXPECT_FALSE(proxy_warning(sample(proxy_min_connections - 1, 1, {"127.0.0.1"}), default_config()));
    EXPECT_FALSE(proxy_warning(sample(10'000, 1, {}), default_config())) << "no recent session: nothing to name";
}

TEST(ProxyWarning, PerConnectionKeysRecordNothingAndNeverWarn)
{
    proxy_sample s = sample(10'000, 0, {"127.0.0.1"});
    s.address_keys = false;
    EXPECT_FALSE(proxy_warning(s, default_config()));
}

}  // namespace
