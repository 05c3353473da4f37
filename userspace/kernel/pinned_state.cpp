#include "kernel/pinned_state.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <memory>
#include <regex>

#include <spdlog/spdlog.h>

#include "bpf/sio_steer.skel.h"
#include "logic/errors.h"

namespace sio_steer {

namespace fs = std::filesystem;

namespace {

const char* const map_names[] = {"workers", "slots", "sessions", "moved", "ring", "config", "stats"};
constexpr int map_count = sizeof(map_names) / sizeof(map_names[0]);

struct skeleton_deleter {
    void operator()(sio_steer_bpf* s) const { sio_steer_bpf__destroy(s); }
};
using skeleton = std::unique_ptr<sio_steer_bpf, skeleton_deleter>;

unique_fd get_pinned(const std::string& path)
{
    int fd = bpf_obj_get(path.c_str());
    if (fd < 0 && (errno == EACCES || errno == EPERM))
        throw_pins_unreadable(path, errno);
    if (fd < 0)
        throw steer_error(exit_code::incompatible, "pinned state is incomplete: " + path + " is missing",
                          "another tool or an interrupted detach changed the pin folder",
                          "run `sio-steer detach` for the port, then attach again");
    return unique_fd(fd);
}

void pin(int fd, const std::string& path)
{
    if (bpf_obj_pin(fd, path.c_str()))
        throw_system_error("cannot pin " + path, errno);
}

void update(int map, const void* key, const void* value, const char* what)
{
    if (bpf_map_update_elem(map, key, value, BPF_ANY))
        throw_system_error(std::string("cannot update the ") + what + " map", errno);
}

skeleton open_skeleton()
{
    skeleton skel(sio_steer_bpf__open());
    if (!skel)
        throw_system_error("cannot open the BPF object", errno);
    return skel;
}

// The pinned map must have the layout this build's program expects, checked before anything is
// read from it: a value larger than our struct (a newer ABI, after a rollback) would be written
// past its end by the kernel.
void check_layout(const std::string& dir, bpf_map* expected, int fd)
{
    bpf_map_info info{};
    __u32 len = sizeof(info);
    if (bpf_obj_get_info_by_fd(fd, &info, &len))
        throw_system_error("cannot read map info in " + dir, errno);
    std::string differences;
    auto differs = [&](const char* what, std::uint64_t pinned, std::uint64_t ours) {
        if (pinned != ours)
            differences += std::string(differences.empty() ? "" : ", ") + what + " " + std::to_string(pinned) +
                           " where this version has " + std::to_string(ours);
    };
    differs("type", info.type, bpf_map__type(expected));
    differs("key size", info.key_size, bpf_map__key_size(expected));
    differs("value size", info.value_size, bpf_map__value_size(expected));
    differs("flags", info.map_flags, bpf_map__map_flags(expected));
    // sessions and moved: sized by the options (--max-sessions, --max-moved) of the attach that made them
    const std::string name = bpf_map__name(expected);
    if (name != "sessions" && name != "moved")
        differs("entries", info.max_entries, bpf_map__max_entries(expected));
    if (!differences.empty())
        throw steer_error(
            exit_code::incompatible,
            std::string("the pinned map ") + bpf_map__name(expected) + " in " + dir +
                " has another layout than this version of sio-steer expects (" + differences + ")",
            "it was written by an incompatible version of sio-steer",
            "run the sio-steer that wrote it, or `sio-steer detach` (drops the recorded sessions) and attach again");
}

// Folders a killed attach or detach left in the pin root: new_<port>_<pid> (load() pins a new
// state there, then renames it into place) and old_<port>_<pid> (remove() renames the port's
// folder there, then empties it). A SIGKILL during load() leaves maps that live as long as their
// pins (the sessions table is allocated whole: 512 MiB at 16M clients); nothing else removes them.
void remove_stale_folders(const std::string& pin_root)
{
    static const std::regex made_by(R"(^(new|old)_\d{1,5}_(\d{1,9})$)");
    std::vector<std::pair<fs::path, pid_t>> stale;
    std::error_code ec;
    for (fs::directory_iterator it(pin_root, ec), end; !ec && it != end; it.increment(ec)) {
        const std::string name = it->path().filename().string();
        std::smatch m;
        if (!std::regex_match(name, m, made_by))
            continue;
        pid_t pid = static_cast<pid_t>(std::stol(m[2]));
        if (pid > 0 && pid != getpid() && kill(pid, 0) && errno == ESRCH)
            stale.emplace_back(it->path(), pid);
    }
    for (const auto& [path, pid] : stale) {
        const char* what = path.filename().string().starts_with("new_") ? "attach" : "detach";
        fs::remove_all(path, ec);
        if (ec)
            spdlog::warn("cannot remove {}, left by pid {} (gone) in an interrupted {}: {}", path.string(), pid, what,
                         ec.message());
        else
            spdlog::info("removed {}, left with its maps by pid {} (gone) in an interrupted {}", path.string(), pid,
                         what);
    }
}

// The maps of a skeleton, in the order of map_names.
using program_maps = std::array<bpf_map*, map_count>;
program_maps maps_of(const sio_steer_bpf& skel)
{
    return {skel.maps.workers, skel.maps.slots,  skel.maps.sessions, skel.maps.moved,
            skel.maps.ring,    skel.maps.config, skel.maps.stats};
}

// A detach that was killed halfway (or a config map removed by hand): nothing in `dir` can be
// adopted without its config, and it would be in the way of the new folder (ENOTEMPTY).
void clear_half_removed(const std::string& dir)
{
    spdlog::warn("{} has pins but no config map (a detach was interrupted): removing what is left of it", dir);
    // Its program may still be attached and keep its workers map alive: a socket is in one
    // REUSEPORT_SOCKARRAY at most (EBUSY), so free them for the new map.
    if (unique_fd old(bpf_obj_get((dir + "/workers").c_str())); old)
        for (std::uint32_t i = 0; i < SIO_STEER_MAX_SLOTS; i++)
            bpf_map_delete_elem(old.get(), &i);
    pinned_state::remove(dir);
}

void load_program(sio_steer_bpf& skel, std::uint16_t port)
{
    if (int err = sio_steer_bpf__load(&skel))
        throw sys_error("the kernel refused the steering program", -err, exit_code::environment,
                        "it needs BPF_PROG_TYPE_SK_REUSEPORT with BPF_SK_REUSEPORT_SELECT_OR_MIGRATE (Linux >= 5.14), "
                        "BTF, and CAP_BPF with CAP_NET_ADMIN",
                        "run `sio-steer doctor --port " + std::to_string(port) + "` to see which is missing");
}

// Replaces the pinned program in place; the next sync re-attaches it to the group.
void replace_program(const std::string& dir, int prog)
{
    std::string next = dir + "/program_new";  // bpffs names may not contain dots
    unlink(next.c_str());
    pin(prog, next);
    if (rename(next.c_str(), (dir + "/program").c_str()))
        throw_system_error("cannot replace " + dir + "/program", errno);
}

// Fresh maps: no slot used, no ring entry, a random hash seed (clients cannot aim at a worker).
void fill_fresh_maps(const sio_steer_bpf& skel, const steer_options& options)
{
    std::uint32_t seed = 0;
    if (getrandom(&seed, sizeof(seed), 0) != sizeof(seed))
        seed = static_cast<std::uint32_t>(getpid()) * 2654435761u;
    std::uint32_t zero = 0;
    const std::uint32_t none = SIO_STEER_SLOT_NONE;
    config c = make_config(options, seed);
    update(bpf_map__fd(skel.maps.config), &zero, &c, "config");
    slot empty{};
    empty.successor = SIO_STEER_SLOT_NONE;
    for (std::uint32_t i = 0; i < SIO_STEER_MAX_SLOTS; i++)
        update(bpf_map__fd(skel.maps.slots), &i, &empty, "slots");
    std::vector<std::uint32_t> keys(SIO_STEER_RING_SIZE), nones(SIO_STEER_RING_SIZE, none);
    for (std::uint32_t i = 0; i < SIO_STEER_RING_SIZE; i++)
        keys[i] = i;
    __u32 count = SIO_STEER_RING_SIZE;
    if (bpf_map_update_batch(bpf_map__fd(skel.maps.ring), keys.data(), nones.data(), &count, nullptr))
        throw_system_error("cannot fill the ring map", errno);
    touch_sessions_map(bpf_map__fd(skel.maps.sessions));
}

// Pins the program and the maps in <pin root>/new_<port>_<pid>, then renames that into place: the
// port's folder is never half-written.
void pin_new_folder(const program_maps& maps, int prog, const steer_options& options)
{
    const std::string dir = options.pin_dir();
    std::error_code ec;
    fs::create_directories(options.pin_root, ec);
    if (ec)
        throw steer_error(exit_code::environment, "cannot create " + options.pin_root + ": " + ec.message(),
                          "the pin root must be on a mounted bpffs", "mount it: mount -t bpf bpf /sys/fs/bpf");
    std::string tmp = options.pin_root + "/new_" + std::to_string(options.port) + "_" + std::to_string(getpid());
    fs::remove_all(tmp, ec);
    if (mkdir(tmp.c_str(), 0700))
        throw_system_error("cannot create " + tmp, errno);
    try {
        pin(prog, tmp + "/program");
        for (int i = 0; i < map_count; i++)
            pin(bpf_map__fd(maps[i]), tmp + "/" + map_names[i]);
        if (rename(tmp.c_str(), dir.c_str()))
            throw_system_error("cannot rename " + tmp + " to " + dir, errno);
    } catch (...) {
        fs::remove_all(tmp, ec);
        throw;
    }
}

}  // namespace

void throw_pins_unreadable(const std::string& path, int err)
{
    throw sys_error("cannot read the pinned state " + path, err, exit_code::environment,
                    "the steering state is pinned for root only: its folders are mode 0700 and reading a "
                    "pinned map needs CAP_BPF",
                    "run it as root (sudo), as the systemd unit does; bpftool needs root too");
}

std::optional<pinned_state> pinned_state::open(const std::string& dir)
{
    std::error_code ec;
    bool pinned = fs::exists(dir + "/config", ec);
    if (ec && (ec.value() == EACCES || ec.value() == EPERM))
        throw_pins_unreadable(dir, ec.value());
    if (!pinned)
        return std::nullopt;
    skeleton skel = open_skeleton();
    pinned_state st;
    st.dir_ = dir;
    st.config_ = get_pinned(dir + "/config");
    check_layout(dir, skel->maps.config, st.config_.get());  // before read_config() copies it
    config c = st.read_config();
    if (c.abi_version != SIO_STEER_ABI_VERSION)
        throw steer_error(
            exit_code::incompatible,
            "the state pinned in " + dir + " has ABI version " + std::to_string(c.abi_version) +
                "; this sio-steer speaks version " + std::to_string(SIO_STEER_ABI_VERSION),
            "it was written by an incompatible version of sio-steer",
            "run the sio-steer that wrote it, or `sio-steer detach` (drops the recorded sessions) and attach again");
    st.program_ = get_pinned(dir + "/program");
    const std::array<unique_fd*, map_count> fds = st.map_fds();
    for (int i = 0; i < map_count; i++)
        if (fds[i] != &st.config_)
            *fds[i] = get_pinned(dir + "/" + map_names[i]);
    const program_maps maps = maps_of(*skel);
    for (int i = 0; i < map_count; i++)
        if (fds[i] != &st.config_)
            check_layout(dir, maps[i], fds[i]->get());
    bpf_map_info sessions{};
    __u32 len = sizeof(sessions);
    if (bpf_obj_get_info_by_fd(st.sessions_.get(), &sessions, &len))
        throw_system_error("cannot read map info in " + dir, errno);
    if (sessions.max_entries != c.session_sets)  // the program would look clients up in sets the map lacks
        throw steer_error(exit_code::incompatible,
                          "the pinned sessions map in " + dir + " has " + std::to_string(sessions.max_entries) +
                              " sets where its config says " + std::to_string(c.session_sets),
                          "the pin folder was changed by hand or by another tool",
                          "run `sio-steer detach` (drops the recorded sessions) and attach again");
    st.table_.emplace(st.sessions_.get(), c.hash_seed);
    return st;
}

bool pinned_state::half_removed(const std::string& dir)
{
    std::error_code ec;
    return fs::is_directory(dir, ec) && !fs::exists(dir + "/config", ec) && !ec;
}

std::pair<pinned_state, bool> pinned_state::load(const steer_options& options)
{
    const std::string dir = options.pin_dir();
    remove_stale_folders(options.pin_root);
    std::optional<pinned_state> existing = open(dir);  // layouts checked
    if (!existing && half_removed(dir))
        clear_half_removed(dir);

    skeleton skel = open_skeleton();
    const program_maps maps = maps_of(*skel);
    if (existing) {
        const std::array<unique_fd*, map_count> fds = existing->map_fds();
        for (int i = 0; i < map_count; i++) {
            check_layout(dir, maps[i], fds[i]->get());
            if (bpf_map__reuse_fd(maps[i], fds[i]->get()))
                throw_system_error("cannot reuse the pinned map " + std::string(map_names[i]), errno);
        }
    } else {
        bpf_map__set_max_entries(skel->maps.sessions, session_sets_for(options.max_sessions));
        bpf_map__set_max_entries(skel->maps.moved, options.max_moved);
    }
    load_program(*skel, options.port);
    const int prog = bpf_program__fd(skel->progs.steer);

    if (existing) {
        replace_program(dir, prog);
        existing->program_ = unique_fd(dup(prog));
        return {std::move(*existing), false};
    }
    fill_fresh_maps(*skel, options);
    pin_new_folder(maps, prog, options);
    skel.reset();
    return {std::move(*open(dir)), true};
}

void pinned_state::remove(const std::string& dir)
{
    // Renamed away first, in one step: the port is either pinned whole or not at all, and a remove
    // that is killed halfway leaves old_<port>_<pid>, which the next attach removes.
    const fs::path from(dir);
    const fs::path away = from.parent_path() / ("old_" + from.filename().string() + "_" + std::to_string(getpid()));
    std::error_code ec;
    fs::remove_all(away, ec);
    if (rename(dir.c_str(), away.c_str())) {
        if (errno == ENOENT)
            return;
        throw_system_error("cannot move " + dir + " out of the way to " + away.string(), errno);
    }
    fs::remove_all(away, ec);
    if (ec)
        throw steer_error(exit_code::failure, "cannot remove " + away.string() + " (was " + dir + "): " + ec.message());
}

std::set<std::uint64_t> pinned_state::socket_cookies(const std::string& dir)
{
    std::set<std::uint64_t> cookies;
    unique_fd workers(bpf_obj_get((dir + "/workers").c_str()));
    bpf_map_info info{};
    __u32 len = sizeof(info);
    if (!workers || bpf_obj_get_info_by_fd(workers.get(), &info, &len) ||
        info.type != BPF_MAP_TYPE_REUSEPORT_SOCKARRAY || info.key_size != sizeof(std::uint32_t) ||
        info.value_size != sizeof(std::uint64_t))
        return cookies;
    for (std::uint32_t i = 0; i < info.max_entries; i++) {
        std::uint64_t cookie = 0;  // a lookup from user space gives the socket's cookie
        if (bpf_map_lookup_elem(workers.get(), &i, &cookie) == 0 && cookie)
            cookies.insert(cookie);
    }
    return cookies;
}

pinned_state open_pinned_state(const steer_options& options, std::string why, std::string fix)
{
    if (std::optional<pinned_state> state = pinned_state::open(options.pin_dir()))
        return std::move(*state);
    const std::string port = std::to_string(options.port);
    throw steer_error(exit_code::not_attached, "nothing is pinned for port " + port + " in " + options.pin_root,
                      why.empty() ? "sio-steer is not attached to this port" : std::move(why),
                      fix.empty() ? "run `sio-steer attach --port " + port + "` first" : std::move(fix));
}

}  // namespace sio_steer
