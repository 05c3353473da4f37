// What `sio-steer attach` (and the verbs that read pinned state) do with bad input: each case is
// refused with its exit code (userspace/logic/errors.h, docs/exit-codes.md) and a message on stderr that
// says what is wrong, why ("why:") and what to do ("fix:"), before anything changes: no pin folder
// appears, and steering that existed before is left exactly as it was. Each test runs in a fresh
// network namespace with a private pin root.
#include <gtest/gtest.h>

#include <bpf/bpf.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <initializer_list>
#include <string>
#include <vector>

#include "bpf/sio_steer.h"
#include "harness.h"
#include "logic/unique_fd.h"

namespace sio_steer::test {
namespace {

namespace fs = std::filesystem;

bool on_path(const std::string& program)
{
    const char* path = std::getenv("PATH");
    std::string dirs = path ? path : "/usr/bin:/bin";
    for (std::size_t start = 0; start <= dirs.size();) {
        std::size_t end = dirs.find(':', start);
        if (end == std::string::npos)
            end = dirs.size();
        if (access((dirs.substr(start, end - start) + "/" + program).c_str(), X_OK) == 0)
            return true;
        start = end + 1;
    }
    return false;
}

// Everything of a port's pinned state that decides where a client goes.
struct pinned_snapshot {
    __u32 program_id = 0;
    std::vector<unsigned char> config;
    std::vector<unsigned char> slots;
    std::vector<__u32> ring;
    bool operator==(const pinned_snapshot&) const = default;
};

unique_fd pinned(const std::string& path)
{
    unique_fd fd(bpf_obj_get(path.c_str()));
    if (!fd)
        ADD_FAILURE() << "bpf_obj_get " << path << ": " << std::strerror(errno);
    return fd;
}

pinned_snapshot snapshot(const std::string& dir)
{
    pinned_snapshot s;
    unique_fd prog = pinned(dir + "/program");
    bpf_prog_info info{};
    __u32 len = sizeof(info);
    EXPECT_EQ(bpf_obj_get_info_by_fd(prog.get(), &info, &len), 0) << std::strerror(errno);
    s.program_id = info.id;

    unique_fd config_map = pinned(dir + "/config");
    s.config.resize(sizeof(config));
    __u32 zero = 0;
    EXPECT_EQ(bpf_map_lookup_elem(config_map.get(), &zero, s.config.data()), 0);

    unique_fd slots_map = pinned(dir + "/slots");
    s.slots.resize(sizeof(slot) * SIO_STEER_MAX_SLOTS);
    for (__u32 i = 0; i < SIO_STEER_MAX_SLOTS; i++)
        EXPECT_EQ(bpf_map_lookup_elem(slots_map.get(), &i, s.slots.data() + i * sizeof(slot)), 0);

    unique_fd ring_map = pinned(dir + "/ring");
    s.ring.resize(SIO_STEER_RING_SIZE);
    for (__u32 i = 0; i < SIO_STEER_RING_SIZE; i++)
        EXPECT_EQ(bpf_map_lookup_elem(ring_map.get(), &i, &s.ring[i]), 0);
    return s;
}

// Rewrites the ABI version in the pinned config, as if another sio-steer version had written it.
void set_abi_version(const std::string& dir, __u32 version)
{
    unique_fd fd = pinned(dir + "/config");
    ASSERT_TRUE(fd);
    config c{};
    __u32 zero = 0;
    ASSERT_EQ(bpf_map_lookup_elem(fd.get(), &zero, &c), 0) << std::strerror(errno);
    c.abi_version = version;
    ASSERT_EQ(bpf_map_update_elem(fd.get(), &zero, &c, BPF_ANY), 0) << std::strerror(errno);
}

// A folder under /tmp (not bpffs), removed with everything in it when the object goes away.
class tmp_dir {
public:
    tmp_dir()
    {
        static int counter = 0;
        path_ = "/tmp/sio-steer-test-notbpf-" + std::to_string(getpid()) + "-" + std::to_string(counter++);
        if (mkdir(path_.c_str(), 0700))
            ADD_FAILURE() << "mkdir " << path_ << ": " << std::strerror(errno);
    }
    ~tmp_dir()
    {
        std::error_code ec;
        fs::remove_all(path_, ec);
    }
    const std::string& path() const { return path_; }

private:
    std::string path_;
};

std::vector<std::string> entries(const std::string& dir)
{
    std::vector<std::string> names;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec))
        names.push_back(e.path().filename().string());
    return names;
}

class BadInputTest : public integration_test {
protected:
    // `attach --once` on `port_value` (not a port, perhaps) with the test's pin root and lock folder.
    std::vector<std::string> attach_on(const std::string& port_value) const
    {
        return {"attach", "--once", "--port", port_value, "--pin-root", pins().path(), "--lock-dir", pins().lock_dir()};
    }
    std::vector<std::string> attach_args(const std::vector<std::string>& extra = {}) const
    {
        std::vector<std::string> a = {"--once"};
        a.insert(a.end(), extra.begin(), extra.end());
        return args("attach", a);
    }

    // The refusal: the exit code, one message on stderr with every word of `words`, and (with
    // `explained`) a "why:" and a "fix:" line. Nothing on stdout.
    static void expect_refused(const run_result& r, int code, std::initializer_list<std::string> words,
                               bool explained = true)
    {
        EXPECT_EQ(r.code, code) << "stderr: " << r.err;
        EXPECT_TRUE(r.out.empty()) << "stdout: " << r.out;
        EXPECT_TRUE(r.err.starts_with("sio-steer ")) << r.err;
        for (const auto& word : words)
            EXPECT_NE(r.err.find(word), std::string::npos) << "no \"" << word << "\" in: " << r.err;
        if (explained) {
            EXPECT_NE(r.err.find("\n  why: "), std::string::npos) << r.err;
        }
        EXPECT_NE(r.err.find("\n  fix: "), std::string::npos) << r.err;
    }

    // No pin folder (nor a half-built one) in the test's pin root.
    void expect_nothing_pinned() const
    {
        EXPECT_EQ(entries(pins().path()), std::vector<std::string>{}) << "in " << pins().path();
    }

    // Where a few clients go now, to compare before and after a refused attach.
    std::vector<std::string> placement() const
    {
        std::vector<std::string> answers;
        for (const auto& client : client_addresses(30, 0))
            answers.push_back(ask_worker(client, "127.0.0.1", port));
        return answers;
    }
};

TEST_F(BadInputTest, PortOutOfRangeIsUsageError)
{
    start_workers(1);
    for (const std::string bad : {"0", "70000", "abc", "5001x", ""}) {
        SCOPED_TRACE("--port '" + bad + "'");
        expect_refused(sio_steer(attach_on(bad)), exit_usage,
                       {"--port " + bad + " is not a TCP port", "1 to 65535", "--port 5001"});
    }
    expect_nothing_pinned();
}

TEST_F(BadInputTest, UnknownOrMissingOptionIsUsageError)
{
    start_workers(1);
    // Boost.Program_options words these; sio-steer adds only where to read more.
    expect_refused(sio_steer(attach_args({"--bogus"})), exit_usage, {"--bogus", "sio-steer attach --help"}, false);
    expect_refused(sio_steer({"attach", "--once", "--pin-root", pins().path(), "--lock-dir", pins().lock_dir()}),
                   exit_usage, {"--port", "required", "sio-steer attach --help"}, false);
    expect_refused(sio_steer(attach_args({"--v4-prefix", "twelve"})), exit_usage, {"--v4-prefix", "twelve"}, false);
    expect_nothing_pinned();
}

TEST_F(BadInputTest, BadSessionTtlIsUsageError)
{
    start_workers(1);
    for (const std::string bad : {"forever", "0", "10x", "8d", "1000h"}) {
        SCOPED_TRACE("--session-ttl " + bad);
        expect_refused(sio_steer(attach_args({"--session-ttl", bad})), exit_usage,
                       {"--session-ttl " + bad + " is not a duration", "up to a week", "10m"});
    }
    expect_nothing_pinned();
}

TEST_F(BadInputTest, PrefixOutOfRangeIsUsageError)
{
    start_workers(1);
    expect_refused(sio_steer(attach_args({"--v4-prefix", "33"})), exit_usage,
                   {"--v4-prefix 33 is out of range", "1 to 32"});
    expect_refused(sio_steer(attach_args({"--v4-prefix", "0"})), exit_usage, {"--v4-prefix 0 is out of range"});
    expect_refused(sio_steer(attach_args({"--v6-prefix", "129"})), exit_usage,
                   {"--v6-prefix 129 is out of range", "1 to 128"});
    expect_nothing_pinned();
}

// A negative number is not wrapped into a huge one (-1 ms was 49.7 days; -4294967272 was /24).
TEST_F(BadInputTest, NegativeNumbersAreUsageErrors)
{
    start_workers(1);
    expect_refused(sio_steer(attach_args({"--resync-interval", "-1"})), exit_usage,
                   {"--resync-interval -1 is not a whole number", "digits only"});
    expect_refused(sio_steer(attach_args({"--v4-prefix", "-4294967272"})), exit_usage,
                   {"--v4-prefix -4294967272 is not a whole number"});
    expect_refused(sio_steer(attach_args({"--max-sessions", "-1"})), exit_usage,
                   {"--max-sessions -1 is not a whole number"});
    expect_refused(sio_steer(attach_args({"--max-moved", "-1"})), exit_usage, {"--max-moved -1 is not a whole number"});
    expect_refused(sio_steer(attach_args({"--max-moved", "100"})), exit_usage, {"--max-moved 100 is out of range"});
    expect_refused(sio_steer(attach_args({"--resync-interval", "50"})), exit_usage,
                   {"--resync-interval 50 is not a number from 100 to 3600000"});
    expect_nothing_pinned();
}

TEST_F(BadInputTest, UnknownKeyModeIsUsageError)
{
    start_workers(1);
    expect_refused(sio_steer(attach_args({"--key", "foo"})), exit_usage,
                   {"--key foo is not a key mode", "--key address", "--key address,port"});
    expect_nothing_pinned();
}

TEST_F(BadInputTest, NothingListeningOnThePort)
{
    expect_refused(sio_steer(attach_args()), exit_no_listeners,
                   {"nothing listens on TCP port " + port_text(), "start the workers first"});
    expect_nothing_pinned();
}

TEST_F(BadInputTest, NothingListeningAfterTheWaitSaysHowLongItWaited)
{
    run_result r = sio_steer(attach_args({"--wait-for-listeners", "1"}));
    EXPECT_EQ(r.code, exit_no_listeners) << r.err;
    // The line that says it waits, then the refusal.
    EXPECT_TRUE(r.err.starts_with("info: port " + port_text() + ": nothing listens yet; waiting up to 1 s")) << r.err;
    EXPECT_NE(r.err.find("\nsio-steer attach: nothing listens on TCP port " + port_text() + " after waiting 1 s\n  why: "),
              std::string::npos)
        << r.err;
    EXPECT_NE(r.err.find("\n  fix: "), std::string::npos) << r.err;
    expect_nothing_pinned();
    expect_refused(sio_steer(attach_args({"--wait-for-listeners", "soon"})), exit_usage, {"--wait-for-listeners"});
}

// The metrics address is bound before the wait: one that is taken is refused at once, not after
// the wait (up to a minute in the unit) and only when nothing listens yet.
TEST_F(BadInputTest, ATakenMetricsAddressIsRefusedBeforeTheWait)
{
    const std::uint16_t metrics_port = free_port(port);
    unique_fd taken = listen_on_loopback(metrics_port);
    ASSERT_TRUE(taken);
    const auto started = std::chrono::steady_clock::now();
    run_result r = sio_steer(args(
        "attach", {"--wait-for-listeners", "30", "--metrics-listen", "127.0.0.1:" + std::to_string(metrics_port)}));
    EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(20)) << "it waited first";
    expect_refused(r, exit_environment, {"cannot listen for metrics on 127.0.0.1:" + std::to_string(metrics_port)});
    EXPECT_EQ(r.err.find("waiting up to"), std::string::npos) << r.err;
    expect_nothing_pinned();
}

TEST_F(BadInputTest, ListenerWithoutReuseportNamesItsOwnerAndTheNodeOption)
{
    // What PM2 cluster mode without reusePort looks like: the God daemon's one plain listener.
    w.push_back(worker_process::start(port, {"NODE_APP_INSTANCE=0"}, {.reuseport = false}));
    expect_refused(sio_steer(attach_args()), exit_not_steerable,
                   {"port " + port_text() + " has one listener without SO_REUSEPORT",
                    "pid " + std::to_string(w[0]->pid()) + " (test_worker)", "God daemon", "reusePort: true",
                    "Node >= 22.12"});
    expect_nothing_pinned();
}

TEST_F(BadInputTest, ListenersInTwoGroupsAreBothNamed)
{
    w.push_back(worker_process::start(port, {"NODE_APP_INSTANCE=0"}, {.address = "127.0.0.1"}));
    w.push_back(worker_process::start(port, {"NODE_APP_INSTANCE=1"}, {.address = "::1"}));
    expect_refused(sio_steer(attach_args()), exit_not_steerable,
                   {"port " + port_text() + " has several listening groups", "127.0.0.1:" + port_text(),
                    "[::1]:" + port_text(), "reusePort: true"});
    expect_nothing_pinned();
}

TEST_F(BadInputTest, WithoutPrivilegesNamesTheMissingCapabilities)
{
    if (!on_path("setpriv"))
        GTEST_SKIP() << "setpriv (util-linux) is not installed";
    start_workers(2);
    run_result r = sio_steer_under({"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all"},
                                   attach_args());
    expect_refused(r, exit_environment,
                   {"missing privileges", "CAP_BPF", "CAP_NET_ADMIN", "CAP_SYS_PTRACE", "run it as root"});
    expect_nothing_pinned();
}

// A following attach serves a control socket in the lock folder: a folder too deep for a Unix
// socket path is refused before anything is pinned.
TEST_F(BadInputTest, LockDirTooLongForTheControlSocket)
{
    start_workers(2);
    const std::string deep = pins().lock_dir() + "/" + std::string(100, 'd');
    run_result r = sio_steer({"attach", "--port", port_text(), "--pin-root", pins().path(), "--lock-dir", deep});
    expect_refused(r, exit_usage, {"control socket path", "too long for a Unix socket", "use a shorter --lock-dir"});
    expect_nothing_pinned();
}

// Reading the steering state needs root as much as writing it: the pin folders are 0700.
TEST_F(BadInputTest, StatusAndSessionsWithoutPrivilegesSayWhatIsWrong)
{
    if (!on_path("setpriv"))
        GTEST_SKIP() << "setpriv (util-linux) is not installed";
    start_workers(2);
    ASSERT_EQ(sio_steer(attach_args()).code, 0);
    const std::vector<std::string> nobody = {"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                             "--inh-caps=-all"};
    const std::vector<std::string> every_port = {"status", "--pin-root", pins().path()};
    for (const std::vector<std::string>& verb : {args("status"), every_port, args("sessions")}) {
        run_result r = sio_steer_under(nobody, verb);
        EXPECT_EQ(r.code, exit_environment) << verb[0] << "\n" << r.err;
        EXPECT_NE(r.err.find("cannot read the pinned state"), std::string::npos) << r.err;
        EXPECT_NE(r.err.find("Permission denied"), std::string::npos) << r.err;
        EXPECT_NE(r.err.find("run it as root"), std::string::npos) << r.err;
    }
    EXPECT_EQ(sio_steer(args("status")).code, 0) << "root reads it";
}

TEST_F(BadInputTest, PinRootNotOnBpffs)
{
    start_workers(2);
    tmp_dir plain;
    run_result r = sio_steer(
        {"attach", "--once", "--port", port_text(), "--pin-root", plain.path(), "--lock-dir", pins().lock_dir()});
    expect_refused(r, exit_environment, {plain.path() + " is not on a BPF filesystem", "mount -t bpf"});
    EXPECT_EQ(entries(plain.path()), std::vector<std::string>{});

    // A pin root that does not exist yet is judged by its nearest existing folder, and not created.
    const std::string missing = plain.path() + "/not/yet";
    r = sio_steer({"attach", "--once", "--port", port_text(), "--pin-root", missing, "--lock-dir", pins().lock_dir()});
    expect_refused(r, exit_environment, {missing + " is not on a BPF filesystem", "mount -t bpf"});
    EXPECT_FALSE(fs::exists(plain.path() + "/not"));
    expect_nothing_pinned();
}

TEST_F(BadInputTest, SecondControllerOnTheSamePortIsRefusedAndChangesNothing)
{
    start_workers(3);
    // The first controller follows the port (attach without --once) and holds its lock meanwhile.
    ASSERT_NO_FATAL_FAILURE(start_controller());
    background_process& first = *controller;
    const pinned_snapshot before = snapshot(pins().dir(port));
    const std::vector<std::string> placed = placement();

    const std::string holder = std::to_string(first.pid());
    for (const auto& extra : {std::vector<std::string>{}, std::vector<std::string>{"--v4-prefix", "16"}}) {
        expect_refused(sio_steer(attach_args(extra)), exit_busy,
                       {"(pid " + holder + ") is already managing port " + port_text(), "sio-steer status"});
    }
    EXPECT_TRUE(snapshot(pins().dir(port)) == before) << "the refused controller changed the pinned state";
    EXPECT_EQ(placement(), placed);
    EXPECT_EQ(entries(pins().path()), std::vector<std::string>{port_text()});
    EXPECT_EQ(first.wait_exit(0), -1) << "the first controller stopped: " << first.output();
}

TEST_F(BadInputTest, IncompatiblePinnedStateIsRefusedReportedAndDetachable)
{
    start_workers(4);
    ASSERT_EQ(sio_steer(attach_args()).code, 0);
    set_abi_version(pins().dir(port), 99);
    const pinned_snapshot before = snapshot(pins().dir(port));
    const std::vector<std::string> placed = placement();

    expect_refused(sio_steer(attach_args()), exit_incompatible,
                   {"ABI version 99", "speaks version " + std::to_string(SIO_STEER_ABI_VERSION), "sio-steer detach"});
    EXPECT_TRUE(snapshot(pins().dir(port)) == before) << "the refused attach changed the pinned state";
    EXPECT_EQ(placement(), placed);
    EXPECT_EQ(entries(pins().path()), std::vector<std::string>{port_text()});

    // The reading verbs say so too, with the same exit code.
    expect_refused(sio_steer(args("status")), exit_incompatible, {"ABI version 99"});
    expect_refused(sio_steer(args("status", {"--json"})), exit_incompatible, {"ABI version 99"});
    expect_refused(sio_steer(args("sessions")), exit_incompatible, {"ABI version 99"});
    EXPECT_TRUE(snapshot(pins().dir(port)) == before);

    // What the message tells to do works: detach removes the state (and the program), attach again.
    run_result r = sio_steer(args("detach"));
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_NE((r.out + r.err).find("ABI version 99; this sio-steer speaks version"), std::string::npos)
        << r.out << r.err;
    EXPECT_NE((r.out + r.err).find("detached from port " + port_text() + ";"), std::string::npos) << r.out << r.err;
    expect_nothing_pinned();
    int split = 0;  // the program is off the group: the kernel's 4-tuple hash spreads clients again
    for (const auto& [client, answers] : probe(client_addresses(100, 0), port, 3))
        split += answers.size() > 1;
    EXPECT_GT(split, 50);

    r = sio_steer(attach_args());
    EXPECT_EQ(r.code, 0) << r.err;
    r = sio_steer(args("status"));
    EXPECT_EQ(r.code, 0) << r.err;
    r = sio_steer(args("detach"));
    EXPECT_EQ(r.code, 0) << r.err;
    expect_nothing_pinned();
}

TEST_F(BadInputTest, ReadingOrDetachingAPortWithNothingPinned)
{
    start_workers(1);
    // status prints its report (here: one line) on stdout, so a script can run it on every port.
    run_result r = sio_steer(args("status"));
    EXPECT_EQ(r.code, exit_not_attached) << r.err;
    EXPECT_NE(r.out.find("port " + port_text() + ": not attached"), std::string::npos) << r.out;
    r = sio_steer({"status", "--pin-root", pins().path()});
    EXPECT_EQ(r.code, exit_not_attached) << r.err;
    EXPECT_NE(r.out.find("no port is steered"), std::string::npos) << r.out;

    expect_refused(sio_steer(args("sessions")), exit_not_attached,
                   {"nothing is pinned for port " + port_text(), "sio-steer attach --port " + port_text()});
    expect_refused(sio_steer(args("detach")), exit_not_attached,
                   {"nothing is pinned for port " + port_text(), "sio-steer status"});
    expect_nothing_pinned();
}

}  // namespace
}  // namespace sio_steer::test
