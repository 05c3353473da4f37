// What the integration tests share: the base fixture (integration_test: a private network namespace, a port,
// a private pin root and lock folder, a verb's arguments), worker processes, the sio-steer binary,
// running commands (run, capture, spawn), and clients that connect from chosen source addresses.
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "exit_codes.h"
#include "logic/unique_fd.h"

namespace sio_steer::test {

// How long a test waits for what must happen (a controller ready, a change followed). Generous:
// a slow host (a VM without KVM, a loaded CI machine) takes seconds for what takes milliseconds
// here, and waiting costs nothing when it works. Speed is measured in benchmarks, not here.
constexpr std::chrono::milliseconds patience{30000};

// The whole of a text file ("" if it cannot be read).
std::string read_text(const std::string& path);

// The path of `relative` in the source tree (docs/runbook.md, packaging/...).
std::string source_file(const std::string& relative);

// Moves the test process into a new network namespace with lo up and `v6_subnets` IPv6 addresses
// fd00:0:0:<i>::1 (each in its own /64). Everything the test starts afterwards lives in it, and the
// namespace goes away with the processes: nothing to clean up, no collision with other tests.
void enter_fresh_netns(int v6_subnets = 0);

// A TCP port that is free now, below the ephemeral range (net.ipv4.ip_local_port_range), so that no
// connection's source port can take it later; `avoid` keeps two picks apart.
std::uint16_t free_port(std::uint16_t avoid = 0);

// A child process: argv[0] looked up in PATH, SIGKILLed if the test process dies first.
struct spawn_options {
    std::vector<std::string> argv{};
    std::optional<std::vector<std::string>> env{};  // exactly this environment (default: the test's)
    int in = -1, out = -1, err = -1;                // its stdin, stdout, stderr (default: the test's)
    std::optional<uid_t> uid{};                     // runs as this uid and gid, without groups (default: root)
};
pid_t spawn(const spawn_options& o);

struct run_result {
    int code = -1;  // exit code, or 128 + the signal that killed it
    std::string out, err;
};

// Runs `argv` (argv[0] looked up in PATH) and waits for it, at most 60 s.
run_result run(const std::vector<std::string>& argv);

// Runs a shell command line (sh -c) and waits for it, at most 60 s: exit code, stdout, stderr.
run_result capture(const std::string& command);

// Runs `body` in a forked child of the test process and returns its exit code (128 + signal).
int in_child(const std::function<int()>& body);

struct worker_options {
    std::string address = "::";  // what it listens on
    bool reuseport = true;       // false: a plain listener, as PM2's God daemon has in cluster mode
    bool http = false;           // answers HTTP/1.1 requests (test_worker --http), e.g. behind nginx
    std::optional<uid_t> uid{};  // runs as this user, as PM2 apps do (default: root)
    // listens as root, then becomes this user (test_worker --uid): a pid the controller recorded
    // that is now another user's process, as after a pid reuse
    std::optional<uid_t> become_uid{};
    std::uint16_t swap_port = 0;  // SIGUSR1 puts a listener of this port on its listener's fd number
};

// One running test_worker (see test_worker.cpp), killed and reaped when the object goes away.
class worker_process {
public:
    // Starts test_worker with exactly `env` as its environment and waits until it listens.
    static std::unique_ptr<worker_process> start(std::uint16_t port, const std::vector<std::string>& env,
                                                 const worker_options& options = {});
    // A worker as PM2 starts it: NODE_APP_INSTANCE=<instance> in the environment.
    static std::unique_ptr<worker_process> instance(std::uint16_t port, int instance);
    // A worker as PM2 7 starts one in cluster mode: its instance, and the app's `instances`
    // setting, only inside pm2_env=<JSON> (no top-level NODE_APP_INSTANCE).
    static std::unique_ptr<worker_process> pm2_instance(std::uint16_t port, int instance, int instances);
    // The same, speaking HTTP: 200 with body "<instance> <pid>" and header X-Peer (see test_worker.cpp).
    static std::unique_ptr<worker_process> http_instance(std::uint16_t port, int instance);
    ~worker_process();
    worker_process(const worker_process&) = delete;
    worker_process& operator=(const worker_process&) = delete;

    pid_t pid() const { return pid_; }
    void kill_now();  // SIGKILL and reap
    void signal(int sig) const;
    bool wait_stopped() const;  // true once /proc says it is stopped (SIGSTOP), within 2 s
    // Sends `line` to the Unix stream socket at `path` from this worker's process (as a draining
    // worker talks to the controller's control socket) and returns the reply line, without "\n".
    std::string request(const std::string& path, const std::string& line);
    // Any line of test_worker's stdin protocol (e.g. "hold 70 PATH"); its answer line.
    std::string command(const std::string& line, int timeout_ms = 5000);

private:
    explicit worker_process(pid_t pid) : pid_(pid) {}
    std::string read_line(int timeout_ms);
    pid_t pid_;
    unique_fd to_worker_, from_worker_;  // its stdin and stdout
};

using workers = std::vector<std::unique_ptr<worker_process>>;

// A private pin root on bpffs and a private lock folder, both created now and removed with
// everything under them when the object goes away.
class pin_root {
public:
    pin_root();
    ~pin_root();
    const std::string& path() const { return path_; }
    const std::string& lock_dir() const { return lock_dir_; }
    std::string dir(std::uint16_t port) const { return path_ + "/" + std::to_string(port); }
    pin_root(const pin_root&) = delete;  // one owner removes the folders
    pin_root& operator=(const pin_root&) = delete;

private:
    std::string path_, lock_dir_;
};

// Runs the sio-steer binary with `args` and waits for it (at most 60 s).
run_result sio_steer(const std::vector<std::string>& args);

// The same, under a command prefix that runs it (e.g. {"setpriv", "--reuid=65534", ...}); the
// prefix's first word is looked up in PATH.
run_result sio_steer_under(const std::vector<std::string>& prefix, const std::vector<std::string>& args);

// Runs sio-steer in the background (e.g. a following `attach`); stopped with SIGTERM and reaped
// when the object goes away. `stopped()` waits for it to exit and returns its status. A `prefix`
// runs it under another command (e.g. setpriv, strace), as with sio_steer_under().
class background_process {
public:
    explicit background_process(const std::vector<std::string>& args, const std::vector<std::string>& prefix = {});
    ~background_process();
    pid_t pid() const { return pid_; }
    // Waits up to `timeout_ms` for the process to exit; returns its exit code or -1 if still running.
    int wait_exit(int timeout_ms);
    std::string output() const;  // what it printed so far (stdout and stderr)
    // Waits until it has printed `text`: false if it exits or stays silent for `limit`.
    bool wait_for_output(const std::string& text, std::chrono::milliseconds limit = patience);

private:
    pid_t pid_ = -1;
    std::string log_;
    bool reaped_ = false;
    int code_ = -1;
};

// A plain TCP listener on 127.0.0.1:port (another process's, as far as sio-steer can tell), or an
// empty fd if the port is taken.
unique_fd listen_on_loopback(std::uint16_t port);

// Connects from `source` (IPv4 or IPv6 text) to `dest`:port and returns the worker's answer,
// "<instance> <pid>", or "" on a failure (refused, reset, timeout).
std::string ask_worker(const std::string& source, const std::string& dest, std::uint16_t port);

// A connection made now (handshake done, so it waits in a listener's accept queue) whose answer
// is read later: "" if it was reset or closed unanswered.
class pending_connection {
public:
    pending_connection(const std::string& source, const std::string& dest, std::uint16_t port);
    ~pending_connection();
    std::string answer();

private:
    int fd_ = -1;
};

// The first `n` source addresses of the test's client population: IPv4 in 127.0.0.0/8 spread over
// several /16s, then IPv6 (::1 and fd00:0:0:<i>::1, which enter_fresh_netns adds).
std::vector<std::string> client_addresses(int v4, int v6_subnets);

// For each client, the distinct answers it got over `connections` fresh connections.
std::map<std::string, std::vector<std::string>> probe(const std::vector<std::string>& clients, std::uint16_t port,
                                                      int connections);

// The base fixture of the integration tests (as tubular's testutil gives each test a namespace and a
// ready CLI): each test in a fresh network namespace, on a free port, with a pin root and a lock
// folder of its own, created by SetUp() and removed when the test ends, passed or failed.
class integration_test : public ::testing::Test {
protected:
    explicit integration_test(int v6_subnets = 0) : v6_subnets_(v6_subnets) {}
    void SetUp() override;

    const pin_root& pins() const { return *pins_; }
    std::string port_text() const { return std::to_string(port); }

    // A verb's command line on this test's port, pin root and lock folder, then `extra`:
    // {verb, --port P, --pin-root R, --lock-dir L, extra...}; `sessions` takes no --lock-dir.
    std::vector<std::string> args(const std::string& verb, const std::vector<std::string>& extra = {}) const;

    // Workers of PM2 instances 0 .. n-1 on the port (NODE_APP_INSTANCE), added to `w`.
    void start_workers(int n);
    // The same as PM2 7 starts them (pm2_instance), its `instances` setting `instances` (default n).
    void start_pm2_workers(int n, int instances = 0);

    // A following `attach` (args("attach", extra), under `prefix` if given) in `controller`, once it
    // has printed `ready` ("following port": its first sync is done); fails the test if it does not.
    void start_controller(const std::vector<std::string>& extra = {}, const std::vector<std::string>& prefix = {},
                          const std::string& ready = "following port");

    std::uint16_t port = 0;
    workers w;
    std::unique_ptr<background_process> controller;

private:
    int v6_subnets_;
    std::optional<pin_root> pins_;
};

}  // namespace sio_steer::test
