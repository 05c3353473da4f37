// The command line, callable in-process: the verb table, the error-to-exit-code mapping, and the
// verbs. Each verb takes the arguments after its name and the stream its output goes to, and
// returns the exit code (docs/exit-codes.md); it throws steer_error to refuse, which run_cli()
// writes to its error stream as what, why and fix.
#pragma once

#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include <boost/program_options.hpp>

#include "logic/options.h"

namespace sio_steer {

using args = std::vector<std::string>;

struct verb {
    const char* name;
    int (*run)(const args& a, std::ostream& out);
    const char* summary;
};

// Every verb, in the order `sio-steer --help` lists them.
const std::vector<verb>& verbs();

// `sio-steer ARGS...` (without the program name): runs the verb, writes its output to `out` and
// its refusal to `err`, and returns the exit code: the verb's, the steer_error's code, 1 for any
// other exception, 2 for no or an unknown command.
int run_cli(const args& argv, std::ostream& out, std::ostream& err);

int run_attach(const args& a, std::ostream& out);    // changes state: load, fill, attach, pin (and follow)
int run_detach(const args& a, std::ostream& out);    // changes state: detach from the group, remove the pins
int run_status(const args& a, std::ostream& out);    // reads: attached?, workers, counters
int run_sessions(const args& a, std::ostream& out);  // reads (or --flush): recorded clients, where a client goes
int run_doctor(const args& a,
               std::ostream& out);  // reads: is everything in place for steering the port? (exit 9 if not)
int run_nginx_conf(const args& a, std::ostream& out);  // prints: nginx configuration for the path nginx -> workers

// Parses `a` against `options`; prints usage to `out` and returns false on --help.
// Throws steer_error(usage) naming the offending option and the verb's --help on bad input.
bool parse_args(const char* verb, const char* synopsis, const args& a,
                boost::program_options::options_description& options, boost::program_options::variables_map& vm,
                std::ostream& out);

// --port, --lock-dir and --pin-root: the options that name a port's state, written once for the
// verbs that take them (attach, detach, status, sessions, doctor). The values land in `port` (as
// given: parse_port() it once the command line and any config file are read) and in `o`.
struct port_options {
    const char* port_help = "TCP port the workers listen on";
    bool port_required = true;  // status without --port: every pinned port
    bool lock_dir = true;       // sessions reads no lock file
};
void add_port_options(boost::program_options::options_description& options, std::string& port, steer_options& o,
                      const port_options& which = {});

// The command line of a verb whose options are the port options alone (detach, doctor): the
// options with port parsed, or nullopt after printing usage for --help.
std::optional<steer_options> parse_port_args(const char* verb, const char* synopsis, const args& a, std::ostream& out,
                                             const port_options& which = {});

// printf into a stream: the verbs' tables keep their printf formats.
[[gnu::format(printf, 2, 3)]] void print(std::ostream& out, const char* format, ...);

}  // namespace sio_steer
