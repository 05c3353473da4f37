#include "kernel/pinned_state.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

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
    // sessions and moved: sized by the options (--max-sessions, --max-moved) of the attach that made them
    if (info.type != BPF_MAP_TYPE_LRU_HASH && info.type != BPF_MAP_TYPE_HASH)
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
// pins (the sessions LRU is preallocated: about 1.3 GB at 16M entries); nothing else removes them.
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

// Every entry of a sessions-like map (client_key -> session), in batches of 4,096: one bpf() call
// per batch instead of one per entry. A kernel without batch lookups on the map type gets the
// one-by-one walk. An entry the program adds or deletes meanwhile may be missed or seen twice.
std::vector<std::pair<client_key, session>> read_entries(int fd)
{
    constexpr __u32 batch = 4096;
    std::vector<std::pair<client_key, session>> out;
    std::vector<client_key> keys(batch);
    std::vector<session> values(batch);
    __u32 in = 0, next = 0;  // the hash map's batch token: a bucket index
    for (bool first = true;; first = false) {
        __u32 count = batch;
        int err = bpf_map_lookup_batch(fd, first ? nullptr : &in, &next, keys.data(), values.data(), &count, nullptr);
        if (err && errno != ENOENT) {
            if (!first)
                break;  // what could be read
            client_key key{}, k{};
            const void* prev = nullptr;
            while (bpf_map_get_next_key(fd, prev, &k) == 0) {
                session v{};
                if (bpf_map_lookup_elem(fd, &k, &v) == 0)
                    out.emplace_back(k, v);
                key = k;
                prev = &key;
            }
            return out;
        }
        for (__u32 i = 0; i < count; i++)
            out.emplace_back(keys[i], values[i]);
        if (err)
            return out;  // ENOENT: that was the last batch
        in = next;
    }
    return out;
}

// How many entries a sessions-like map holds, counted in batches as read_entries() reads them.
std::size_t count_entries(int fd)
{
    constexpr __u32 batch = 4096;
    std::vector<client_key> keys(batch);
    std::vector<session> values(batch);
    __u32 in = 0, out = 0;
    std::size_t n = 0;
    for (bool first = true;; first = false) {
        __u32 count = batch;
        int err = bpf_map_lookup_batch(fd, first ? nullptr : &in, &out, keys.data(), values.data(), &count, nullptr);
        if (err && errno != ENOENT) {
            if (!first)
                break;  // counted what could be read: a count, not an inventory
            n = 0;
            client_key key{}, next{};
            const void* prev = nullptr;
            while (bpf_map_get_next_key(fd, prev, &next) == 0) {
                n++;
                key = next;
                prev = &key;
            }
            return n;
        }
        n += count;
        if (err)
            return n;  // ENOENT: that was the last batch
        in = out;
    }
    return n;
}

std::uint32_t max_entries(int fd, const char* what)
{
    bpf_map_info info{};
    __u32 len = sizeof(info);
    if (bpf_obj_get_info_by_fd(fd, &info, &len))
        throw_system_error(std::string("cannot read the ") + what + " map info", errno);
    return info.max_entries;
}

}  // namespace

std::uint64_t session_clock_ns()
{
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<std::uint64_t>(ts.tv_nsec);
}

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
    st.workers_ = get_pinned(dir + "/workers");
    st.slots_ = get_pinned(dir + "/slots");
    st.sessions_ = get_pinned(dir + "/sessions");
    st.moved_ = get_pinned(dir + "/moved");
    st.ring_ = get_pinned(dir + "/ring");
    st.stats_ = get_pinned(dir + "/stats");
    check_layout(dir, skel->maps.workers, st.workers_.get());
    check_layout(dir, skel->maps.slots, st.slots_.get());
    check_layout(dir, skel->maps.sessions, st.sessions_.get());
    check_layout(dir, skel->maps.moved, st.moved_.get());
    check_layout(dir, skel->maps.ring, st.ring_.get());
    check_layout(dir, skel->maps.stats, st.stats_.get());
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
    if (!existing && half_removed(dir)) {
        // A detach that was killed halfway (or a config map removed by hand): nothing in it can be
        // adopted without its config, and it would be in the way of the new folder (ENOTEMPTY).
        spdlog::warn("{} has pins but no config map (a detach was interrupted): removing what is left of it", dir);
        // Its program may still be attached and keep its workers map alive: a socket is in one
        // REUSEPORT_SOCKARRAY at most (EBUSY), so free them for the new map.
        if (unique_fd old(bpf_obj_get((dir + "/workers").c_str())); old)
            for (std::uint32_t i = 0; i < SIO_STEER_MAX_SLOTS; i++)
                bpf_map_delete_elem(old.get(), &i);
        remove(dir);
    }

    skeleton skel = open_skeleton();
    bpf_map* maps[] = {skel->maps.workers, skel->maps.slots,  skel->maps.sessions, skel->maps.moved,
                       skel->maps.ring,    skel->maps.config, skel->maps.stats};
    static_assert(sizeof(maps) / sizeof(maps[0]) == map_count);
    if (existing) {
        int fds[] = {existing->workers_.get(), existing->slots_.get(), existing->sessions_.get(),
                     existing->moved_.get(),   existing->ring_.get(),  existing->config_.get(),
                     existing->stats_.get()};
        for (int i = 0; i < map_count; i++) {
            check_layout(dir, maps[i], fds[i]);
            if (bpf_map__reuse_fd(maps[i], fds[i]))
                throw_system_error("cannot reuse the pinned map " + std::string(map_names[i]), errno);
        }
    } else {
        bpf_map__set_max_entries(skel->maps.sessions, options.max_sessions);
        bpf_map__set_max_entries(skel->maps.moved, options.max_moved);
    }
    if (int err = sio_steer_bpf__load(skel.get()))
        throw sys_error("the kernel refused the steering program", -err, exit_code::environment,
                        "it needs BPF_PROG_TYPE_SK_REUSEPORT with BPF_SK_REUSEPORT_SELECT_OR_MIGRATE (Linux >= 5.14), "
                        "BTF, and CAP_BPF with CAP_NET_ADMIN",
                        "run `sio-steer doctor --port " + std::to_string(options.port) + "` to see which is missing");
    int prog = bpf_program__fd(skel->progs.steer);

    if (existing) {
        // Replace the program in place; the next sync re-attaches it to the group.
        std::string next = dir + "/program_new";  // bpffs names may not contain dots
        unlink(next.c_str());
        pin(prog, next);
        if (rename(next.c_str(), (dir + "/program").c_str()))
            throw_system_error("cannot replace " + dir + "/program", errno);
        existing->program_ = unique_fd(dup(prog));
        return {std::move(*existing), false};
    }

    // Fresh maps: no slot used, no ring entry, a random hash seed (clients cannot aim at a worker).
    std::uint32_t seed = 0;
    if (getrandom(&seed, sizeof(seed), 0) != sizeof(seed))
        seed = static_cast<std::uint32_t>(getpid()) * 2654435761u;
    std::uint32_t zero = 0;
    const std::uint32_t none = SIO_STEER_SLOT_NONE;
    config c = make_config(options, seed);
    update(bpf_map__fd(skel->maps.config), &zero, &c, "config");
    slot empty{};
    empty.successor = SIO_STEER_SLOT_NONE;
    for (std::uint32_t i = 0; i < SIO_STEER_MAX_SLOTS; i++)
        update(bpf_map__fd(skel->maps.slots), &i, &empty, "slots");
    std::vector<std::uint32_t> keys(SIO_STEER_RING_SIZE), nones(SIO_STEER_RING_SIZE, none);
    for (std::uint32_t i = 0; i < SIO_STEER_RING_SIZE; i++)
        keys[i] = i;
    __u32 count = SIO_STEER_RING_SIZE;
    if (bpf_map_update_batch(bpf_map__fd(skel->maps.ring), keys.data(), nones.data(), &count, nullptr))
        throw_system_error("cannot fill the ring map", errno);

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

config pinned_state::read_config() const
{
    config c{};
    std::uint32_t zero = 0;
    if (bpf_map_lookup_elem(config_.get(), &zero, &c))
        throw_system_error("cannot read the config map in " + dir_, errno);
    return c;
}

void pinned_state::write_config(const config& c) const
{
    std::uint32_t zero = 0;
    update(config_.get(), &zero, &c, "config");
}

std::vector<slot> pinned_state::read_slots() const
{
    std::vector<slot> slots(SIO_STEER_MAX_SLOTS);
    for (std::uint32_t i = 0; i < SIO_STEER_MAX_SLOTS; i++)
        if (bpf_map_lookup_elem(slots_.get(), &i, &slots[i]))
            throw_system_error("cannot read the slots map", errno);
    return slots;
}

void pinned_state::write_slot(std::uint32_t index, const slot& s) const { update(slots_.get(), &index, &s, "slots"); }

std::vector<std::uint32_t> pinned_state::read_ring() const
{
    // One batch call instead of 65,537 lookups: a resync stays well under a millisecond.
    std::vector<std::uint32_t> keys(SIO_STEER_RING_SIZE), ring(SIO_STEER_RING_SIZE);
    __u32 out_batch = 0, count = SIO_STEER_RING_SIZE;
    LIBBPF_OPTS(bpf_map_batch_opts, opts);
    int err = bpf_map_lookup_batch(ring_.get(), nullptr, &out_batch, keys.data(), ring.data(), &count, &opts);
    if ((err && errno != ENOENT) || count != SIO_STEER_RING_SIZE)
        throw_system_error("cannot read the ring map", errno);
    return ring;
}

std::uint32_t pinned_state::ring_at(std::uint32_t bucket) const
{
    std::uint32_t slot = SIO_STEER_SLOT_NONE;
    if (bpf_map_lookup_elem(ring_.get(), &bucket, &slot))
        throw_system_error("cannot read the ring map", errno);
    return slot;
}

void pinned_state::write_ring(const std::vector<std::uint32_t>& ring, const std::vector<std::uint32_t>& current) const
{
    // Only the entries that change, in one batch: each entry is written atomically, so the program
    // always reads a valid slot, old or new.
    std::vector<std::uint32_t> keys, values;
    for (std::uint32_t i = 0; i < ring.size(); i++)
        if (i >= current.size() || ring[i] != current[i]) {
            keys.push_back(i);
            values.push_back(ring[i]);
        }
    if (keys.empty())
        return;
    __u32 count = static_cast<__u32>(keys.size());
    LIBBPF_OPTS(bpf_map_batch_opts, opts);
    if (bpf_map_update_batch(ring_.get(), keys.data(), values.data(), &count, &opts))
        throw_system_error("cannot update the ring map", errno);
}

stats pinned_state::read_stats() const
{
    int cpus = libbpf_num_possible_cpus();
    if (cpus < 1)
        throw_system_error("cannot count the possible CPUs", -cpus);
    std::vector<stats> per_cpu(static_cast<std::size_t>(cpus));
    std::uint32_t zero = 0;
    if (bpf_map_lookup_elem(stats_.get(), &zero, per_cpu.data()))
        throw_system_error("cannot read the stats map", errno);
    stats sum{};
    for (const stats& s : per_cpu) {
        sum.session_hits += s.session_hits;
        sum.new_sessions += s.new_sessions;
        sum.expired += s.expired;
        sum.fallbacks += s.fallbacks;
        sum.migrations += s.migrations;
        sum.errors += s.errors;
        for (int i = 0; i < SIO_STEER_MAX_SLOTS; i++)
            sum.selections[i] += s.selections[i];
        sum.moved_full += s.moved_full;
    }
    return sum;
}

std::optional<session> pinned_state::find_session(const client_key& key) const
{
    session s{};
    if (bpf_map_lookup_elem(sessions_.get(), &key, &s) == 0 || bpf_map_lookup_elem(moved_.get(), &key, &s) == 0)
        return s;
    return std::nullopt;
}

void pinned_state::write_session(const client_key& key, const session& s) const
{
    update(sessions_.get(), &key, &s, "sessions");
}

bool pinned_state::record_client(const client_key& key, const session& s, bool off_ring) const
{
    // Written before the other map's copy goes, so the program finds the client at every moment.
    if (off_ring) {
        if (bpf_map_update_elem(moved_.get(), &key, &s, BPF_ANY) == 0) {
            bpf_map_delete_elem(sessions_.get(), &key);
            return true;
        }
        if (errno != E2BIG)
            throw_system_error("cannot update the moved map", errno);
    }
    update(sessions_.get(), &key, &s, "sessions");
    bpf_map_delete_elem(moved_.get(), &key);
    return !off_ring;
}

bool pinned_state::keep_apart(const client_key& key, const session& s) const
{
    // BPF_NOEXIST: a record the program wrote into moved since the caller read `s` is newer.
    if (bpf_map_update_elem(moved_.get(), &key, &s, BPF_NOEXIST) && errno != EEXIST) {
        if (errno == E2BIG)
            return false;
        throw_system_error("cannot update the moved map", errno);
    }
    bpf_map_delete_elem(sessions_.get(), &key);
    return true;
}

void pinned_state::move_back(const client_key& key, const session& s) const
{
    if (bpf_map_update_elem(sessions_.get(), &key, &s, BPF_NOEXIST) && errno != EEXIST)
        throw_system_error("cannot update the sessions map", errno);
    bpf_map_delete_elem(moved_.get(), &key);
}

void pinned_state::forget_moved(const client_key& key) const { bpf_map_delete_elem(moved_.get(), &key); }

bool pinned_state::is_kept_apart(const client_key& key) const
{
    session s{};
    return bpf_map_lookup_elem(moved_.get(), &key, &s) == 0;
}

std::vector<std::pair<client_key, session>> pinned_state::read_sessions() const
{
    return read_entries(sessions_.get());
}

std::vector<std::pair<client_key, session>> pinned_state::read_moved() const { return read_entries(moved_.get()); }

std::size_t pinned_state::count_sessions() const { return count_entries(sessions_.get()); }

std::size_t pinned_state::count_moved() const { return count_entries(moved_.get()); }

std::size_t pinned_state::flush_sessions() const
{
    std::size_t n = 0;
    for (int fd : {sessions_.get(), moved_.get()}) {
        client_key next{};
        while (bpf_map_get_next_key(fd, nullptr, &next) == 0 && bpf_map_delete_elem(fd, &next) == 0)
            n++;
    }
    return n;
}

std::uint32_t pinned_state::max_sessions() const { return max_entries(sessions_.get(), "sessions"); }

std::uint32_t pinned_state::max_moved() const { return max_entries(moved_.get(), "moved"); }

void pinned_state::insert_worker(std::uint32_t index, int socket_fd) const
{
    std::uint64_t value = static_cast<std::uint64_t>(socket_fd);
    if (bpf_map_update_elem(workers_.get(), &index, &value, BPF_ANY))
        throw_system_error("cannot put a listening socket into slot " + std::to_string(index) + " of the workers map",
                           errno);
}

std::uint64_t pinned_state::worker_cookie(std::uint32_t index) const
{
    std::uint64_t cookie = 0;  // a lookup from user space gives the socket's cookie
    if (bpf_map_lookup_elem(workers_.get(), &index, &cookie))
        return 0;
    return cookie;
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
