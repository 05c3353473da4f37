// The verb table and what an error becomes: one exit code (docs/exit-codes.md) and, on the error
// stream, "sio-steer VERB: what" with its why and fix lines.
#include "cli/cli.h"

#include <cstdarg>
#include <cstdio>
#include <ostream>

#include "bpf/sio_steer.h"
#include "cli/config_file.h"
#include "logic/errors.h"
#include "logic/options.h"

namespace po = boost::program_options;

namespace sio_steer {

namespace {

void usage(std::ostream& out)
{
    print(out, "usage: sio-steer <command> [options]   (sio-steer <command> --help for its options)\n\n");
    for (const verb& v : verbs())
        print(out, "  %-10s %s\n", v.name, v.summary);
    print(out, "\nExit codes: docs/exit-codes.md. Version %s.\n", SIO_STEER_VERSION);
}

}  // namespace

const std::vector<verb>& verbs()
{
    static const std::vector<verb> table = {
        {"attach", run_attach, "steer the port's listeners: load, attach, pin, and follow the workers"},
        {"detach", run_detach, "stop steering the port and remove its pinned state"},
        {"status", run_status, "show what is attached: workers, sessions, counters"},
        {"sessions", run_sessions, "list recorded clients, or tell where one client goes"},
        {"doctor", run_doctor,
         "check kernel, privileges, listeners, Node, steering and proxy; exit 9 if not all is well"},
        {"nginx-conf", run_nginx_conf, "print the nginx configuration that keeps each client on one worker"},
    };
    return table;
}

int run_cli(const args& argv, std::ostream& out, std::ostream& err)
{
    if (argv.empty() || argv[0] == "--help" || argv[0] == "-h" || argv[0] == "help") {
        usage(argv.empty() ? err : out);
        return argv.empty() ? static_cast<int>(exit_code::usage) : 0;
    }
    if (argv[0] == "--version" || argv[0] == "version") {
        print(out, "sio-steer %s (ABI %d)\n", SIO_STEER_VERSION, SIO_STEER_ABI_VERSION);
        return 0;
    }
    for (const verb& v : verbs()) {
        if (argv[0] != v.name)
            continue;
        try {
            return v.run(args(argv.begin() + 1, argv.end()), out);
        } catch (const steer_error& e) {
            print(err, "sio-steer %s: %s\n", v.name, e.what());
            if (!e.why().empty())
                print(err, "  why: %s\n", e.why().c_str());
            if (!e.fix().empty())
                print(err, "  fix: %s\n", e.fix().c_str());
            return static_cast<int>(e.code());
        } catch (const std::exception& e) {
            print(err, "sio-steer %s: %s\n", v.name, e.what());
            return static_cast<int>(exit_code::failure);
        }
    }
    print(err, "sio-steer: unknown command '%s'\n\n", argv[0].c_str());
    usage(err);
    return static_cast<int>(exit_code::usage);
}

bool parse_args(const char* verb, const char* synopsis, const args& a, po::options_description& options,
                po::variables_map& vm, std::ostream& out)
{
    options.add_options()("help,h", "show this help");
    try {
        po::store(po::command_line_parser(a).options(options).run(), vm);
        if (vm.count("help")) {
            out << "usage: sio-steer " << verb << " " << synopsis << "\n\n" << options << "\n";
            return false;
        }
        po::notify(vm);
    } catch (const po::error& e) {
        throw steer_error(exit_code::usage, option_error_text(e), {},
                          std::string("see `sio-steer ") + verb + " --help`");
    }
    return true;
}

void add_port_options(po::options_description& options, std::string& port, steer_options& o, const port_options& which)
{
    auto* port_value = po::value(&port);
    options.add_options()("port", which.port_required ? port_value->required() : port_value, which.port_help);
    if (which.lock_dir)
        options.add_options()("lock-dir", po::value(&o.lock_dir)->default_value(o.lock_dir),
                              "folder of the per-port lock files (where a following attach says how it follows)");
    options.add_options()("pin-root", po::value(&o.pin_root)->default_value(o.pin_root),
                          "bpffs folder holding one folder of pinned state per port");
}

std::optional<steer_options> parse_port_args(const char* verb, const char* synopsis, const args& a, std::ostream& out,
                                             const port_options& which)
{
    steer_options o;
    std::string port;
    po::options_description options(std::string(verb) + " options");
    add_port_options(options, port, o, which);
    po::variables_map vm;
    if (!parse_args(verb, synopsis, a, options, vm, out))
        return std::nullopt;
    o.port = parse_port(port);
    return o;
}

void print(std::ostream& out, const char* format, ...)
{
    va_list args;
    va_start(args, format);
    va_list again;
    va_copy(again, args);
    int n = std::vsnprintf(nullptr, 0, format, args);
    va_end(args);
    std::string text(n > 0 ? static_cast<std::size_t>(n) : 0, '\0');
    if (n > 0)
        std::vsnprintf(text.data(), text.size() + 1, format, again);
    va_end(again);
    out << text;
}

}  // namespace sio_steer
