// The command line in-process, through the verb table: every verb answers --help, and refuses an
// option it does not know with exit 2, naming its own --help. No privileges, no kernel state.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "cli/cli.h"
#include "exit_codes.h"
#include "logic/errors.h"

using namespace sio_steer;
using namespace sio_steer::test;

namespace {

// The documented exit codes (tests/exit_codes.h) are the ones the code returns (logic/errors.h).
static_assert(static_cast<int>(exit_code::usage) == exit_usage);
static_assert(static_cast<int>(exit_code::no_listeners) == exit_no_listeners);
static_assert(static_cast<int>(exit_code::not_steerable) == exit_not_steerable);
static_assert(static_cast<int>(exit_code::environment) == exit_environment);
static_assert(static_cast<int>(exit_code::busy) == exit_busy);
static_assert(static_cast<int>(exit_code::incompatible) == exit_incompatible);
static_assert(static_cast<int>(exit_code::not_attached) == exit_not_attached);
static_assert(static_cast<int>(exit_code::unhealthy) == exit_unhealthy);

struct result {
    int code;
    std::string out, err;
};

result run(const args& argv)
{
    std::ostringstream out, err;
    int code = run_cli(argv, out, err);
    return {code, out.str(), err.str()};
}

}  // namespace

TEST(Cli, EveryVerbAnswersHelp)
{
    ASSERT_FALSE(verbs().empty());
    for (const verb& v : verbs()) {
        for (const char* help : {"--help", "-h"}) {
            result r = run({v.name, help});
            EXPECT_EQ(r.code, 0) << v.name << " " << help << ": " << r.err;
            EXPECT_EQ(r.out.rfind(std::string("usage: sio-steer ") + v.name + " ", 0), 0u) << r.out;
            EXPECT_NE(r.out.find("--help"), std::string::npos) << r.out;
            EXPECT_EQ(r.err, "") << v.name;
        }
    }
}

TEST(Cli, EveryVerbRefusesAnUnknownOptionNamingItsHelp)
{
    for (const verb& v : verbs()) {
        result r = run({v.name, "--no-such-option"});
        EXPECT_EQ(r.code, exit_usage) << v.name << ": " << r.err;
        EXPECT_EQ(r.err.rfind(std::string("sio-steer ") + v.name + ": ", 0), 0u) << r.err;
        EXPECT_NE(r.err.find("no-such-option"), std::string::npos) << r.err;
        EXPECT_NE(r.err.find(std::string("  fix: see `sio-steer ") + v.name + " --help`"), std::string::npos) << r.err;
        EXPECT_EQ(r.out, "") << v.name;
    }
}

TEST(Cli, TheTableIsTheUsage)
{
    result r = run({"--help"});
    EXPECT_EQ(r.code, 0);
    for (const verb& v : verbs())
        EXPECT_NE(r.out.find(std::string("  ") + v.name + " "), std::string::npos) << v.name << " missing from:\n"
                                                                                   << r.out;
    EXPECT_NE(r.out.find("Exit codes: docs/exit-codes.md"), std::string::npos);
}

TEST(Cli, NoCommandOrAnUnknownOneIsAUsageError)
{
    result none = run({});
    EXPECT_EQ(none.code, exit_usage);
    EXPECT_EQ(none.out, "");
    EXPECT_NE(none.err.find("usage: sio-steer <command>"), std::string::npos);

    result unknown = run({"steer-harder"});
    EXPECT_EQ(unknown.code, exit_usage);
    EXPECT_EQ(unknown.err.rfind("sio-steer: unknown command 'steer-harder'\n", 0), 0u) << unknown.err;
}

TEST(Cli, VersionNamesTheAbi)
{
    result r = run({"--version"});
    EXPECT_EQ(r.code, 0);
    EXPECT_EQ(r.out, std::string("sio-steer ") + SIO_STEER_VERSION + " (ABI 3)\n");
}

TEST(Cli, ARefusalKeepsItsExitCodeWhyAndFix)
{
    // nginx-conf reads and changes nothing: a refusal without any kernel state.
    result r = run({"nginx-conf", "--key", "source"});
    EXPECT_EQ(r.code, exit_usage);
    EXPECT_EQ(r.err, "sio-steer nginx-conf: --key source is not a key nginx-conf knows\n"
                     "  why: behind nginx, sio-steer tells clients apart by their source or by their destination\n"
                     "  fix: use --key address (the default) or --key destination (with `attach --key destination`)\n");
}

// nginx-conf's numbers are digits only, like attach's: a sign is refused, never wrapped (an
// unsigned option took "-1" as 4294967295 and "-4294967295" as 1, which it printed a config for).
TEST(Cli, NginxConfNumbersRefuseSignsInsteadOfWrapping)
{
    for (const char* option : {"--destinations", "--keepalive"})
        for (const char* value : {"-1", "-4294967295", "+8", "8k"}) {
            result r = run({"nginx-conf", "--key", "destination", option, value});
            EXPECT_EQ(r.code, exit_usage) << option << " " << value << ":\n" << r.out << r.err;
            EXPECT_NE(r.err.find(std::string(option) + " " + value + " is not a whole number"), std::string::npos)
                << r.err;
            EXPECT_EQ(r.out, "") << "nothing printed for " << option << " " << value;
        }
    result ok = run({"nginx-conf", "--key", "destination", "--destinations", "16", "--keepalive", "4"});
    EXPECT_EQ(ok.code, 0) << ok.err;
    EXPECT_NE(ok.out.find("keepalive 4;"), std::string::npos) << ok.out;
}

// Found by the config_file fuzz target: Boost fills an error message's %value% with the value until
// no token is left, so `once = %value%…` in a config file made attach spin (and grow) forever.
TEST(Cli, AConfigValueHoldingBoostsPlaceholdersIsRefusedAtOnce)
{
    const std::string file = testing::TempDir() + "sio-steer-cli-placeholder.conf";
    {
        std::ofstream(file) << "once=~4%value%'-rrefix\n";
    }
    result r = run({"attach", "--port", "5001", "--config", file, "--pin-root", "/nonexistent"});
    std::remove(file.c_str());
    EXPECT_EQ(r.code, exit_usage) << r.err;
    EXPECT_NE(r.err.find("sio-steer attach: " + file + ":1: once = ~4%value%'-rrefix: "), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("~4\xef\xbc\x85value\xef\xbc\x85'-rrefix"), std::string::npos) << r.err;
}
