// sio-steer: steers the TCP connections of a client to one PM2 worker, in the kernel.
#include <cstdio>
#include <cstring>
#include <iostream>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/cfg/env.h>
#include <spdlog/spdlog.h>

#include "cli.h"
#include "errors.h"
#include "libbpf_log.h"
#include "sio_steer.h"

namespace po = boost::program_options;
using namespace sio_steer;

namespace {

struct verb {
    const char* name;
    int (*run)(const args&);
    const char* summary;
};

const verb verbs[] = {
    {"attach", run_attach, "steer the port's listeners: load, attach, pin, and follow the workers"},
    {"detach", run_detach, "stop steering the port and remove its pinned state"},
    {"status", run_status, "show what is attached: workers, sessions, counters"},
    {"sessions", run_sessions, "list recorded clients, or tell where one client goes"},
    {"doctor", run_doctor, "check kernel, privileges, listeners, Node, steering and proxy; exit 9 if not all is well"},
    {"nginx-conf", run_nginx_conf, "print the nginx configuration that keeps each client on one worker"},
};

void usage(std::FILE* out)
{
    std::fprintf(out, "usage: sio-steer <command> [options]   (sio-steer <command> --help for its options)\n\n");
    for (const verb& v : verbs)
        std::fprintf(out, "  %-10s %s\n", v.name, v.summary);
    std::fprintf(out, "\nExit codes: docs/exit-codes.md. Version %s.\n", SIO_STEER_VERSION);
}

}  // namespace

namespace sio_steer {

bool parse_args(const char* verb, const char* synopsis, const args& a, po::options_description& options,
                po::variables_map& vm)
{
    options.add_options()("help,h", "show this help");
    try {
        po::store(po::command_line_parser(a).options(options).run(), vm);
        if (vm.count("help")) {
            std::cout << "usage: sio-steer " << verb << " " << synopsis << "\n\n" << options << "\n";
            return false;
        }
        po::notify(vm);
    } catch (const po::error& e) {
        throw steer_error(exit_code::usage, e.what(), {}, std::string("see `sio-steer ") + verb + " --help`");
    }
    return true;
}

void add_pin_root(po::options_description& options, std::string& pin_root)
{
    options.add_options()("pin-root", po::value(&pin_root)->default_value(pin_root),
                          "bpffs folder holding one folder of pinned state per port");
}

}  // namespace sio_steer

int main(int argc, char** argv)
{
    // Logs go to stderr (journald keeps them), a line at a time; command output goes to stdout.
    spdlog::set_default_logger(spdlog::stderr_color_mt("sio-steer"));
    spdlog::set_pattern("%^%l%$: %v");
    spdlog::flush_on(spdlog::level::info);
    spdlog::cfg::load_env_levels();  // SPDLOG_LEVEL=debug shows libbpf's messages too
    route_libbpf_log();
    if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? static_cast<int>(exit_code::usage) : 0;
    }
    if (!std::strcmp(argv[1], "--version") || !std::strcmp(argv[1], "version")) {
        std::printf("sio-steer %s (ABI %d)\n", SIO_STEER_VERSION, SIO_STEER_ABI_VERSION);
        return 0;
    }
    for (const verb& v : verbs) {
        if (std::strcmp(argv[1], v.name))
            continue;
        try {
            return v.run(args(argv + 2, argv + argc));
        } catch (const steer_error& e) {
            std::fprintf(stderr, "sio-steer %s: %s\n", v.name, e.what());
            if (!e.why().empty())
                std::fprintf(stderr, "  why: %s\n", e.why().c_str());
            if (!e.fix().empty())
                std::fprintf(stderr, "  fix: %s\n", e.fix().c_str());
            return static_cast<int>(e.code());
        } catch (const std::exception& e) {
            std::fprintf(stderr, "sio-steer %s: %s\n", v.name, e.what());
            return static_cast<int>(exit_code::failure);
        }
    }
    std::fprintf(stderr, "sio-steer: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return static_cast<int>(exit_code::usage);
}
