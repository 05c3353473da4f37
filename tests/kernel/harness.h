// What the kernel tests share: a private network namespace, worker processes, a private pin root,
// the sio-steer binary, and clients that connect from chosen source addresses.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "unique_fd.h"

namespace sio_steer::test {

// Moves the test process into a new network namespace with lo up and `v6_subnets` IPv6 addresses
// fd00:0:0:<i>::1 (each in its own /64). Everything the test starts afterwards lives in it, and the
// namespace goes away with the processes: nothing to clean up, no collision with other tests.
void enter_fresh_netns(int v6_subnets = 0);

// A TCP port that is free now (dual-stack bind to port 0); `avoid` keeps two picks apart.
std::uint16_t free_port(std::uint16_t avoid = 0);

// One running test_worker (see test_worker.cpp), killed and reaped when the object goes away.
class worker_process {
public:
    // Starts test_worker with exactly `env` as its environment and waits until it listens.
    // `http`: answers HTTP/1.1 requests (test_worker --http), e.g. behind nginx.
    static std::unique_ptr<worker_process> start(std::uint16_t port, const std::vector<std::string>& env,
                                                 const std::string& address = "::", bool reuseport = true,
                                                 bool http = false);
    // A worker as PM2 starts it: NODE_APP_INSTANCE=<instance> in the environment.
    static std::unique_ptr<worker_process> instance(std::uint16_t port, int instance);
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

private:
    explicit worker_process(pid_t pid) : pid_(pid) {}
    std::string read_line(int timeout_ms);
    pid_t pid_;
    unique_fd to_worker_, from_worker_;  // its stdin and stdout
};

using workers = std::vector<std::unique_ptr<worker_process>>;

// A private pin root on bpffs, removed with everything under it when the object goes away; and a
// private lock folder.
class pin_root {
public:
    pin_root();
    ~pin_root();
    const std::string& path() const { return path_; }
    const std::string& lock_dir() const { return lock_dir_; }
    std::string dir(std::uint16_t port) const { return path_ + "/" + std::to_string(port); }

private:
    std::string path_, lock_dir_;
};

struct run_result {
    int code = -1;
    std::string out, err;
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

private:
    pid_t pid_ = -1;
    std::string log_;
    bool reaped_ = false;
    int code_ = -1;
};

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

}  // namespace sio_steer::test
