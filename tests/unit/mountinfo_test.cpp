// /proc/PID/mountinfo as the kernel writes it: the fields doctor and the listener watch need, and
// the one cgroup v2 hierarchy both of them must agree on.
#include <gtest/gtest.h>

#include "logic/mountinfo.h"

using namespace sio_steer;

namespace {

// A hybrid host (cgroup v1 controllers, v2 at unified/), as this project's CI machine mounts it.
const char* const hybrid = "22 1 0:21 / /sys rw,nosuid - sysfs sysfs rw\n"
                           "30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
                           "31 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
                           "40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";

}  // namespace

TEST(Mountinfo, ReadsRootMountPointAndTypeOfEveryLine)
{
    std::vector<mount_entry> m = parse_mountinfo(hybrid);
    ASSERT_EQ(m.size(), 4u);
    EXPECT_EQ(m[1].mount_point, "/sys/fs/cgroup");
    EXPECT_EQ(m[1].fs_type, "tmpfs");
    EXPECT_EQ(m[3].root, "/");
    EXPECT_EQ(m[3].mount_point, "/sys/fs/cgroup/unified");
    EXPECT_EQ(m[3].fs_type, "cgroup2");
}

TEST(Mountinfo, SkipsOptionalFieldsUpToTheSeparator)
{
    std::vector<mount_entry> m =
        parse_mountinfo("36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 shared:7 - ext3 /dev/root rw,errors=continue\n");
    ASSERT_EQ(m.size(), 1u);
    EXPECT_EQ(m[0].root, "/mnt1");
    EXPECT_EQ(m[0].mount_point, "/mnt2");
    EXPECT_EQ(m[0].fs_type, "ext3");
}

TEST(Mountinfo, UnescapesSpacesTabsNewlinesAndBackslashesInPaths)
{
    std::vector<mount_entry> m = parse_mountinfo("50 22 0:40 /a\\040b /mnt/x\\011y\\012z\\134 rw - tmpfs none rw\n");
    ASSERT_EQ(m.size(), 1u);
    EXPECT_EQ(m[0].root, "/a b");
    EXPECT_EQ(m[0].mount_point, "/mnt/x\ty\nz\\");
}

TEST(Mountinfo, SkipsLinesWithoutSeparatorOrType)
{
    EXPECT_TRUE(parse_mountinfo("").empty());
    EXPECT_TRUE(parse_mountinfo("36 35 98:0 / /mnt rw\n").empty());
    EXPECT_TRUE(parse_mountinfo("36 35 98:0 / /mnt rw -\n").empty());
    EXPECT_TRUE(parse_mountinfo("36 - cgroup2 cgroup2 rw\n").empty());
    EXPECT_EQ(parse_mountinfo("garbage\n40 30 0:37 / /u rw - cgroup2 cgroup2 rw").size(), 1u) << "no final newline";
}

TEST(Mountinfo, TheCgroup2HierarchyIsMountedWhole)
{
    EXPECT_EQ(cgroup2_mount_point(hybrid), "/sys/fs/cgroup/unified");
    EXPECT_EQ(cgroup2_mount_point("28 22 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n"),
              "/sys/fs/cgroup");
    EXPECT_EQ(cgroup2_mount_point("31 30 0:28 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n"), std::nullopt);
}

// In a container a single cgroup may be bind-mounted before the whole hierarchy: its paths are not
// the hierarchy's, so neither doctor nor the watch may take it.
TEST(Mountinfo, ABindMountOfOneCgroupIsNotTheHierarchy)
{
    const char* text = "60 22 0:37 /system.slice/app.service /run/app-cgroup rw - cgroup2 cgroup2 rw\n"
                       "61 22 0:37 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
    EXPECT_EQ(cgroup2_mount_point(text), "/sys/fs/cgroup");
    EXPECT_EQ(cgroup2_mount_point("60 22 0:37 /one /run/one rw - cgroup2 cgroup2 rw\n"), std::nullopt);
}
