// /metrics under abuse (issue 14, item 3): idle connections, a slowloris and a large chunked POST
// from user nobody must neither block scrapes nor exhaust the root controller's fds or memory, and
// a scrape must cost the same with 10 and with 100,000 recorded sessions.
// Each test runs in a fresh network namespace with a private pin root.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <optional>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "harness.h"
#include "kernel/pinned_state.h"
#include "logic/unique_fd.h"

namespace sio_steer::test {
namespace {

using namespace std::chrono;

unique_fd connect_to(std::uint16_t port, bool nonblocking = false)
{
    unique_fd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (nonblocking ? SOCK_NONBLOCK : 0), 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) && errno != EINPROGRESS)
        return unique_fd();
    return fd;
}

// `n` connections to the port, opened one after the other.
std::vector<unique_fd> connections_to(std::uint16_t port, int n, bool nonblocking = false)
{
    std::vector<unique_fd> fds;
    for (int i = 0; i < n; i++)
        fds.push_back(connect_to(port, nonblocking));
    return fds;
}

// GET /metrics on a fresh connection, everything within `limit`: the body, or nullopt.
std::optional<std::string> scrape_within(std::uint16_t port, milliseconds limit)
{
    const auto deadline = steady_clock::now() + limit;
    auto left = [&] {
        return std::max<int>(0, static_cast<int>(duration_cast<milliseconds>(deadline - steady_clock::now()).count()));
    };
    unique_fd fd = connect_to(port, true);
    if (!fd)
        return std::nullopt;
    pollfd p{fd.get(), POLLOUT, 0};
    if (poll(&p, 1, left()) != 1)
        return std::nullopt;
    const std::string request = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if (send(fd.get(), request.data(), request.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(request.size()))
        return std::nullopt;
    std::string reply;
    char buf[65536];
    for (;;) {
        p = {fd.get(), POLLIN, 0};
        if (poll(&p, 1, left()) != 1)
            return std::nullopt;
        ssize_t n = recv(fd.get(), buf, sizeof(buf), 0);
        if (n < 0)
            return std::nullopt;
        if (n == 0)
            break;
        reply.append(buf, static_cast<std::size_t>(n));
    }
    if (!reply.starts_with("HTTP/1.1 200"))
        return std::nullopt;
    std::size_t body = reply.find("\r\n\r\n");
    return body == std::string::npos ? std::nullopt : std::optional(reply.substr(body + 4));
}

// A field of /proc/PID/status, in kB for the memory ones; -1 if absent.
long proc_status(pid_t pid, const std::string& field)
{
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    for (std::string line; std::getline(in, line);)
        if (line.starts_with(field + ":"))
            return std::stol(line.substr(field.size() + 1));
    return -1;
}

// Runs `body` in a child process as user nobody (the local attacker), with room for `fds` fds.
// The child tells "ready" through the pipe when body() returns, then holds everything open until
// the object goes away (it is killed and reaped then).
class attacker {
public:
    attacker(rlim_t fds, std::function<void(int ready_fd)> body)
    {
        int ready[2];
        EXPECT_EQ(pipe2(ready, O_CLOEXEC), 0);
        pid_ = fork();
        if (pid_ == 0) {
            close(ready[0]);
            rlimit r{fds, fds};
            setrlimit(RLIMIT_NOFILE, &r);  // root still: the limit is the child's alone
            if (setgroups(0, nullptr) || setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534))
                _exit(99);
            body(ready[1]);
            for (;;)
                pause();
        }
        close(ready[1]);
        ready_.reset(ready[0]);
    }
    ~attacker()
    {
        if (pid_ > 0) {
            kill(pid_, SIGKILL);
            waitpid(pid_, nullptr, 0);
        }
    }
    // The child's first line, within `limit_ms`.
    std::string wait_line(int limit_ms)
    {
        std::string line;
        char c;
        pollfd p{ready_.get(), POLLIN, 0};
        while (poll(&p, 1, limit_ms) == 1 && read(ready_.get(), &c, 1) == 1 && c != '\n')
            line += c;
        return line;
    }

private:
    pid_t pid_ = -1;
    unique_fd ready_;
};

void say(int fd, const std::string& line) { (void)!write(fd, line.data(), line.size()); }

class MetricsAbuseTest : public ::testing::Test {
protected:
    void SetUp() override
    {
        enter_fresh_netns();
        port = free_port();
        metrics_port = free_port(port);
        for (int i = 0; i < 2; i++)
            w.push_back(worker_process::instance(port, i));
    }

    void start_controller(const std::string& resync = "200")
    {
        controller = std::make_unique<background_process>(std::vector<std::string>{
            "attach", "--port", std::to_string(port), "--pin-root", pins.path(), "--lock-dir", pins.lock_dir(),
            "--resync-interval", resync, "--metrics-listen", "127.0.0.1:" + std::to_string(metrics_port)});
        ASSERT_TRUE(controller->wait_for_output("following port")) << controller->output();
        ASSERT_TRUE(scrape_within(metrics_port, milliseconds(1000))) << controller->output();
    }

    // Whether `status --json` names `pid` among the live workers and says in sync, within `patience`.
    bool followed(pid_t pid)
    {
        for (auto deadline = steady_clock::now() + patience; steady_clock::now() < deadline;) {
            run_result r = sio_steer({"status", "--json", "--port", std::to_string(port), "--pin-root", pins.path(),
                                      "--lock-dir", pins.lock_dir()});
            if (r.code == 0) {
                nlohmann::json j = nlohmann::json::parse(r.out, nullptr, false);
                if (j.is_object() && j.value("in_sync", false))
                    for (const auto& worker : j["workers"])
                        if (worker["pid"] == pid && worker["live"] == true)
                            return true;
            }
            std::this_thread::sleep_for(milliseconds(100));
        }
        return false;
    }

    pin_root pins;
    std::uint16_t port = 0, metrics_port = 0;
    workers w;
    std::unique_ptr<background_process> controller;
};

// 1,000 connections that never send a byte: a scrape is still answered within 2 s, the
// controller keeps its fds for sock_diag and pidfd_open, and a worker restart is still followed.
TEST_F(MetricsAbuseTest, IdleConnectionsBlockNeitherScrapesNorFollowing)
{
    start_controller();
    const std::uint16_t target = metrics_port;
    attacker a(1200, [target](int ready) {
        std::vector<unique_fd> held = connections_to(target, 1000, true);
        std::this_thread::sleep_for(milliseconds(500));  // the handshakes complete meanwhile
        say(ready, "ready\n");
        for (;;)
            pause();
    });
    ASSERT_EQ(a.wait_line(10'000), "ready");
    std::this_thread::sleep_for(milliseconds(300));
    auto start = steady_clock::now();
    EXPECT_TRUE(scrape_within(metrics_port, milliseconds(2000)))
        << "no scrape within 2 s beside 1,000 idle connections";
    std::printf("scrape beside 1,000 idle connections: %lld ms, controller fds: %zu\n",
                static_cast<long long>(duration_cast<milliseconds>(steady_clock::now() - start).count()),
                static_cast<std::size_t>(std::distance(
                    std::filesystem::directory_iterator("/proc/" + std::to_string(controller->pid()) + "/fd"),
                    std::filesystem::directory_iterator())));
    w[1]->kill_now();
    w[1] = worker_process::instance(port, 1);
    EXPECT_TRUE(followed(w[1]->pid())) << "the restarted worker was not followed\n" << controller->output();
    EXPECT_EQ(controller->wait_exit(0), -1) << controller->output();
}

// Header bytes one at a time, every 200 ms, on 40 connections: scrapes are answered meanwhile.
TEST_F(MetricsAbuseTest, SlowlorisDoesNotBlockScrapes)
{
    start_controller();
    const std::uint16_t target = metrics_port;
    attacker a(256, [target](int ready) {
        std::vector<unique_fd> held = connections_to(target, 40);
        say(ready, "ready\n");
        const std::string head = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
        for (std::size_t i = 0;; i++) {  // killed by the test; a connection the controller closed just fails
            for (unique_fd& fd : held)
                (void)send(fd.get(), i < head.size() ? &head[i] : "a", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
            std::this_thread::sleep_for(milliseconds(200));
        }
    });
    ASSERT_EQ(a.wait_line(10'000), "ready");
    std::this_thread::sleep_for(milliseconds(500));
    int answered = 0;
    for (int i = 0; i < 5; i++) {
        answered += scrape_within(metrics_port, milliseconds(2000)).has_value();
        std::this_thread::sleep_for(milliseconds(300));
    }
    EXPECT_EQ(answered, 5) << "scrapes answered within 2 s each while 40 slowloris connections trickle";
}

// 128 MB of chunked POST body: refused without the controller's RSS growing by more than 16 MB.
TEST_F(MetricsAbuseTest, LargeChunkedPostIsRefusedWithoutGrowingTheController)
{
    start_controller();
    const long rss_before = proc_status(controller->pid(), "VmRSS");
    const std::uint16_t target = metrics_port;
    attacker a(64, [target](int ready) {
        unique_fd fd = connect_to(target);
        std::string head = "POST /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        std::size_t sent = 0;
        if (send(fd.get(), head.data(), head.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(head.size())) {
            std::string chunk = "100000\r\n" + std::string(0x100000, 'x') + "\r\n";
            timeval t{2, 0};  // a controller that stops reading fails the send, not the test
            setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &t, sizeof(t));
            for (int i = 0; i < 128; i++) {
                ssize_t n = send(fd.get(), chunk.data(), chunk.size(), MSG_NOSIGNAL);
                if (n <= 0)
                    break;
                sent += static_cast<std::size_t>(n);
            }
        }
        say(ready, std::to_string(sent >> 20) + "\n");
    });
    std::string sent_mb = a.wait_line(60'000);
    std::this_thread::sleep_for(milliseconds(300));
    const long rss_after = proc_status(controller->pid(), "VmRSS");
    std::printf("chunked POST: %s MB accepted by the socket, controller RSS %ld kB -> %ld kB\n", sent_mb.c_str(),
                rss_before, rss_after);
    EXPECT_LT(rss_after - rss_before, 16 * 1024) << sent_mb << " MB sent";
    EXPECT_TRUE(scrape_within(metrics_port, milliseconds(2000))) << "scrapes still answered";
}

// Records `n` sessions straight into the pinned map (as the program would for n clients).
void record_sessions(const std::string& dir, std::uint32_t n)
{
    std::optional<pinned_state> state = pinned_state::open(dir);
    ASSERT_TRUE(state);
    std::uint64_t now = session_clock_ns();
    for (std::uint32_t i = 0; i < n; i++) {
        client_key key{};
        key.addr[10] = 0xff;
        key.addr[11] = 0xff;
        key.addr[12] = 10;
        std::memcpy(&key.addr[13], reinterpret_cast<const std::uint8_t*>(&i), 3);
        state->write_session(key, session{0, 1, now});
    }
}

// The thread that serves /metrics (named sio-metrics), or the whole process if none is named so.
std::string scrape_thread(pid_t controller)
{
    for (const auto& task : std::filesystem::directory_iterator("/proc/" + std::to_string(controller) + "/task")) {
        std::string comm;
        std::getline(std::ifstream(task.path() / "comm"), comm);
        if (comm == "sio-metrics")
            return task.path().filename().string();
    }
    return "";
}

// bpf() calls the controller makes while one scrape is served: those of the serving thread, or of
// every thread (strace -f) where none is named; the least of 3 tries (a background refresh of
// the session count may fall into one).
long bpf_calls_per_scrape(pid_t controller, std::uint16_t metrics_port)
{
    const std::string thread = scrape_thread(controller);
    long least = -1;
    for (int attempt = 0; attempt < 3; attempt++) {
        std::string out = "/tmp/sio-steer-scrape-strace-" + std::to_string(getpid()) + ".txt";
        std::string err = out + ".err";
        pid_t tracer = fork();
        if (tracer == 0) {
            int e = open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
            dup2(e, 2);
            if (!thread.empty())
                execlp("strace", "strace", "-c", "-e", "trace=bpf", "-o", out.c_str(), "-p", thread.c_str(), nullptr);
            else
                execlp("strace", "strace", "-c", "-f", "-e", "trace=bpf", "-o", out.c_str(), "-p",
                       std::to_string(controller).c_str(), nullptr);
            _exit(127);
        }
        // Attached once strace says "Process N attached" (with -f: "... with M threads", all of them).
        for (int i = 0; i < 300; i++) {
            std::ifstream in(err);
            std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
            if (text.find("attached") != std::string::npos)
                break;
            std::this_thread::sleep_for(milliseconds(10));
        }
        std::this_thread::sleep_for(milliseconds(100));
        EXPECT_TRUE(scrape_within(metrics_port, milliseconds(30'000)));
        std::this_thread::sleep_for(milliseconds(100));
        kill(tracer, SIGINT);
        int status = 0;
        waitpid(tracer, &status, 0);
        std::ifstream in(out);
        std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        std::remove(out.c_str());
        std::remove(err.c_str());
        // The summary line: "% time, seconds, usecs/call, calls, [errors,] bpf".
        long calls = 0;
        std::istringstream lines(text);
        for (std::string line; std::getline(lines, line);) {
            std::istringstream words(line);
            std::vector<std::string> w{std::istream_iterator<std::string>(words), std::istream_iterator<std::string>()};
            if (w.size() >= 5 && w.back() == "bpf")
                calls = std::stol(w[3]);
        }
        least = least < 0 ? calls : std::min(least, calls);
    }
    return least;
}

// The scrape reads a session count the controller keeps, not the sessions map: the same bpf()
// calls whether 10 or 100,000 clients are recorded.
TEST_F(MetricsAbuseTest, ScrapeCostDoesNotDependOnTheNumberOfSessions)
{
    start_controller("3600000");
    record_sessions(pins.dir(port), 10);
    long few = bpf_calls_per_scrape(controller->pid(), metrics_port);
    record_sessions(pins.dir(port), 100'000);
    long many = bpf_calls_per_scrape(controller->pid(), metrics_port);
    std::printf("bpf() calls per scrape: %ld with 10 sessions, %ld with 100,000\n", few, many);
    EXPECT_GT(few, 0);
    EXPECT_EQ(many, few);
}

}  // namespace
}  // namespace sio_steer::test
