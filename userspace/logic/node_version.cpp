#include "logic/node_version.h"

#include <unistd.h>

#include <filesystem>
#include <regex>

#include <nlohmann/json.hpp>

#include "logic/pm2_env.h"
#include "logic/small_file.h"

namespace sio_steer {

namespace {

// Node's own header is about 4 KB, its #defines near the top.
constexpr std::size_t version_header_max = 16 * 1024;

// The #defines of an official Node install's include/node/node_version.h.
std::optional<node_version> from_version_header(const std::string& text)
{
    std::smatch m;
    node_version v;
    unsigned* parts[] = {&v.major, &v.minor, &v.patch};
    const char* names[] = {"MAJOR", "MINOR", "PATCH"};
    for (int i = 0; i < 3; i++) {
        // At most 4 digits, as parse_node_version() takes: the file is the worker's, and `\d+` let a
        // long run of digits overflow the stack (std::regex recurses per character) or std::stoul
        // throw (tests/fuzz: corpus/node_version/long_major).
        std::regex define(std::string("#define NODE_") + names[i] + "_VERSION (\\d{1,4})(?!\\d)");
        if (!std::regex_search(text, m, define))
            return std::nullopt;
        *parts[i] = static_cast<unsigned>(std::stoul(m[1]));
    }
    return v;
}

// A string field of pm2_env, "" when absent or not a string.
std::string string_field(const nlohmann::json& object, const char* key)
{
    auto it = object.find(key);
    return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

}  // namespace

std::string node_version::text() const
{
    return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
}

std::optional<node_version> parse_node_version(std::string_view text)
{
    static const std::regex version(R"(^v?(\d{1,4})\.(\d{1,4})\.(\d{1,4}))");
    std::match_results<std::string_view::const_iterator> m;
    if (!std::regex_search(text.begin(), text.end(), m, version))
        return std::nullopt;
    return node_version{static_cast<unsigned>(std::stoul(m[1])), static_cast<unsigned>(std::stoul(m[2])),
                        static_cast<unsigned>(std::stoul(m[3]))};
}

bool supports_reuse_port(const node_version& v)
{
    return v.major > 23 || (v.major == 23 && v.minor >= 1) || (v.major == 22 && v.minor >= 12);
}

node_runtime node_runtime_from(std::string_view environ, std::string exe, const std::string& root)
{
    constexpr std::string_view deleted = " (deleted)";  // the binary was replaced, e.g. by an upgrade
    if (exe.ends_with(deleted))
        exe.resize(exe.size() - deleted.size());
    const std::filesystem::path binary(exe);

    nlohmann::json pm2_env;
    if (auto text = environ_value(environ, "pm2_env"))
        pm2_env = nlohmann::json::parse(*text, nullptr, false);
    if (!pm2_env.is_object())
        pm2_env = nlohmann::json::object();
    node_runtime r;
    r.is_node = binary.filename().string().starts_with("node") ||
                string_field(pm2_env, "exec_interpreter").starts_with("node") ||
                string_field(pm2_env, "exec_mode") == "cluster_mode";  // PM2 cluster workers are always Node
    if (!r.is_node)
        return r;

    auto found = [&r](std::optional<node_version> v, const std::string& source) {
        if (v) {
            r.version = v;
            r.source = source;
        }
        return v.has_value();
    };
    if (found(parse_node_version(string_field(pm2_env, "node_version")), "pm2_env"))
        return r;
    if (auto text = environ_value(environ, "NODE_VERSION"); text && found(parse_node_version(*text), "NODE_VERSION"))
        return r;
    if (binary.has_parent_path()) {
        std::filesystem::path header = binary.parent_path().parent_path() / "include/node/node_version.h";
        // The worker's files: a FIFO, /dev/zero or a symbolic link out of its root yield nothing.
        std::optional<std::string> text = read_small_file(header.string(), version_header_max, root);
        if (text && found(from_version_header(*text), header.string()))
            return r;
    }
    static const std::regex in_path(R"((?:^|[/-])(v?\d{1,4}\.\d{1,4}\.\d{1,4})(?:[/-]|$))");
    std::smatch m;
    if (std::regex_search(exe, m, in_path))
        found(parse_node_version(m[1].str()), "the binary's path");
    return r;
}

node_runtime node_runtime_of(pid_t pid)
{
    const std::string proc = "/proc/" + std::to_string(pid);
    char exe[4096];
    ssize_t n = readlink((proc + "/exe").c_str(), exe, sizeof(exe) - 1);
    if (n <= 0)
        return {};
    // The kernel bounds environ by the process's stack limit; pm2_env is a few tens of KB.
    std::string env = read_small_file(proc + "/environ", 1 << 20).value_or("");
    return node_runtime_from(env, std::string(exe, static_cast<std::size_t>(n)), proc + "/root");
}

}  // namespace sio_steer
