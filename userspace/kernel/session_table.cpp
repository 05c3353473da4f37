#include "kernel/session_table.h"

#include <bpf/bpf.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstring>

#include "logic/errors.h"

namespace sio_steer {

namespace {

// An entry as four 64-bit words: the client (two), slot and generation, last_seen_ns.
constexpr int words_per_entry = 4;
static_assert(sizeof(recorded_client) == words_per_entry * 8 && offsetof(recorded_client, session) == 16 &&
              offsetof(session, last_seen_ns) == 8 && sizeof(session_set) == SIO_STEER_SESSION_WAYS * 32);

std::uint64_t load(std::uint64_t* w) { return std::atomic_ref<std::uint64_t>(*w).load(std::memory_order_acquire); }
void store(std::uint64_t* w, std::uint64_t v)
{
    std::atomic_ref<std::uint64_t>(*w).store(v, std::memory_order_release);
}

std::pair<std::uint64_t, std::uint64_t> key_words(const client_key& key)
{
    std::uint64_t k[2];
    std::memcpy(k, key.addr, sizeof(k));
    return {k[0], k[1]};
}

// Takes an entry for writing if its last_seen_ns is still `seen` (the program's session_claim()).
bool claim(std::uint64_t* e, std::uint64_t seen)
{
    return std::atomic_ref<std::uint64_t>(e[3]).compare_exchange_strong(seen, SIO_STEER_SESSION_WRITING);
}

// A consistent copy of entry `e`, read as the program reads it: client, record, last_seen_ns,
// client again. Nothing if it is empty, being written, or changed client meanwhile.
std::optional<std::pair<client_key, session>> read_entry(std::uint64_t* e)
{
    const std::uint64_t k0 = load(e), k1 = load(e + 1), placed = load(e + 2), seen = load(e + 3);
    if (seen <= SIO_STEER_SESSION_WRITING || load(e) != k0 || load(e + 1) != k1)
        return std::nullopt;
    std::pair<client_key, session> out{};
    std::memcpy(out.first.addr, &k0, 8);
    std::memcpy(out.first.addr + 8, &k1, 8);
    std::memcpy(&out.second, &placed, 8);
    out.second.last_seen_ns = seen;
    return out;
}

}  // namespace

session_table::session_table(int fd, std::uint32_t hash_seed) : seed_(hash_seed)
{
    bpf_map_info info{};
    __u32 len = sizeof(info);
    if (bpf_obj_get_info_by_fd(fd, &info, &len))
        throw_system_error("cannot read the sessions map info", errno);
    sets_ = info.max_entries;
    const std::size_t page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
    length_ = (static_cast<std::size_t>(sets_) * sizeof(session_set) + page - 1) / page * page;
    void* m = mmap(nullptr, length_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED)
        throw_system_error("cannot map the sessions map into memory", errno);
    mapping_ = m;
}

session_table::~session_table() { unmap(); }

session_table::session_table(session_table&& other) noexcept
    : mapping_(std::exchange(other.mapping_, nullptr)),
      length_(std::exchange(other.length_, 0)),
      sets_(other.sets_),
      seed_(other.seed_)
{}

session_table& session_table::operator=(session_table&& other) noexcept
{
    if (this != &other) {
        unmap();
        mapping_ = std::exchange(other.mapping_, nullptr);
        length_ = std::exchange(other.length_, 0);
        sets_ = other.sets_;
        seed_ = other.seed_;
    }
    return *this;
}

void session_table::unmap()
{
    if (mapping_)
        munmap(mapping_, length_);
    mapping_ = nullptr;
}

std::uint64_t* session_table::entry_words(std::uint32_t set, int way) const
{
    return static_cast<std::uint64_t*>(mapping_) +
           (static_cast<std::size_t>(set) * SIO_STEER_SESSION_WAYS + static_cast<std::size_t>(way)) * words_per_entry;
}

std::uint32_t session_table::set_of(const client_key& key) const
{
    return sio_steer_session_set(sio_steer_hash(&key, 0, seed_), sets_);
}

std::optional<session> session_table::find(const client_key& key) const
{
    const std::uint32_t set = set_of(key);
    std::optional<session> newest;
    for (int way = 0; way < SIO_STEER_SESSION_WAYS; way++) {
        auto e = read_entry(entry_words(set, way));
        if (e && std::memcmp(&e->first, &key, sizeof(key)) == 0 &&
            (!newest || e->second.last_seen_ns > newest->last_seen_ns))
            newest = e->second;
    }
    return newest;
}

bool session_table::record(const client_key& key, const session& s, std::uint64_t ttl_ns, std::uint64_t now_ns,
                           bool keep_newer) const
{
    const std::uint32_t set = set_of(key);
    const auto [k0, k1] = key_words(key);
    for (int attempt = 0; attempt < 8; attempt++) {
        std::uint64_t* chosen = nullptr;
        std::uint64_t chosen_seen = 0, lowest = ~0ull;
        bool own = false;
        for (int way = 0; way < SIO_STEER_SESSION_WAYS && !own; way++) {  // the client's own entry
            std::uint64_t* e = entry_words(set, way);
            if (auto r = read_entry(e); r && std::memcmp(&r->first, &key, sizeof(key)) == 0) {
                if (keep_newer)
                    return true;
                chosen = e;
                chosen_seen = r->second.last_seen_ns;
                own = true;
            }
        }
        for (int way = 0; way < SIO_STEER_SESSION_WAYS && !own; way++) {  // else the program's choice
            std::uint64_t* e = entry_words(set, way);
            const std::uint64_t t = load(e + 3);
            const std::uint64_t rank = t == SIO_STEER_SESSION_EMPTY || t + ttl_ns < now_ns ? 0 : t;
            if (t != SIO_STEER_SESSION_WRITING && rank < lowest) {
                lowest = rank;
                chosen = e;
                chosen_seen = t;
            }
        }
        if (!chosen || !claim(chosen, chosen_seen))
            continue;
        std::uint64_t placed;
        std::memcpy(&placed, &s, 8);
        store(chosen, k0);
        store(chosen + 1, k1);
        store(chosen + 2, placed);
        store(chosen + 3, s.last_seen_ns);
        return true;
    }
    return false;
}

std::size_t session_table::forget(const client_key& key) const
{
    const std::uint32_t set = set_of(key);
    std::size_t n = 0;
    for (int way = 0; way < SIO_STEER_SESSION_WAYS; way++) {
        std::uint64_t* e = entry_words(set, way);
        for (int attempt = 0; attempt < 8; attempt++) {
            auto r = read_entry(e);
            if (!r || std::memcmp(&r->first, &key, sizeof(key)) != 0)
                break;
            if (claim(e, r->second.last_seen_ns)) {
                store(e + 3, SIO_STEER_SESSION_EMPTY);
                n++;
                break;
            }
        }
    }
    return n;
}

std::vector<std::pair<client_key, session>> session_table::entries() const
{
    std::vector<std::pair<client_key, session>> out;
    for (std::uint32_t set = 0; set < sets_; set++) {
        const std::size_t first = out.size();
        for (int way = 0; way < SIO_STEER_SESSION_WAYS; way++) {
            auto e = read_entry(entry_words(set, way));
            if (!e)
                continue;
            bool twice = false;  // two writers raced to record the same new client: keep the newest
            for (std::size_t i = first; i < out.size() && !twice; i++)
                if (std::memcmp(&out[i].first, &e->first, sizeof(client_key)) == 0) {
                    twice = true;
                    if (e->second.last_seen_ns > out[i].second.last_seen_ns)
                        out[i].second = e->second;
                }
            if (!twice)
                out.push_back(*e);
        }
    }
    return out;
}

std::size_t session_table::count() const
{
    std::size_t n = 0;
    for (std::uint32_t set = 0; set < sets_; set++) {
        client_key seen[SIO_STEER_SESSION_WAYS];
        int in_set = 0;
        for (int way = 0; way < SIO_STEER_SESSION_WAYS; way++) {
            std::uint64_t* e = entry_words(set, way);
            if (load(e + 3) <= SIO_STEER_SESSION_WRITING)  // most entries of a roomy table: one load
                continue;
            auto r = read_entry(e);
            if (!r)
                continue;
            bool twice = false;
            for (int i = 0; i < in_set && !twice; i++)
                twice = std::memcmp(&seen[i], &r->first, sizeof(client_key)) == 0;
            if (!twice)
                seen[in_set++] = r->first;
        }
        n += static_cast<std::size_t>(in_set);
    }
    return n;
}

std::size_t session_table::clear() const
{
    std::size_t n = 0;
    for (std::uint32_t set = 0; set < sets_; set++)
        for (int way = 0; way < SIO_STEER_SESSION_WAYS; way++) {
            std::uint64_t* e = entry_words(set, way);
            for (int attempt = 0; attempt < 8; attempt++) {
                const std::uint64_t t = load(e + 3);
                if (t == SIO_STEER_SESSION_EMPTY)
                    break;
                if (t != SIO_STEER_SESSION_WRITING && claim(e, t)) {
                    store(e + 3, SIO_STEER_SESSION_EMPTY);
                    n++;
                    break;
                }
            }
        }
    return n;
}

void touch_sessions_map(int fd)
{
    constexpr __u32 batch = 1024;
    std::vector<std::uint32_t> keys(batch);
    std::vector<session_set> values(batch);
    __u32 in = 0, out = 0;
    for (bool first = true;; first = false) {
        __u32 count = batch;
        if (bpf_map_lookup_batch(fd, first ? nullptr : &in, &out, keys.data(), values.data(), &count, nullptr))
            return;  // ENOENT: that was the last batch (an error: the program pays instead)
        in = out;
    }
}

}  // namespace sio_steer
