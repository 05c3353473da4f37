// Prometheus metrics (docs/metrics.md): /metrics of a following `attach --metrics-listen`, scraped
// with an HTTP client while clients connect and workers come and go, and `status --prometheus`.
// Each test runs in a fresh network namespace with a private pin root.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <signal.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include <httplib.h>

#include "harness.h"
#include "logic/unique_fd.h"

namespace sio_steer::test {
namespace {

using namespace std::chrono;
using samples = std::map<std::string, double>;  // `name{labels}` -> value

// The samples of an exposition; fails the test on a sample whose family has no # HELP and
// # TYPE before it, or on a line that is not a sample.
samples parse_exposition(const std::string& text)
{
    static const std::regex sample(R"(^([a-z_][a-z0-9_]*)(\{[^}]*\})? (-?[0-9.e+]+)$)");
    std::set<std::string> described, typed;
    samples out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
        std::smatch m;
        if (line.starts_with("# HELP ")) {
            described.insert(line.substr(7, line.find(' ', 7) - 7));
        } else if (line.starts_with("# TYPE ")) {
            typed.insert(line.substr(7, line.find(' ', 7) - 7));
        } else if (std::regex_match(line, m, sample)) {
            EXPECT_TRUE(described.count(m[1]) && typed.count(m[1])) << m[1] << " has no # HELP / # TYPE before it";
            EXPECT_TRUE(m[1].str().starts_with("sio_steer_")) << line;
            out[m[1].str() + m[2].str()] = std::stod(m[3]);
        } else {
            ADD_FAILURE() << "not a sample: " << line;
        }
    }
    return out;
}

double sum_of(const samples& s, const std::string& family)
{
    double total = 0;
    for (const auto& [key, value] : s)
        if (key.starts_with(family + "{"))
            total += value;
    return total;
}

class MetricsTest : public integration_test {
protected:
    void SetUp() override
    {
        integration_test::SetUp();
        metrics_port = free_port(port);
        start_workers(4);
    }

    std::vector<std::string> attach_args(std::vector<std::string> extra = {}) const
    {
        extra.insert(extra.begin(), {"--resync-interval", resync_ms});
        return args("attach", extra);
    }

    void start_controller()
    {
        controller = std::make_unique<background_process>(
            attach_args({"--metrics-listen", "127.0.0.1:" + std::to_string(metrics_port)}));
        // The metrics are served before the follower's first sync; the control socket after it.
        ASSERT_TRUE(controller->wait_for_output("following port")) << controller->output();
        ASSERT_TRUE(try_scrape()) << controller->output();
    }

    std::optional<std::string> try_scrape()
    {
        httplib::Client client("127.0.0.1", metrics_port);
        client.set_connection_timeout(1);
        httplib::Result res = client.Get("/metrics");
        if (!res || res->status != 200)
            return std::nullopt;
        content_type = res->get_header_value("Content-Type");
        return res->body;
    }

    samples scrape()
    {
        std::optional<std::string> body = try_scrape();
        EXPECT_TRUE(body) << "scrape failed\n" << (controller ? controller->output() : "");
        return body ? parse_exposition(*body) : samples{};
    }

    // Scrapes until `done` holds (the controller reacts within a resync), at most `patience`.
    samples scrape_until(const std::function<bool(const samples&)>& done)
    {
        samples s;
        for (auto deadline = steady_clock::now() + patience; steady_clock::now() < deadline;) {
            s = scrape();
            if (done(s))
                break;
            std::this_thread::sleep_for(milliseconds(20));
        }
        return s;
    }

    std::string label() const { return "port=\"" + std::to_string(port) + "\""; }
    std::string metric(const std::string& name) const { return name + "{" + label() + "}"; }

    std::uint16_t metrics_port = 0;
    std::string resync_ms = "200";
    std::string content_type;
};

TEST_F(MetricsTest, ScrapeShowsTheAttachedPortAndEveryWorker)
{
    start_controller();
    samples s = scrape();
    EXPECT_EQ(content_type, "text/plain; version=0.0.4; charset=utf-8");
    EXPECT_EQ(s[metric("sio_steer_attached")], 1);
    EXPECT_EQ(s[metric("sio_steer_in_sync")], 1);
    EXPECT_EQ(s[metric("sio_steer_workers_live")], 4);
    EXPECT_EQ(s[metric("sio_steer_unmanaged_listeners")], 0);
    EXPECT_EQ(s[metric("sio_steer_sessions")], 0);
    EXPECT_EQ(s[metric("sio_steer_sessions_capacity")], 262144);
    EXPECT_EQ(s[metric("sio_steer_followed")], 1);
    for (int i = 0; i < 4; i++) {
        // Slots are filled in instance order on a first attach.
        std::string worker = label() + ",slot=\"" + std::to_string(i) + "\",pid=\"" + std::to_string(w[i]->pid()) +
                             "\",instance=\"" + std::to_string(i) + "\"";
        EXPECT_EQ(s.count("sio_steer_worker_live{" + worker + "}"), 1u) << worker;
        EXPECT_EQ(s["sio_steer_selections_total{" + worker + "}"], 0);
    }
    EXPECT_EQ(s.count("sio_steer_build_info{version=\"" SIO_STEER_VERSION "\",abi=\"3\"}"), 1u);
    EXPECT_GE(s[metric("sio_steer_controller_syncs_total")], 0);
}

TEST_F(MetricsTest, CountersMoveWithTrafficAndMatchWhereConnectionsWent)
{
    start_controller();
    samples before = scrape();
    std::vector<std::string> clients = client_addresses(60, 0);
    std::map<std::string, int> answered;  // pid -> connections it answered
    for (int round = 0; round < 2; round++)
        for (const std::string& c : clients) {
            std::string answer = ask_worker(c, "127.0.0.1", port);
            ASSERT_FALSE(answer.empty()) << c;
            answered[answer.substr(answer.find(' ') + 1)]++;
        }
    // The session count is the controller's, refreshed every 2 s (docs/metrics.md, "Limits").
    samples after = scrape_until([&](const samples& s) { return s.at(metric("sio_steer_sessions")) == 60; });
    EXPECT_EQ(after[metric("sio_steer_sessions")], 60);
    EXPECT_EQ(after[metric("sio_steer_sessions_recorded_total")] - before[metric("sio_steer_sessions_recorded_total")],
              60);
    EXPECT_EQ(after[metric("sio_steer_sessions_hit_total")] - before[metric("sio_steer_sessions_hit_total")], 60);
    EXPECT_EQ(sum_of(after, "sio_steer_selections_total") - sum_of(before, "sio_steer_selections_total"), 120);
    EXPECT_EQ(after[metric("sio_steer_selection_errors_total")], 0);
    for (const auto& [pid, n] : answered) {
        double selected = 0;
        for (const auto& [key, value] : after)
            if (key.starts_with("sio_steer_selections_total{") && key.find("pid=\"" + pid + "\"") != std::string::npos)
                selected += value;
        EXPECT_EQ(selected, n) << "pid " << pid;
    }
    if (HasFailure()) {  // which counter moved how, and whether the controller changed anything meanwhile
        for (const auto& [key, value] : after)
            std::printf("%s %g (before %g)\n", key.c_str(), value, before[key]);
        std::printf("controller:\n%s\n", controller->output().c_str());
    }
}

TEST_F(MetricsTest, ReactionsCountTheSyncsThatChangedSomething)
{
    start_controller();
    const std::string reactions = metric("sio_steer_controller_reactions_total");
    const std::string syncs = metric("sio_steer_controller_syncs_total");
    samples first = scrape();
    samples quiet = scrape_until([&](const samples& s) { return s.at(syncs) >= first.at(syncs) + 3; });
    EXPECT_GE(quiet[syncs], first[syncs] + 3) << "resyncs every 200 ms";
    EXPECT_EQ(quiet[reactions], first[reactions]) << "nothing changed";

    std::vector<std::string> clients = client_addresses(80, 0);
    probe(clients, port, 1);
    w[1]->kill_now();
    // The counter moves just after the sync that the gauges show: wait for both, then let a few
    // more resyncs pass, which must not count.
    scrape_until([&](const samples& s) {
        return s.at(metric("sio_steer_workers_live")) == 3 && s.at(reactions) > quiet.at(reactions);
    });
    std::this_thread::sleep_for(milliseconds(600));
    samples gone = scrape();
    EXPECT_EQ(gone[metric("sio_steer_workers_live")], 3);
    EXPECT_EQ(gone[metric("sio_steer_in_sync")], 1);
    EXPECT_EQ(gone[reactions], quiet[reactions] + 1);
    EXPECT_EQ(sum_of(gone, "sio_steer_worker_live"), 3) << "the dead worker's slot reads 0";

    probe(clients, port, 1);  // the dead worker's clients move, once each
    samples moved = scrape();
    EXPECT_GT(moved[metric("sio_steer_fallbacks_total")], gone[metric("sio_steer_fallbacks_total")]);

    w.push_back(worker_process::instance(port, 1));
    scrape_until([&](const samples& s) {
        return s.at(metric("sio_steer_workers_live")) == 4 && s.at(reactions) > gone.at(reactions);
    });
    std::this_thread::sleep_for(milliseconds(600));
    samples back = scrape();
    EXPECT_EQ(back[metric("sio_steer_workers_live")], 4);
    EXPECT_EQ(back[reactions], quiet[reactions] + 2);
}

// The listener watch wakes the controller for listeners only. An accepted connection is born as a
// clone of its listener and leaves TCP_LISTEN for SYN_RECV; taking that for a listener closing made
// every connection cost a full resync (/proc scan included).
TEST_F(MetricsTest, ConnectionsDoNotWakeTheControllerAndAClosingListenerDoes)
{
    resync_ms = "60000";  // no periodic resync within the test
    start_controller();
    const std::string syncs = metric("sio_steer_controller_syncs_total");
    // The follower's first resync, when it starts, may come after the first scrape.
    samples before = scrape_until([&](const samples& s) { return s.at(syncs) >= 1; });
    std::vector<std::string> clients = client_addresses(10, 0);
    for (int burst = 0; burst < 20; burst++) {  // 200 connections, in bursts the controller could follow
        probe(clients, port, 1);
        std::this_thread::sleep_for(milliseconds(30));
    }
    samples after = scrape();
    EXPECT_EQ(after[syncs], before[syncs]) << "connections woke the controller";

    w[2]->kill_now();
    // Noticed without a periodic resync (a minute away): within scrape_until's patience. The gauges
    // read the kernel's map, which drops a closed socket at once, so wait for the sync as well.
    samples gone = scrape_until([&](const samples& s) {
        return s.at(syncs) > after[syncs] && s.at(metric("sio_steer_workers_live")) == 3 &&
               s.at(metric("sio_steer_in_sync")) == 1;
    });
    EXPECT_GT(gone[syncs], after[syncs]) << "the closing listener went unnoticed";
    EXPECT_EQ(gone[metric("sio_steer_workers_live")], 3);
    EXPECT_EQ(gone[metric("sio_steer_in_sync")], 1);
}

TEST_F(MetricsTest, ReleasesCountTheClientsADrainingWorkerHandedOver)
{
    start_controller();
    const std::string releases = metric("sio_steer_controller_releases_total");
    std::vector<std::string> clients = client_addresses(40, 0);
    std::map<std::string, std::vector<std::string>> answers = probe(clients, port, 1);
    w.push_back(worker_process::instance(port, 2));  // instance 2's replacement: a successor
    scrape_until([&](const samples& s) { return s.at(metric("sio_steer_workers_live")) == 5; });
    const std::string old_pid = std::to_string(w[2]->pid()),
                      control = pins().lock_dir() + "/" + std::to_string(port) + ".sock";
    int released = 0, refused = 0;
    for (const auto& [client, answer] : answers) {
        bool mine = answer.at(0).ends_with(" " + old_pid);
        std::string reply = (mine ? w[2] : w[0])->request(control, "release " + client);
        released += reply.starts_with("ok ");
        refused += reply.starts_with("none ");
    }
    ASSERT_GT(released, 0);
    EXPECT_GT(refused, 0) << "clients of other workers are not worker 0's to release";
    EXPECT_EQ(scrape()[releases], released) << "only the releases that happened count";
}

TEST_F(MetricsTest, StatusPrometheusPrintsTheSameSamplesOnce)
{
    start_controller();
    probe(client_addresses(40, 0), port, 2);
    // Once the follower has said how it follows the port, every controller family is served.
    // (and its session count, refreshed every 2 s, has seen the clients).
    samples served = scrape_until([&](const samples& s) {
        return sum_of(s, "sio_steer_controller_follow_mode") == 1 && s.at(metric("sio_steer_sessions")) == 40;
    });
    run_result r = sio_steer(args("status", {"--prometheus"}));
    ASSERT_EQ(r.code, 0) << r.err;
    samples printed = parse_exposition(r.out);
    for (const auto& [key, value] : served) {
        if (key.starts_with("sio_steer_controller_"))
            EXPECT_EQ(printed.count(key), 0u) << key << ": only the running controller knows it";
        else
            EXPECT_EQ(printed[key], value) << key;
    }
    EXPECT_EQ(printed.size() + 5, served.size())
        << "syncs, reactions, releases, control_refusals and follow_mode are the controller's";
}

// `status --prometheus` (node_exporter's textfile collector) outlives the controller: it says
// whether one follows the port, which the controller's own /metrics cannot say once it is gone.
TEST_F(MetricsTest, StatusPrometheusSaysWhetherAControllerFollows)
{
    start_controller();
    EXPECT_EQ(scrape()[metric("sio_steer_followed")], 1);
    run_result r = sio_steer(args("status", {"--prometheus"}));
    EXPECT_EQ(parse_exposition(r.out)[metric("sio_steer_followed")], 1) << r.out;
    controller.reset();  // SIGTERM: steering stays, nobody follows
    r = sio_steer(args("status", {"--prometheus"}));
    samples s = parse_exposition(r.out);
    EXPECT_EQ(s[metric("sio_steer_attached")], 1) << r.out;
    EXPECT_EQ(s[metric("sio_steer_followed")], 0) << r.out;
}

// TCPMigrateReqSuccess and TCPMigrateReqFailure of the namespace, exactly: the test's network
// namespace is its own, so they start at 0 and count only what the test does.
TEST_F(MetricsTest, KernelMigrationCountersSayWhichQueuedConnectionsMovedAndWhichWereReset)
{
    start_controller();
    const std::string moved = metric("sio_steer_kernel_migrate_req_success_total"),
                      reset = metric("sio_steer_kernel_migrate_req_failure_total");
    samples before = scrape();
    ASSERT_EQ(before.count(moved), 1u) << "this kernel (>= 5.14) has the counters";
    EXPECT_EQ(before[moved], 0);
    EXPECT_EQ(before[reset], 0);

    // Queued on a worker that closes while others listen: handed over.
    std::map<std::string, std::vector<std::string>> where = probe(client_addresses(40, 0), port, 1);
    auto queue_on = [&](const worker_process& worker, int n) {
        std::string client;
        for (const auto& [c, answers] : where)
            if (answers.at(0).ends_with(" " + std::to_string(worker.pid())))
                client = c;
        EXPECT_FALSE(client.empty()) << "no client of pid " << worker.pid();
        worker.signal(SIGSTOP);
        EXPECT_TRUE(worker.wait_stopped());
        std::vector<std::unique_ptr<pending_connection>> queued;
        for (int i = 0; i < n; i++)
            queued.push_back(std::make_unique<pending_connection>(client, "127.0.0.1", port));
        std::this_thread::sleep_for(milliseconds(50));  // handshakes done: in the accept queue
        return queued;
    };
    auto served = [](std::vector<std::unique_ptr<pending_connection>>& queued) {
        int n = 0;
        for (auto& c : queued)
            n += !c->answer().empty();
        return n;
    };
    auto first = queue_on(*w[1], 5);
    w[1]->kill_now();
    EXPECT_EQ(served(first), 5);
    samples after = scrape();
    EXPECT_EQ(after[moved], 5);
    EXPECT_EQ(after[reset], 0);

    // Queued on the last worker of the group: nobody to hand them to, the kernel resets them.
    w[0]->kill_now();
    w[2]->kill_now();
    auto last = queue_on(*w[3], 4);
    w[3]->kill_now();
    EXPECT_EQ(served(last), 0);
    samples end = scrape();
    EXPECT_EQ(end[moved], 5);
    EXPECT_EQ(end[reset], 4);

    // status shows them too, as text and as JSON.
    run_result text = sio_steer(args("status"));
    EXPECT_NE(text.out.find("\n  kernel   migrate_req success=5 failure=4 (connections queued on closing listeners: "
                            "moved, reset)\n"),
              std::string::npos)
        << text.out;
    run_result json = sio_steer(args("status", {"--json"}));
    EXPECT_NE(json.out.find("\"kernel\": {\n    \"migrate_req_failure\": 4,\n    \"migrate_req_success\": 5\n  }"),
              std::string::npos)
        << json.out;
}

// PM2's `instances` setting comes from the newest worker's pm2_env; workers PM2 did not start
// have none, and then there is no sample.
TEST_F(MetricsTest, Pm2InstancesIsTheNewestWorkersSetting)
{
    start_controller();
    const std::string instances = metric("sio_steer_pm2_instances");
    EXPECT_EQ(scrape().count(instances), 0u) << "the workers have no pm2_env";
    w.push_back(worker_process::pm2_instance(port, 4, 6));
    samples s = scrape_until([&](const samples& s) { return s.count(instances) > 0; });
    EXPECT_EQ(s[instances], 6);
    EXPECT_EQ(s[metric("sio_steer_workers_live")], 5);
    run_result text = sio_steer(args("status"));
    EXPECT_NE(text.out.find("\n  pm2      instances = 6 (the app's setting), 5 worker sockets listen\n"),
              std::string::npos)
        << text.out;
    w.back()->kill_now();
    s = scrape_until([&](const samples& s) { return s.count(instances) == 0; });
    EXPECT_EQ(s.count(instances), 0u) << "the newest live worker is not PM2's";
}

TEST_F(MetricsTest, ControlRefusalsCountPeersThatAreNotWorkers)
{
    start_controller();
    const std::string refusals = metric("sio_steer_controller_control_refusals_total");
    const std::string control = pins().lock_dir() + "/" + std::to_string(port) + ".sock";
    EXPECT_EQ(scrape()[refusals], 0);
    EXPECT_TRUE(w[0]->request(control, "release 192.0.2.1").starts_with("none ")) << "a worker is answered";
    EXPECT_EQ(scrape()[refusals], 0);
    // A worker of another port: a stranger here.
    std::unique_ptr<worker_process> stranger = worker_process::start(free_port(metrics_port), {});
    EXPECT_TRUE(stranger->request(control, "release 192.0.2.1").starts_with("error refused"));
    EXPECT_EQ(scrape()[refusals], 1);
}

TEST_F(MetricsTest, StatusPrometheusSaysZeroForAPortWithNothingPinned)
{
    run_result r = sio_steer(args("status", {"--prometheus"}));
    EXPECT_EQ(r.code, exit_not_attached) << r.err;
    samples s = parse_exposition(r.out);
    EXPECT_EQ(s.size(), 2u) << r.out;  // attached 0, build_info
    EXPECT_EQ(s.at(metric("sio_steer_attached")), 0);
}

// Bad --metrics-listen values are refused before anything changes.
TEST_F(MetricsTest, MalformedOrTakenMetricsAddressIsRefusedAndChangesNothing)
{
    for (const char* bad : {"9477", "127.0.0.1:0", "::1:9477", "127.0.0.1:70000", "127.0.0.1:x"}) {
        run_result r = sio_steer(attach_args({"--metrics-listen", bad}));
        EXPECT_EQ(r.code, exit_usage) << bad << "\n" << r.err;
        EXPECT_NE(r.err.find(std::string("--metrics-listen ") + bad + " is not an ADDRESS:PORT"), std::string::npos)
            << r.err;
    }
    run_result once = sio_steer(attach_args({"--once", "--metrics-listen", "127.0.0.1:9477"}));
    EXPECT_EQ(once.code, exit_usage) << once.err;
    EXPECT_NE(once.err.find("--metrics-listen needs a following attach"), std::string::npos) << once.err;

    // Something else listens on the metrics port.
    unique_fd taken = listen_on_loopback(metrics_port);
    ASSERT_TRUE(taken);
    run_result r = sio_steer(attach_args({"--metrics-listen", "127.0.0.1:" + std::to_string(metrics_port)}));
    EXPECT_EQ(r.code, exit_environment) << r.err;
    EXPECT_NE(r.err.find("cannot listen for metrics on 127.0.0.1:" + std::to_string(metrics_port)), std::string::npos)
        << r.err;
    EXPECT_FALSE(std::filesystem::exists(pins().dir(port))) << "nothing was pinned";
}

}  // namespace
}  // namespace sio_steer::test
