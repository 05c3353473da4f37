// sio-steer under systemd (packaging/sio-steer@.service), short of a running systemd (it is not
// PID 1 in this container): sd_notify messages on a NOTIFY_SOCKET of the test's own, attach run
// with exactly the unit's CapabilityBoundingSet= against workers of another user, and every system
// call attach makes checked against the unit's SystemCallFilter= (recorded with strace).
#include <gtest/gtest.h>

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

#include "harness.h"
#include "logic/unique_fd.h"

namespace sio_steer::test {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono;

// The value of a directive in the packaged unit, e.g. "CapabilityBoundingSet".
std::string unit_directive(const std::string& name)
{
    std::ifstream in(source_file("packaging/sio-steer@.service"));
    for (std::string line; std::getline(in, line);)
        if (line.starts_with(name + "="))
            return line.substr(name.size() + 1);
    ADD_FAILURE() << "the unit has no " << name << "=";
    return "";
}

std::vector<std::string> words(const std::string& text)
{
    std::istringstream in(text);
    std::vector<std::string> out;
    for (std::string w; in >> w;)
        out.push_back(w);
    return out;
}

// The system calls a SystemCallFilter= allows: names as they are, @groups expanded (recursively)
// by `systemd-analyze syscall-filter`.
void expand_filter(const std::string& item, std::set<std::string>& allowed, std::set<std::string>& seen)
{
    if (!item.starts_with("@")) {
        allowed.insert(item);
        return;
    }
    if (!seen.insert(item).second)
        return;
    std::istringstream in(capture("systemd-analyze syscall-filter " + item + " 2>&1").out);
    std::string line;
    std::getline(in, line);  // the group's own name
    while (std::getline(in, line)) {
        line.erase(0, line.find_first_not_of(' '));
        if (!line.empty() && line[0] != '#')
            expand_filter(line, allowed, seen);
    }
}

// A test_worker running as `uid` (not root): PM2 apps run as their own user.
std::unique_ptr<worker_process> foreign_worker(std::uint16_t port, int instance, uid_t uid)
{
    return worker_process::start(port, {"NODE_APP_INSTANCE=" + std::to_string(instance)}, {.uid = uid});
}

class ServiceTest : public integration_test {
protected:
    std::vector<std::string> attach_args(std::vector<std::string> extra = {}) const
    {
        extra.insert(extra.begin(), {"--resync-interval", "200"});
        return args("attach", extra);
    }

    void attach_and_follow_as_the_unit(const std::vector<std::string>& prefix, const std::vector<std::string>& extra);

    nlohmann::json status() const
    {
        run_result r = sio_steer(args("status", {"--json"}));
        return r.code == 0 ? nlohmann::json::parse(r.out) : nlohmann::json();
    }

    // Waits until the workers map holds exactly these pids, in sync.
    bool map_holds(std::set<std::uint32_t> pids) const
    {
        for (auto deadline = steady_clock::now() + patience; steady_clock::now() < deadline;) {
            nlohmann::json s = status();
            std::set<std::uint32_t> live;
            if (s.is_object()) {
                for (const auto& w : s["workers"])
                    if (w["live"].get<bool>())
                        live.insert(w["pid"].get<std::uint32_t>());
                if (live == pids && s["in_sync"].get<bool>())
                    return true;
            }
            std::this_thread::sleep_for(milliseconds(10));
        }
        return false;
    }
};

// NOTIFY_SOCKET is where Type=notify services report to systemd: here a datagram socket of the test's.
class notify_socket {
public:
    notify_socket() : fd_(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0))
    {
        sockaddr_un a{};
        a.sun_family = AF_UNIX;
        path_ = "/tmp/sio-steer-notify-" + std::to_string(getpid());
        std::strcpy(a.sun_path, path_.c_str());
        unlink(path_.c_str());
        EXPECT_EQ(bind(fd_.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
        setenv("NOTIFY_SOCKET", path_.c_str(), 1);
    }
    ~notify_socket()
    {
        unsetenv("NOTIFY_SOCKET");
        unlink(path_.c_str());
    }
    // The next message containing `text`, or "" after `limit`.
    std::string next_with(const std::string& text, milliseconds limit = patience)
    {
        for (auto start = steady_clock::now(); steady_clock::now() - start < limit;) {
            pollfd pfd{fd_.get(), POLLIN, 0};
            if (poll(&pfd, 1, 100) != 1)
                continue;
            char buf[4096];
            ssize_t n = recv(fd_.get(), buf, sizeof(buf), 0);
            std::string message(buf, n > 0 ? static_cast<std::size_t>(n) : 0);
            if (message.find(text) != std::string::npos)
                return message;
        }
        return "";
    }

private:
    unique_fd fd_;
    std::string path_;
};

TEST_F(ServiceTest, AttachNotifiesReadyOnceInSyncThenStatusAsWorkersComeAndStoppingOnSigterm)
{
    start_workers(3);
    notify_socket systemd;
    background_process attach(attach_args());
    std::string ready = systemd.next_with("READY=1");
    ASSERT_NE(ready, "") << attach.output();
    EXPECT_NE(ready.find("STATUS=port " + std::to_string(port) + ": steering 3 worker sockets, in sync"),
              std::string::npos)
        << ready;
    EXPECT_TRUE(status()["in_sync"].get<bool>()) << "READY=1 comes after the first sync";

    w.push_back(worker_process::instance(port, 3));
    EXPECT_NE(systemd.next_with("STATUS=port " + std::to_string(port) + ": steering 4 worker sockets, in sync"), "")
        << attach.output();
    EXPECT_NE(systemd.next_with("WATCHDOG=1"), "") << "a ping at every resync";

    ::kill(attach.pid(), SIGTERM);
    EXPECT_NE(systemd.next_with("STOPPING=1"), "");
    EXPECT_EQ(attach.wait_exit(3000), 0);
    EXPECT_TRUE(status()["attached"].get<bool>()) << "a stop leaves steering in place";
}

// At boot the unit can start before PM2's workers listen: with --wait-for-listeners it says it
// waits, holds the port, and is ready once they listen, instead of failing (exit 3) and being
// restarted by systemd until they do.
TEST_F(ServiceTest, AttachStartedBeforeTheWorkersWaitsForThemAndIsReadyOnceTheyListen)
{
    notify_socket systemd;
    background_process attach(attach_args({"--wait-for-listeners", "60"}));
    EXPECT_NE(systemd.next_with("STATUS=port " + std::to_string(port) + ": waiting up to 60 s for the workers to listen"),
              "")
        << attach.output();
    ASSERT_TRUE(attach.wait_for_output("waiting up to 60 s for the workers")) << attach.output();
    run_result second = sio_steer(attach_args({"--once"}));
    EXPECT_EQ(second.code, exit_busy) << "the waiting controller holds the port\n" << second.err;

    start_workers(2);
    // Ready once the first listens (the second may come after it, and is followed).
    std::string ready = systemd.next_with("READY=1");
    ASSERT_NE(ready, "") << attach.output();
    EXPECT_NE(ready.find("worker sockets, in sync"), std::string::npos) << ready;
    EXPECT_TRUE(map_holds({static_cast<std::uint32_t>(w[0]->pid()), static_cast<std::uint32_t>(w[1]->pid())}))
        << attach.output();
    EXPECT_EQ(attach.wait_exit(0), -1) << attach.output();
}

// setpriv's --bounding-set argument for exactly the unit's CapabilityBoundingSet=.
std::string unit_bounding_set()
{
    std::string bounding = "--bounding-set=-all";
    for (std::string cap : words(unit_directive("CapabilityBoundingSet"))) {
        std::transform(cap.begin(), cap.end(), cap.begin(), [](unsigned char c) { return std::tolower(c); });
        bounding += ",+" + cap.substr(4);  // "cap_bpf" -> "+bpf"
    }
    return bounding;
}

// Root, but with only the unit's capabilities (as CapabilityBoundingSet= leaves it), against
// workers running as nobody: attaches, watches listener events, follows a restart. `prefix` runs
// the controller in a prepared environment.
void ServiceTest::attach_and_follow_as_the_unit(const std::vector<std::string>& prefix,
                                                const std::vector<std::string>& extra)
{
    for (int i = 0; i < 3; i++)
        w.push_back(foreign_worker(port, i, 65534));

    std::vector<std::string> command = prefix, options = attach_args();
    command.insert(command.end(), {"setpriv", unit_bounding_set()});
    options.insert(options.end(), extra.begin(), extra.end());
    background_process attach(options, command);
    ASSERT_TRUE(attach.wait_for_output("following port")) << attach.output();
    EXPECT_NE(attach.output().find("listener events from "), std::string::npos)
        << "the listener watch loads (no fallback to polling)\n"
        << attach.output();
    EXPECT_TRUE(map_holds({static_cast<std::uint32_t>(w[0]->pid()), static_cast<std::uint32_t>(w[1]->pid()),
                           static_cast<std::uint32_t>(w[2]->pid())}))
        << attach.output();

    w[1] = foreign_worker(port, 1, 65534);  // the old one is killed first
    EXPECT_TRUE(map_holds({static_cast<std::uint32_t>(w[0]->pid()), static_cast<std::uint32_t>(w[1]->pid()),
                           static_cast<std::uint32_t>(w[2]->pid())}))
        << attach.output();
    for (const auto& [client, answers] : probe(client_addresses(40, 0), port, 2))
        EXPECT_EQ(answers.size(), 1u) << client << " reached several workers";
}

TEST_F(ServiceTest, TheUnitsCapabilitiesAreEnoughToAttachAndFollowWorkersOfAnotherUser)
{
    attach_and_follow_as_the_unit({}, {});
}

// kernel.perf_event_paranoid set back when the object goes away.
class perf_event_paranoid {
public:
    explicit perf_event_paranoid(int value)
    {
        std::ifstream("/proc/sys/kernel/perf_event_paranoid") >> saved_;
        std::ofstream("/proc/sys/kernel/perf_event_paranoid") << value;
    }
    ~perf_event_paranoid() { std::ofstream("/proc/sys/kernel/perf_event_paranoid") << saved_; }

private:
    int saved_ = 2;
};

// A Debian host as the unit meets it: perf events for CAP_SYS_ADMIN only (paranoid 3, a Debian
// patch; upstream kernels read it as 2) and no tracefs mounted. --follow events: no watch, no start.
TEST_F(ServiceTest, TheUnitFollowsWithEventsWithoutTracefsAndWithPerfEventsParanoid)
{
    perf_event_paranoid paranoid(3);
    attach_and_follow_as_the_unit(
        {"unshare", "--mount", "--propagation", "private", "sh", "-c",
         "umount -l /sys/kernel/tracing 2>/dev/null; mount -t tmpfs none /sys/kernel/tracing; "
         "exec \"$0\" \"$@\""},
        {"--follow", "events"});
}

// The same with one capability fewer is refused: the unit's set holds nothing superfluous.
TEST_F(ServiceTest, EachOfTheUnitsCapabilitiesIsNeeded)
{
    for (int i = 0; i < 2; i++)
        w.push_back(foreign_worker(port, i, 65534));
    std::vector<std::string> caps = words(unit_directive("CapabilityBoundingSet"));
    for (const std::string& left_out : caps) {
        std::string bounding = "--bounding-set=-all";
        for (std::string cap : caps)
            if (cap != left_out) {
                std::transform(cap.begin(), cap.end(), cap.begin(), [](unsigned char c) { return std::tolower(c); });
                bounding += ",+" + cap.substr(4);
            }
        std::vector<std::string> options = attach_args();
        options.push_back("--once");
        run_result r = sio_steer_under({"setpriv", bounding}, options);
        EXPECT_NE(r.code, 0) << "attach worked without " << left_out;
        EXPECT_NE(r.err.find(left_out), std::string::npos) << r.err;
        EXPECT_FALSE(fs::exists(pins().dir(port))) << "refused before anything changed";
    }
}

TEST_F(ServiceTest, EverySystemCallOfAttachIsInTheUnitsFilter)
{
    if (capture("command -v strace").out.empty())
        GTEST_SKIP() << "strace is not installed";
    std::set<std::string> allowed, groups;
    for (const std::string& item : words(unit_directive("SystemCallFilter")))
        expand_filter(item, allowed, groups);
    ASSERT_GT(allowed.size(), 200u) << "systemd-analyze syscall-filter expanded the groups";

    start_workers(3);
    const std::string trace = "/tmp/sio-steer-strace-" + std::to_string(getpid());
    std::vector<std::string> options = attach_args();
    const std::string metrics_port = std::to_string(free_port(port));
    options.insert(options.end(), {"--metrics-listen", "127.0.0.1:" + metrics_port});
    notify_socket systemd;
    {
        // Everything attach does in service: start, notify, follow a restart, serve a scrape, stop.
        background_process traced(options, {"strace", "-f", "-qq", "-ff", "-o", trace});
        ASSERT_NE(systemd.next_with("READY=1"), "") << traced.output();
        probe(client_addresses(20, 0), port, 1);
        w[0]->kill_now();
        w[0] = worker_process::instance(port, 0);
        ASSERT_NE(systemd.next_with("STATUS="), "");
        EXPECT_NE(capture("curl -s http://127.0.0.1:" + metrics_port + "/metrics").out.find("sio_steer_attached"),
                  std::string::npos);
        std::string child = capture("cat /proc/" + std::to_string(traced.pid()) + "/task/*/children").out;
        ASSERT_FALSE(child.empty());
        ::kill(std::stoi(child), SIGTERM);
        EXPECT_EQ(traced.wait_exit(10000), 0) << traced.output();
    }

    std::set<std::string> used;
    static const std::regex call(R"(^([a-z_0-9]+)\()");
    for (const auto& entry : fs::directory_iterator("/tmp")) {
        if (!entry.path().string().starts_with(trace + "."))
            continue;
        std::ifstream in(entry.path());
        for (std::string line; std::getline(in, line);) {
            std::smatch m;
            if (std::regex_search(line, m, call))
                used.insert(m[1]);
        }
        fs::remove(entry.path());
    }
    EXPECT_TRUE(used.count("bpf") && used.count("pidfd_getfd")) << "the trace covers attaching";
    for (const std::string& name : used)
        EXPECT_TRUE(allowed.count(name)) << name
                                         << " is not in SystemCallFilter=: under the unit it would fail (EPERM)";
}

}  // namespace
}  // namespace sio_steer::test
