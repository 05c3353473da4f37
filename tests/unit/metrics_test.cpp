// The Prometheus exposition of status reports, and the --metrics-listen address.
#include <gtest/gtest.h>

#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "logic/errors.h"
#include "logic/listen_address.h"
#include "logic/metrics.h"

namespace {

using namespace sio_steer;
using nlohmann::json;

json report(std::uint64_t hits)
{
    return {{"attached", true},
            {"in_sync", true},
            {"sessions", {{"count", 3}, {"capacity", 1024}}},
            {"moved", {{"count", 1}, {"capacity", 1024}}},
            {"counters",
             {{"session_hits", hits},
              {"new_sessions", 3},
              {"expired", 0},
              {"fallbacks", 1},
              {"migrations", 0},
              {"errors", 0},
              {"moved_full", 0}}},
            {"workers",
             json::array({{{"slot", 0}, {"pid", 101}, {"instance", 0}, {"live", true}, {"selections", 7}},
                          {{"slot", 1}, {"pid", 102}, {"instance", nullptr}, {"live", false}, {"selections", 2}}})},
            {"unmanaged_listeners", json::array()},
            {"follow", {{"mode", "events"}, {"reason", "fexit/inet_listen"}, {"pid", 99}}},
            {"kernel", {{"migrate_req_success", 5}, {"migrate_req_failure", 2}}},
            {"pm2_instances", 4}};
}

std::vector<std::string> lines_of(const std::string& text)
{
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string l; std::getline(in, l);)
        out.push_back(l);
    return out;
}

TEST(PrometheusText, EachFamilyOnceWithItsSamplesTogether)
{
    controller_counters counters;
    counters.syncs = 12;
    counters.reactions = 2;
    std::string text = prometheus_text({{5001, report(40), &counters}, {5002, report(9), nullptr}});

    std::map<std::string, int> help, type;
    std::string family;  // the family whose samples may come now
    std::set<std::string> closed;
    for (const std::string& l : lines_of(text)) {
        if (l.starts_with("# HELP ")) {
            family = l.substr(7, l.find(' ', 7) - 7);
            help[family]++;
            EXPECT_FALSE(closed.count(family)) << family << " described twice";
            closed.insert(family);
        } else if (l.starts_with("# TYPE ")) {
            type[l.substr(7, l.find(' ', 7) - 7)]++;
        } else {
            EXPECT_EQ(l.substr(0, l.find('{')), family) << "a sample away from its family: " << l;
        }
    }
    for (const auto& [name, n] : help) {
        EXPECT_EQ(n, 1) << name;
        EXPECT_EQ(type[name], 1) << name;
    }
    EXPECT_NE(text.find("sio_steer_sessions_hit_total{port=\"5001\"} 40\n"), std::string::npos) << text;
    EXPECT_NE(text.find("sio_steer_sessions_hit_total{port=\"5002\"} 9\n"), std::string::npos) << text;
    EXPECT_NE(text.find("# TYPE sio_steer_sessions_hit_total counter\n"), std::string::npos);
    EXPECT_NE(text.find("# TYPE sio_steer_sessions gauge\n"), std::string::npos);
    EXPECT_NE(text.find("sio_steer_selections_total{port=\"5001\",slot=\"0\",pid=\"101\",instance=\"0\"} 7\n"),
              std::string::npos);
    EXPECT_NE(text.find("sio_steer_worker_live{port=\"5001\",slot=\"1\",pid=\"102\",instance=\"\"} 0\n"),
              std::string::npos);
    EXPECT_NE(text.find("sio_steer_workers_live{port=\"5001\"} 1\n"), std::string::npos);
    EXPECT_NE(text.find("sio_steer_controller_reactions_total{port=\"5001\"} 2\n"), std::string::npos);
    EXPECT_EQ(text.find("sio_steer_controller_reactions_total{port=\"5002\"}"), std::string::npos);
}

TEST(PrometheusText, FollowModeOfAFollowingAttachOnceItKnows)
{
    controller_counters counters;
    std::string text = prometheus_text({{5001, report(1), &counters}});
    EXPECT_EQ(text.find("sio_steer_controller_follow_mode"), std::string::npos) << "not known yet\n" << text;

    counters.set_follow({"polling", "tracefs is not mounted"});
    counters.set_follow({"events", "fexit/inet_listen"});  // one sample: the mode now
    text = prometheus_text({{5001, report(1), &counters}, {5002, report(1), nullptr}});
    EXPECT_NE(text.find("# TYPE sio_steer_controller_follow_mode gauge\n"), std::string::npos) << text;
    EXPECT_NE(text.find("\nsio_steer_controller_follow_mode{port=\"5001\",mode=\"events\"} 1\n"), std::string::npos)
        << text;
    std::size_t first = text.find("sio_steer_controller_follow_mode{");
    EXPECT_EQ(text.find("sio_steer_controller_follow_mode{", first + 1), std::string::npos)
        << "one sample, and none from `status --prometheus` (port 5002)\n"
        << text;
}

// Why a controller polls, for an alert that leaves a chosen polling alone.
TEST(PrometheusText, PollingSaysWhetherItWasAskedFor)
{
    controller_counters counters;
    counters.set_follow({"polling", "no listener watch could be attached (...)"});
    std::string text = prometheus_text({{5001, report(1), &counters}});
    EXPECT_NE(text.find("\nsio_steer_controller_follow_mode{port=\"5001\",mode=\"polling\",reason=\"no_watch\"} 1\n"),
              std::string::npos)
        << text;
    counters.set_follow({"polling", "asked for with --follow polling", true});
    text = prometheus_text({{5001, report(1), &counters}});
    EXPECT_NE(text.find("\nsio_steer_controller_follow_mode{port=\"5001\",mode=\"polling\",reason=\"asked\"} 1\n"),
              std::string::npos)
        << text;
}

TEST(PrometheusText, KernelMigrationCountersPm2InstancesAndWhetherFollowed)
{
    json unfollowed = report(1), old_kernel = report(1);
    unfollowed["follow"] = {{"mode", "none"}, {"reason", "no controller"}, {"pid", nullptr}};
    unfollowed["pm2_instances"] = nullptr;  // workers PM2 did not start
    old_kernel["kernel"] = nullptr;         // Linux < 5.14
    std::string text =
        prometheus_text({{5001, report(1), nullptr}, {5002, unfollowed, nullptr}, {5003, old_kernel, nullptr}});
    EXPECT_NE(text.find("# TYPE sio_steer_kernel_migrate_req_success_total counter\n"
                        "sio_steer_kernel_migrate_req_success_total{port=\"5001\"} 5\n"
                        "sio_steer_kernel_migrate_req_success_total{port=\"5002\"} 5\n"
                        "# HELP"),
              std::string::npos)
        << "no sample for 5003\n"
        << text;
    EXPECT_NE(text.find("sio_steer_kernel_migrate_req_failure_total{port=\"5001\"} 2\n"), std::string::npos) << text;
    EXPECT_NE(text.find("# TYPE sio_steer_pm2_instances gauge\nsio_steer_pm2_instances{port=\"5001\"} 4\n"
                        "sio_steer_pm2_instances{port=\"5003\"} 4\n"),
              std::string::npos)
        << text;
    EXPECT_NE(text.find("sio_steer_followed{port=\"5001\"} 1\nsio_steer_followed{port=\"5002\"} 0\n"),
              std::string::npos)
        << text;
}

TEST(PrometheusText, ControlRefusalsAreTheControllers)
{
    controller_counters counters;
    counters.control_refusals = 3;
    std::string text = prometheus_text({{5001, report(1), &counters}, {5002, report(1), nullptr}});
    EXPECT_NE(text.find("# TYPE sio_steer_controller_control_refusals_total counter\n"
                        "sio_steer_controller_control_refusals_total{port=\"5001\"} 3\n# HELP"),
              std::string::npos)
        << text;
}

TEST(PrometheusText, LabelValuesAreEscaped)
{
    controller_counters counters;
    counters.set_follow({"a\"b\\c\nd", ""});
    std::string text = prometheus_text({{5001, report(1), &counters}});
    EXPECT_NE(text.find(R"(sio_steer_controller_follow_mode{port="5001",mode="a\"b\\c\nd"} 1)"), std::string::npos)
        << text;
}

TEST(PrometheusText, APortWithNothingPinnedIsNotAttached)
{
    std::string text = prometheus_text({{5003, std::nullopt, nullptr}});
    EXPECT_NE(text.find("sio_steer_attached{port=\"5003\"} 0\n"), std::string::npos) << text;
    EXPECT_EQ(text.find("sio_steer_in_sync"), std::string::npos) << "no family without samples";
    EXPECT_NE(text.find("sio_steer_build_info{version=\"" SIO_STEER_VERSION "\",abi=\"3\"} 1\n"), std::string::npos);
}

TEST(ListenAddress, AddressAndPort)
{
    EXPECT_EQ(parse_listen_address("127.0.0.1:9477").host, "127.0.0.1");
    EXPECT_EQ(parse_listen_address("127.0.0.1:9477").port, 9477);
    EXPECT_EQ(parse_listen_address("[::1]:9477").host, "::1");
    EXPECT_EQ(parse_listen_address(":9477").host, "127.0.0.1") << "no address: loopback, not every address";
    EXPECT_EQ(parse_listen_address("0.0.0.0:9477").host, "0.0.0.0");
    for (const char* bad :
         {"9477", "::1:9477", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536", "host:port", "[::1]9477"}) {
        try {
            parse_listen_address(bad);
            ADD_FAILURE() << bad << " accepted";
        } catch (const steer_error& e) {
            EXPECT_EQ(e.code(), exit_code::usage);
            EXPECT_NE(std::string(e.what()).find(std::string("--metrics-listen ") + bad), std::string::npos);
        }
    }
}

}  // namespace
