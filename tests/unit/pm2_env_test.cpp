// pm2_instance_from_environ: the PM2 instance of a worker from its /proc/PID/environ.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "logic/pm2_env.h"

namespace {

using sio_steer::pm2_instance_from_environ;
using sio_steer::pm2_instances_from_environ;

// A /proc/PID/environ blob: each entry followed by a NUL, as the kernel shows it.
std::string environ_of(const std::vector<std::string>& entries)
{
    std::string blob;
    for (const auto& e : entries) {
        blob += e;
        blob += '\0';
    }
    return blob;
}

// Shaped like what PM2 7.0.4 puts into a cluster worker's environment: several KB, nested
// objects, NODE_APP_INSTANCE and pm_id at the top level of the document, and an "env" copy.
std::string realistic_pm2_env(const std::string& instance_json)
{
    std::string axm_options;
    for (int i = 0; i < 60; i++)
        axm_options += "\"option_" + std::to_string(i) + "\":{\"enabled\":true,\"value\":" + std::to_string(i) + "},";
    return R"({"kill_retry_time":100,"windowsHide":true,"username":"app","treekill":true,)"
           R"("automation":true,"pmx":true,"instance_var":"NODE_APP_INSTANCE","watch":false,)"
           R"("autorestart":true,"autostart":true,"vizion":true,"merge_logs":true,"wait_ready":false,)"
           R"("exec_mode":"cluster_mode","exec_interpreter":"node","name":"chat",)"
           R"("pm_exec_path":"/srv/chat/server.js","pm_cwd":"/srv/chat","instances":4,)"
           R"("node_args":[],"env":{"PATH":"/usr/bin:/bin","NODE_ENV":"production","chat":"{}",)"
           R"("unique_id":"8e0b6f1a-2c1e-4bd6-9a0b-1b0c7d1e2f3a"},)"
           R"("axm_options":{)" +
           axm_options +
           R"("isModule":false},"axm_monitor":{"Used Heap Size":{"value":"12.3","unit":"MiB"}},)"
           R"("NODE_APP_INSTANCE":)" +
           instance_json + R"(,"pm_id":)" + instance_json +
           R"(,"status":"launching","restart_time":3,"unstable_restarts":0,"created_at":1700000000000,)"
           R"("versioning":null,"version":"1.0.0","node_version":"24.21.0"})";
}

TEST(Pm2EnvTest, TopLevelNodeAppInstanceWins)
{
    auto blob = environ_of({"PATH=/usr/bin", "NODE_APP_INSTANCE=3", R"(pm2_env={"NODE_APP_INSTANCE":1})"});
    EXPECT_EQ(pm2_instance_from_environ(blob), 3u);
}

TEST(Pm2EnvTest, TopLevelAfterPm2EnvStillWins)
{
    auto blob = environ_of({R"(pm2_env={"NODE_APP_INSTANCE":1})", "NODE_APP_INSTANCE=0"});
    EXPECT_EQ(pm2_instance_from_environ(blob), 0u);
}

TEST(Pm2EnvTest, Pm2EnvWithNumber)
{
    auto blob = environ_of({"HOME=/root", R"(pm2_env={"name":"chat","NODE_APP_INSTANCE":2})"});
    EXPECT_EQ(pm2_instance_from_environ(blob), 2u);
}

TEST(Pm2EnvTest, Pm2EnvWithString)
{
    auto blob = environ_of({R"(pm2_env={"NODE_APP_INSTANCE":"5","pm_id":5})"});
    EXPECT_EQ(pm2_instance_from_environ(blob), 5u);
}

TEST(Pm2EnvTest, RealisticPm2EnvIgnoresNodeUniqueId)
{
    const std::string doc = realistic_pm2_env("2");
    ASSERT_GT(doc.size(), 2000u);
    // NODE_UNIQUE_ID is Node's cluster worker id: it grows with each restart, it is not a slot.
    auto blob = environ_of({"NODE_UNIQUE_ID=17", "PATH=/usr/local/bin:/usr/bin", "pm2_env=" + doc,
                            "PM2_HOME=/home/app/.pm2", "NODE_ENV=production"});
    EXPECT_EQ(pm2_instance_from_environ(blob), 2u);
}

TEST(Pm2EnvTest, NodeUniqueIdAloneIsNotAnInstance)
{
    EXPECT_EQ(pm2_instance_from_environ(environ_of({"NODE_UNIQUE_ID=4", "PATH=/usr/bin"})), std::nullopt);
}

TEST(Pm2EnvTest, MalformedJsonIsNoInstance)
{
    for (const std::string& doc : std::vector<std::string>{R"({"NODE_APP_INSTANCE":2)", "not json", "", "[1,2]", "null",
                                                           R"("2")", realistic_pm2_env("2").substr(0, 1500)}) {
        EXPECT_EQ(pm2_instance_from_environ(environ_of({"pm2_env=" + doc})), std::nullopt) << doc;
    }
}

TEST(Pm2EnvTest, UnusableInstanceValuesAreNoInstance)
{
    for (const std::string value :
         {"-1", "1.5", "null", "true", R"("x")", R"("")", R"(" 2")", "4294967296", R"({"n":2})", "[2]"}) {
        auto blob = environ_of({R"(pm2_env={"NODE_APP_INSTANCE":)" + value + "}"});
        EXPECT_EQ(pm2_instance_from_environ(blob), std::nullopt) << value;
    }
}

TEST(Pm2EnvTest, MalformedTopLevelFallsBackToPm2Env)
{
    auto blob = environ_of({"NODE_APP_INSTANCE=abc", R"(pm2_env={"NODE_APP_INSTANCE":1})"});
    EXPECT_EQ(pm2_instance_from_environ(blob), 1u);
    EXPECT_EQ(pm2_instance_from_environ(environ_of({"NODE_APP_INSTANCE="})), std::nullopt);
}

TEST(Pm2EnvTest, AbsentIsNoInstance)
{
    EXPECT_EQ(pm2_instance_from_environ(""), std::nullopt);
    EXPECT_EQ(pm2_instance_from_environ(environ_of({"PATH=/usr/bin", "HOME=/root"})), std::nullopt);
    // Names that merely start with the variable do not count.
    EXPECT_EQ(pm2_instance_from_environ(environ_of({"NODE_APP_INSTANCE_X=1", R"(pm2_envx={"NODE_APP_INSTANCE":1})"})),
              std::nullopt);
    // No trailing NUL (a truncated read) is still readable.
    EXPECT_EQ(pm2_instance_from_environ(std::string("PATH=/bin\0NODE_APP_INSTANCE=7", 29)), 7u);
}

// PM2's `instances` setting: what /metrics compares the live worker sockets with.
TEST(Pm2EnvTest, InstancesSettingOfTheApp)
{
    auto blob = environ_of({"NODE_UNIQUE_ID=3", "pm2_env=" + realistic_pm2_env("2")});
    EXPECT_EQ(pm2_instances_from_environ(blob), 4u);
    EXPECT_EQ(pm2_instances_from_environ(environ_of({R"(pm2_env={"instances":"6"})"})), 6u);
}

TEST(Pm2EnvTest, NoUsableInstancesSettingIsNone)
{
    EXPECT_EQ(pm2_instances_from_environ(environ_of({"NODE_APP_INSTANCE=1", "instances=4"})), std::nullopt)
        << "only PM2's document says it";
    for (const std::string value : {"0", "-1", "1.5", "null", R"("max")", "4294967296", "[4]"})
        EXPECT_EQ(pm2_instances_from_environ(environ_of({R"(pm2_env={"instances":)" + value + "}"})), std::nullopt)
            << value;
    EXPECT_EQ(pm2_instances_from_environ(environ_of({R"(pm2_env={"instances":4)"})), std::nullopt) << "cut short";
}

}  // namespace
