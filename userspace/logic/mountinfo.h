// /proc/PID/mountinfo, parsed: which filesystem is mounted where, and which part of it. The one
// reader of that file, for doctor's scheduler check and the listener watch's cgroup (both must
// name the same cgroup v2 hierarchy, or doctor would describe another host than the watch sees).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sio_steer {

struct mount_entry {
    std::string root;         // the part of the filesystem mounted here: "/" for all of it
    std::string mount_point;  // where, as this process sees it
    std::string fs_type;      // "cgroup2", "bpf", "overlay", ...
};

// Every well-formed line: "ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - TYPE SOURCE
// SUPER_OPTIONS". Paths are unescaped (the kernel writes a space as \040, a tab \011, a newline
// \012, a backslash \134); a line without the " - " separator or with too few fields is skipped.
std::vector<mount_entry> parse_mountinfo(std::string_view text);

// Where the whole cgroup v2 hierarchy is mounted: the first cgroup2 mount whose root is "/"
// (/sys/fs/cgroup, or /sys/fs/cgroup/unified on a hybrid host). A bind mount of one cgroup (root
// "/system.slice/x") does not count: a path from /proc/PID/cgroup is relative to the whole.
std::optional<std::string> cgroup2_mount_point(std::string_view mountinfo);

}  // namespace sio_steer
