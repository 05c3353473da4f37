#include "harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/prctl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <algorithm>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "logic/unique_fd.h"

#ifndef TEST_WORKER_BIN
#error "TEST_WORKER_BIN must name the test_worker binary"
#endif
#ifndef SIO_STEER_BIN
#error "SIO_STEER_BIN must name the sio-steer binary"
#endif
#ifndef SIO_STEER_SOURCE_DIR
#error "SIO_STEER_SOURCE_DIR must name the source tree"
#endif

namespace sio_steer::test {

namespace {

void check(bool ok, const std::string& what)
{
    if (!ok)
        throw std::runtime_error(what + ": " + std::strerror(errno));
}

void reap(pid_t pid)
{
    while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {}
}

int exit_code(int status) { return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status); }

}  // namespace

std::string read_text(const std::string& path)
{
    std::ifstream in(path);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

pid_t spawn(const spawn_options& o)
{
    std::vector<const char*> argv, envp;
    for (const auto& a : o.argv)
        argv.push_back(a.c_str());
    argv.push_back(nullptr);
    if (o.env) {
        for (const auto& e : *o.env)
            envp.push_back(e.c_str());
        envp.push_back(nullptr);
    }
    pid_t pid = fork();
    check(pid >= 0, "fork");
    if (pid == 0) {
        if ((o.in >= 0 && dup2(o.in, STDIN_FILENO) < 0) || (o.out >= 0 && dup2(o.out, STDOUT_FILENO) < 0) ||
            (o.err >= 0 && dup2(o.err, STDERR_FILENO) < 0))
            _exit(126);
        if (o.uid && (setgroups(0, nullptr) || setresgid(*o.uid, *o.uid, *o.uid) || setresuid(*o.uid, *o.uid, *o.uid)))
            _exit(126);
        prctl(PR_SET_PDEATHSIG, SIGKILL);  // a crashed test leaves no process behind (after setresuid, which clears it)
        if (o.env)
            execvpe(argv[0], const_cast<char* const*>(argv.data()), const_cast<char* const*>(envp.data()));
        else
            execvp(argv[0], const_cast<char* const*>(argv.data()));
        _exit(127);
    }
    return pid;
}

run_result run(const std::vector<std::string>& argv)
{
    static int counter = 0;
    std::string base = "/tmp/sio-steer-test-run-" + std::to_string(getpid()) + "-" + std::to_string(counter++);
    unique_fd out(::open((base + ".out").c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    unique_fd err(::open((base + ".err").c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    pid_t pid = spawn({.argv = argv, .out = out.get(), .err = err.get()});
    int status = 0;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (waitpid(pid, &status, WNOHANG) == 0) {
        if (std::chrono::steady_clock::now() > deadline) {
            ::kill(pid, SIGKILL);
            reap(pid);
            throw std::runtime_error(argv[0] + " did not finish within 60 s");
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    run_result r{exit_code(status), read_text(base + ".out"), read_text(base + ".err")};
    std::remove((base + ".out").c_str());
    std::remove((base + ".err").c_str());
    return r;
}

run_result capture(const std::string& command) { return run({"/bin/sh", "-c", command}); }

int in_child(const std::function<int()>& body)
{
    pid_t pid = fork();
    check(pid >= 0, "fork");
    if (pid == 0) {
        int code = 125;
        try {
            code = body();
        } catch (...) {}
        _exit(code);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    return exit_code(status);
}

std::string source_file(const std::string& relative) { return std::string(SIO_STEER_SOURCE_DIR) + "/" + relative; }

void enter_fresh_netns(int v6_subnets)
{
    check(unshare(CLONE_NEWNET) == 0, "unshare(CLONE_NEWNET)");
    std::string batch = "link set lo up\n";
    for (int i = 1; i <= v6_subnets; i++)
        batch += "addr add fd00:0:0:" + std::to_string(i) + "::1/128 dev lo nodad\n";
    std::string file = "/tmp/sio-steer-test-ip-" + std::to_string(getpid());
    std::ofstream(file) << batch;
    run_result r = run({"ip", "-batch", file});
    std::remove(file.c_str());
    if (r.code != 0)
        throw std::runtime_error("ip -batch failed setting up the test network namespace: " + r.err);
}

std::uint16_t free_port(std::uint16_t avoid)
{
    unsigned ephemeral_low = 32768, ephemeral_high = 60999;
    std::ifstream("/proc/sys/net/ipv4/ip_local_port_range") >> ephemeral_low >> ephemeral_high;
    // Below the ephemeral range, and above the ports the docs and tests name (5001, 9477, ...).
    const unsigned low = ephemeral_low > 20000 + 1000 ? 20000 : 1024, high = std::max(ephemeral_low, low + 1) - 1;
    static std::mt19937 pick{std::random_device{}()};
    for (int attempt = 0; attempt < 1000; attempt++) {
        const auto port = static_cast<std::uint16_t>(std::uniform_int_distribution<unsigned>(low, high)(pick));
        if (port == avoid)
            continue;
        unique_fd s(socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
        int zero = 0;
        setsockopt(s.get(), IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
        sockaddr_in6 a{};
        a.sin6_family = AF_INET6;
        a.sin6_port = htons(port);
        if (bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0)
            return port;
    }
    throw std::runtime_error("free_port: no free port from " + std::to_string(low) + " to " + std::to_string(high));
}

std::unique_ptr<worker_process> worker_process::start(std::uint16_t port, const std::vector<std::string>& env,
                                                      const worker_options& options)
{
    int p[2], q[2];
    check(pipe2(p, O_CLOEXEC) == 0 && pipe2(q, O_CLOEXEC) == 0, "pipe2");
    unique_fd read_end(p[0]), write_end(p[1]), stdin_read(q[0]), stdin_write(q[1]);

    std::vector<std::string> argv = {TEST_WORKER_BIN, "--port", std::to_string(port), "--address", options.address};
    if (!options.reuseport)
        argv.push_back("--no-reuseport");
    if (options.http)
        argv.push_back("--http");
    if (options.become_uid)
        argv.insert(argv.end(), {"--uid", std::to_string(*options.become_uid)});
    if (options.swap_port)
        argv.insert(argv.end(), {"--swap-port", std::to_string(options.swap_port)});
    pid_t pid = spawn({.argv = argv, .env = env, .in = stdin_read.get(), .out = write_end.get(), .uid = options.uid});
    std::unique_ptr<worker_process> w(new worker_process(pid));  // owns the child from here on
    write_end.reset();
    stdin_read.reset();
    w->to_worker_ = std::move(stdin_write);
    w->from_worker_ = std::move(read_end);
    std::string said = w->read_line(5000);
    if (said != "ready")
        throw std::runtime_error("test_worker said: " + said);
    return w;
}

std::unique_ptr<worker_process> worker_process::instance(std::uint16_t port, int instance)
{
    return start(port, {"NODE_APP_INSTANCE=" + std::to_string(instance)});
}

std::unique_ptr<worker_process> worker_process::pm2_instance(std::uint16_t port, int instance, int instances)
{
    const std::string i = std::to_string(instance);
    return start(port, {R"(pm2_env={"name":"chat","exec_mode":"cluster_mode","instances":)" +
                        std::to_string(instances) + R"(,"NODE_APP_INSTANCE":)" + i + R"(,"pm_id":)" + i + "}"});
}

std::unique_ptr<worker_process> worker_process::http_instance(std::uint16_t port, int instance)
{
    return start(port, {"NODE_APP_INSTANCE=" + std::to_string(instance)}, {.http = true});
}

worker_process::~worker_process() { kill_now(); }

void worker_process::kill_now()
{
    if (pid_ <= 0)
        return;
    ::kill(pid_, SIGKILL);
    reap(pid_);
    pid_ = -1;
}

void worker_process::signal(int sig) const { ::kill(pid_, sig); }

bool worker_process::wait_stopped() const
{
    for (int i = 0; i < 2000; i++) {
        std::ifstream stat("/proc/" + std::to_string(pid_) + "/stat");
        std::string pid, comm, state;
        stat >> pid >> comm >> state;
        if (state == "T")
            return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return false;
}

// One line of the worker's stdout, without "\n"; throws after timeout_ms or if it exited.
std::string worker_process::read_line(int timeout_ms)
{
    std::string out;
    char c = 0;
    while (c != '\n') {
        pollfd pfd{from_worker_.get(), POLLIN, 0};
        if (poll(&pfd, 1, timeout_ms) <= 0)
            throw std::runtime_error("test_worker said nothing within " + std::to_string(timeout_ms) + " ms");
        if (read(from_worker_.get(), &c, 1) != 1)
            throw std::runtime_error("test_worker exited (it said: " + out + ")");
        out += c;
    }
    out.pop_back();
    return out;
}

std::string worker_process::request(const std::string& path, const std::string& line)
{
    return command(path + " " + line);
}

std::string worker_process::command(const std::string& line, int timeout_ms)
{
    std::string text = line + "\n";
    check(write(to_worker_.get(), text.data(), text.size()) == static_cast<ssize_t>(text.size()),
          "write to test_worker");
    return read_line(timeout_ms);
}

pin_root::pin_root()
{
    static int counter = 0;
    std::string id = std::to_string(getpid()) + "_" + std::to_string(counter++);
    path_ = "/sys/fs/bpf/sio-steer-test-" + id;  // bpffs names may not contain dots
    lock_dir_ = "/tmp/sio-steer-test-locks-" + id;
    check(mkdir(path_.c_str(), 0700) == 0, "mkdir " + path_);
    check(mkdir(lock_dir_.c_str(), 0755) == 0, "mkdir " + lock_dir_);  // as attach creates it
}

pin_root::~pin_root()
{
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
    std::filesystem::remove_all(lock_dir_, ec);
}

run_result sio_steer(const std::vector<std::string>& args) { return sio_steer_under({}, args); }

run_result sio_steer_under(const std::vector<std::string>& prefix, const std::vector<std::string>& args)
{
    std::vector<std::string> argv = prefix;
    argv.push_back(SIO_STEER_BIN);
    argv.insert(argv.end(), args.begin(), args.end());
    return run(argv);
}

background_process::background_process(const std::vector<std::string>& args, const std::vector<std::string>& prefix)
{
    static int counter = 0;
    log_ = "/tmp/sio-steer-test-bg-" + std::to_string(getpid()) + "-" + std::to_string(counter++) + ".log";
    unique_fd log(::open(log_.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    std::vector<std::string> argv = prefix;
    argv.push_back(SIO_STEER_BIN);
    argv.insert(argv.end(), args.begin(), args.end());
    pid_ = spawn({.argv = argv, .out = log.get(), .err = log.get()});
}

background_process::~background_process()
{
    if (!reaped_) {
        ::kill(pid_, SIGTERM);
        if (wait_exit(5000) < 0 && !reaped_) {
            ::kill(pid_, SIGKILL);
            reap(pid_);
        }
    }
    std::remove(log_.c_str());
}

int background_process::wait_exit(int timeout_ms)
{
    if (reaped_)
        return code_;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    do {
        int status = 0;
        if (waitpid(pid_, &status, WNOHANG) == pid_) {
            reaped_ = true;
            code_ = exit_code(status);
            return code_;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    } while (std::chrono::steady_clock::now() < deadline);
    return -1;
}

std::string background_process::output() const { return read_text(log_); }

bool background_process::wait_for_output(const std::string& text, std::chrono::milliseconds limit)
{
    for (auto deadline = std::chrono::steady_clock::now() + limit; std::chrono::steady_clock::now() < deadline;) {
        if (output().find(text) != std::string::npos)
            return true;
        if (wait_exit(0) >= 0)
            return output().find(text) != std::string::npos;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
}

namespace {

// `ip` (IPv4 or IPv6 text) and `port` as a socket address; returns its length.
socklen_t socket_address(const std::string& ip, std::uint16_t port, sockaddr_storage& out)
{
    if (ip.find(':') != std::string::npos) {
        auto* a = reinterpret_cast<sockaddr_in6*>(&out);
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(port);
        inet_pton(AF_INET6, ip.c_str(), &a->sin6_addr);
        return sizeof(sockaddr_in6);
    }
    auto* a = reinterpret_cast<sockaddr_in*>(&out);
    a->sin_family = AF_INET;
    a->sin_port = htons(port);
    inet_pton(AF_INET, ip.c_str(), &a->sin_addr);
    return sizeof(sockaddr_in);
}

unique_fd connect_from(const std::string& source, const std::string& dest, std::uint16_t port)
{
    bool v6 = source.find(':') != std::string::npos;
    unique_fd s(socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    timeval tv{2, 0};
    setsockopt(s.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(s.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    sockaddr_storage src{}, dst{};
    socklen_t len = socket_address(source, 0, src);
    socket_address(dest, port, dst);
    if (bind(s.get(), reinterpret_cast<sockaddr*>(&src), len) ||
        connect(s.get(), reinterpret_cast<sockaddr*>(&dst), len))
        return unique_fd();
    return s;
}

std::string read_answer(int fd)
{
    char buf[64];
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n <= 0)
        return "";
    std::string answer(buf, static_cast<std::size_t>(n));
    return answer.substr(0, answer.find('\n'));
}

}  // namespace

std::string ask_worker(const std::string& source, const std::string& dest, std::uint16_t port)
{
    unique_fd s = connect_from(source, dest, port);
    return s ? read_answer(s.get()) : "";
}

pending_connection::pending_connection(const std::string& source, const std::string& dest, std::uint16_t port)
    : fd_(connect_from(source, dest, port).release())
{}

pending_connection::~pending_connection()
{
    if (fd_ >= 0)
        close(fd_);
}

std::string pending_connection::answer() { return fd_ >= 0 ? read_answer(fd_) : ""; }

std::vector<std::string> client_addresses(int v4, int v6_subnets)
{
    std::vector<std::string> out;
    for (int i = 0; i < v4; i++)  // 127.<1 + i/200>.<i%200>.<7 + i%13>: several /16s and /24s
        out.push_back("127." + std::to_string(1 + i / 200) + "." + std::to_string(i % 200) + "." +
                      std::to_string(7 + i % 13));
    if (v6_subnets > 0)
        out.push_back("::1");
    for (int i = 1; i <= v6_subnets; i++)
        out.push_back("fd00:0:0:" + std::to_string(i) + "::1");
    return out;
}

std::map<std::string, std::vector<std::string>> probe(const std::vector<std::string>& clients, std::uint16_t port,
                                                      int connections)
{
    std::map<std::string, std::vector<std::string>> seen;
    for (int round = 0; round < connections; round++)
        for (const auto& c : clients) {
            // IPv6 clients talk to their own address: every local address reaches the "::" listeners.
            std::string answer = ask_worker(c, c.find(':') != std::string::npos ? c : "127.0.0.1", port);
            auto& v = seen[c];
            if (std::find(v.begin(), v.end(), answer) == v.end())
                v.push_back(answer);
        }
    return seen;
}

void integration_test::SetUp()
{
    enter_fresh_netns(v6_subnets_);
    port = free_port();
    pins_.emplace();
}

std::vector<std::string> integration_test::args(const std::string& verb, const std::vector<std::string>& extra) const
{
    std::vector<std::string> a = {verb, "--port", port_text(), "--pin-root", pins().path()};
    if (verb != "sessions")  // the one verb that neither holds nor reads the port's lock
        a.insert(a.end(), {"--lock-dir", pins().lock_dir()});
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
}

void integration_test::start_workers(int n)
{
    for (int i = 0; i < n; i++)
        w.push_back(worker_process::instance(port, i));
}

void integration_test::start_pm2_workers(int n, int instances)
{
    for (int i = 0; i < n; i++)
        w.push_back(worker_process::pm2_instance(port, i, instances ? instances : n));
}

void integration_test::start_controller(const std::vector<std::string>& extra, const std::vector<std::string>& prefix,
                                   const std::string& ready)
{
    controller = std::make_unique<background_process>(args("attach", extra), prefix);
    ASSERT_TRUE(controller->wait_for_output(ready)) << "no \"" << ready << "\" within " << patience.count() << " ms:\n" << controller->output();
}

unique_fd listen_on_loopback(std::uint16_t port)
{
    unique_fd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_storage at{};
    socklen_t len = socket_address("127.0.0.1", port, at);
    if (bind(fd.get(), reinterpret_cast<sockaddr*>(&at), len) || listen(fd.get(), 1))
        return unique_fd();
    return fd;
}

}  // namespace sio_steer::test
