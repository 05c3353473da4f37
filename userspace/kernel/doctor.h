// `sio-steer doctor`: is everything in place for steering a port? One finding per check, each with
// what was seen and, when something is wrong, what to do. Reads only; changes nothing.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sio_steer {

enum class verdict {
    ok,
    skip,  // does not apply, or cannot be told (e.g. a worker's Node version): not a problem
    note,  // worth knowing (e.g. how the CPU is shared), shown with its fix; not a problem
    warn,  // works, but not as well as it should
    fail,  // steering cannot work, or does not
};

struct finding {
    std::string check;  // "kernel", "bpffs", "privileges", "listeners", "node", "migration", "drain", ...
    verdict result;
    std::string detail;  // what was seen
    std::string fix;     // what to do; empty when nothing is to be done
};

struct doctor_settings {
    std::uint16_t port = 0;
    std::string pin_root;
    std::string lock_dir;
};

// Runs every check, in the order a user would fix them.
std::vector<finding> examine(const doctor_settings& settings);

// True when no finding is a warning or a failure.
bool all_well(const std::vector<finding>& findings);

// Where the scheduler check finds the cgroup v2 hierarchy ("" if none): cgroup2_mount_point() of
// this process's mountinfo, as the listener watch's cgroup2_root().
std::string cgroup2_mount();

}  // namespace sio_steer
