// Checks made before anything changes: privileges, bpffs, and one controller per port.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "unique_fd.h"

namespace sio_steer {

struct capability_check {
    const char* name;
    bool present;
    const char* needed_for;
};

// The capabilities the controller needs, and whether this process has them (effective set).
std::vector<capability_check> check_capabilities();

// Throws steer_error(environment) naming every missing capability.
void require_capabilities();

// Throws steer_error(environment) when `pin_root` is not on a mounted bpffs (or could not be).
void require_bpffs(const std::string& pin_root);

// The pid holding the lock of `pin_dir` (a following attach), read from /proc/locks without
// touching the lock; nullopt if nobody holds it.
std::optional<pid_t> lock_holder(const std::string& lock_dir, const std::string& pin_dir);

// An exclusive flock held for as long as this object lives: one controller per pin folder.
class port_lock {
public:
    // Throws steer_error(busy) naming the holder's pid when another process holds it.
    port_lock(const std::string& lock_dir, const std::string& pin_dir);
    // Waits up to `timeout` for the holder to let go (e.g. a following attach that is exiting).
    static port_lock wait(const std::string& lock_dir, const std::string& pin_dir, std::chrono::milliseconds timeout);

private:
    unique_fd fd_;
};

}  // namespace sio_steer
