#include "logic/netstat.h"

#include <charconv>
#include <string>
#include <vector>

namespace sio_steer {

namespace {

std::vector<std::string_view> fields(std::string_view line)
{
    std::vector<std::string_view> out;
    while (!line.empty()) {
        std::size_t start = line.find_first_not_of(' ');
        if (start == std::string_view::npos)
            break;
        line.remove_prefix(start);
        std::size_t end = line.find(' ');
        out.push_back(line.substr(0, end));
        line.remove_prefix(end == std::string_view::npos ? line.size() : end);
    }
    return out;
}

std::optional<std::uint64_t> number(std::string_view text)
{
    std::uint64_t value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (text.empty() || ec != std::errc{} || end != text.data() + text.size())
        return std::nullopt;
    return value;
}

}  // namespace

std::optional<std::uint64_t> netstat_counter(std::string_view netstat, std::string_view group, std::string_view name)
{
    const std::string head = std::string(group) + ":";
    std::vector<std::string_view> names;  // the last header line of `group`, waiting for its values
    while (!netstat.empty()) {
        std::size_t eol = netstat.find('\n');
        std::vector<std::string_view> f = fields(netstat.substr(0, eol));
        netstat.remove_prefix(eol == std::string_view::npos ? netstat.size() : eol + 1);
        if (f.empty() || f[0] != head)
            continue;
        if (names.empty()) {
            names = std::move(f);
            continue;
        }
        if (f.size() != names.size())
            return std::nullopt;  // not the values of that header: the text is not what the kernel writes
        for (std::size_t i = 1; i < names.size(); i++)
            if (names[i] == name)
                return number(f[i]);
        names.clear();
    }
    return std::nullopt;
}

std::optional<migrate_req_counters> migrate_req_from_netstat(std::string_view netstat)
{
    std::optional<std::uint64_t> success = netstat_counter(netstat, "TcpExt", "TCPMigrateReqSuccess");
    std::optional<std::uint64_t> failure = netstat_counter(netstat, "TcpExt", "TCPMigrateReqFailure");
    if (!success || !failure)
        return std::nullopt;
    return migrate_req_counters{*success, *failure};
}

}  // namespace sio_steer
