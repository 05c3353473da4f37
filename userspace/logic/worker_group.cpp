#include "logic/worker_group.h"

#include <pwd.h>
#include <sys/socket.h>

#include <algorithm>
#include <map>
#include <set>

#include "logic/errors.h"
#include "logic/options.h"

namespace sio_steer {

std::string address_text(int family, const std::string& address, std::uint16_t port)
{
    return (family == AF_INET6 ? "[" + address + "]" : address) + ":" + std::to_string(port);
}

std::string group_text(const worker_group& group, std::uint16_t port)
{
    std::string s = address_text(group.family, group.address, port);
    if (group.uids.empty())
        return s + " of any uid";
    s += group.uids.size() == 1 ? " of uid " : " of uids ";
    for (std::size_t i = 0; i < group.uids.size(); i++)
        s += (i ? ", " : "") + std::to_string(group.uids[i]);
    return s;
}

bool belongs(const worker_group& group, const bound_listener& l)
{
    return l.family == group.family && l.address == group.address &&
           (group.uids.empty() || std::find(group.uids.begin(), group.uids.end(), l.uid) != group.uids.end());
}

worker_group first_group(const std::vector<bound_listener>& listeners,
                         const std::optional<std::vector<std::uint32_t>>& uids, std::uint16_t port)
{
    const std::string p = std::to_string(port);
    // (family, address) -> the uids listening there
    std::map<std::pair<int, std::string>, std::set<std::uint32_t>> groups;
    for (const bound_listener& l : listeners)
        if (!uids || uids->empty() || std::find(uids->begin(), uids->end(), l.uid) != uids->end())
            groups[{l.family, l.address}].insert(l.uid);
    if (groups.empty())
        throw steer_error(exit_code::no_listeners,
                          "nothing listens on TCP port " + p +
                              (listeners.empty() ? "" : " as the workers' user (--worker-uid)"),
                          "sio-steer steers the connections of workers that already listen on the port",
                          "start the workers first (e.g. pm2 start ecosystem.config.cjs), or check the port number" +
                              std::string(listeners.empty() ? "" : " and --worker-uid"));
    if (groups.size() > 1) {
        std::string names;
        for (const auto& [where, who] : groups)
            names += (names.empty() ? "" : ", ") +
                     group_text({where.first, where.second, std::vector<std::uint32_t>(who.begin(), who.end())}, port);
        throw steer_error(exit_code::not_steerable, "port " + p + " has several listening groups: " + names,
                          "each bound address forms its own reuseport group, and one steering program serves one "
                          "group; the first attach records which one",
                          "let every worker listen on the same address, e.g. server.listen({port: " + p +
                              ", reusePort: true}) without a host (dual-stack [::]); if the others belong to other "
                              "users, name the workers' user with --worker-uid");
    }
    const auto& [where, who] = *groups.begin();
    worker_group g{where.first, where.second, uids ? *uids : std::vector<std::uint32_t>(who.begin(), who.end())};
    return g;
}

std::string foreign_listener_text(const worker_group& group, const bound_listener& l, std::uint16_t port)
{
    return "ignoring the listener " + address_text(l.family, l.address, port) + " of uid " + std::to_string(l.uid) +
           ": not of the group " + group_text(group, port) +
           " recorded at the first attach (to steer another group: sio-steer detach, then attach)";
}

std::vector<std::uint32_t> parse_worker_uids(const std::string& text, std::size_t max_uids)
{
    auto refuse = [&](const std::string& why) {
        return steer_error(
            exit_code::usage, "--worker-uid " + text + ": " + why,
            "the uids whose listeners form the steered group (other users' listeners are ignored)",
            "give uids or user names separated by commas (--worker-uid 1000 or --worker-uid pm2), or any");
    };
    if (text == "any")
        return {};
    std::vector<std::uint32_t> uids;
    std::size_t start = 0;
    for (;;) {
        std::size_t comma = text.find(',', start);
        std::string word = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
        if (word.empty())
            throw refuse("an empty uid");
        if (std::all_of(word.begin(), word.end(), [](char c) { return c >= '0' && c <= '9'; })) {
            try {
                uids.push_back(static_cast<std::uint32_t>(parse_number("--worker-uid", word, 0, UINT32_MAX - 1)));
            } catch (const steer_error&) {
                throw refuse(word + " is not a uid");
            }
        } else {
            passwd pw{}, *found = nullptr;
            std::vector<char> buf(16384);
            if (getpwnam_r(word.c_str(), &pw, buf.data(), buf.size(), &found) || !found)
                throw refuse("no user named " + word);
            uids.push_back(pw.pw_uid);
        }
        if (comma == std::string::npos)
            break;
        start = comma + 1;
    }
    std::sort(uids.begin(), uids.end());
    uids.erase(std::unique(uids.begin(), uids.end()), uids.end());
    if (uids.size() > max_uids)
        throw refuse("more than " + std::to_string(max_uids) + " uids");
    return uids;
}

}  // namespace sio_steer
