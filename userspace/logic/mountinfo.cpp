#include "logic/mountinfo.h"

#include <cstddef>

namespace sio_steer {

namespace {

// \ooo (three octal digits) is the byte the kernel escaped; anything else stays as written.
std::string unescape(std::string_view field)
{
    std::string out;
    out.reserve(field.size());
    for (std::size_t i = 0; i < field.size(); i++) {
        auto octal = [&](std::size_t k) { return k < field.size() && field[k] >= '0' && field[k] <= '7'; };
        if (field[i] == '\\' && octal(i + 1) && octal(i + 2) && octal(i + 3) && field[i + 1] <= '3') {
            out += static_cast<char>((field[i + 1] - '0') * 64 + (field[i + 2] - '0') * 8 + (field[i + 3] - '0'));
            i += 3;
        } else {
            out += field[i];
        }
    }
    return out;
}

// The fields of one line, split on spaces (the kernel escapes a space inside a field).
std::vector<std::string_view> fields_of(std::string_view line)
{
    std::vector<std::string_view> fields;
    for (std::size_t at = 0; at < line.size();) {
        std::size_t end = line.find(' ', at);
        if (end == std::string_view::npos)
            end = line.size();
        if (end > at)
            fields.push_back(line.substr(at, end - at));
        at = end + 1;
    }
    return fields;
}

}  // namespace

std::vector<mount_entry> parse_mountinfo(std::string_view text)
{
    std::vector<mount_entry> mounts;
    for (std::size_t at = 0; at < text.size();) {
        std::size_t end = text.find('\n', at);
        if (end == std::string_view::npos)
            end = text.size();
        std::vector<std::string_view> f = fields_of(text.substr(at, end - at));
        at = end + 1;
        // six fixed fields, optional ones up to "-", then the type (source and options may be empty)
        std::size_t dash = 6;
        while (dash < f.size() && f[dash] != "-")
            dash++;
        if (f.size() < 6 || dash + 1 >= f.size())
            continue;
        mounts.push_back({unescape(f[3]), unescape(f[4]), unescape(f[dash + 1])});
    }
    return mounts;
}

std::optional<std::string> cgroup2_mount_point(std::string_view mountinfo)
{
    for (const mount_entry& m : parse_mountinfo(mountinfo))
        if (m.fs_type == "cgroup2" && m.root == "/")
            return m.mount_point;
    return std::nullopt;
}

}  // namespace sio_steer
