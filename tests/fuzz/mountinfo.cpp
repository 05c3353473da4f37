// /proc/self/mountinfo (logic/mountinfo.h): written by the kernel, but inside a container every
// path in it is a name someone else chose (a bind mount's folder, an overlay's), escapes included.
#include <algorithm>

#include "fuzz_util.h"
#include "logic/mountinfo.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    std::string_view text = fuzz::input(data, size);
    std::vector<sio_steer::mount_entry> mounts = sio_steer::parse_mountinfo(text);
    // At most one entry per line, and unescaping only shortens a field.
    std::size_t lines = 1;
    for (char c : text)
        lines += c == '\n';
    FUZZ_CHECK(mounts.size() <= lines);
    for (const auto& m : mounts) {
        FUZZ_CHECK(!m.mount_point.empty() && !m.fs_type.empty() && !m.root.empty());
        FUZZ_CHECK(m.root.size() + m.mount_point.size() + m.fs_type.size() <= size);
    }
    // The hierarchy is one of the parsed mounts: cgroup2, mounted whole, the first such.
    std::optional<std::string> point = sio_steer::cgroup2_mount_point(text);
    auto first = std::find_if(mounts.begin(), mounts.end(),
                              [](const auto& m) { return m.fs_type == "cgroup2" && m.root == "/"; });
    FUZZ_CHECK(point.has_value() == (first != mounts.end()));
    FUZZ_CHECK(!point || *point == first->mount_point);
    return 0;
}
