// cpu_share_check: workers that weigh as one process on the scheduler are told apart.
#include <gtest/gtest.h>

#include "logic/cpu_share.h"

namespace {

using namespace sio_steer;

TEST(CpuShare, ClusterWorkersInTheDaemonsSessionShareOneAutogroup)
{
    auto f = cpu_share_check(
        true, {{101, "/autogroup-7", false}, {102, "/autogroup-7", false}, {103, "/autogroup-9", false}});
    EXPECT_TRUE(f.shared);
    EXPECT_NE(f.detail.find("2 workers (pids 101, 102)"), std::string::npos) << f.detail;
    EXPECT_NE(f.detail.find("/autogroup-7"), std::string::npos) << f.detail;
    EXPECT_NE(f.fix.find("kernel.sched_autogroup_enabled=0"), std::string::npos) << f.fix;
}

TEST(CpuShare, ForkModeWorkersHaveAGroupEach)
{
    auto f = cpu_share_check(true, {{101, "/autogroup-7", false}, {102, "/autogroup-8", false}});
    EXPECT_FALSE(f.shared);
    EXPECT_TRUE(f.fix.empty());
    EXPECT_NE(f.detail.find("of its own"), std::string::npos) << f.detail;
}

TEST(CpuShare, AutogroupsOffOrAbsentMeanEachWorkerWeighsByItself)
{
    std::vector<worker_schedule> same = {{101, "/autogroup-7", false}, {102, "/autogroup-7", false}};
    EXPECT_FALSE(cpu_share_check(false, same).shared);
    EXPECT_NE(cpu_share_check(false, same).detail.find("autogroups are off"), std::string::npos);
    EXPECT_FALSE(cpu_share_check(std::nullopt, {{101, "", false}, {102, "", false}}).shared);
}

// /proc/PID/autogroup is empty for processes of the session the host booted with (the container's
// PID 1 started them without setsid): they are not grouped, so nothing is shared.
TEST(CpuShare, WorkersOfTheBootSessionAreInNoAutogroup)
{
    auto f = cpu_share_check(true, {{101, "", false}, {102, "", false}});
    EXPECT_FALSE(f.shared);
    EXPECT_NE(f.detail.find("in no autogroup"), std::string::npos) << f.detail;
}

TEST(CpuShare, WorkersUnderCgroupCpuControlAreNotJudgedByTheirAutogroup)
{
    auto f = cpu_share_check(true, {{101, "/autogroup-7", true}, {102, "/autogroup-7", true}});
    EXPECT_FALSE(f.shared);
    EXPECT_NE(f.detail.find("cgroup CPU control"), std::string::npos) << f.detail;
}

TEST(CpuShare, AutogroupLine)
{
    EXPECT_EQ(parse_autogroup("/autogroup-305 nice 0\n"), "/autogroup-305");
    EXPECT_EQ(parse_autogroup(""), "");
    EXPECT_EQ(parse_autogroup("garbage"), "");
}

TEST(CpuShare, CpuCgroupFromAV1HierarchyWinsOverTheUnifiedOne)
{
    auto hybrid = parse_cpu_cgroup("9:name=systemd:/\n4:memory:/a\n2:cpuacct:/\n1:cpu:/\n0::/\n");
    ASSERT_TRUE(hybrid);
    EXPECT_TRUE(hybrid->v1);
    EXPECT_EQ(hybrid->path, "/");
    auto joined = parse_cpu_cgroup("3:cpu,cpuacct:/system.slice/pm2-app.service\n0::/x\n");
    ASSERT_TRUE(joined);
    EXPECT_TRUE(joined->v1);
    EXPECT_EQ(joined->path, "/system.slice/pm2-app.service");
}

TEST(CpuShare, CpuCgroupOnAUnifiedHierarchy)
{
    auto v2 = parse_cpu_cgroup("0::/system.slice/pm2-app.service\n");
    ASSERT_TRUE(v2);
    EXPECT_FALSE(v2->v1);
    EXPECT_EQ(v2->path, "/system.slice/pm2-app.service");
    EXPECT_EQ(parse_cpu_cgroup("0::/odd:name\n")->path, "/odd:name");
    EXPECT_FALSE(parse_cpu_cgroup(""));
}

}  // namespace
