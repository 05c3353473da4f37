// Errors the user can act on: what happened, why, what to do, and the exit code (docs/exit-codes.md).
#pragma once

#include <stdexcept>
#include <string>

namespace sio_steer {

enum class exit_code : int {
    ok = 0,
    failure = 1,        // an unexpected system error; the message names the call that failed
    usage = 2,          // bad command line or config file
    no_listeners = 3,   // nothing listens on the port
    not_steerable = 4,  // listeners exist but cannot be steered (no SO_REUSEPORT, several groups)
    environment = 5,    // missing privileges, bpffs or kernel feature
    busy = 6,           // another sio-steer controller holds the port
    incompatible = 7,   // pinned state written by an incompatible version
    not_attached = 8,   // nothing is pinned for the port (status, sessions, detach)
    unhealthy = 9,      // doctor found a problem
};

class steer_error : public std::runtime_error {
public:
    steer_error(exit_code code, std::string what, std::string why = {}, std::string fix = {})
        : std::runtime_error(std::move(what)),
          code_(code),
          why_(std::move(why)),
          fix_(std::move(fix))
    {}
    exit_code code() const { return code_; }
    const std::string& why() const { return why_; }
    const std::string& fix() const { return fix_; }

private:
    exit_code code_;
    std::string why_;
    std::string fix_;
};

// A failed system call: a steer_error that keeps the errno, so that a caller can tell a worker
// that is exiting (ESRCH, EBADF) from a refusal (EPERM) or a shortage (ENOMEM) and catch only
// what it expects. what() ends with strerror(errnum).
class sys_error : public steer_error {
public:
    sys_error(const std::string& what, int errnum, exit_code code = exit_code::failure, std::string why = {},
              std::string fix = {});
    int errnum() const { return errnum_; }

private:
    int errnum_;
};

// Throws sys_error(exit_code::failure): "<what>: <strerror(err)>".
[[noreturn]] void throw_system_error(const std::string& what, int err);

}  // namespace sio_steer
