#include "logic/cpu_share.h"

#include <map>
#include <sstream>

namespace sio_steer {

std::string parse_autogroup(std::string_view text)
{
    std::string_view word = text.substr(0, text.find_first_of(" \t\n"));
    return word.substr(0, 1) == "/" ? std::string(word) : std::string();
}

std::optional<cpu_cgroup_path> parse_cpu_cgroup(std::string_view proc_cgroup)
{
    std::optional<cpu_cgroup_path> v2;
    std::istringstream lines{std::string(proc_cgroup)};
    for (std::string line; std::getline(lines, line);) {
        // hierarchy-ID:controller-list:path; the path may itself contain ':'
        std::size_t a = line.find(':');
        std::size_t b = a == std::string::npos ? a : line.find(':', a + 1);
        if (b == std::string::npos)
            continue;
        std::string id = line.substr(0, a), controllers = line.substr(a + 1, b - a - 1), path = line.substr(b + 1);
        if (id == "0" && controllers.empty()) {
            v2 = cpu_cgroup_path{path, false};
            continue;
        }
        std::istringstream list(controllers);
        for (std::string c; std::getline(list, c, ',');)
            if (c == "cpu")
                return cpu_cgroup_path{path, true};  // the cpu controller is on this v1 hierarchy
    }
    return v2;
}

namespace {

std::string pids_text(const std::vector<pid_t>& pids)
{
    std::string out;
    for (pid_t p : pids)
        out += (out.empty() ? "" : ", ") + std::to_string(p);
    return out;
}

}  // namespace

cpu_share_finding cpu_share_check(std::optional<bool> autogroups_enabled, const std::vector<worker_schedule>& workers)
{
    if (!autogroups_enabled)
        return {false, "this kernel has no scheduler autogroups: each worker gets its own share of the CPU", ""};
    if (!*autogroups_enabled)
        return {false, "scheduler autogroups are off: each worker gets its own share of the CPU", ""};

    std::map<std::string, std::vector<pid_t>> by_group;
    std::size_t in_cgroups = 0, in_no_autogroup = 0;
    for (const worker_schedule& w : workers) {
        if (w.cpu_cgroup)
            in_cgroups++;
        else if (w.autogroup.empty())
            in_no_autogroup++;
        else
            by_group[w.autogroup].push_back(w.pid);
    }
    for (const auto& [group, pids] : by_group)
        if (pids.size() > 1)
            return {
                true,
                std::to_string(pids.size()) + " workers (pids " + pids_text(pids) +
                    ") share one scheduler autogroup (" + group +
                    "): with kernel.sched_autogroup_enabled = 1 the kernel shares the CPU between sessions "
                    "first, and PM2 cluster mode starts every worker in the PM2 daemon's session, so on a busy host "
                    "they get together what nginx or Redis gets alone",
                "sysctl -w kernel.sched_autogroup_enabled=0, and the same setting in /etc/sysctl.d/ to keep it "
                "(or run PM2 under a cgroup with the cpu controller and a CPUWeight= that counts its workers); "
                "docs/pm2.md"};
    if (in_cgroups == workers.size() && !workers.empty())
        return {false, "the workers are under cgroup CPU control, not autogroups", ""};
    if (in_no_autogroup == workers.size() && !workers.empty())
        return {false,
                "the workers are in no autogroup (their session is the one the host booted with, which the kernel "
                "does not group): each gets its own share of the CPU",
                ""};
    return {false, "each worker has a scheduler autogroup of its own", ""};
}

}  // namespace sio_steer
