// Pinned state and the paths around it that another version, a killed run or another local user
// may have left or planted (issue 14, items 5 and 7): each is refused or cleaned with a message that
// says so, never read past its end, followed, or left to wedge the next attach.
#include <gtest/gtest.h>

#include <bpf/bpf.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "bpf/sio_steer.h"
#include "harness.h"
#include "logic/unique_fd.h"

namespace sio_steer::test {
namespace {

namespace fs = std::filesystem;

// A pid that was just in use and is gone now (its process exited and was reaped).
pid_t dead_pid()
{
    pid_t pid = fork();
    if (pid == 0)
        _exit(0);
    waitpid(pid, nullptr, 0);
    return pid;
}

// Runs `argv` as user nobody (65534): the local attacker.
int run_as_nobody(const std::vector<std::string>& argv)
{
    std::vector<const char*> args = {"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"};
    for (const auto& a : argv)
        args.push_back(a.c_str());
    args.push_back(nullptr);
    pid_t pid = fork();
    if (pid == 0) {
        execvp(args[0], const_cast<char* const*>(args.data()));
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string first_line(const std::string& path)
{
    std::ifstream in(path);
    std::string line;
    std::getline(in, line);
    return line;
}

std::vector<std::string> entries(const std::string& dir)
{
    std::vector<std::string> names;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec))
        names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
}

// An ARRAY map pinned at `path`, as another version (or nobody at all) would have left it.
__u32 pin_array(const std::string& path, __u32 value_size, __u32 entries, bpf_map_type type = BPF_MAP_TYPE_ARRAY)
{
    unique_fd fd(bpf_map_create(type, "left", sizeof(__u32), value_size, entries, nullptr));
    EXPECT_TRUE(fd) << "bpf_map_create: " << std::strerror(errno);
    EXPECT_EQ(bpf_obj_pin(fd.get(), path.c_str()), 0) << path << ": " << std::strerror(errno);
    bpf_map_info info{};
    __u32 len = sizeof(info);
    bpf_obj_get_info_by_fd(fd.get(), &info, &len);
    return info.id;
}

class PinnedStateTest : public integration_test {
protected:
    void SetUp() override
    {
        integration_test::SetUp();
        start_workers(3);
    }

    std::string p() const { return port_text(); }
    std::vector<std::string> attach_once() const
    {
        return {"attach", "--once", "--port", p(), "--pin-root", pins().path(), "--lock-dir", pins().lock_dir()};
    }
    std::vector<std::string> status() const { return {"status", "--port", p(), "--pin-root", pins().path()}; }
    std::vector<std::string> detach() const
    {
        return {"detach", "--port", p(), "--pin-root", pins().path(), "--lock-dir", pins().lock_dir()};
    }

    // The kernel's 4-tuple hash spreads each client over the workers: nothing steers the port.
    bool spread() const
    {
        int split = 0;
        for (const auto& [client, answers] : probe(client_addresses(60, 0), port, 3))
            split += answers.size() > 1;
        return split > 30;
    }
};

// A newer sio-steer grew struct config; after a rollback this one finds a config map whose values
// are larger than its struct. It must say so (exit 7), not copy 256 bytes too many onto its stack.
TEST_F(PinnedStateTest, AConfigMapOfAnotherValueSizeIsRefusedBeforeItIsRead)
{
    ASSERT_EQ(mkdir(pins().dir(port).c_str(), 0700), 0);
    const __u32 larger = sizeof(config) + 256;
    pin_array(pins().dir(port) + "/config", larger, 1);
    {
        unique_fd fd(bpf_obj_get((pins().dir(port) + "/config").c_str()));
        std::vector<unsigned char> value(larger, 0x41);
        const __u32 version = SIO_STEER_ABI_VERSION, zero = 0;  // the same version: only the size tells
        std::memcpy(value.data(), &version, sizeof(version));
        ASSERT_EQ(bpf_map_update_elem(fd.get(), &zero, value.data(), BPF_ANY), 0) << std::strerror(errno);
    }
    const std::string expected =
        "value size " + std::to_string(larger) + " where this version has " + std::to_string(sizeof(config));
    for (const auto& args :
         {status(), std::vector<std::string>{"sessions", "--port", p(), "--pin-root", pins().path()}, attach_once()}) {
        run_result r = sio_steer(args);
        EXPECT_EQ(r.code, exit_incompatible) << args[0] << ": " << r.err;
        EXPECT_NE(r.err.find("the pinned map config in " + pins().dir(port)), std::string::npos) << r.err;
        EXPECT_NE(r.err.find(expected), std::string::npos) << r.err;
        EXPECT_NE(r.err.find("sio-steer detach"), std::string::npos) << r.err;
    }
    EXPECT_EQ(entries(pins().dir(port)), std::vector<std::string>{"config"}) << "the refused attach changed it";

    // The way out the message names works.
    run_result r = sio_steer(detach());
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(entries(pins().path()), std::vector<std::string>{});
    r = sio_steer(attach_once());
    EXPECT_EQ(r.code, 0) << r.err;
}

// A detach killed halfway leaves pins without config: status says so, and the next attach (or
// detach) clears them instead of failing on the folder in its way (rename: ENOTEMPTY).
TEST_F(PinnedStateTest, AHalfDetachedFolderIsNamedByStatusAndClearedByAttach)
{
    ASSERT_EQ(sio_steer(attach_once()).code, 0);
    ASSERT_EQ(unlink((pins().dir(port) + "/config").c_str()), 0);  // where a killed `rm -r` may stop

    run_result r = sio_steer(status());
    EXPECT_EQ(r.code, exit_not_attached) << r.err;
    EXPECT_NE(r.out.find("port " + p() + ": not attached (" + pins().dir(port) +
                         " has pins but no config map: a detach was interrupted"),
              std::string::npos)
        << r.out;

    r = sio_steer(attach_once());
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.err.find(pins().dir(port) + " has pins but no config map (a detach was interrupted): removing"),
              std::string::npos)
        << r.err;
    r = sio_steer(status());
    EXPECT_EQ(r.code, 0) << r.out << r.err;
    EXPECT_NE(r.out.find("attached, in sync"), std::string::npos) << r.out;

    // detach finishes one too, and takes the program off the group.
    ASSERT_EQ(unlink((pins().dir(port) + "/config").c_str()), 0);
    r = sio_steer(detach());
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_NE(r.err.find("a detach was interrupted"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("detached from port " + p() + ";"), std::string::npos) << r.err;
    EXPECT_EQ(entries(pins().path()), std::vector<std::string>{});
    EXPECT_TRUE(spread());
}

// A SIGKILL during load() leaves new_<port>_<pid> with preallocated maps; a killed detach leaves
// old_<port>_<pid>. The next attach removes those whose pid is gone, with their maps, and says so;
// a folder of a live pid (an attach of another port, loading now) stays.
TEST_F(PinnedStateTest, FoldersLeftByKilledRunsAreRemovedWithTheirMaps)
{
    const pid_t gone = dead_pid(), alive = getpid();
    const std::string leaked = pins().path() + "/new_" + p() + "_" + std::to_string(gone);
    const std::string half = pins().path() + "/old_" + p() + "_" + std::to_string(gone);
    const std::string loading = pins().path() + "/new_1_" + std::to_string(alive);
    for (const auto& dir : {leaked, half, loading})
        ASSERT_EQ(mkdir(dir.c_str(), 0700), 0) << dir;
    // A preallocated LRU, as load() makes the sessions map (smaller here).
    const __u32 lru_id = pin_array(leaked + "/sessions", 64, 1 << 16, BPF_MAP_TYPE_LRU_HASH);
    pin_array(half + "/ring", 4, 16);
    pin_array(loading + "/ring", 4, 16);

    run_result r = sio_steer(attach_once());
    EXPECT_EQ(r.code, 0) << r.err;
    for (const auto& dir : {leaked, half})
        EXPECT_NE(r.err.find("removed " + dir + ", left with its maps by pid " + std::to_string(gone) + " (gone)"),
                  std::string::npos)
            << r.err;
    EXPECT_EQ(entries(pins().path()), (std::vector<std::string>{p(), "new_1_" + std::to_string(alive)}));
    // Unpinned and used by nothing, the LRU is freed (after an RCU grace period).
    bool freed = false;
    for (int i = 0; i < 200 && !freed; i++) {
        unique_fd fd(bpf_map_get_fd_by_id(lru_id));
        freed = !fd && errno == ENOENT;
        if (!freed)
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    EXPECT_TRUE(freed) << "the leaked LRU (map id " << lru_id << ") still exists";
}

// Two attaches of one port with different pin roots would each attach their own program to the
// group in turn: the lock is the port's, whatever --pin-root says.
TEST_F(PinnedStateTest, ASecondAttachWithAnotherPinRootIsRefused)
{
    background_process first({"attach", "--port", p(), "--pin-root", pins().path(), "--lock-dir", pins().lock_dir()});
    for (int i = 0; i < 500 && first.output().find("following port") == std::string::npos; i++) {
        ASSERT_EQ(first.wait_exit(0), -1) << first.output();
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ASSERT_NE(first.output().find("following port"), std::string::npos) << first.output();

    pin_root other;
    run_result r =
        sio_steer({"attach", "--once", "--port", p(), "--pin-root", other.path(), "--lock-dir", pins().lock_dir()});
    EXPECT_EQ(r.code, exit_busy) << r.err;
    EXPECT_NE(r.err.find("(pid " + std::to_string(first.pid()) + ") is already managing port " + p()),
              std::string::npos)
        << r.err;
    EXPECT_EQ(entries(other.path()), std::vector<std::string>{}) << "the refused attach pinned state";
    EXPECT_EQ(first.wait_exit(0), -1) << "the first controller stopped: " << first.output();
}

// A lock folder another user can write in (here 0777; /run/sio-steer is root's 0755): a link they
// plant at <port>.lock or <port>.sock is refused, never followed. Through the lock link root used
// to truncate the file it names and write its pid there.
class PlantedLinkTest : public PinnedStateTest {
protected:
    void SetUp() override
    {
        PinnedStateTest::SetUp();
        if (system("command -v setpriv >/dev/null") != 0)
            GTEST_SKIP() << "setpriv (util-linux) is not installed";
        base = "/tmp/sio-steer-test-planted-" + std::to_string(getpid());
        lock_dir = base + "/locks";
        ASSERT_EQ(mkdir(base.c_str(), 0755), 0);
        ASSERT_EQ(mkdir(lock_dir.c_str(), 0777), 0);
        ASSERT_EQ(chmod(lock_dir.c_str(), 0777), 0);  // whatever the umask
        victim = base + "/victim";
        std::ofstream(victim) << "precious\n";
        ASSERT_EQ(chmod(victim.c_str(), 0600), 0);
    }
    void TearDown() override
    {
        std::error_code ec;
        fs::remove_all(base, ec);
    }

    std::string base, lock_dir, victim;
};

TEST_F(PlantedLinkTest, ALinkAtTheLockFileIsRefusedAndItsTargetUntouched)
{
    const std::string link = lock_dir + "/" + p() + ".lock";
    ASSERT_EQ(run_as_nobody({"ln", "-s", victim, link}), 0);
    run_result r = sio_steer({"attach", "--once", "--port", p(), "--pin-root", pins().path(), "--lock-dir", lock_dir});
    EXPECT_EQ(r.code, exit_environment) << r.err;
    EXPECT_NE(r.err.find("the lock file " + link + " is a symbolic link"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("fix: remove it"), std::string::npos) << r.err;
    EXPECT_EQ(first_line(victim), "precious");
    EXPECT_EQ(entries(pins().path()), std::vector<std::string>{}) << "refused, yet it pinned state";
}

TEST_F(PlantedLinkTest, ALinkAtTheControlSocketIsRefusedBeforeAnythingChanges)
{
    const std::string link = lock_dir + "/" + p() + ".sock";
    ASSERT_EQ(run_as_nobody({"ln", "-s", victim, link}), 0);
    background_process attach({"attach", "--port", p(), "--pin-root", pins().path(), "--lock-dir", lock_dir});
    EXPECT_EQ(attach.wait_exit(10'000), exit_environment) << attach.output();
    EXPECT_NE(attach.output().find("the control socket path " + link + " is a symbolic link"), std::string::npos)
        << attach.output();
    EXPECT_EQ(first_line(victim), "precious");
    struct stat st {};
    EXPECT_EQ(lstat(link.c_str(), &st), 0);
    EXPECT_TRUE(S_ISLNK(st.st_mode)) << "the planted link was replaced, not refused";
    EXPECT_EQ(entries(pins().path()), std::vector<std::string>{}) << "refused, yet it pinned state";
}

}  // namespace
}  // namespace sio_steer::test
