// What PM2 tells a worker through its environment (/proc/PID/environ): which instance it is.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace sio_steer {

// The value of VAR in a NUL-separated environ blob (/proc/PID/environ); the first wins, as with getenv.
std::optional<std::string_view> environ_value(std::string_view environ, std::string_view var);

// The PM2 instance from a /proc/PID/environ blob (NUL-separated VAR=value): a top-level
// NODE_APP_INSTANCE=, else "NODE_APP_INSTANCE" inside the pm2_env=<JSON> document.
std::optional<std::uint32_t> pm2_instance_from_environ(std::string_view environ);

// PM2's `instances` setting of the worker's app (the ecosystem's `instances`, `pm2 start -i N`),
// from "instances" inside pm2_env=<JSON>, as PM2 resolved it (a positive count: "max" is the
// number of CPUs by then). `pm2 scale` does not change it: workers it adds copy their sibling's.
std::optional<std::uint32_t> pm2_instances_from_environ(std::string_view environ);

}  // namespace sio_steer
