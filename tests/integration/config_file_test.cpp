// `attach --config FILE` (docs/systemd.md): `name = value` lines with attach's option names. The
// values steer like their options; the command line wins; every mistake names the file, the line
// and the option, exits 2 and changes nothing. Fresh network namespace and pin root per test.
#include <gtest/gtest.h>

#include <bpf/bpf.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <thread>

#include "harness.h"
#include "kernel/pinned_state.h"

namespace sio_steer::test {
namespace {

namespace fs = std::filesystem;

class ConfigFileTest : public integration_test {
protected:
    void SetUp() override
    {
        integration_test::SetUp();
        start_workers(3);
        file = "/tmp/sio-steer-test-" + std::to_string(getpid()) + ".conf";
    }
    void TearDown() override { fs::remove(file); }

    void write(const std::string& text) const { std::ofstream(file) << text; }

    std::vector<std::string> attach_args(std::vector<std::string> extra = {}) const
    {
        extra.insert(extra.begin(), {"--once", "--config", file});
        return args("attach", extra);
    }

    nlohmann::json config() const
    {
        run_result r = sio_steer(args("status", {"--json"}));
        EXPECT_EQ(r.code, 0) << r.err;
        return r.code == 0 ? nlohmann::json::parse(r.out)["config"] : nlohmann::json();
    }

    // What decides where clients go: the program, the config, the slots and the ring.
    struct steering {
        std::uint32_t program_id = 0;
        std::vector<unsigned char> config;
        std::vector<std::uint32_t> ring;
        std::size_t live_slots = 0;
        bool operator==(const steering&) const = default;
    };
    steering current() const
    {
        steering s;
        std::optional<pinned_state> state = pinned_state::open(pins().dir(port));
        if (!state)
            return s;
        bpf_prog_info info{};
        __u32 len = sizeof(info);
        bpf_obj_get_info_by_fd(state->program(), &info, &len);
        s.program_id = info.id;
        ::config c = state->read_config();  // the ABI struct of bpf/sio_steer.h
        s.config.assign(reinterpret_cast<unsigned char*>(&c), reinterpret_cast<unsigned char*>(&c) + sizeof(c));
        s.ring = state->read_ring();
        for (const slot& sl : state->read_slots())
            s.live_slots += sl.cookie != 0;
        return s;
    }

    std::string file;
};

TEST_F(ConfigFileTest, ValuesFromTheFileSteer)
{
    write("# port 5001\nv4-prefix = 16\n\n  session-ttl   =   30m  \nkey = address\n");
    run_result r = sio_steer(attach_args());
    ASSERT_EQ(r.code, 0) << r.err;
    nlohmann::json c = config();
    EXPECT_EQ(c["v4_prefix"], 16);
    EXPECT_EQ(c["session_ttl_s"], 1800);
    // A /16 is one client: all of 127.1.x.y reach one worker.
    std::set<std::string> reached;
    for (const auto& [client, answers] : probe({"127.1.0.7", "127.1.9.8", "127.1.200.9", "127.1.44.1"}, port, 1))
        reached.insert(answers.front());
    EXPECT_EQ(reached.size(), 1u);
}

TEST_F(ConfigFileTest, TheCommandLineWinsOverTheFile)
{
    write("v4-prefix = 16\nv6-prefix = 48\n");
    ASSERT_EQ(sio_steer(attach_args({"--v4-prefix", "24"})).code, 0);
    nlohmann::json c = config();
    EXPECT_EQ(c["v4_prefix"], 24);
    EXPECT_EQ(c["v6_prefix"], 48);
}

TEST_F(ConfigFileTest, EveryMistakeNamesTheLineAndTheOptionAndChangesNothing)
{
    write("v4-prefix = 24\n");
    ASSERT_EQ(sio_steer(attach_args()).code, 0);
    const steering before = current();
    ASSERT_EQ(before.live_slots, 3u);

    struct mistake {
        std::string line;      // written as line 3, after a comment and a good line
        std::string expected;  // in the first line of stderr, after "FILE:3: "
    };
    const std::vector<mistake> mistakes = {
        {"v4-prefix 16", "\"v4-prefix 16\" is not a `name = value` line"},
        {"v4-prefx = 16", "unknown option \"v4-prefx\""},
        {"v4-prefix = abc", "--v4-prefix abc is not a whole number"},
        {"resync-interval = -1", "--resync-interval -1 is not a whole number"},
        {"v4-prefix = 40", "--v4-prefix 40 is out of range"},
        {"session-ttl = forever", "--session-ttl forever is not a duration"},
        {"key = ip", "--key ip is not a key mode"},
        {"max-sessions = 12", "--max-sessions 12 is out of range"},
        {"max-moved = 12", "--max-moved 12 is out of range"},
        {"metrics-listen = localhost", "--metrics-listen localhost is not an ADDRESS:PORT"},
        {"port = 5002", "option \"port\" cannot be set in a config file"},
        {"config = /etc/other.conf", "option \"config\" cannot be set in a config file"},
        {"[attach]", "\"[attach]\": sections are not used"},
        {"v6-prefix = 56", "v6-prefix is set twice (first on line 2)"},
    };
    for (const mistake& m : mistakes) {
        write("# sio-steer@" + std::to_string(port) + "\nv6-prefix = 64\n" + m.line + "\n");
        run_result r = sio_steer(attach_args());
        EXPECT_EQ(r.code, exit_usage) << m.line << "\n" << r.err;
        const std::string first = r.err.substr(0, r.err.find('\n'));
        EXPECT_EQ(first, "sio-steer attach: " + file + ":3: " + m.expected) << m.line;
        EXPECT_NE(r.err.find("\n  fix: "), std::string::npos) << r.err;
        EXPECT_TRUE(current() == before) << m.line << ": the pinned steering changed";
    }

    fs::remove(file);
    run_result missing = sio_steer(attach_args());
    EXPECT_EQ(missing.code, exit_usage);
    EXPECT_NE(missing.err.find("cannot read the config file " + file + ": No such file or directory"),
              std::string::npos)
        << missing.err;
    EXPECT_TRUE(current() == before);
}

// The example shipped in the package, every option uncommented, is a valid config file.
TEST_F(ConfigFileTest, ThePackagedExampleIsValidWithEveryOptionSet)
{
    std::ifstream in(source_file("packaging/sio-steer.conf"));
    std::string text, line;
    int options = 0;
    static const std::regex commented(R"(^#([a-z0-9-]+ = .*)$)");
    while (std::getline(in, line)) {
        std::smatch m;
        if (std::regex_match(line, m, commented)) {
            line = m[1];
            options++;
        }
        text += line + "\n";
    }
    EXPECT_GE(options, 10);
    write(text);
    // A following attach: the example sets metrics-listen. --pin-root and --lock-dir on the command line win.
    ASSERT_NO_FATAL_FAILURE(start_controller({"--config", file}));
    EXPECT_NE(controller->output().find("serving metrics at http://127.0.0.1:9477/metrics"), std::string::npos)
        << controller->output();
    EXPECT_NE(controller->output().find("resync every 2000 ms"), std::string::npos) << controller->output();
    EXPECT_TRUE(fs::exists(pins().dir(port)));
}

}  // namespace
}  // namespace sio_steer::test
