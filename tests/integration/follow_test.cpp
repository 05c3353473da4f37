// How a following `attach` learns that listeners came or went (docs/architecture.md, "Following
// the workers"): by listener events wherever the kernel allows a watch, with or without tracefs,
// woken by nothing but the steered port in its own network namespace, and without walking every
// process on a crowded host. Real kernel, test_worker processes, a private netns and pin root.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <regex>
#include <thread>

#include "harness.h"
#include "kernel/pinned_state.h"

namespace sio_steer::test {
namespace {

using namespace std::chrono;

// Runs the controller in a mount namespace of its own after `setup` (shell commands), so that a
// test can show it a host without tracefs, or with it, and never touch the host's mounts.
std::vector<std::string> in_private_mounts(const std::string& setup)
{
    return {"unshare", "--mount", "--propagation", "private", "sh", "-c", setup + "; exec \"$0\" \"$@\""};
}

const std::string hide_tracefs = "umount -l /sys/kernel/tracing 2>/dev/null; umount -l /sys/kernel/debug 2>/dev/null; "
                                 "mount -t tmpfs none /sys/kernel/tracing";
const std::string mount_tracefs = "mountpoint -q /sys/kernel/tracing || mount -t tracefs nodev /sys/kernel/tracing";

class FollowTest : public integration_test {
protected:
    void SetUp() override
    {
        integration_test::SetUp();
        metrics_port = free_port(port);
        start_workers(2);
    }

    // A following attach that resyncs on its own only once a minute: what it does sooner, it
    // does because an event woke it.
    void start_following(const std::vector<std::string>& prefix = {})
    {
        start_controller(
            {"--resync-interval", "60000", "--metrics-listen", "127.0.0.1:" + std::to_string(metrics_port)}, prefix,
            "control socket");
    }

    nlohmann::json follow_status() const
    {
        run_result r = sio_steer(args("status", {"--json"}));
        auto doc = nlohmann::json::parse(r.out, nullptr, false);
        return doc.is_object() && doc.contains("follow") ? doc["follow"] : nlohmann::json();
    }

    // sio_steer_controller_syncs_total: every time the controller looked at the port's listeners.
    long syncs()
    {
        httplib::Client client("127.0.0.1", metrics_port);
        client.set_connection_timeout(2);
        httplib::Result res = client.Get("/metrics");
        std::smatch m;
        static const std::regex line(R"(\nsio_steer_controller_syncs_total\{[^}]*\} ([0-9]+))");
        if (!res || !std::regex_search(res->body, m, line))
            return -1;
        return std::stol(m[1]);
    }

    // Whether the workers map holds exactly these workers' sockets, waiting up to `limit`.
    bool map_holds_pids(std::set<std::uint32_t> pids, milliseconds limit = milliseconds(2000))
    {
        auto deadline = steady_clock::now() + limit;
        do {
            std::optional<pinned_state> state = pinned_state::open(pins().dir(port));
            std::set<std::uint32_t> held;
            if (state) {
                std::vector<slot> slots = state->read_slots();
                for (std::uint32_t i = 0; i < slots.size(); i++)
                    if (slots[i].cookie && state->worker_cookie(i) == slots[i].cookie)
                        held.insert(slots[i].pid);
            }
            if (held == pids)
                return true;
            std::this_thread::sleep_for(milliseconds(10));
        } while (steady_clock::now() < deadline);
        return false;
    }

    std::set<std::uint32_t> worker_pids() const
    {
        std::set<std::uint32_t> pids;
        for (const auto& p : w)
            pids.insert(static_cast<std::uint32_t>(p->pid()));
        return pids;
    }

    // A worker starts and another stops: both reach the workers map long before a resync would.
    void expect_events_followed()
    {
        EXPECT_EQ(follow_status().value("mode", ""), "events") << follow_status().dump() << "\n"
                                                               << controller->output();
        EXPECT_NE(controller->output().find("listener events from "), std::string::npos) << controller->output();
        ASSERT_TRUE(map_holds_pids(worker_pids())) << controller->output();
        w.push_back(worker_process::instance(port, 2));
        EXPECT_TRUE(map_holds_pids(worker_pids())) << "a new worker went unnoticed\n" << controller->output();
        w[0]->kill_now();
        w.erase(w.begin());
        EXPECT_TRUE(map_holds_pids(worker_pids())) << "a worker's exit went unnoticed\n" << controller->output();
    }

    std::uint16_t metrics_port = 0;
};

TEST_F(FollowTest, EventsWithoutTracefs)
{
    ASSERT_NO_FATAL_FAILURE(start_following(in_private_mounts(hide_tracefs)));
    expect_events_followed();
}

TEST_F(FollowTest, EventsWithTracefsMounted)
{
    ASSERT_NO_FATAL_FAILURE(start_following(in_private_mounts(mount_tracefs)));
    expect_events_followed();
}

// The same steps with --follow polling: the status says so, and the changes still reach the map
// (within the 100 ms poll), so the tests above can tell the modes apart.
TEST_F(FollowTest, PollingIsSaidAndStillFollows)
{
    controller = std::make_unique<background_process>(args("attach", {"--follow", "polling"}));
    controller->wait_for_output("control socket");
    EXPECT_NE(controller->output().find("following port " + std::to_string(port) + " by polling every 100 ms"),
              std::string::npos)
        << controller->output();
    EXPECT_EQ(follow_status().value("mode", ""), "polling") << follow_status().dump();
    w.push_back(worker_process::instance(port, 2));
    EXPECT_TRUE(map_holds_pids(worker_pids())) << controller->output();
}

TEST_F(FollowTest, AnUnknownFollowModeIsAUsageError)
{
    run_result r = sio_steer(args("attach", {"--follow", "sometimes"}));
    EXPECT_EQ(r.code, exit_usage) << r.err;
    EXPECT_NE(r.err.find("--follow sometimes"), std::string::npos) << r.err;
    EXPECT_FALSE(std::filesystem::exists(pins().dir(port))) << "refused before anything changed";
}

// listen() then close() on a socket, `count` times, on `on_port`.
void listen_storm(std::uint16_t on_port, int count)
{
    for (int i = 0; i < count; i++) {
        int s = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int on = 1;
        setsockopt(s, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on));
        sockaddr_in6 a{};
        a.sin6_family = AF_INET6;
        a.sin6_port = htons(on_port);
        a.sin6_addr = in6addr_any;
        if (bind(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0)
            listen(s, 8);
        close(s);
    }
}

// Listeners that come and go on another port, or on the same port in another network namespace,
// are filtered out in the kernel: they do not wake the controller at all.
TEST_F(FollowTest, AListenStormElsewhereDoesNotWakeIt)
{
    ASSERT_NO_FATAL_FAILURE(start_following());
    ASSERT_TRUE(map_holds_pids(worker_pids())) << controller->output();
    long before = syncs();
    for (int i = 0; i < 200 && before < 1; i++, before = syncs())  // the follower's first resync
        std::this_thread::sleep_for(milliseconds(10));
    ASSERT_GE(before, 1) << controller->output();

    listen_storm(free_port(port), 1000);
    ASSERT_EQ(in_child([&] {
                  if (unshare(CLONE_NEWNET))
                      return 1;
                  listen_storm(port, 1000);  // the steered port number, but another namespace's
                  return 0;
              }),
              0);
    std::this_thread::sleep_for(milliseconds(300));
    EXPECT_EQ(syncs(), before) << "listeners elsewhere woke the controller";

    w.push_back(worker_process::instance(port, 2));  // and one on the port does
    EXPECT_TRUE(map_holds_pids(worker_pids())) << controller->output();
    long after = syncs();
    for (int i = 0; i < 200 && after <= before; i++, after = syncs())  // counted once the sync returns
        std::this_thread::sleep_for(milliseconds(10));
    EXPECT_GT(after, before);
}

// Many sleeping processes holding 30 fds each, as on a crowded host: children of one process of
// their own (not the workers' siblings), each stopped by pid when the object goes away.
class crowd {
public:
    explicit crowd(int processes)
    {
        int report[2];
        if (pipe2(report, O_CLOEXEC))
            return;
        parent_ = fork();
        if (parent_ == 0) {
            close(report[0]);
            int born = 0;
            for (int i = 0; i < processes; i++) {
                pid_t pid = fork();
                if (pid == 0) {
                    close(report[1]);  // the test reads until every writer is gone
                    int fds[2];
                    for (int k = 0; k < 15; k++)
                        if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds))
                            break;
                    pause();
                    _exit(0);
                }
                if (pid < 0 || write(report[1], &pid, sizeof(pid)) != sizeof(pid))
                    break;
                born++;
            }
            close(report[1]);
            while (born > 0 && wait(nullptr) > 0)  // until the test stops them
                born--;
            _exit(0);
        }
        close(report[1]);
        for (pid_t pid; read(report[0], &pid, sizeof(pid)) == sizeof(pid);)
            pids_.push_back(pid);
        close(report[0]);
    }
    ~crowd()
    {
        for (pid_t pid : pids_)
            kill(pid, SIGKILL);
        if (parent_ > 0)
            waitpid(parent_, nullptr, 0);  // it exits once it has reaped them all
    }
    std::size_t size() const { return pids_.size(); }

private:
    pid_t parent_ = -1;
    std::vector<pid_t> pids_;
};

// How often the controller walked every process's fd table so far (it says so each time).
std::size_t walks(const std::string& output)
{
    std::size_t n = 0;
    for (std::size_t at = 0; (at = output.find("in every process's fd table", at)) != std::string::npos; at++)
        n++;
    return n;
}

TEST_F(FollowTest, AWorkerRestartIsFollowedOnACrowdedHost)
{
    crowd extra(2000);
    ASSERT_EQ(extra.size(), 2000u);
    ASSERT_NO_FATAL_FAILURE(start_following());
    ASSERT_TRUE(map_holds_pids(worker_pids())) << controller->output();
    w[1] = nullptr;  // killed: a restart, as PM2 does it
    w[1] = worker_process::instance(port, 1);
    EXPECT_TRUE(map_holds_pids(worker_pids())) << controller->output();
}

// Where nothing says which process listened (polling here; the sockops watch before Linux 6.10),
// a new worker is looked for among its siblings, the children of the workers' parent, not in the
// fd table of every process on the host.
TEST_F(FollowTest, ANewWorkerIsFoundAmongItsSiblingsNotByAWalkOfEveryProcess)
{
    crowd extra(500);
    ASSERT_EQ(extra.size(), 500u);
    controller = std::make_unique<background_process>(args("attach", {"--follow", "polling"}));
    controller->wait_for_output("control socket");
    ASSERT_TRUE(map_holds_pids(worker_pids())) << controller->output();
    std::this_thread::sleep_for(milliseconds(300));  // the follower's first pass, which knows no owner yet
    const std::size_t before = walks(controller->output());
    w[1] = nullptr;
    w[1] = worker_process::instance(port, 1);
    w.push_back(worker_process::instance(port, 2));
    EXPECT_TRUE(map_holds_pids(worker_pids())) << controller->output();
    EXPECT_EQ(walks(controller->output()), before) << controller->output();
}

}  // namespace
}  // namespace sio_steer::test
