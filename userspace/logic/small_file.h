// Reading a small file that someone else may have put there (a worker's install, a lock file in a
// folder another user can write): never a FIFO or a device, never more than asked for, never
// through a symbolic link in its last component, and never blocking.
#pragma once

#include <cstddef>
#include <optional>
#include <string>

namespace sio_steer {

// The first `max_bytes` of the regular file `path`, or nullopt when it is missing, unreadable, a
// symbolic link, or not a regular file (a FIFO would hang the reader, /dev/zero never ends).
// With a `root` (a process's /proc/PID/root), `path` is resolved inside it as that process sees
// it: its symbolic links cannot lead out of its root (openat2 RESOLVE_IN_ROOT).
std::optional<std::string> read_small_file(const std::string& path, std::size_t max_bytes,
                                           const std::string& root = {});

}  // namespace sio_steer
