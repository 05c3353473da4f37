#include "kernel/group_pin.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>

#include "logic/errors.h"
#include "logic/unique_fd.h"

namespace sio_steer {

namespace {

constexpr std::uint32_t max_uids = max_group_uids;

// The value of group[0]. Bytes and words only, as bpftool prints them (no BTF: not the program's map).
struct group_record {
    std::uint32_t family;     // AF_INET or AF_INET6; 0 = not recorded
    std::uint32_t uid_count;  // uids that follow; 0 = any uid
    std::uint8_t addr[16];    // bound address, network order (IPv4: the first 4 bytes)
    std::uint32_t uids[max_uids];
};

}  // namespace

std::optional<worker_group> read_group(const std::string& pin_dir)
{
    unique_fd map(bpf_obj_get((pin_dir + "/group").c_str()));
    if (!map)
        return std::nullopt;  // pinned by a version before it: the next attach records the group
    group_record r{};
    std::uint32_t zero = 0;
    if (bpf_map_lookup_elem(map.get(), &zero, &r))
        throw_system_error("cannot read the group map in " + pin_dir, errno);
    if (!r.family)
        return std::nullopt;
    char text[INET6_ADDRSTRLEN] = {};
    if ((r.family != AF_INET && r.family != AF_INET6) || r.uid_count > max_uids ||
        !inet_ntop(static_cast<int>(r.family), r.addr, text, sizeof(text)))
        throw steer_error(exit_code::incompatible,
                          "the pinned group map in " + pin_dir + " holds no group this version reads",
                          "another tool or version wrote it", "run `sio-steer detach` for the port, then attach again");
    return worker_group{static_cast<int>(r.family), text, std::vector<std::uint32_t>(r.uids, r.uids + r.uid_count)};
}

void record_group(const std::string& pin_dir, const worker_group& group)
{
    group_record r{};
    r.family = static_cast<std::uint32_t>(group.family);
    if (inet_pton(group.family, group.address.c_str(), r.addr) != 1 || group.uids.size() > max_uids)
        throw steer_error(exit_code::failure, "cannot record the group " + group.address);
    r.uid_count = static_cast<std::uint32_t>(group.uids.size());
    std::copy(group.uids.begin(), group.uids.end(), r.uids);
    std::uint32_t zero = 0;
    const std::string path = pin_dir + "/group";
    unique_fd map(bpf_obj_get(path.c_str()));
    if (!map) {
        map = unique_fd(bpf_map_create(BPF_MAP_TYPE_ARRAY, "group", sizeof(zero), sizeof(r), 1, nullptr));
        if (!map)
            throw_system_error("cannot create the group map", errno);
        if (bpf_map_update_elem(map.get(), &zero, &r, BPF_ANY))
            throw_system_error("cannot write the group map", errno);
        // Filled before it is pinned: whoever opens the pin finds the group recorded.
        if (bpf_obj_pin(map.get(), path.c_str()))
            throw_system_error("cannot pin " + path, errno);
        return;
    }
    if (bpf_map_update_elem(map.get(), &zero, &r, BPF_ANY))
        throw_system_error("cannot write the group map in " + pin_dir, errno);
}

}  // namespace sio_steer
