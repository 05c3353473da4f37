// `sio-steer doctor --port N`: one line per check and a verdict; exit 0 only when all is well,
// 9 (unhealthy) otherwise, with a fix line under each problem. Real kernel, test_worker processes
// standing in for PM2 workers, a fresh network namespace and a private pin root per test.
#include <gtest/gtest.h>

#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <nlohmann/json.hpp>

#include "harness.h"
#include "kernel/preflight.h"
#include "logic/port_lock.h"

namespace sio_steer::test {
namespace {

// An overlayfs as containers have them, in a mount namespace of the test process's own (the
// host's mounts are never touched; they go away with the process, the folders with this object).
// The upper layer is a tmpfs, another filesystem than the lower one: then stat() of a file gives
// the upper layer's device while /proc/locks gives the overlay's.
class overlay_mount {
public:
    overlay_mount()
    {
        must(unshare(CLONE_NEWNS) == 0, "unshare(CLONE_NEWNS)");
        must(mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0, "mount --make-rprivate /");
        char tmpl[] = "/tmp/sio-steer-overlay.XXXXXX";
        must(mkdtemp(tmpl) != nullptr, "mkdtemp");
        dir_ = tmpl;
        for (const char* d : {"/lower", "/rw", "/merged"})
            must(mkdir((dir_ + d).c_str(), 0700) == 0, std::string("mkdir ") + d);
        must(mount("tmpfs", (dir_ + "/rw").c_str(), "tmpfs", 0, "size=4m,mode=0700") == 0, "mount tmpfs");
        for (const char* d : {"/rw/upper", "/rw/work"})
            must(mkdir((dir_ + d).c_str(), 0700) == 0, std::string("mkdir ") + d);
        const std::string layers =
            "lowerdir=" + dir_ + "/lower,upperdir=" + dir_ + "/rw/upper,workdir=" + dir_ + "/rw/work";
        must(mount("overlay", merged().c_str(), "overlay", 0, layers.c_str()) == 0, "mount overlay");
    }
    ~overlay_mount()
    {
        umount2(merged().c_str(), MNT_DETACH);
        umount2((dir_ + "/rw").c_str(), MNT_DETACH);
        std::error_code ec;
        std::filesystem::remove_all(dir_, ec);
    }
    overlay_mount(const overlay_mount&) = delete;
    overlay_mount& operator=(const overlay_mount&) = delete;

    std::string merged() const { return dir_ + "/merged"; }

private:
    void must(bool ok, const std::string& what)
    {
        if (!ok)
            throw std::runtime_error(what + ": " + std::strerror(errno));
    }
    std::string dir_;
};

// The "major:minor" /proc/locks shows for the flock `pid` holds on the file with inode `ino`.
std::string locks_device_of(pid_t pid, ino_t ino)
{
    std::ifstream locks("/proc/locks");
    for (std::string line; std::getline(locks, line);) {
        std::istringstream fields(line);
        std::string number, kind, advisory, mode, device;
        pid_t holder = 0;
        if (fields >> number >> kind >> advisory >> mode >> holder >> device && kind == "FLOCK" && holder == pid &&
            device.ends_with(":" + std::to_string(ino)))
            return device.substr(0, device.rfind(':'));
    }
    return "";
}

class DoctorTest : public integration_test {
protected:
    void attach_once() { ASSERT_EQ(sio_steer(args("attach", {"--once"})).code, 0); }

    run_result doctor() { return sio_steer(args("doctor")); }

    // The line of one check: "  <verdict> <check> <detail>", and its fix line if any.
    static std::string line_of(const run_result& r, const std::string& check)
    {
        std::istringstream in(r.out);
        std::string line, found;
        const std::regex head("^  (ok|skip|note|WARN|FAIL) +" + check + " ");
        for (std::string l; std::getline(in, l);) {
            if (!found.empty() && l.find("fix: ") != std::string::npos && l.starts_with("        "))
                return found + "\n" + l;
            if (!found.empty())
                return found;
            if (std::regex_search(l, head))
                found = l;
        }
        return found;
    }

    static std::string verdict_of(const std::string& line) { return line.substr(2, line.find(' ', 2) - 2); }

    // doctor exits 9 and its line for `check` says `verdict` (WARN, FAIL): that line, and its fix.
    std::string unhealthy_line(const std::string& check, const std::string& verdict)
    {
        run_result r = doctor();
        EXPECT_EQ(r.code, exit_unhealthy) << r.out;
        std::string line = line_of(r, check);
        EXPECT_EQ(verdict_of(line), verdict) << r.out;
        return line;
    }
};

TEST_F(DoctorTest, AllIsWellWithAFollowingAttachAndClientsOfTheirOwn)
{
    start_workers(4);
    ASSERT_NO_FATAL_FAILURE(start_controller());
    probe(client_addresses(120, 0), port, 2);  // 240 connections from 120 addresses: no proxy
    run_result r = doctor();
    EXPECT_EQ(r.code, 0) << r.out << r.err;
    for (const char* check :
         {"kernel", "bpffs", "privileges", "listeners", "migration", "steering", "controller", "proxy"})
        EXPECT_EQ(verdict_of(line_of(r, check)), "ok") << check << "\n" << r.out;
    EXPECT_EQ(verdict_of(line_of(r, "node")), "skip") << "test_worker is not Node\n" << r.out;
    EXPECT_NE(line_of(r, "listeners").find("4 SO_REUSEPORT listeners on [::]:" + std::to_string(port)),
              std::string::npos)
        << r.out;
    EXPECT_NE(line_of(r, "controller").find("pid " + std::to_string(controller->pid())), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("\nverdict: all is well\n"), std::string::npos) << r.out;
}

TEST_F(DoctorTest, NothingAttachedIsAProblemWithItsFix)
{
    start_workers(2);
    run_result r = doctor();
    EXPECT_EQ(r.code, exit_unhealthy) << r.out;
    std::string steering = line_of(r, "steering");
    EXPECT_EQ(verdict_of(steering), "FAIL") << r.out;
    EXPECT_NE(steering.find("nothing is pinned for port " + std::to_string(port)), std::string::npos) << r.out;
    EXPECT_NE(steering.find("fix: sio-steer attach --port " + std::to_string(port)), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("verdict: NOT well: 1 problem (FAIL)"), std::string::npos) << r.out;
}

TEST_F(DoctorTest, OneListenerWithoutReuseportSaysHowToFixTheApp)
{
    // What PM2 cluster mode without reusePort looks like: one socket for every worker.
    w.push_back(worker_process::start(port, {"NODE_APP_INSTANCE=0"}, {.reuseport = false}));
    std::string listeners = unhealthy_line("listeners", "FAIL");
    EXPECT_NE(listeners.find("one listener without SO_REUSEPORT, owned by pid " + std::to_string(w[0]->pid())),
              std::string::npos)
        << listeners;
    EXPECT_NE(listeners.find("fix: listen with server.listen({port: " + std::to_string(port) + ", reusePort: true})"),
              std::string::npos)
        << listeners;
}

TEST_F(DoctorTest, NothingListeningIsAProblem)
{
    run_result r = doctor();
    EXPECT_EQ(r.code, exit_unhealthy);
    EXPECT_EQ(verdict_of(line_of(r, "listeners")), "FAIL") << r.out;
    EXPECT_NE(line_of(r, "listeners").find("nothing listens on TCP port " + std::to_string(port)), std::string::npos)
        << r.out;
}

// PM2 records the Node version of a worker in its pm2_env (cluster workers run the daemon's Node).
TEST_F(DoctorTest, WorkersOnANodeTooOldForReusePortAreNamed)
{
    const std::string old_env =
        R"(pm2_env={"NODE_APP_INSTANCE":0,"exec_mode":"cluster_mode","node_version":"20.11.1"})";
    w.push_back(worker_process::start(port, {"NODE_APP_INSTANCE=0", old_env}));
    std::string node = unhealthy_line("node", "FAIL");
    EXPECT_NE(node.find("pid " + std::to_string(w[0]->pid()) + " (test_worker) runs Node 20.11.1"), std::string::npos)
        << node;
    EXPECT_NE(node.find("needs Node >= 22.12"), std::string::npos) << node;
    EXPECT_NE(node.find("fix: "), std::string::npos) << node;
}

TEST_F(DoctorTest, WorkersOnARecentNodeAreFine)
{
    const std::string env = R"(pm2_env={"NODE_APP_INSTANCE":1,"exec_mode":"cluster_mode","node_version":"24.21.0"})";
    w.push_back(worker_process::start(port, {env}));
    run_result r = doctor();
    std::string node = line_of(r, "node");
    EXPECT_EQ(verdict_of(node), "ok") << r.out;
    EXPECT_NE(node.find("Node 24.21.0: reusePort is supported"), std::string::npos) << r.out;
    EXPECT_NE(line_of(r, "listeners").find("(instance 1)"), std::string::npos) << "instance from pm2_env\n" << r.out;
}

TEST_F(DoctorTest, AttachWithoutAFollowingControllerIsAWarning)
{
    start_workers(2);
    attach_once();
    run_result r = doctor();
    EXPECT_EQ(r.code, exit_unhealthy) << r.out;
    EXPECT_EQ(verdict_of(line_of(r, "steering")), "ok") << r.out;
    std::string controller_line = line_of(r, "controller");
    EXPECT_EQ(verdict_of(controller_line), "WARN") << r.out;
    EXPECT_NE(controller_line.find("fix: systemctl enable --now sio-steer@" + std::to_string(port)), std::string::npos)
        << r.out;
}

TEST_F(DoctorTest, TheControllerSaysItFollowsByEvents)
{
    start_workers(2);
    ASSERT_NO_FATAL_FAILURE(start_controller());
    std::string controller_line;
    for (int i = 0; i < 100; i++) {  // it publishes its mode once its watch is attached
        controller_line = line_of(doctor(), "controller");
        if (controller_line.find("by events") != std::string::npos)
            break;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    EXPECT_EQ(verdict_of(controller_line), "ok") << controller_line;
    EXPECT_NE(controller_line.find("pid " + std::to_string(controller->pid()) +
                                   " (sio-steer) follows the workers by events: "),
              std::string::npos)
        << controller_line << "\n"
        << controller->output();
}

// A controller that polls: asked for here (this host gives a controller its watch); a host without
// one gets the same WARN, with the reason the watch was refused.
TEST_F(DoctorTest, AControllerThatPollsIsAWarningSayingWhy)
{
    start_workers(2);
    ASSERT_NO_FATAL_FAILURE(start_controller({"--follow", "polling"}));
    std::string controller_line;
    for (int i = 0; i < 100; i++) {  // published once it follows
        controller_line = line_of(doctor(), "controller");
        if (controller_line.find("by polling") != std::string::npos)
            break;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    EXPECT_EQ(verdict_of(controller_line), "WARN") << controller_line;
    EXPECT_NE(controller_line.find(
                  "pid " + std::to_string(controller->pid()) +
                  " (sio-steer) follows the workers by polling, not by events: asked for with --follow polling"),
              std::string::npos)
        << controller_line;
    EXPECT_NE(controller_line.find("fix: let it follow by events: give it what the reason says a listener watch lacks "
                                   "(or drop --follow polling"),
              std::string::npos)
        << controller_line;
    EXPECT_NE(controller_line.find("systemctl restart sio-steer@" + std::to_string(port)), std::string::npos)
        << controller_line;
    run_result r = doctor();
    EXPECT_EQ(r.code, exit_unhealthy) << r.out;
    EXPECT_NE(r.out.find("verdict: NOT well: 0 problems (FAIL), 1 warning (WARN)"), std::string::npos) << r.out;
}

// What a controller that could attach no watch publishes reads the same (the test holds the lock
// and publishes it, as no kernel refuses this host's watch): the reason, with its fix, as written.
TEST_F(DoctorTest, AControllerWhoseWatchWasRefusedSaysWhy)
{
    start_workers(2);
    attach_once();
    port_lock lock(pins().lock_dir(), port);
    const std::string why =
        "cannot attach a listener watch: the kernel has no BTF; to fix: run a kernel with CONFIG_DEBUG_INFO_BTF";
    lock.publish({"polling", why});
    std::string controller_line = line_of(doctor(), "controller");
    EXPECT_EQ(verdict_of(controller_line), "WARN") << controller_line;
    std::string comm = read_text("/proc/self/comm");  // the test binary's name, cut to 15 characters
    comm.erase(comm.find_last_not_of('\n') + 1);
    EXPECT_NE(controller_line.find("pid " + std::to_string(getpid()) + " (" + comm +
                                   ") follows the workers by polling, "
                                   "not by events: " +
                                   why),
              std::string::npos)
        << controller_line;
}

// In a container the lock folder is often on overlayfs, where /proc/locks names the overlay's
// device and stat() the upper layer's: the controller must still be found.
TEST_F(DoctorTest, AControllerWithItsLockFolderOnOverlayfsIsFound)
{
    start_workers(2);
    overlay_mount overlay;
    const std::string locks = overlay.merged() + "/locks";
    background_process attach({"attach", "--port", port_text(), "--pin-root", pins().path(), "--lock-dir", locks});
    ASSERT_TRUE(attach.wait_for_output("following port")) << attach.output();

    // The condition itself: stat() and /proc/locks disagree on the lock file's device.
    struct stat st {};
    ASSERT_EQ(stat((locks + "/" + std::to_string(port) + ".lock").c_str(), &st), 0);
    std::string seen = locks_device_of(attach.pid(), st.st_ino);
    char stat_device[32];
    std::snprintf(stat_device, sizeof stat_device, "%02x:%02x", major(st.st_dev), minor(st.st_dev));
    ASSERT_FALSE(seen.empty()) << "no flock of pid " << attach.pid() << " in /proc/locks";
    ASSERT_NE(seen, stat_device) << "the overlay did not reproduce the device mismatch";

    run_result r = sio_steer({"doctor", "--port", port_text(), "--pin-root", pins().path(), "--lock-dir", locks});
    std::string controller_line = line_of(r, "controller");
    EXPECT_EQ(verdict_of(controller_line), "ok") << r.out;
    EXPECT_NE(controller_line.find("pid " + std::to_string(attach.pid()) + " (sio-steer) follows the workers"),
              std::string::npos)
        << r.out;
    run_result status =
        sio_steer({"status", "--json", "--port", port_text(), "--pin-root", pins().path(), "--lock-dir", locks});
    nlohmann::json follow = nlohmann::json::parse(status.out, nullptr, false).value("follow", nlohmann::json());
    EXPECT_EQ(follow.value("pid", nlohmann::json()), attach.pid()) << status.out << status.err;
    EXPECT_NE(follow.value("mode", ""), "none") << status.out;
}

TEST_F(DoctorTest, ANewListenerNotInTheMapIsOutOfSync)
{
    start_workers(2);
    attach_once();
    w.push_back(worker_process::instance(port, 2));  // nobody follows: it stays out of the map
    std::string steering = unhealthy_line("steering", "FAIL");
    EXPECT_NE(steering.find("NOT in sync"), std::string::npos) << steering;
    EXPECT_NE(steering.find("1 listeners not in the workers map"), std::string::npos) << steering;
}

TEST_F(DoctorTest, EveryClientFromOneAddressLooksLikeAProxy)
{
    start_workers(4);
    ASSERT_NO_FATAL_FAILURE(start_controller());
    for (int i = 0; i < 250; i++)  // nginx without proxy_bind: every connection from 127.0.0.1
        ASSERT_FALSE(ask_worker("127.0.0.1", "127.0.0.1", port).empty());
    std::string proxy = unhealthy_line("proxy", "WARN");
    EXPECT_NE(proxy.find("127.0.0.1"), std::string::npos) << proxy;
    EXPECT_NE(proxy.find("nginx-conf"), std::string::npos) << proxy;
}

TEST_F(DoctorTest, WithoutCapabilitiesItSaysWhichAreMissing)
{
    start_workers(2);
    attach_once();
    // Root, but with every capability dropped from the bounding set (as a too strict unit would).
    run_result r = sio_steer_under({"setpriv", "--bounding-set=-all", "--inh-caps=-all"}, args("doctor"));
    EXPECT_EQ(r.code, exit_unhealthy) << r.out << r.err;
    std::string privileges = line_of(r, "privileges");
    EXPECT_EQ(verdict_of(privileges), "FAIL") << r.out;
    for (const char* cap : {"CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN", "CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH"})
        EXPECT_NE(privileges.find(cap), std::string::npos) << cap << "\n" << r.out;
    EXPECT_EQ(verdict_of(line_of(r, "kernel")), "skip") << "no probing without CAP_BPF\n" << r.out;
}

TEST_F(DoctorTest, MigrationSysctlIsReported)
{
    start_workers(2);
    std::ofstream("/proc/sys/net/ipv4/tcp_migrate_req") << "1\n";  // this test's namespace only
    EXPECT_NE(line_of(doctor(), "migration").find("net.ipv4.tcp_migrate_req = 1"), std::string::npos);
    std::ofstream("/proc/sys/net/ipv4/tcp_migrate_req") << "0\n";
    std::string migration = line_of(doctor(), "migration");
    EXPECT_EQ(verdict_of(migration), "ok");
    EXPECT_NE(migration.find("net.ipv4.tcp_migrate_req = 0: enough while steering is attached"), std::string::npos)
        << migration;
}

// drain: which workers have connected to the control socket since they started, as the controller
// saw them; it cannot know without a following controller, nor for workers older than it.
TEST_F(DoctorTest, DrainCannotKnowWithoutAFollowingController)
{
    start_workers(2);
    attach_once();
    std::string drain = line_of(doctor(), "drain");
    EXPECT_EQ(verdict_of(drain), "skip") << drain;
    EXPECT_NE(
        drain.find("cannot know which workers connect to the control socket: no `sio-steer attach` follows port " +
                   std::to_string(port)),
        std::string::npos)
        << drain;

    // A lock holder that publishes no control line (a sio-steer before this one): cannot know either.
    port_lock lock(pins().lock_dir(), port);
    lock.publish({"events", "fexit/inet_listen"});
    drain = line_of(doctor(), "drain");
    EXPECT_EQ(verdict_of(drain), "skip") << drain;
    EXPECT_NE(drain.find("the controller, pid " + std::to_string(getpid()) + ", does not say"), std::string::npos)
        << drain;
}

TEST_F(DoctorTest, DrainNamesTheWorkersThatConnectedAndThoseThatNeverDid)
{
    start_workers(1);  // started before the controller: it cannot know about this one
    ASSERT_NO_FATAL_FAILURE(start_controller());
    w.push_back(worker_process::instance(port, 1));
    w.push_back(worker_process::instance(port, 2));
    const std::string control = pins().lock_dir() + "/" + std::to_string(port) + ".sock";
    const std::string old_one = "pid " + std::to_string(w[0]->pid()) + " (instance 0)",
                      talker = "pid " + std::to_string(w[1]->pid()) + " (instance 1)",
                      silent = "pid " + std::to_string(w[2]->pid()) + " (instance 2)";
    std::string drain;
    for (int i = 0; i < 100; i++) {  // until the controller has both new workers in the map
        if (w[1]->request(control, "release 192.0.2.1").starts_with("none "))
            break;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    run_result r = doctor();
    drain = line_of(r, "drain");
    EXPECT_EQ(verdict_of(drain), "note") << r.out;
    EXPECT_NE(drain.find(talker + " has connected to the control socket " + control + " since starting"),
              std::string::npos)
        << drain;
    EXPECT_NE(drain.find(silent + " has not connected to " + control +
                         " since starting: on a reload, a worker that never did does not release its clients to its "
                         "successor"),
              std::string::npos)
        << drain;
    EXPECT_NE(drain.find("cannot know for " + old_one + ": started before the controller (pid " +
                         std::to_string(controller->pid()) + ")"),
              std::string::npos)
        << drain;
    EXPECT_NE(drain.find("fix: stop the app's workers with sio-steer-drain"), std::string::npos) << drain;
    EXPECT_EQ(r.code, 0) << "a note changes nothing in the verdict\n" << r.out;

    // Every worker left has connected: ok.
    w[0]->kill_now();
    w[2]->kill_now();
    for (int i = 0; i < 100 && line_of(doctor(), "steering").find("1 worker sockets") == std::string::npos; i++)
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    drain = line_of(doctor(), "drain");
    EXPECT_EQ(verdict_of(drain), "ok") << drain;
    EXPECT_NE(drain.find(talker + " has connected"), std::string::npos) << drain;
}

TEST_F(DoctorTest, BadPortIsAUsageError)
{
    run_result r = sio_steer({"doctor", "--port", "70000"});
    EXPECT_EQ(r.code, exit_usage);
    EXPECT_NE(r.err.find("--port 70000 is not a TCP port"), std::string::npos) << r.err;
}

// kernel.sched_autogroup_enabled set for one test, put back as it was even when the test fails. It
// is read when a process forks: set it before starting the workers.
class autogroups_set {
public:
    explicit autogroups_set(bool on)
    {
        std::ifstream in(path);
        std::getline(in, was_);
        write(on ? "1" : "0");
    }
    ~autogroups_set() { write(was_); }
    autogroups_set(const autogroups_set&) = delete;
    autogroups_set& operator=(const autogroups_set&) = delete;

private:
    static void write(const std::string& value)
    {
        std::ofstream out(path);
        out << value << "\n";
    }
    static constexpr const char* path = "/proc/sys/kernel/sched_autogroup_enabled";
    std::string was_;
};

// PM2 cluster mode's workers are children of one process, in its session: so are these, children
// of the test. With autogroups on they weigh as one on a busy host; doctor notes it, with the fix,
// and the verdict stays "all is well".
TEST_F(DoctorTest, WorkersSharingOneAutogroupAreANoteNotAProblem)
{
    if (!std::filesystem::exists("/proc/sys/kernel/sched_autogroup_enabled"))
        GTEST_FAIL() << "this kernel has no scheduler autogroups (CONFIG_SCHED_AUTOGROUP): the check cannot be shown";
    autogroups_set on(true);
    // PM2's daemon calls setsid(); the test process may still be in the session the host booted with,
    // which the kernel never groups (a fresh CI machine runs its tests so): a session of its own, then.
    if (setsid() < 0 && read_text("/proc/self/autogroup").empty())
        GTEST_FAIL() << "the test process leads a process group in the boot session, so it can neither start a "
                        "session nor share an autogroup with its workers: run it through ctest";
    start_workers(3);
    start_controller();
    run_result r = doctor();
    std::string line = line_of(r, "scheduler");
    EXPECT_EQ(verdict_of(line), "note") << r.out;
    EXPECT_NE(line.find("3 workers (pids " + std::to_string(w[0]->pid()) + ", " + std::to_string(w[1]->pid()) + ", " +
                        std::to_string(w[2]->pid()) + ") share one scheduler autogroup"),
              std::string::npos)
        << r.out;
    EXPECT_NE(line.find("fix: sysctl -w kernel.sched_autogroup_enabled=0"), std::string::npos) << r.out;
    EXPECT_EQ(r.code, 0) << r.out << r.err;
    EXPECT_NE(r.out.find("\nverdict: all is well\n"), std::string::npos) << r.out;
}

TEST_F(DoctorTest, WithAutogroupsOffEachWorkerWeighsByItself)
{
    if (!std::filesystem::exists("/proc/sys/kernel/sched_autogroup_enabled"))
        GTEST_FAIL() << "this kernel has no scheduler autogroups (CONFIG_SCHED_AUTOGROUP): the check cannot be shown";
    autogroups_set off(false);
    start_workers(2);
    run_result r = doctor();
    std::string line = line_of(r, "scheduler");
    EXPECT_EQ(verdict_of(line), "ok") << r.out;
    EXPECT_NE(line.find("scheduler autogroups are off"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace sio_steer::test
