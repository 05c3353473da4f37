#include "bench_env.h"

#include <bpf/bpf.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "harness.h"

namespace sio_steer::bench {

namespace fs = std::filesystem;

namespace {

volatile sig_atomic_t interrupted = 0;
void on_signal(int) { interrupted = 1; }

std::string first_line(const std::string& path)
{
    std::ifstream in(path);
    std::string line;
    std::getline(in, line);
    return line;
}

}  // namespace

void fail(const std::string& what, int err)
{
    throw std::runtime_error(what + (err ? std::string(": ") + std::strerror(err) : std::string()));
}

void catch_stop_signals()
{
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    sigaction(SIGHUP, &sa, nullptr);
}

void check_interrupted()
{
    if (interrupted)
        throw std::runtime_error("interrupted");
}

void enter_private_world()
{
    if (unshare(CLONE_NEWNS))
        fail("unshare(CLONE_NEWNS)", errno);
    if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr))
        fail("making mounts private", errno);
    if (mount("bpf", "/sys/fs/bpf", "bpf", 0, "mode=0700"))
        fail("mounting a private bpffs on /sys/fs/bpf", errno);
    if (mount("tmpfs", "/run", "tmpfs", 0, "mode=0755,size=16m"))
        fail("mounting a private tmpfs on /run", errno);
    sio_steer::test::enter_fresh_netns(0);
}

int run_as_root(const char* name, const char* needs, const std::function<int()>& run)
{
    if (geteuid() != 0) {
        std::fprintf(stderr, "%s: run as root (%s)\n", name, needs);
        return 2;
    }
    catch_stop_signals();
    try {
        enter_private_world();
        return run();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "%s: %s\n", name, e.what());
        return 1;
    }
}

std::string load_average()
{
    std::string l = first_line("/proc/loadavg");
    std::size_t third = 0;
    for (int spaces = 0; third < l.size() && spaces < 3; third++)
        spaces += l[third] == ' ';
    return l.substr(0, third ? third - 1 : l.size());
}

std::string machine_line()
{
    std::string model = "unknown";
    std::ifstream cpuinfo("/proc/cpuinfo");
    for (std::string line; std::getline(cpuinfo, line);)
        if (line.rfind("model name", 0) == 0) {
            model = line.substr(line.find(':') + 2);
            break;
        }
    utsname u{};
    uname(&u);
    return std::to_string(sysconf(_SC_NPROCESSORS_ONLN)) + " CPUs (" + model + "), Linux " + u.release +
           ", clocksource " + first_line("/sys/devices/system/clocksource/clocksource0/current_clocksource") +
           ", load " + load_average();
}

std::string attach_real(std::uint16_t port, std::uint32_t max_sessions)
{
    const std::string pin_root = "/sys/fs/bpf/bench";
    auto attach = sio_steer::test::sio_steer({"attach", "--once", "--port", std::to_string(port), "--pin-root",
                                              pin_root, "--lock-dir", "/run/sio-steer-bench", "--max-sessions",
                                              std::to_string(max_sessions)});
    if (attach.code != 0)
        throw std::runtime_error("sio-steer attach failed (" + std::to_string(attach.code) + "): " + attach.err);
    return pin_root + "/" + std::to_string(port);
}

unique_fd pinned(const std::string& path)
{
    int fd = bpf_obj_get(path.c_str());
    if (fd < 0)
        fail("opening " + path, errno);
    return unique_fd(fd);
}

std::uint64_t task_cpu_ns(pid_t pid, pid_t tid)
{
    std::ifstream in("/proc/" + std::to_string(pid) + "/task/" + std::to_string(tid) + "/schedstat");
    std::uint64_t ns = 0;
    in >> ns;
    return ns;
}

std::uint64_t process_cpu_ns(pid_t pid)
{
    std::uint64_t ns = 0;
    std::error_code ec;
    for (const auto& t : fs::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec))
        ns += task_cpu_ns(pid, static_cast<pid_t>(std::stol(t.path().filename().string())));
    return ns;
}

std::vector<pid_t> ksoftirqd_pids()
{
    std::vector<pid_t> pids;
    std::error_code ec;
    for (const auto& p : fs::directory_iterator("/proc", ec)) {
        const std::string name = p.path().filename().string();
        if (name.find_first_not_of("0123456789") != std::string::npos)
            continue;
        if (first_line(p.path().string() + "/comm").rfind("ksoftirqd/", 0) == 0)
            pids.push_back(static_cast<pid_t>(std::stol(name)));
    }
    return pids;
}

}  // namespace sio_steer::bench
