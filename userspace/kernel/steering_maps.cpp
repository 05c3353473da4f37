#include "kernel/steering_maps.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <time.h>

#include <cerrno>

#include "logic/errors.h"

namespace sio_steer {

namespace {

void update(int map, const void* key, const void* value, const char* what)
{
    if (bpf_map_update_elem(map, key, value, BPF_ANY))
        throw_system_error(std::string("cannot update the ") + what + " map", errno);
}

// Every entry of the moved map (client_key -> session), in batches of 4,096: one bpf() call
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

// How many entries the moved map holds, counted in batches as read_entries() reads them.
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

config steering_maps::read_config() const
{
    config c{};
    std::uint32_t zero = 0;
    if (bpf_map_lookup_elem(config_.get(), &zero, &c))
        throw_system_error("cannot read the config map in " + dir_, errno);
    return c;
}

void steering_maps::write_config(const config& c) const
{
    std::uint32_t zero = 0;
    update(config_.get(), &zero, &c, "config");
}

std::vector<slot> steering_maps::read_slots() const
{
    std::vector<slot> slots(SIO_STEER_MAX_SLOTS);
    for (std::uint32_t i = 0; i < SIO_STEER_MAX_SLOTS; i++)
        if (bpf_map_lookup_elem(slots_.get(), &i, &slots[i]))
            throw_system_error("cannot read the slots map", errno);
    return slots;
}

void steering_maps::write_slot(std::uint32_t index, const slot& s) const { update(slots_.get(), &index, &s, "slots"); }

std::vector<std::uint32_t> steering_maps::read_ring() const
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

std::uint32_t steering_maps::ring_at(std::uint32_t bucket) const
{
    std::uint32_t slot = SIO_STEER_SLOT_NONE;
    if (bpf_map_lookup_elem(ring_.get(), &bucket, &slot))
        throw_system_error("cannot read the ring map", errno);
    return slot;
}

void steering_maps::write_ring(const std::vector<std::uint32_t>& ring, const std::vector<std::uint32_t>& current) const
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

stats steering_maps::read_stats() const
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

std::optional<session> steering_maps::find_session(const client_key& key) const
{
    if (std::optional<session> s = table_->find(key))
        return s;
    session s{};
    if (bpf_map_lookup_elem(moved_.get(), &key, &s) == 0)
        return s;
    return std::nullopt;
}

void steering_maps::write_session(const client_key& key, const session& s) const
{
    if (!table_->record(key, s, read_config().session_ttl_ns, session_clock_ns()))
        throw steer_error(exit_code::failure, "cannot record a client in the sessions map of " + dir_,
                          "the steering program kept writing its entry");
}

bool steering_maps::record_client(const client_key& key, const session& s, bool off_ring) const
{
    // Written before the other map's copy goes, so the program finds the client at every moment.
    if (off_ring) {
        if (bpf_map_update_elem(moved_.get(), &key, &s, BPF_ANY) == 0) {
            table_->forget(key);
            return true;
        }
        if (errno != E2BIG)
            throw_system_error("cannot update the moved map", errno);
    }
    write_session(key, s);
    bpf_map_delete_elem(moved_.get(), &key);
    return !off_ring;
}

bool steering_maps::keep_apart(const client_key& key, const session& s) const
{
    // BPF_NOEXIST: a record the program wrote into moved since the caller read `s` is newer.
    if (bpf_map_update_elem(moved_.get(), &key, &s, BPF_NOEXIST) && errno != EEXIST) {
        if (errno == E2BIG)
            return false;
        throw_system_error("cannot update the moved map", errno);
    }
    table_->forget(key);
    return true;
}

void steering_maps::move_back(const client_key& key, const session& s) const
{
    if (!table_->record(key, s, read_config().session_ttl_ns, session_clock_ns(), /*keep_newer=*/true))
        throw steer_error(exit_code::failure, "cannot record a client in the sessions map of " + dir_,
                          "the steering program kept writing its entry");
    bpf_map_delete_elem(moved_.get(), &key);
}

void steering_maps::forget_moved(const client_key& key) const { bpf_map_delete_elem(moved_.get(), &key); }

bool steering_maps::is_kept_apart(const client_key& key) const
{
    session s{};
    return bpf_map_lookup_elem(moved_.get(), &key, &s) == 0;
}

std::vector<std::pair<client_key, session>> steering_maps::read_sessions() const { return table_->entries(); }

std::vector<std::pair<client_key, session>> steering_maps::read_moved() const { return read_entries(moved_.get()); }

std::size_t steering_maps::count_sessions() const { return table_->count(); }

std::size_t steering_maps::count_moved() const { return count_entries(moved_.get()); }

std::size_t steering_maps::flush_sessions() const
{
    std::size_t n = table_->clear();
    client_key next{};
    while (bpf_map_get_next_key(moved_.get(), nullptr, &next) == 0 && bpf_map_delete_elem(moved_.get(), &next) == 0)
        n++;
    return n;
}

std::uint32_t steering_maps::max_sessions() const { return table_->capacity(); }

std::uint32_t steering_maps::max_moved() const { return max_entries(moved_.get(), "moved"); }

void steering_maps::insert_worker(std::uint32_t index, int socket_fd) const
{
    std::uint64_t value = static_cast<std::uint64_t>(socket_fd);
    if (bpf_map_update_elem(workers_.get(), &index, &value, BPF_ANY))
        throw_system_error("cannot put a listening socket into slot " + std::to_string(index) + " of the workers map",
                           errno);
}

std::uint64_t steering_maps::worker_cookie(std::uint32_t index) const
{
    std::uint64_t cookie = 0;  // a lookup from user space gives the socket's cookie
    if (bpf_map_lookup_elem(workers_.get(), &index, &cookie))
        return 0;
    return cookie;
}

}  // namespace sio_steer
