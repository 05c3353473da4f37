// Do the workers get the CPU as one process? With autogroups (kernel.sched_autogroup_enabled = 1,
// the default of Debian's kernels) the scheduler shares the CPU fairly between sessions first and
// between the processes of a session second. PM2 cluster mode starts every worker in the PM2
// daemon's session, so on a busy host all of them together get what nginx alone gets; fork mode's
// workers are a session each. A process under cgroup CPU control (the cpu controller enabled for
// its cgroup) is scheduled by its cgroup instead. docs/benchmarks.md ("Behind nginx") measures it.
// `doctor` reads /proc and asks cpu_share_check().
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sio_steer {

struct worker_schedule {
    pid_t pid = 0;
    std::string autogroup;    // "/autogroup-305" (/proc/PID/autogroup); empty when the kernel has none, and for
                              // the boot session's processes (the root task group, never grouped)
    bool cpu_cgroup = false;  // scheduled by a cgroup with the cpu controller, not by its autogroup
};

// The first word of /proc/PID/autogroup ("/autogroup-305 nice 0" -> "/autogroup-305"), "" if none.
std::string parse_autogroup(std::string_view text);

// The cgroup that holds a process's CPU share, from /proc/PID/cgroup: the path on the cgroup v1
// hierarchy that has the cpu controller, else the cgroup v2 path. `v1` says which.
struct cpu_cgroup_path {
    std::string path;
    bool v1 = false;
};
std::optional<cpu_cgroup_path> parse_cpu_cgroup(std::string_view proc_cgroup);

struct cpu_share_finding {
    bool shared = false;  // two or more workers weigh as one
    std::string detail;
    std::string fix;  // empty when nothing is to be done
};

// autogroups_enabled: kernel.sched_autogroup_enabled (nullopt: the kernel has no autogroups).
cpu_share_finding cpu_share_check(std::optional<bool> autogroups_enabled, const std::vector<worker_schedule>& workers);

}  // namespace sio_steer
