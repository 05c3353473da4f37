// find_listeners and duplicate_socket against real listeners in the real kernel: each worker is a
// test_worker process (one SO_REUSEPORT listener, like a PM2 worker with reusePort) on a free port
// (both from harness.h).
// Runs as root (pidfd_getfd onto other processes, setresuid for the EPERM case).
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <grp.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "harness.h"
#include "kernel/discovery.h"
#include "logic/errors.h"
#include "logic/unique_fd.h"

namespace sio_steer::test {
namespace {

std::string instance_env(int instance) { return "NODE_APP_INSTANCE=" + std::to_string(instance); }

std::uint64_t socket_cookie(int fd)
{
    std::uint64_t cookie = 0;
    socklen_t len = sizeof(cookie);
    EXPECT_EQ(getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &len), 0) << std::strerror(errno);
    return cookie;
}

std::uint16_t local_port(int fd)
{
    sockaddr_storage ss{};
    socklen_t len = sizeof(ss);
    EXPECT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len), 0) << std::strerror(errno);
    if (ss.ss_family == AF_INET6)
        return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
    return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
}

class DiscoveryTest : public integration_test {
protected:
    void SetUp() override
    {
        if (geteuid() != 0)
            GTEST_SKIP() << "needs root";
        integration_test::SetUp();
    }
};

TEST_F(DiscoveryTest, FindsEachWorkerWithPidInstanceAndAddress)
{
    // Started out of instance order: the result is sorted by instance, not by start.
    for (int instance : {2, 0, 1})
        w.push_back(worker_process::start(port, {instance_env(instance)}));
    const pid_t pid_of_instance[] = {w[1]->pid(), w[2]->pid(), w[0]->pid()};

    const auto found = find_listeners(port);
    ASSERT_EQ(found.size(), 3u);
    std::set<std::uint64_t> cookies, inodes;
    for (std::uint32_t i = 0; i < found.size(); i++) {
        const listener& l = found[i];
        SCOPED_TRACE("listener " + std::to_string(i));
        EXPECT_EQ(l.instance, i);
        EXPECT_EQ(l.pid, pid_of_instance[i]);
        EXPECT_EQ(l.family, AF_INET6);
        EXPECT_EQ(l.address, "::");
        EXPECT_EQ(l.port, port);
        EXPECT_EQ(l.uid, 0u);
        EXPECT_GE(l.fd, 0);
        EXPECT_EQ(l.process, "test_worker");
        EXPECT_NE(l.cookie, 0u);
        EXPECT_NE(l.inode, 0u);
        cookies.insert(l.cookie);
        inodes.insert(l.inode);
    }
    EXPECT_EQ(cookies.size(), 3u);
    EXPECT_EQ(inodes.size(), 3u);
}

TEST_F(DiscoveryTest, ListenerOnAnotherPortIsNotReturned)
{
    const std::uint16_t other = free_port(port);
    w.push_back(worker_process::start(port, {instance_env(0)}));
    w.push_back(worker_process::start(other, {instance_env(1)}));

    auto found = find_listeners(port);
    ASSERT_EQ(found.size(), 1u);
    EXPECT_EQ(found[0].pid, w[0]->pid());
    EXPECT_EQ(found[0].port, port);

    found = find_listeners(other);
    ASSERT_EQ(found.size(), 1u);
    EXPECT_EQ(found[0].pid, w[1]->pid());
    EXPECT_EQ(found[0].port, other);
}

TEST_F(DiscoveryTest, NothingOnAnUnusedPort) { EXPECT_TRUE(find_listeners(port).empty()); }

TEST_F(DiscoveryTest, LoopbackListenersOfBothFamilies)
{
    w.push_back(worker_process::start(port, {}, {.address = "127.0.0.1"}));
    w.push_back(worker_process::start(port, {}, {.address = "::1"}));

    const auto found = find_listeners(port);
    ASSERT_EQ(found.size(), 2u);
    // No PM2 instance on either: ordered by pid, and the first was started first.
    ASSERT_LT(w[0]->pid(), w[1]->pid()) << "pid wrapped around; rerun";
    EXPECT_EQ(found[0].family, AF_INET);
    EXPECT_EQ(found[0].address, "127.0.0.1");
    EXPECT_EQ(found[0].pid, w[0]->pid());
    EXPECT_EQ(found[1].family, AF_INET6);
    EXPECT_EQ(found[1].address, "::1");
    EXPECT_EQ(found[1].pid, w[1]->pid());
    for (const listener& l : found)
        EXPECT_EQ(l.instance, std::nullopt);
}

// What a PM2 7 cluster worker's environ looks like: no top-level NODE_APP_INSTANCE, the
// instance inside pm2_env, and a NODE_UNIQUE_ID that must not be taken for it.
TEST_F(DiscoveryTest, InstanceFromPm2EnvDocument)
{
    w.push_back(worker_process::start(
        port,
        {"NODE_UNIQUE_ID=9", R"(pm2_env={"name":"chat","exec_mode":"cluster_mode","env":{"NODE_ENV":"production"},)"
                             R"("NODE_APP_INSTANCE":4,"pm_id":4,"restart_time":7})"}));

    const auto found = find_listeners(port);
    ASSERT_EQ(found.size(), 1u);
    EXPECT_EQ(found[0].instance, 4u);
}

TEST_F(DiscoveryTest, DuplicatedSocketIsTheListener)
{
    for (int instance : {0, 1})
        w.push_back(worker_process::start(port, {instance_env(instance)}));

    const auto found = find_listeners(port);
    ASSERT_EQ(found.size(), 2u);
    std::vector<unique_fd> held;
    for (const listener& l : found) {
        unique_fd s = duplicate_socket(l.pid, l.fd);
        ASSERT_TRUE(s);
        EXPECT_EQ(socket_cookie(s.get()), l.cookie);
        EXPECT_EQ(local_port(s.get()), port);
        int reuseport = 0;
        socklen_t len = sizeof(reuseport);
        ASSERT_EQ(getsockopt(s.get(), SOL_SOCKET, SO_REUSEPORT, &reuseport, &len), 0);
        EXPECT_EQ(reuseport, 1);
        held.push_back(std::move(s));
    }

    // This process now holds the listeners too, yet the workers remain their owners.
    const auto again = find_listeners(port);
    ASSERT_EQ(again.size(), 2u);
    EXPECT_EQ(again[0].pid, w[0]->pid());
    EXPECT_EQ(again[1].pid, w[1]->pid());
}

TEST_F(DiscoveryTest, DuplicateFromGoneProcessFails)
{
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0)
        _exit(0);
    ASSERT_EQ(waitpid(pid, nullptr, 0), pid);
    try {
        duplicate_socket(pid, 0);
        FAIL() << "expected steer_error";
    } catch (const steer_error& e) {
        EXPECT_EQ(e.code(), exit_code::failure);
        EXPECT_NE(std::string(e.what()).find(std::to_string(pid)), std::string::npos) << e.what();
    }
}

TEST_F(DiscoveryTest, DuplicateOfUnusedFdFails)
{
    w.push_back(worker_process::start(port, {instance_env(0)}));
    try {
        duplicate_socket(w[0]->pid(), 999);
        FAIL() << "expected steer_error";
    } catch (const steer_error& e) {
        EXPECT_EQ(e.code(), exit_code::failure);
        const std::string what = e.what();
        EXPECT_NE(what.find("fd 999"), std::string::npos) << what;
        EXPECT_NE(what.find(std::to_string(w[0]->pid())), std::string::npos) << what;
    }
}

// Without CAP_SYS_PTRACE (here: an unprivileged uid) pidfd_getfd onto a root worker is EPERM,
// which must come out as an environment error that says what to grant.
TEST_F(DiscoveryTest, DuplicateWithoutPtraceIsEnvironmentError)
{
    w.push_back(worker_process::start(port, {instance_env(0)}));
    const auto found = find_listeners(port);
    ASSERT_EQ(found.size(), 1u);

    // Exit code: 0 = the expected error, else which check failed.
    EXPECT_EQ(in_child([&] {
                  if (setgroups(0, nullptr) || setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534))
                      return 10;
                  try {
                      duplicate_socket(found[0].pid, found[0].fd);
                      return 11;
                  } catch (const steer_error& e) {
                      if (e.code() != exit_code::environment)
                          return 12;
                      if (e.fix().find("CAP_SYS_PTRACE") == std::string::npos ||
                          e.fix().find("root") == std::string::npos)
                          return 13;
                      return 0;
                  } catch (...) {
                      return 14;
                  }
              }),
              0);
}

}  // namespace
}  // namespace sio_steer::test
