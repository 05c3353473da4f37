// How the controller following a port learns of listeners, as other processes see it: `status`
// (text and --json "follow") and the /metrics of the following attach. The attach publishes it in
// its lock file (port_lock::publish); nothing else may claim it once that process is gone.
// Real kernel, test_worker processes, a fresh network namespace and a private pin root per test.
#include <gtest/gtest.h>

#include <unistd.h>

#include <chrono>
#include <sstream>
#include <thread>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "harness.h"
#include "kernel/preflight.h"

namespace sio_steer::test {
namespace {

using namespace std::chrono;
using nlohmann::json;

class StatusFollowTest : public integration_test {
protected:
    void SetUp() override
    {
        integration_test::SetUp();
        metrics_port = free_port(port);
        start_workers(2);
    }

    json follow() const
    {
        run_result r = sio_steer(args("status", {"--json"}));
        json doc = json::parse(r.out, nullptr, false);
        EXPECT_TRUE(doc.is_object() && doc.contains("follow")) << r.out << r.err;
        return doc.is_object() ? doc.value("follow", json::object()) : json::object();
    }

    std::string follow_line() const
    {
        std::istringstream out(sio_steer(args("status")).out);
        for (std::string l; std::getline(out, l);)
            if (l.starts_with("  follow   "))
                return l;
        return "";
    }

    void start_following(const std::string& follow = "auto")
    {
        start_controller({"--follow", follow, "--metrics-listen", "127.0.0.1:" + std::to_string(metrics_port)});
    }

    std::string scrape() const
    {
        httplib::Client client("127.0.0.1", metrics_port);
        client.set_connection_timeout(1);
        httplib::Result res = client.Get("/metrics");
        return res && res->status == 200 ? res->body : "";
    }

    std::uint16_t metrics_port = 0;
};

TEST_F(StatusFollowTest, NothingFollowsAfterAttachOnce)
{
    ASSERT_EQ(sio_steer(args("attach", {"--once"})).code, 0);
    json f = follow();
    EXPECT_EQ(f.value("mode", ""), "none") << f.dump();
    EXPECT_TRUE(f.contains("pid") && f["pid"].is_null()) << f.dump();
    EXPECT_NE(f.value("reason", "").find("no controller holds the port's lock"), std::string::npos) << f.dump();
    EXPECT_EQ(follow_line(), "  follow   no controller follows this port");
}

// This host lets a controller attach a listener watch (kernel >= 5.14 with BTF), with or without
// tracefs: the following attach says "events", in status, status --json and /metrics.
TEST_F(StatusFollowTest, AFollowingAttachSaysItFollowsByEvents)
{
    start_following();
    json f;
    for (int i = 0; i < 100; i++) {  // published once its watch is attached
        f = follow();
        if (f.value("mode", "") != "unknown")
            break;
        std::this_thread::sleep_for(milliseconds(50));
    }
    EXPECT_EQ(f.value("mode", ""), "events") << f.dump() << "\n" << controller->output();
    EXPECT_FALSE(f.value("reason", "").empty()) << "what carries the events\n" << f.dump();
    EXPECT_EQ(f.value("pid", json()), controller->pid()) << f.dump();
    EXPECT_EQ(follow_line(), "  follow   events (" + f.value("reason", "") + ")");

    std::string metrics = scrape();
    const std::string sample =
        "sio_steer_controller_follow_mode{port=\"" + std::to_string(port) + "\",mode=\"events\"} 1\n";
    EXPECT_NE(metrics.find("\n" + sample), std::string::npos) << metrics;
    EXPECT_NE(metrics.find("# TYPE sio_steer_controller_follow_mode gauge\n"), std::string::npos) << metrics;
    EXPECT_EQ(metrics.find("sio_steer_controller_follow_mode{", metrics.find(sample) + 1), std::string::npos)
        << "one sample\n"
        << metrics;

    controller.reset();  // SIGTERM: the lock file stays, but nobody holds it
    EXPECT_EQ(follow().value("mode", ""), "none");
}

TEST_F(StatusFollowTest, AControllerAskedToPollSaysSo)
{
    start_following("polling");
    json f = json::object();
    for (int i = 0; i < 100 && f.value("mode", "") != "polling"; i++) {
        std::this_thread::sleep_for(milliseconds(20));
        f = follow();
    }
    EXPECT_EQ(f.value("mode", ""), "polling") << f.dump() << "\n" << controller->output();
    EXPECT_EQ(follow_line(), "  follow   polling (" + f.value("reason", "") + ")");
    std::string metrics = scrape();
    EXPECT_NE(metrics.find("\nsio_steer_controller_follow_mode{port=\"" + std::to_string(port) +
                           "\",mode=\"polling\",reason=\"asked\"} 1\n"),
              std::string::npos)
        << metrics;
}

// What a controller whose watch was refused publishes (no kernel refuses this host's, so the test
// holds the port's lock and publishes it itself): status shows the mode and the reason as written.
TEST_F(StatusFollowTest, APollingControllerSaysWhy)
{
    ASSERT_EQ(sio_steer(args("attach", {"--once"})).code, 0);
    port_lock lock(pins().lock_dir(), port);
    EXPECT_EQ(follow().value("mode", ""), "unknown") << "held, nothing published yet";
    const std::string why =
        "tp_btf/inet_sock_set_state: refused (Operation not permitted); tracepoint: tracefs is not mounted";
    lock.publish({"polling", why});
    json f = follow();
    EXPECT_EQ(f.value("mode", ""), "polling") << f.dump();
    EXPECT_EQ(f.value("reason", ""), why) << f.dump();
    EXPECT_EQ(f.value("pid", json()), getpid()) << f.dump();
    EXPECT_EQ(follow_line(), "  follow   polling (" + why + ")");
}

}  // namespace
}  // namespace sio_steer::test
