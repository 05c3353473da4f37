#include "cli/config_file.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace po = boost::program_options;

namespace sio_steer {

namespace {

std::string trim(const std::string& s)
{
    const char* space = " \t\r";
    std::size_t begin = s.find_first_not_of(space);
    return begin == std::string::npos ? std::string() : s.substr(begin, s.find_last_not_of(space) - begin + 1);
}

const char* const why_format = "the config file takes the options of `sio-steer attach`, without their dashes, "
                               "one `name = value` a line; `#` starts a comment";

}  // namespace

config_file config_file::read(const std::string& path, const po::options_description& options, po::variables_map& vm)
{
    std::ifstream in(path);
    if (!in)
        throw steer_error(exit_code::usage, "cannot read the config file " + path + ": " + std::strerror(errno),
                          "--config names a file of options, which must exist",
                          "create it (every line may stay commented out; see examples/sio-steer.conf in the docs) "
                          "or fix the path");
    config_file file;
    file.path_ = path;
    std::string raw;
    for (int number = 1; std::getline(in, raw); number++) {
        const std::string line = trim(raw);
        const std::string where = path + ":" + std::to_string(number) + ": ";
        auto refuse = [&](const std::string& what, const std::string& fix) {
            return steer_error(exit_code::usage, where + what, why_format, fix);
        };
        if (line.empty() || line[0] == '#')
            continue;
        if (line[0] == '[')
            throw refuse("\"" + line + "\": sections are not used", "remove the section line");

        // Boost parses one line at a time, so that every error knows its line.
        std::istringstream one(line);
        po::parsed_options parsed(&options);
        try {
            parsed = po::parse_config_file(one, options, false);
        } catch (const po::unknown_option& e) {
            throw refuse("unknown option \"" + e.get_option_name() + "\"",
                         "see `sio-steer attach --help` for the option names, e.g. v4-prefix = 24");
        } catch (const po::error&) {
            throw refuse("\"" + line + "\" is not a `name = value` line", "write it like: v4-prefix = 24");
        }
        for (const po::option& o : parsed.options) {
            const std::string& name = o.string_key;
            const std::string value = o.value.empty() ? std::string() : o.value.front();
            // The port names the instance (sio-steer@PORT): a file must not disagree with it.
            if (name == "config" || name == "help" || name == "port")
                throw refuse("option \"" + name + "\" cannot be set in a config file",
                             "give it on the command line, or remove the line");
            if (auto [it, fresh] = file.lines_.emplace(name, number); !fresh)
                throw refuse(name + " is set twice (first on line " + std::to_string(it->second) + ")",
                             "keep one of the two lines");
            try {
                po::store(parsed, vm);  // a value the command line set already is kept
            } catch (const po::error& e) {
                throw refuse(name + " = " + value + ": " + option_error_text(e),
                             "see `sio-steer attach --help` for what " + name + " takes");
            }
        }
    }
    return file;
}

steer_error config_file::locate(const steer_error& e) const
{
    // The value parsers name the option first: "--v4-prefix 40 is out of range".
    const std::string what = e.what();
    for (const auto& [name, line] : lines_)
        if (what.starts_with("--" + name + " "))
            return steer_error(e.code(), path_ + ":" + std::to_string(line) + ": " + what, e.why(), e.fix());
    return e;
}

std::string option_error_text(const po::error& e)
{
    const auto* named = dynamic_cast<const po::error_with_option_name*>(&e);
    if (!named)
        return e.what();
    // The substitutions are protected: reached through a member pointer named in a derived class.
    struct open_error : po::error_with_option_name {
        static auto substitutions() { return &open_error::m_substitutions; }
    };
    po::error_with_option_name inert = *named;
    for (auto& [token, text] : inert.*open_error::substitutions())
        for (std::size_t at = 0; (at = text.find('%', at)) != std::string::npos; at += 3)
            text.replace(at, 1, "\xef\xbc\x85");  // U+FF05 FULLWIDTH PERCENT SIGN
    return inert.what();
}

}  // namespace sio_steer
