// The control socket against a hostile local user (issue 14, items 1 and 2; docs/architecture.md,
// "Threat model"). The attacker is a real process of user nobody (uid and gid 65534, no groups):
// it asks about clients, streams requests and holds idle connections, while the controller must
// keep following the workers, answer SIGTERM and detach, and serve the workers' own requests.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <set>
#include <thread>

#include "harness.h"
#include "kernel/pinned_state.h"
#include "logic/unique_fd.h"

namespace sio_steer::test {
namespace {

using namespace std::chrono;

// release.h: the one answer to anyone who is not a recorded worker.
const std::string refusal = "error refused: only a worker listening on this port may release clients, and only its own";
constexpr uid_t nobody = 65534;

int connect_unix(const std::string& path)
{
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr))) {
        close(fd);
        return -1;
    }
    return fd;
}

// The first line that arrives on `fd` within timeout_ms, without "\n"; "" if none.
std::string read_line(int fd, int timeout_ms)
{
    std::string line;
    const auto until = steady_clock::now() + milliseconds(timeout_ms);
    char c = 0;
    while (c != '\n') {
        pollfd p{fd, POLLIN, 0};
        int left = static_cast<int>(duration_cast<milliseconds>(until - steady_clock::now()).count());
        if (left <= 0 || poll(&p, 1, left) <= 0 || read(fd, &c, 1) != 1)
            return line.empty() ? "" : line;
        line += c;
    }
    line.pop_back();
    return line;
}

std::string one_request(const std::string& path, const std::string& line)
{
    unique_fd fd(connect_unix(path));
    if (!fd)
        return std::string("connect failed: ") + std::strerror(errno);
    const std::string out = line + "\n";
    (void)!send(fd.get(), out.data(), out.size(), MSG_NOSIGNAL);
    return read_line(fd.get(), 3000);
}

// A process of user nobody running `body`, which reports one line at a time through `say`.
// Killed and reaped with the object; its loops end on their own after 60 s at most.
class nobody_process {
public:
    explicit nobody_process(const std::function<void(const std::function<void(const std::string&)>& say)>& body)
    {
        int p[2];
        if (pipe2(p, O_CLOEXEC))
            throw std::runtime_error("pipe2");
        pid_ = fork();
        if (pid_ == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            close(p[0]);
            if (setgroups(0, nullptr) || setresgid(nobody, nobody, nobody) || setresuid(nobody, nobody, nobody))
                _exit(126);
            body([&](const std::string& line) { (void)!write(p[1], (line + "\n").data(), line.size() + 1); });
            _exit(0);
        }
        close(p[1]);
        from_ = unique_fd(p[0]);
    }
    ~nobody_process()
    {
        ::kill(pid_, SIGKILL);
        while (waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {}
    }
    std::string line(int timeout_ms) { return read_line(from_.get(), timeout_ms); }

private:
    pid_t pid_ = -1;
    unique_fd from_;
};

// Writes `line` over and over on as many connections as it may hold, reading (and dropping) the
// replies so that the controller never finds its reply undeliverable; reconnects when closed.
void stream_requests(const std::string& path, const std::string& line, int connections)
{
    std::string burst;
    while (burst.size() < 16384)
        burst += line + "\n";
    std::vector<unique_fd> fds(connections);
    const auto until = steady_clock::now() + seconds(60);
    while (steady_clock::now() < until) {
        std::vector<pollfd> p;
        for (auto& fd : fds) {
            if (!fd)
                fd = unique_fd(connect_unix(path));
            if (fd)
                fcntl(fd.get(), F_SETFL, O_NONBLOCK);
            p.push_back({fd.get(), POLLIN | POLLOUT, 0});
        }
        poll(p.data(), p.size(), 100);
        for (std::size_t i = 0; i < p.size(); i++) {
            char buf[65536];
            if ((p[i].revents & POLLIN) && recv(fds[i].get(), buf, sizeof(buf), 0) == 0)
                fds[i].reset();
            else if (p[i].revents & (POLLERR | POLLHUP))
                fds[i].reset();
            else if (p[i].revents & POLLOUT)
                (void)!send(fds[i].get(), burst.data(), burst.size(), MSG_NOSIGNAL);
        }
    }
}

class ControlSocketTest : public ::testing::Test {
protected:
    void SetUp() override
    {
        enter_fresh_netns();
        port = free_port();
        for (int i = 0; i < 3; i++)
            w.push_back(worker_process::instance(port, i));
        clients = client_addresses(60, 0);
        control = pins.lock_dir() + "/" + std::to_string(port) + ".sock";
    }

    void start_controller(const std::vector<std::string>& extra = {})
    {
        std::vector<std::string> a = {"attach",    "--port",     std::to_string(port), "--pin-root",
                                      pins.path(), "--lock-dir", pins.lock_dir()};
        a.insert(a.end(), extra.begin(), extra.end());
        controller = std::make_unique<background_process>(a);
        ASSERT_TRUE(wait_for_workers(milliseconds(10000))) << controller->output();
        struct stat st {};
        for (const auto until = steady_clock::now() + seconds(10);
             stat(control.c_str(), &st) && steady_clock::now() < until;)
            std::this_thread::sleep_for(milliseconds(5));
        ASSERT_EQ(stat(control.c_str(), &st), 0) << "no control socket\n" << controller->output();
        // The lock folder is root's 0700 by default (mkdir with the test's umask): let others in.
        chmod(pins.lock_dir().c_str(), 0755);
    }

    std::set<std::string> pids_in_map() const
    {
        std::set<std::string> pids;
        try {
            auto state = pinned_state::open(pins.dir(port));
            if (!state)
                return {};
            const std::vector<slot> slots = state->read_slots();
            for (std::uint32_t i = 0; i < slots.size(); i++)
                if (slots[i].cookie && state->worker_cookie(i) == slots[i].cookie)
                    pids.insert(std::to_string(slots[i].pid));
        } catch (const std::exception&) {
            return {};
        }
        return pids;
    }

    // Whether the workers map holds exactly the live workers within `limit`.
    bool wait_for_workers(milliseconds limit)
    {
        std::set<std::string> live;
        for (const auto& p : w)
            live.insert(std::to_string(p->pid()));
        for (const auto until = steady_clock::now() + limit; steady_clock::now() < until;) {
            if (pids_in_map() == live)
                return true;
            std::this_thread::sleep_for(milliseconds(5));
        }
        return false;
    }

    // A client recorded on `worker`, after every client connected once.
    std::string client_of(const worker_process& worker)
    {
        for (const auto& [client, answers] : probe(clients, port, 1))
            if (answers.size() == 1 && answers.front().ends_with(" " + std::to_string(worker.pid())))
                return client;
        return "";
    }

    // A worker crash and PM2's restart of it: followed within `limit`, whatever else is going on.
    void restart_worker_within(std::size_t i, milliseconds limit)
    {
        w[i]->kill_now();
        w[i] = worker_process::instance(port, static_cast<int>(i));
        const auto start = steady_clock::now();
        EXPECT_TRUE(wait_for_workers(limit))
            << "the restarted worker was not followed within " << limit.count() << " ms\n"
            << controller->output();
        std::printf("restart followed in %lld ms\n",
                    static_cast<long long>(duration_cast<milliseconds>(steady_clock::now() - start).count()));
    }

    pin_root pins;
    std::uint16_t port = 0;
    workers w;
    std::vector<std::string> clients;
    std::string control;
    std::unique_ptr<background_process> controller;
};

// Item 2: whether an address is a client, and whose, is root's to know. A stranger gets one fixed
// answer for a recorded client and for an address never seen; so does a process under a recorded
// worker's pid that is another user's (as after a pid reuse): pid and uid are both checked.
TEST_F(ControlSocketTest, StrangerGetsOneFixedRefusalWhetherOrNotTheAddressIsAClient)
{
    // Instance 3 listens as root, then becomes nobody: its pid is in a slot, its uid is not the socket's.
    w.push_back(worker_process::start(port, {"NODE_APP_INSTANCE=3"}, {.become_uid = nobody}));
    start_controller();
    const std::string recorded = client_of(*w[0]), of_reused_pid = client_of(*w[3]);
    ASSERT_FALSE(recorded.empty());
    ASSERT_FALSE(of_reused_pid.empty());

    nobody_process stranger([&](const auto& say) {
        say(one_request(control, "release " + recorded));
        say(one_request(control, "release 203.0.113.9"));
    });
    const std::string about_client = stranger.line(5000), about_stranger = stranger.line(5000);
    EXPECT_EQ(about_client, refusal) << "a recorded client";
    EXPECT_EQ(about_stranger, refusal) << "an address never seen";
    EXPECT_EQ(w[3]->request(control, "release " + of_reused_pid), refusal)
        << "its pid is recorded, its uid is not the socket's";
    // The worker itself is answered: its client stays (no replacement listens yet).
    std::string own = w[0]->request(control, "release " + recorded);
    EXPECT_TRUE(own.starts_with("none " + recorded + ": slot ")) << own;
    EXPECT_EQ(w[0]->request(control, "release 203.0.113.9"),
              "none 203.0.113.9: not a recorded client of pid " + std::to_string(w[0]->pid()));
}

// Item 1: a stranger writing requests as fast as it can delays nothing: a worker restart is
// followed within a bound, and SIGTERM ends the controller at once.
TEST_F(ControlSocketTest, StreamingRequestsDoNotStallTheFollowLoop)
{
    start_controller();
    const std::string recorded = client_of(*w[0]);
    ASSERT_FALSE(recorded.empty());
    std::vector<std::unique_ptr<nobody_process>> streams;
    for (int i = 0; i < 4; i++)
        streams.push_back(
            std::make_unique<nobody_process>([&](const auto&) { stream_requests(control, "release " + recorded, 8); }));
    std::this_thread::sleep_for(milliseconds(500));

    restart_worker_within(1, milliseconds(3000));
    ::kill(controller->pid(), SIGTERM);
    EXPECT_EQ(controller->wait_exit(3000), 0) << "SIGTERM while requests stream in\n" << controller->output();
}

// Item 1: 300 idle connections of a stranger lock nobody out: each is refused at once (no slot to
// hold), the workers are followed and served, and detach is seen.
TEST_F(ControlSocketTest, IdleConnectionsOfAStrangerLockNobodyOut)
{
    start_controller();
    const std::string of_w2 = client_of(*w[2]);
    ASSERT_FALSE(of_w2.empty());
    nobody_process holder([&](const auto& say) {
        std::vector<unique_fd> held;
        for (int i = 0; i < 300; i++)
            held.emplace_back(connect_unix(control));
        int refused = 0, silent = 0;
        const auto until = steady_clock::now() + seconds(3);
        for (auto& fd : held) {
            const auto left =
                std::max(0L, static_cast<long>(duration_cast<milliseconds>(until - steady_clock::now()).count()));
            std::string line = fd ? read_line(fd.get(), static_cast<int>(left)) : "";
            refused += line == refusal;
            silent += line.empty();
        }
        say(std::to_string(refused) + " refused, " + std::to_string(silent) + " silent");
        std::this_thread::sleep_for(seconds(60));  // holds them until killed
    });
    EXPECT_EQ(holder.line(20000), "300 refused, 0 silent");

    restart_worker_within(1, milliseconds(3000));
    // Instance 2 is replaced (pm2 reload): the old worker releases a client to its successor.
    w.push_back(worker_process::instance(port, 2));
    ASSERT_TRUE(wait_for_workers(milliseconds(3000)));
    std::string reply = w[2]->request(control, "release " + of_w2);
    EXPECT_TRUE(reply.starts_with("ok " + of_w2 + " slot ")) << reply;

    run_result detached =
        sio_steer({"detach", "--port", std::to_string(port), "--pin-root", pins.path(), "--lock-dir", pins.lock_dir()});
    EXPECT_EQ(detached.code, 0) << detached.err;
    EXPECT_EQ(controller->wait_exit(3000), 0) << controller->output();
}

// Item 1: a worker's own connections are capped (the extra ones get one line saying so) and closed
// when idle, so that a hung worker cannot hold the socket either.
TEST_F(ControlSocketTest, ConnectionsAreCappedAndClosedWhenIdle)
{
    start_controller();
    std::string held = w[0]->command("hold 70 " + control);
    EXPECT_TRUE(held.starts_with("6/70 error busy: 64 connections are open to the control socket")) << held;
    std::this_thread::sleep_for(milliseconds(6000));  // the idle timeout is 5 s
    EXPECT_EQ(w[0]->command("held"), "closed 70/70");
    const std::string own = client_of(*w[0]);
    EXPECT_TRUE(w[0]->request(control, "release " + own).starts_with("none " + own + ": slot ")) << "served again";
}

// The socket is the workers' group's only, with --control-group: nobody cannot even connect.
TEST_F(ControlSocketTest, ControlGroupKeepsOthersOut)
{
    start_controller({"--control-group", "root"});
    struct stat st {};
    ASSERT_EQ(stat(control.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0660u);
    EXPECT_EQ(st.st_gid, 0u) << "group root";
    nobody_process stranger([&](const auto& say) { say(one_request(control, "release 127.1.0.7")); });
    EXPECT_EQ(stranger.line(5000), "connect failed: Permission denied");

    run_result bad = sio_steer({"attach", "--port", std::to_string(port), "--pin-root", pins.path(), "--lock-dir",
                                pins.lock_dir() + "-other", "--control-group", "no-such-group-here"});
    EXPECT_EQ(bad.code, exit_usage) << bad.err;
    EXPECT_NE(bad.err.find("--control-group no-such-group-here: no such group"), std::string::npos) << bad.err;
}

}  // namespace
}  // namespace sio_steer::test
