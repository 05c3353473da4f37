// doctor's scheduler check and the listener watch read one mountinfo parser (logic/mountinfo.h)
// and so name the same cgroup v2 hierarchy. Shown in a private mount namespace laid out as a
// container may be: one cgroup bind-mounted before the whole hierarchy, where the two readers of
// old (the first cgroup2 mount; the first mounted whole) disagreed.
#include <gtest/gtest.h>

#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "harness.h"
#include "kernel/doctor.h"
#include "kernel/listener_watch.h"
#include "logic/mountinfo.h"

namespace sio_steer::test {
namespace {

constexpr int cannot_mount = 77;  // this host does not let the test mount cgroup2: skipped

// Where an fd's folder is, as this process sees it.
std::string path_of(int fd)
{
    std::error_code ec;
    return std::filesystem::read_symlink("/proc/self/fd/" + std::to_string(fd), ec).string();
}

bool say(bool ok, const char* what)
{
    if (!ok)
        std::fprintf(stderr, "%s: %s\n", what, std::strerror(errno));
    return ok;
}

// In the calling process's own mount namespace: no cgroup2 mount but `one` (a single cgroup, root
// "/sio-steer-test-PID") and then `whole` (the hierarchy), in that order. Returns 0, or
// cannot_mount, or 1.
int lay_out_container_mounts(const std::string& base, std::string& whole, std::string& one)
{
    if (!say(unshare(CLONE_NEWNS) == 0 && mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0,
             "a private mount namespace"))
        return cannot_mount;
    for (const mount_entry& m : parse_mountinfo(read_text("/proc/self/mountinfo")))
        if (m.fs_type == "cgroup2")
            umount2(m.mount_point.c_str(), MNT_DETACH);
    const std::string first = base + "/first", cgroup = "sio-steer-test-" + std::to_string(getpid());
    whole = base + "/whole";
    one = base + "/one";
    for (const std::string& dir : {first, whole, one})
        mkdir(dir.c_str(), 0700);
    if (!say(mount("cgroup2", first.c_str(), "cgroup2", 0, nullptr) == 0, "mount cgroup2"))
        return cannot_mount;
    bool ok = say(mkdir((first + "/" + cgroup).c_str(), 0755) == 0, "mkdir a cgroup") &&
              say(mount((first + "/" + cgroup).c_str(), one.c_str(), nullptr, MS_BIND, nullptr) == 0, "bind it") &&
              say(umount2(first.c_str(), MNT_DETACH) == 0, "umount the first") &&
              say(mount("cgroup2", whole.c_str(), "cgroup2", 0, nullptr) == 0, "mount cgroup2 again");
    return ok ? 0 : 1;
}

TEST(CgroupMountTest, DoctorAndTheWatchNameTheSameHierarchy)
{
    const std::string base = testing::TempDir() + "sio-steer-cgroup-" + std::to_string(getpid());
    std::filesystem::create_directories(base);
    int code = in_child([&] {
        std::string whole, one;
        if (int laid = lay_out_container_mounts(base, whole, one))
            return laid;
        std::string text = read_text("/proc/self/mountinfo");
        std::fprintf(stderr, "cgroup2 mounts, in order:\n");
        for (const mount_entry& m : parse_mountinfo(text))
            if (m.fs_type == "cgroup2")
                std::fprintf(stderr, "  %s (root %s)\n", m.mount_point.c_str(), m.root.c_str());
        unique_fd watch_root = cgroup2_root();
        const std::string doctor = cgroup2_mount(), watch = watch_root ? path_of(watch_root.get()) : "";
        std::fprintf(stderr, "doctor: '%s', the watch: '%s', the hierarchy: '%s'\n", doctor.c_str(), watch.c_str(),
                     whole.c_str());
        // Leave no cgroup behind: it lives in the host's hierarchy.
        const std::string cgroup = "/sio-steer-test-" + std::to_string(getpid());
        umount2(one.c_str(), MNT_DETACH);
        watch_root.reset();
        rmdir((whole + cgroup).c_str());
        return doctor == whole && watch == whole ? 0 : 1;
    });
    std::filesystem::remove_all(base);
    if (code == cannot_mount)
        GTEST_SKIP() << "this host does not let the test mount cgroup2 in a private mount namespace";
    EXPECT_EQ(code, 0) << "doctor and the listener watch disagree, or name another mount (see stderr)";
}

}  // namespace
}  // namespace sio_steer::test
