#include "kernel/preflight.h"

#include <linux/capability.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <filesystem>

#include "logic/errors.h"

#ifndef BPF_FS_MAGIC
#define BPF_FS_MAGIC 0xcafe4a11
#endif
#ifndef CAP_PERFMON
#define CAP_PERFMON 38
#endif
#ifndef CAP_BPF
#define CAP_BPF 39
#endif

namespace sio_steer {

namespace fs = std::filesystem;

std::vector<capability_check> check_capabilities()
{
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2]{};
    syscall(SYS_capget, &header, data);
    auto has = [&](int cap) { return (data[cap / 32].effective >> (cap % 32)) & 1u; };
    bool sys_admin = has(CAP_SYS_ADMIN);
    // Measured with setpriv --bounding-set: without CAP_PERFMON the verifier rejects the steering
    // program ("pointer arithmetic ... prohibited for !root"); without CAP_DAC_READ_SEARCH root
    // cannot list /proc/PID/fd of workers running as another user, so their sockets go unseen.
    return {
        {"CAP_BPF", has(CAP_BPF) || sys_admin, "loading the steering program and its maps"},
        {"CAP_PERFMON", has(CAP_PERFMON) || sys_admin,
         "the verifier's checks of the steering program, the listener watch"},
        {"CAP_NET_ADMIN", has(CAP_NET_ADMIN) || sys_admin, "attaching it to the listening sockets"},
        {"CAP_SYS_PTRACE", has(CAP_SYS_PTRACE) != 0, "taking the workers' sockets (pidfd_getfd)"},
        {"CAP_DAC_READ_SEARCH", has(CAP_DAC_READ_SEARCH) || has(CAP_DAC_OVERRIDE),
         "reading /proc/PID/fd and environ of workers that run as another user"},
    };
}

void require_capabilities()
{
    std::string missing;
    for (const auto& c : check_capabilities())
        if (!c.present)
            missing += std::string(missing.empty() ? "" : ", ") + c.name + " (" + c.needed_for + ")";
    if (!missing.empty())
        throw steer_error(exit_code::environment, "missing privileges: " + missing,
                          "sio-steer loads BPF programs and takes sockets from other processes",
                          "run it as root, or grant the capabilities (the systemd unit does: AmbientCapabilities=)");
}

void require_bpffs(const std::string& pin_root)
{
    // The pin root may not exist yet: its nearest existing ancestor must be on bpffs.
    fs::path p = pin_root;
    while (!p.empty() && !fs::exists(p))
        p = p.parent_path();
    struct statfs st {};
    if (p.empty() || statfs(p.c_str(), &st) || st.f_type != BPF_FS_MAGIC)
        throw steer_error(exit_code::environment, pin_root + " is not on a BPF filesystem",
                          "the steering program and its maps are pinned there so they outlive the controller",
                          "mount bpffs: mount -t bpf bpf /sys/fs/bpf (or pass --pin-root on a bpffs mount)");
}

}  // namespace sio_steer
