// docs/runbook.md, run as written: every ```sh block against a live, following attach (started as
// the service would start it, with a config file and metrics on 127.0.0.1:9477), in document
// order, each checked against the "prints:" block after it.
//
// The runbook speaks of port 5001, the default pin root and client 203.0.113.9; the test
// substitutes its own free port, private pin root and a loopback client (127.0.113.9: the test's
// traffic stays on 127/8). `sio-steer` on PATH is a wrapper adding the private --pin-root and
// --lock-dir. systemd is not PID 1 in this container, so `systemctl start|stop|restart
// sio-steer@PORT` is a test double that does what the unit does: run ExecStart's command line in
// the background (and wait for its first sync), or send it SIGTERM. Clients keep connecting
// between the blocks, as they would during an incident.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include "harness.h"

namespace sio_steer::test {
namespace {

namespace fs = std::filesystem;

struct runbook_step {
    int line = 0;          // where the command block starts in the runbook
    std::string commands;  // the ```sh block
    int exit_code = 0;     // "prints (exit N):"
    std::vector<std::string> expected;
};

// The ```sh blocks and the block after each one's "prints:" line. A command block without an
// expectation is an error of the runbook, reported as a step with line < 0.
std::vector<runbook_step> parse_runbook(std::istream& in)
{
    static const std::regex prints(R"(^prints( \(exit (\d+)\))?:$)");
    std::vector<runbook_step> steps;
    std::string line;
    int number = 0;
    enum { prose, command, after_command, before_expected, expected } where = prose;
    while (std::getline(in, line)) {
        number++;
        std::smatch m;
        switch (where) {
        case prose:
            if (line == "```sh") {
                steps.push_back({number, "", 0, {}});
                where = command;
            }
            break;
        case command:
            if (line == "```")
                where = after_command;
            else
                steps.back().commands += line + "\n";
            break;
        case after_command:
            if (std::regex_match(line, m, prints)) {
                steps.back().exit_code = m[2].matched ? std::stoi(m[2]) : 0;
                where = before_expected;
            } else if (!line.empty()) {
                steps.back().line = -steps.back().line;  // no "prints:" after the commands
                where = prose;
                if (line == "```sh") {
                    steps.push_back({number, "", 0, {}});
                    where = command;
                }
            }
            break;
        case before_expected:
            if (line.starts_with("```"))
                where = expected;
            break;
        case expected:
            if (line == "```")
                where = prose;
            else if (!line.empty())
                steps.back().expected.push_back(line);
            break;
        }
    }
    return steps;
}

// An expected line as a regex: literal text, "..." any text, "<N>" a number.
std::regex expectation(const std::string& line)
{
    static const std::regex special(R"([.^$|()\[\]{}*+?\\])");
    std::string re = std::regex_replace(line, special, R"(\$&)");
    re = std::regex_replace(re, std::regex(R"(\\\.\\\.\\\.)"), ".*");
    re = std::regex_replace(re, std::regex("<N>"), R"(\d+)");
    return std::regex(re);
}

// "" if every expected line matches an output line, in order; else what is missing.
std::string unmatched(const std::vector<std::string>& expected, const std::string& output)
{
    std::vector<std::string> lines;
    std::istringstream out(output);
    for (std::string l; std::getline(out, l);)
        lines.push_back(l);
    std::size_t next = 0;
    for (const std::string& e : expected) {
        std::regex re = expectation(e);
        while (next < lines.size() && !std::regex_search(lines[next], re))
            next++;
        if (next == lines.size())
            return e;
        next++;
    }
    return "";
}

std::string replace_all(std::string text, const std::string& what, const std::string& with, bool word = false)
{
    std::string re = std::regex_replace(what, std::regex(R"([.^$|()\[\]{}*+?\\/])"), R"(\$&)");
    return std::regex_replace(text, std::regex(word ? "\\b" + re + "\\b" : re), with);
}

void write_script(const fs::path& path, const std::string& text)
{
    std::ofstream(path) << text;
    fs::permissions(path, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec);
}

// Runs `script` with bash -e, the test's doubles first in PATH; its output is stdout and stderr in order.
run_result run_shell(const std::string& script, const fs::path& bin)
{
    const fs::path file = bin / "step.sh";
    std::ofstream(file) << script;
    return capture("PATH='" + bin.string() + "':\"$PATH\" bash -e '" + file.string() + "' 2>&1");
}

class RunbookTest : public integration_test {
protected:
    void SetUp() override
    {
        integration_test::SetUp();  // a port of its own, never the runbook's 5001
        start_pm2_workers(4);       // as PM2 starts them: pm2_env says the instance and `instances`
        bin = fs::temp_directory_path() / ("sio-steer-runbook-" + std::to_string(getpid()));
        fs::create_directories(bin);
        const std::string p = std::to_string(port);
        write_script(bin / "sio-steer",
                     "#!/bin/sh\n"
                     "verb=$1; shift\n"
                     "case \"$verb\" in\n"
                     "  attach|detach|doctor|status) exec " SIO_STEER_BIN " \"$verb\" \"$@\" --pin-root '" +
                         pins().path() + "' --lock-dir '" + pins().lock_dir() + "' ;;\n" +
                         "  sessions) exec " SIO_STEER_BIN " \"$verb\" \"$@\" --pin-root '" + pins().path() + "' ;;\n" +
                         "  *) exec " SIO_STEER_BIN " \"$verb\" \"$@\" ;;\n" + "esac\n");
        // The unit's ExecStart, with the options the runbook assumes in /etc/sio-steer/5001.conf.
        std::ofstream(bin / (p + ".conf")) << "metrics-listen = 127.0.0.1:9477\nresync-interval = 200\n"
                                              "max-sessions = 4096\n";  // bpftool dumps every set
        const std::string dir = bin.string();
        // Restart= and RestartPreventExitStatus= as the packaged unit says; RestartSec=1s, not 5 s.
        const std::string prevent = unit_setting("RestartPreventExitStatus");
        ASSERT_EQ(unit_setting("Restart"), "on-failure");
        ASSERT_FALSE(prevent.empty());
        write_script(
            bin / "systemctl",
            "#!/bin/sh\n"
            "# Test double: systemd is not PID 1 here. Does what sio-steer@.service does, restarts included.\n"
            "unit=${2%.service}; port=${unit#sio-steer@}; pidfile='" +
                dir + "/controller.pid'; log='" + dir + "/controller.log'; supervisor='" + dir +
                "/supervisor.pid'\n"
                "[ \"$unit\" = \"sio-steer@$port\" ] || { echo \"systemctl double: $2?\" >&2; exit 1; }\n"
                "running() { [ -e /proc/$1 ] && ! grep -q ') Z' /proc/$1/stat; }\n"
                "supervise() {\n"
                "  while :; do\n"
                "    sio-steer attach --port $port --config '" +
                dir +
                "'/$port.conf &\n"
                "    echo $! > \"$pidfile\"\n"
                "    code=0; wait $! || code=$?\n"
                "    echo \"systemctl double: attach exited $code\"\n"
                "    [ $code -eq 0 ] && exit 0\n"
                "    case ' " +
                prevent +
                " ' in *\" $code \"*) exit 0 ;; esac\n"
                "    sleep 1\n"
                "  done\n"
                "}\n"
                "stop() {\n"
                "  [ -s \"$supervisor\" ] && kill -TERM $(cat \"$supervisor\") 2>/dev/null; : > \"$supervisor\"\n"
                "  [ -s \"$pidfile\" ] || return 0\n"
                "  pid=$(cat \"$pidfile\"); kill -TERM $pid 2>/dev/null\n"
                "  for i in $(seq 100); do running $pid || break; sleep 0.05; done\n"
                "  : > \"$pidfile\"\n"
                "}\n"
                "start() {\n"
                "  [ -s \"$supervisor\" ] && running $(cat \"$supervisor\") && return 0\n"
                "  before=$(grep -c 'following port' \"$log\" 2>/dev/null)\n"
                "  supervise </dev/null >>\"$log\" 2>&1 &\n"
                "  echo $! > \"$supervisor\"\n"
                "  for i in $(seq 200); do\n"
                "    [ \"$(grep -c 'following port' \"$log\")\" -gt \"${before:-0}\" ] && return 0\n"
                "    running $(cat \"$supervisor\") || { tail -5 \"$log\" >&2; return 1; }\n"
                "    sleep 0.05\n"
                "  done\n"
                "  return 1\n"
                "}\n"
                "case \"$1\" in start) start ;; stop) stop ;; restart) stop; start ;;\n"
                "  *) echo \"systemctl double: $1 is not emulated\" >&2; exit 1 ;; esac\n");
        ASSERT_EQ(run_shell("systemctl start sio-steer@" + p + "\n", bin).code, 0) << controller_log();
        traffic(population());
    }

    void TearDown() override
    {
        for (const char* file : {"supervisor.pid", "controller.pid"}) {  // the supervisor first: no restart
            pid_t pid = 0;
            if (std::ifstream(bin / file) >> pid && pid > 0)
                ::kill(pid, SIGKILL);
        }
        std::error_code ec;
        fs::remove_all(bin, ec);
    }

    // A [Service] setting of the packaged unit, e.g. "2 5 7" for RestartPreventExitStatus.
    static std::string unit_setting(const std::string& name)
    {
        std::ifstream unit(SIO_STEER_SOURCE_DIR "/packaging/sio-steer@.service");
        for (std::string line; std::getline(unit, line);)
            if (line.starts_with(name + "="))
                return line.substr(name.size() + 1);
        return "";
    }

    static bool alive(pid_t pid)  // a zombie is not: nobody may have reaped the double's children
    {
        std::string stat;
        std::getline(std::ifstream("/proc/" + std::to_string(pid) + "/stat"), stat);
        return pid > 0 && !stat.empty() && stat.find(") Z") == std::string::npos;
    }

    pid_t controller_pid() const
    {
        pid_t pid = 0;
        std::ifstream(bin / "controller.pid") >> pid;
        return pid;
    }

    std::string controller_log() const { return read_text(bin / "controller.log"); }

    // 150 clients and the runbook's, twice each: enough for doctor's proxy check to judge.
    static std::vector<std::string> population()
    {
        std::vector<std::string> clients = client_addresses(150, 0);
        clients.push_back(client);
        return clients;
    }
    void traffic(const std::vector<std::string>& clients) { probe(clients, port, 2); }

    std::string localized(std::string text) const
    {
        text = replace_all(text, "/sys/fs/bpf/sio-steer", pins().path());
        text = replace_all(text, "203.0.113.9", client);
        text = replace_all(text, "203 0 113 9", "127 0 113 9");
        text = replace_all(text, "203,0,113,9", "127,0,113,9");
        return replace_all(text, "5001", std::to_string(port), true);
    }

    static constexpr const char* client = "127.0.113.9";
    fs::path bin;
};

std::vector<runbook_step> runbook()
{
    std::ifstream in(source_file("docs/runbook.md"));
    return parse_runbook(in);
}

TEST(RunbookFormat, EveryCommandBlockSaysWhatItPrints)
{
    std::vector<runbook_step> steps = runbook();
    ASSERT_GE(steps.size(), 12u);
    for (const runbook_step& s : steps) {
        EXPECT_GT(s.line, 0) << "docs/runbook.md:" << -s.line << ": a ```sh block without \"prints:\" after it";
        EXPECT_FALSE(s.expected.empty()) << "docs/runbook.md:" << s.line << ": empty expectation";
    }
}

// The matcher the runbook test relies on does reject output that differs.
TEST(RunbookFormat, ExpectationsRejectOtherOutput)
{
    EXPECT_EQ(unmatched({"port <N>: attached, in sync", "  sessions <N> of ..."},
                        "port 5001: attached, in sync\n  key x\n  sessions 3 of 262144\n"),
              "");
    EXPECT_NE(unmatched({"port <N>: attached, in sync"}, "port 5001: attached, NOT in sync\n"), "");
    EXPECT_NE(unmatched({"b", "a"}, "a\nb\n"), "") << "order matters";
    EXPECT_NE(unmatched({"sio_steer_in_sync{port=\"<N>\"} 1"}, "sio_steer_in_sync{port=\"5001\"} 0\n"), "");
    EXPECT_NE(unmatched({"slot <N>"}, "slot x\n"), "");
}

// The runbook's emergency detach holds while the service would restart the controller: after a
// crash (Restart=on-failure brings it back RestartSec later), or with a controller that follows (it
// exits 0 on the detach, which is not restarted).
TEST_F(RunbookTest, TheEmergencyDetachHoldsWhileTheServiceRestarts)
{
    const std::string p = std::to_string(port);
    const std::vector<runbook_step> steps = runbook();
    auto emergency = std::find_if(steps.begin(), steps.end(), [](const runbook_step& s) {
        return s.commands.find("sio-steer detach --port 5001") != std::string::npos;
    });
    ASSERT_NE(emergency, steps.end()) << "no detach in docs/runbook.md";
    auto still_detached = [&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(2500));  // RestartSec and a start
        run_result r = run_shell("sio-steer status --port " + p + "\n", bin);
        EXPECT_EQ(r.code, exit_not_attached) << r.out << "controller log:\n" << controller_log();
        EXPECT_FALSE(alive(controller_pid())) << "a controller runs again:\n" << controller_log();
    };

    // The controller crashes; the service is about to restart it.
    ASSERT_EQ(::kill(controller_pid(), SIGKILL), 0);
    for (int i = 0; i < 100 && controller_log().find("attach exited 137") == std::string::npos; i++)
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    ASSERT_NE(controller_log().find("attach exited 137"), std::string::npos) << controller_log();
    run_result r = run_shell(localized(emergency->commands), bin);
    EXPECT_EQ(r.code, emergency->exit_code) << r.out;
    still_detached();

    // A following controller, detached without the runbook's stop: it exits 0, not restarted.
    ASSERT_EQ(run_shell("systemctl start sio-steer@" + p + "\n", bin).code, 0) << controller_log();
    r = run_shell("sio-steer detach --port " + p + "\n", bin);
    EXPECT_EQ(r.code, 0) << r.out;
    still_detached();
    EXPECT_NE(controller_log().find("attach exited 0"), std::string::npos) << controller_log();
}

TEST_F(RunbookTest, EveryCommandPrintsWhatTheRunbookSays)
{
    std::vector<runbook_step> steps = runbook();
    ASSERT_FALSE(steps.empty());
    for (const runbook_step& step : steps) {
        traffic({client, "127.3.3.3"});
        const std::string commands = localized(step.commands);
        run_result r = run_shell(commands, bin);
        std::vector<std::string> expected;
        for (const std::string& e : step.expected)
            expected.push_back(localized(e));
        const std::string where = "docs/runbook.md:" + std::to_string(step.line) + "\n" + commands;
        EXPECT_EQ(r.code, step.exit_code) << where << "printed:\n" << r.out;
        std::string missing = unmatched(expected, r.out);
        EXPECT_EQ(missing, "") << where << "did not print (in order) the line:\n" << missing << "\nprinted:\n" << r.out;
        if (HasFailure()) {
            ADD_FAILURE() << "controller log:\n" << controller_log();
            break;  // later steps build on this one
        }
    }
}

}  // namespace
}  // namespace sio_steer::test
