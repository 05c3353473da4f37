// The command-line verbs. Each takes the arguments after its name and returns the exit code.
#pragma once

#include <string>
#include <vector>

#include <boost/program_options.hpp>

namespace sio_steer {

using args = std::vector<std::string>;

int run_attach(const args& a);    // changes state: load, fill, attach, pin (and follow)
int run_detach(const args& a);    // changes state: detach from the group, remove the pins
int run_status(const args& a);    // reads: attached?, workers, counters
int run_sessions(const args& a);  // reads (or --flush): recorded clients, where a client goes
int run_doctor(const args& a);    // reads: is everything in place for steering the port? (exit 9 if not)
int run_nginx_conf(const args& a);  // prints: nginx configuration for the path nginx -> workers

// Parses `a` against `options`; prints usage and returns false on --help.
// Throws steer_error(usage) naming the offending option on bad input.
bool parse_args(const char* verb, const char* synopsis, const args& a,
                boost::program_options::options_description& options,
                boost::program_options::variables_map& vm);

// --pin-root, shared by every verb.
void add_pin_root(boost::program_options::options_description& options, std::string& pin_root);

}  // namespace sio_steer
