// Options from a config file (`attach --config FILE`): INI-style `name = value` lines with the
// command line's option names (without the dashes), `#` comments, no sections. The command line
// wins over the file. Every error names the file, the line and the option, and is raised before
// anything changes.
#pragma once

#include <map>
#include <string>

#include <boost/program_options.hpp>

#include "logic/errors.h"

namespace sio_steer {

class config_file {
public:
    // Reads `path` and stores its values into `vm` (after the command line was stored, so that the
    // command line wins); the caller runs po::notify(vm) afterwards. Throws steer_error(usage) for
    // an unreadable file, a line that is not `name = value`, an unknown option, `config`, `help` or
    // `port` in the file, an option given twice, or a value of the wrong type.
    static config_file read(const std::string& path, const boost::program_options::options_description& options,
                            boost::program_options::variables_map& vm);

    // A later check (a range, a port) refused the value of an option: if the value came from this
    // file, the same error with "FILE:LINE: " in front, so the user knows where to look.
    steer_error locate(const steer_error& e) const;

private:
    std::string path_;
    std::map<std::string, int> lines_;  // option name -> line it was set on
};

// The message of a Boost.Program_options error. Boost fills %value%, %option%, ... in a loop until
// none is left, so a value that holds such a token (`once = %value%` in a config file) would never
// end: its '%' are shown as '％' instead.
std::string option_error_text(const boost::program_options::error& e);

}  // namespace sio_steer
