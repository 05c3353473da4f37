// bpf_cost: what one run of the steering program costs, in ns, from the kernel's own accounting
// (kernel.bpf_stats_enabled: run_time_ns / run_cnt of the program), beside floors and a hash-only
// variant, all in one run. A benchmark, not a test: scripts/bench-bpf.sh builds and runs it, and
// docs/benchmarks.md says what the numbers mean.
//
//   bpf_cost [--clients N] [--passes N] [--rounds N] [--sessions N] [--max-sessions N] [--workers N]
//            [--chunk N] [--profile] [--only VARIANT,...] [--candidate OBJECT.bpf.o]...
//
// Everything happens in a private network namespace and a private mount namespace with its own
// bpffs and /run, so nothing is left behind even if the benchmark is killed (the workers get
// SIGKILL when it dies; statistics are on only while it holds a BPF_ENABLE_STATS fd). The real program is attached by the real controller (`sio-steer attach --once`); the
// variants reuse its pinned maps, and the benchmark swaps which program the reuseport group runs.
//
// One round runs every variant once, in a rotating order. For each variant: pass 1 connects once
// from each of --clients addresses in 127/8 (for the session variants: clients not recorded yet,
// "new client"), then, after waiting out the config's refresh interval, passes 2..N connect again
// from each ("recorded client": like a browser reconnecting a few seconds later, so the hit also
// rewrites last_seen). Counters are read after every --chunk connections; a round's value is the
// median of its chunks' run_time_ns / run_cnt (a vCPU preempted mid-run spoils one chunk, not the
// round), and the table gives median, min and max over rounds, plus the plain mean of all runs,
// then each session variant's ratio to hash_only round by round.
// The last line printed is JSON: {"bpf_ns": {"empty": …, "hash_only": …, "sessions_0": …,
// "sessions_1m": …}, "bpf_ratio": {"sessions_1m_to_hash_only": …}} (medians over rounds of the
// recorded-client passes).
// --profile adds the steps in between (bpf/bench/profile.bpf.c), hits without the last_seen write,
// and the real program on a small sessions table: where the time goes. --candidate runs a changed
// build of bpf/sio_steer.bpf.c (its program `steer`, same maps) beside the real one, on a sessions
// map of its own holding --sessions clients too: variant "candidate_<file name>". A candidate of
// ABI 2 (sessions in an LRU_HASH, e.g. the program before the sessions table) gets an LRU of the
// table's capacity: a before/after in one run.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "bench_empty.skel.h"
#include "bench_hash_only.skel.h"
#include "bench_profile.skel.h"
#include "bpf/sio_steer.h"
#include "bench_env.h"
#include "bpf/sio_steer.skel.h"
#include "harness.h"
#include "kernel/controller.h"
#include "kernel/pinned_state.h"
#include "kernel/session_table.h"
#include "logic/options.h"
#include "logic/unique_fd.h"

namespace {

using sio_steer::unique_fd;
namespace fs = std::filesystem;

using sio_steer::bench::check_interrupted;

[[noreturn]] void fail(const std::string& what, int err = errno) { sio_steer::bench::fail(what, err); }

struct settings {
    int clients = 8000;  // distinct client addresses (127.x.y.z)
    int passes = 2;      // connections per client and variant per round (the first is "new client")
    int rounds = 5;
    std::uint32_t sessions = 1'000'000;      // background sessions recorded for "sessions_1m"
    std::uint32_t max_sessions = 2'097'152;  // --max-sessions of the attach (same for both session maps)
    int workers = 4;
    int chunk = 200;  // connections per sample (run_time_ns / run_cnt read after each chunk)
    bool profile = false;
    std::vector<std::string> only;        // run just these variants
    std::vector<std::string> candidates;  // BPF objects with a `steer` program to compare (--candidate)
};

void usage()
{
    std::fprintf(stderr,
                 "usage: bpf_cost [--clients N (8000)] [--passes N (2)] [--rounds N (5)] [--sessions N (1000000)]\n"
                 "                [--max-sessions N (2097152)] [--workers N (4)] [--chunk N (200)]\n"
                 "                [--profile] [--only VARIANT,...] [--candidate OBJECT.bpf.o]...\n");
}

settings parse(int argc, char** argv)
{
    settings s;
    for (int i = 1; i < argc; i++) {
        std::string a = argv[i];
        auto value = [&](long lo, long hi) {
            if (i + 1 >= argc) {
                usage();
                std::exit(2);
            }
            char* end = nullptr;
            long v = std::strtol(argv[++i], &end, 10);
            if (*end || v < lo || v > hi) {
                std::fprintf(stderr, "bpf_cost: %s must be in %ld..%ld\n", a.c_str(), lo, hi);
                std::exit(2);
            }
            return v;
        };
        if (a == "--clients")
            s.clients = static_cast<int>(value(1, 200'000));
        else if (a == "--passes")
            s.passes = static_cast<int>(value(2, 20));
        else if (a == "--rounds")
            s.rounds = static_cast<int>(value(1, 50));
        else if (a == "--sessions")
            s.sessions = static_cast<std::uint32_t>(value(0, 16'000'000));
        else if (a == "--max-sessions")
            s.max_sessions = static_cast<std::uint32_t>(value(1024, 32'000'000));
        else if (a == "--workers")
            s.workers = static_cast<int>(value(1, 16));
        else if (a == "--chunk")
            s.chunk = static_cast<int>(value(10, 100'000));
        else if (a == "--profile")
            s.profile = true;
        else if (a == "--candidate" && i + 1 < argc)
            s.candidates.push_back(argv[++i]);
        else if (a == "--only" && i + 1 < argc) {
            std::string list = argv[++i];
            for (std::size_t at = 0; at <= list.size();) {
                std::size_t comma = std::min(list.find(',', at), list.size());
                s.only.push_back(list.substr(at, comma - at));
                at = comma + 1;
            }
        } else {
            usage();
            std::exit(a == "--help" || a == "-h" ? 0 : 2);
        }
    }
    s.chunk = std::min(s.chunk, s.clients);
    if (s.max_sessions < s.sessions + static_cast<std::uint32_t>(s.clients) + 4096) {
        std::fprintf(stderr, "bpf_cost: --max-sessions must leave room for --sessions + --clients (+4096), "
                             "or the LRU evicts the benchmark's own clients\n");
        std::exit(2);
    }
    return s;
}

// ---- BPF objects and counters. ----

struct prog_counters {
    std::uint64_t ns = 0, runs = 0;
};

prog_counters read_counters(int prog_fd)
{
    bpf_prog_info info{};
    __u32 len = sizeof(info);
    if (bpf_obj_get_info_by_fd(prog_fd, &info, &len))
        fail("reading program info");
    return {info.run_time_ns, info.run_cnt};
}

unique_fd pinned(const std::string& path)
{
    int fd = bpf_obj_get(path.c_str());
    if (fd < 0)
        fail("opening " + path);
    return unique_fd(fd);
}

std::uint32_t map_max_entries(int fd)
{
    bpf_map_info info{};
    __u32 len = sizeof(info);
    if (bpf_obj_get_info_by_fd(fd, &info, &len))
        fail("reading map info");
    return info.max_entries;
}

void reuse(bpf_map* map, int fd)
{
    if (bpf_map__reuse_fd(map, fd))
        fail(std::string("reusing the pinned ") + bpf_map__name(map) + " map");
}

// The real program's pinned maps, by fd.
struct pinned_maps {
    int workers, slots, sessions, ring, config, stats;
};

// A benchmark variant declares every map of the real program (bpf/sio_steer_maps.bpf.h) and runs
// on the pinned ones: nothing is created twice, and both choose the same worker for a new client.
template <class Maps>
void reuse_pinned(const Maps& maps, const pinned_maps& fds)
{
    reuse(maps.workers, fds.workers);
    reuse(maps.slots, fds.slots);
    reuse(maps.sessions, fds.sessions);
    reuse(maps.ring, fds.ring);
    reuse(maps.config, fds.config);
    reuse(maps.stats, fds.stats);
}

template <class T, void (*Destroy)(T*)>
struct skel_deleter {
    void operator()(T* p) const { Destroy(p); }
};
using real_skel = std::unique_ptr<sio_steer_bpf, skel_deleter<sio_steer_bpf, sio_steer_bpf__destroy>>;
using empty_skel = std::unique_ptr<bench_empty_bpf, skel_deleter<bench_empty_bpf, bench_empty_bpf__destroy>>;
using hash_skel = std::unique_ptr<bench_hash_only_bpf, skel_deleter<bench_hash_only_bpf, bench_hash_only_bpf__destroy>>;
using profile_skel = std::unique_ptr<bench_profile_bpf, skel_deleter<bench_profile_bpf, bench_profile_bpf__destroy>>;
struct object_deleter {
    void operator()(bpf_object* o) const { bpf_object__close(o); }
};
using object_ptr = std::unique_ptr<bpf_object, object_deleter>;

config read_config(int fd)
{
    config c{};
    std::uint32_t zero = 0;
    if (bpf_map_lookup_elem(fd, &zero, &c))
        fail("reading the config map");
    return c;
}

void write_config(int fd, const config& c)
{
    std::uint32_t zero = 0;
    if (bpf_map_update_elem(fd, &zero, &c, BPF_ANY))
        fail("writing the config map");
}

std::uint64_t coarse_now_ns()  // the clock of bpf_ktime_get_coarse_ns()
{
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000ull + static_cast<std::uint64_t>(ts.tv_nsec);
}

client_key v4_key(std::uint32_t addr_be, const config& c)
{
    client_key k{};
    k.addr[10] = k.addr[11] = 0xff;
    std::memcpy(k.addr + 12, &addr_be, 4);
    sio_steer_apply_mask(&k, &c.v4_mask);
    return k;
}

// The sessions map of a variant: the set-associative table of this build's program, or the
// LRU_HASH of a --candidate built before it (ABI 2, e.g. the previous program, for a before/after).
class session_store {
public:
    session_store(int fd, std::uint32_t hash_seed) : fd_(fd)
    {
        bpf_map_info info{};
        __u32 len = sizeof(info);
        if (bpf_obj_get_info_by_fd(fd, &info, &len))
            fail("reading map info");
        if (info.type != BPF_MAP_TYPE_LRU_HASH) {
            table_.emplace(fd, hash_seed);
            sio_steer::touch_sessions_map(fd);  // as the controller does for the table it creates
        }
    }
    int fd() const { return fd_; }
    std::uint32_t capacity() const { return table_ ? table_->capacity() : map_max_entries(fd_); }

    // `count` sessions of clients 10.0.0.0 + i (none of them a benchmark client), fresh (last_seen
    // = now) and bound to live slots.
    void fill(std::uint32_t count, const config& c, const std::vector<std::uint32_t>& ring,
              const std::vector<slot>& slots) const
    {
        const std::uint64_t now = coarse_now_ns();
        auto background = [&](std::uint32_t i) {
            const std::uint32_t s = ring[i % ring.size()];
            return std::pair{v4_key(htonl(0x0a000000u + i), c),
                             session{s, s < slots.size() ? slots[s].generation : 0, now}};
        };
        if (table_) {
            for (std::uint32_t i = 0; i < count; i++) {
                if (i % 65536 == 0)
                    check_interrupted();
                const auto [key, rec] = background(i);
                table_->record(key, rec, c.session_ttl_ns, now);
            }
            return;
        }
        constexpr std::uint32_t chunk = 65536;  // an LRU: BPF_MAP_UPDATE_BATCH
        std::vector<client_key> keys(chunk);
        std::vector<session> values(chunk);
        LIBBPF_OPTS(bpf_map_batch_opts, opts, .elem_flags = BPF_ANY);
        for (std::uint32_t base = 0; base < count; base += chunk) {
            check_interrupted();
            const std::uint32_t n = std::min(chunk, count - base);
            for (std::uint32_t j = 0; j < n; j++)
                std::tie(keys[j], values[j]) = background(base + j);
            __u32 done = n;
            if (bpf_map_update_batch(fd_, keys.data(), values.data(), &done, &opts) || done != n)
                fail("filling the sessions map (" + std::to_string(base + done) + " of " + std::to_string(count) + ")");
        }
    }

    void forget(const client_key& key) const
    {
        if (table_)
            table_->forget(key);
        else
            bpf_map_delete_elem(fd_, &key);
    }

    std::size_t count() const
    {
        if (table_)
            return table_->count();
        client_key key{}, next{};
        const void* prev = nullptr;
        std::size_t n = 0;
        while (bpf_map_get_next_key(fd_, prev, &next) == 0 && n < 64'000'000) {
            n++;
            key = next;
            prev = &key;
        }
        return n;
    }

private:
    int fd_;
    std::optional<sio_steer::session_table> table_;
};

// ---- Clients. ----

// One connection from `source` to 127.0.0.1:port; the worker's answer ("<instance> <pid>") or "".
std::string connect_once(const sockaddr_in& source, const sockaddr_in& dest)
{
    unique_fd s(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!s)
        return "";
    int one = 1;
    setsockopt(s.get(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    timeval tv{2, 0};
    setsockopt(s.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(s.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (bind(s.get(), reinterpret_cast<const sockaddr*>(&source), sizeof(source)) ||
        connect(s.get(), reinterpret_cast<const sockaddr*>(&dest), sizeof(dest)))
        return "";
    char buf[64];
    ssize_t n = read(s.get(), buf, sizeof(buf));
    if (n <= 0)
        return "";
    std::string answer(buf, static_cast<std::size_t>(n));
    return answer.substr(0, answer.find('\n'));
}

// ---- Variants and results. ----

struct variant {
    std::string name;  // key in the results
    std::string what;  // one line for the table
    int prog_fd = -1;
    std::shared_ptr<const session_store> sessions{};  // session variants: their sessions map
    std::optional<std::uint64_t> refresh_ns{};        // overrides config.refresh_ns while it runs
    bool sticky = true;                               // every connection of a client reaches one worker
    std::optional<std::uint32_t> session_sets{};      // overrides config.session_sets (a table of its size)
    bool keyed() const { return sessions != nullptr; }
};

struct phase_result {
    std::vector<double> ns_per_run;  // one per round: the median of its chunks' ns per run
    std::uint64_t ns = 0, runs = 0, connections = 0, failures = 0;  // totals over all rounds
    double mean() const { return runs ? static_cast<double>(ns) / static_cast<double>(runs) : NAN; }
};

struct variant_result {
    phase_result first, again;
    std::uint64_t moved = 0;  // clients whose later connections reached another worker
};

double median(std::vector<double> v)
{
    if (v.empty())
        return NAN;
    std::sort(v.begin(), v.end());
    std::size_t n = v.size();
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// ---- The steps of main(). ----

// The real program as the real controller attached it, in the private bpffs: its pinned maps and
// what the variants need from them.
struct real_state {
    unique_fd program, workers_map, slots_map, sessions_map, ring_map, config_map, stats_map;
    std::optional<sio_steer::pinned_state> state;   // the stats summed over CPUs as `sio-steer status` sums them
    std::shared_ptr<const session_store> sessions;  // the pinned sessions map
    config base{};
    std::vector<std::uint32_t> ring_entries;
    std::vector<slot> slot_entries;
    pinned_maps maps() const
    {
        return {workers_map.get(), slots_map.get(),  sessions_map.get(),
                ring_map.get(),    config_map.get(), stats_map.get()};
    }
};

// `sio-steer attach --once` on the port, then the pinned state it left.
real_state attach_real(const settings& cfg, std::uint16_t port)
{
    const std::string dir = sio_steer::bench::attach_real(port, cfg.max_sessions);
    real_state r;
    r.program = pinned(dir + "/program");
    r.workers_map = pinned(dir + "/workers");
    r.slots_map = pinned(dir + "/slots");
    r.sessions_map = pinned(dir + "/sessions");
    r.ring_map = pinned(dir + "/ring");
    r.config_map = pinned(dir + "/config");
    r.stats_map = pinned(dir + "/stats");
    r.state = sio_steer::pinned_state::open(dir);
    if (!r.state)
        throw std::runtime_error("nothing pinned in " + dir + " after attach");
    r.base = read_config(r.config_map.get());
    r.sessions = std::make_shared<session_store>(r.sessions_map.get(), r.base.hash_seed);
    r.ring_entries.resize(SIO_STEER_RING_SIZE);
    for (std::uint32_t i = 0; i < r.ring_entries.size(); i++)
        if (bpf_map_lookup_elem(r.ring_map.get(), &i, &r.ring_entries[i]))
            fail("reading the ring map");
    r.slot_entries.resize(SIO_STEER_MAX_SLOTS);
    for (std::uint32_t i = 0; i < r.slot_entries.size(); i++)
        if (bpf_map_lookup_elem(r.slots_map.get(), &i, &r.slot_entries[i]))
            fail("reading the slots map");
    if (r.ring_entries[0] >= SIO_STEER_MAX_SLOTS)
        throw std::runtime_error("the ring is empty after attach");
    return r;
}

// Every program the benchmark runs besides the attached one; they live as long as this.
struct loaded_programs {
    empty_skel floors;
    hash_skel hashed;
    profile_skel steps;     // --profile
    real_skel big, little;  // the real program on a sessions map of its own (little: --profile)
    std::shared_ptr<const session_store> big_sessions, little_sessions;
    std::uint32_t small_max = 0;  // little's capacity (clients)
    std::vector<object_ptr> candidates;
    std::vector<variant> candidate_variants;
};

// The floors and the hash-only variant, on the pinned maps.
void load_floors(loaded_programs& l, const real_state& r)
{
    l.floors.reset(bench_empty_bpf__open());
    if (!l.floors)
        fail("opening bench_empty");
    l.floors->rodata->fixed_slot = r.ring_entries[0];
    reuse_pinned(l.floors->maps, r.maps());
    if (bench_empty_bpf__load(l.floors.get()))
        fail("loading bench_empty");
    l.hashed.reset(bench_hash_only_bpf__open());
    if (!l.hashed)
        fail("opening bench_hash_only");
    reuse_pinned(l.hashed->maps, r.maps());
    if (bench_hash_only_bpf__load(l.hashed.get()))
        fail("loading bench_hash_only");
}

// --profile: the steps in between (bpf/bench/profile.bpf.c), on the pinned maps.
void load_profile(loaded_programs& l, const real_state& r)
{
    l.steps.reset(bench_profile_bpf__open());
    if (!l.steps)
        fail("opening bench_profile");
    l.steps->rodata->fixed_slot = r.ring_entries[0];
    std::uint32_t live = 0;
    for (std::uint32_t i = 0; i < SIO_STEER_MAX_SLOTS; i++)
        if (r.slot_entries[i].generation &&
            std::find(r.ring_entries.begin(), r.ring_entries.end(), i) != r.ring_entries.end())
            l.steps->rodata->live_slots[live++] = i;
    l.steps->rodata->live_count = std::max(live, 1u);
    reuse_pinned(l.steps->maps, r.maps());
    if (bench_profile_bpf__load(l.steps.get()))
        fail("loading bench_profile");
    const int small = bpf_map__fd(l.steps->maps.ring_small);
    for (std::uint32_t i = 0; i < bpf_map__max_entries(l.steps->maps.ring_small); i++)
        if (bpf_map_update_elem(small, &i, &r.ring_entries[i], BPF_ANY))
            fail("filling the small ring");
}

// The real program once more, from the same object, on every pinned map but sessions: a sessions
// map of its own, of `sets` sets.
real_skel load_real(const real_state& r, std::uint32_t sets)
{
    real_skel copy(sio_steer_bpf__open());
    if (!copy)
        fail("opening sio_steer");
    reuse(copy->maps.workers, r.workers_map.get());
    reuse(copy->maps.slots, r.slots_map.get());
    reuse(copy->maps.ring, r.ring_map.get());
    reuse(copy->maps.config, r.config_map.get());
    reuse(copy->maps.stats, r.stats_map.get());
    bpf_map__set_max_entries(copy->maps.sessions, sets);
    if (sio_steer_bpf__load(copy.get()))
        fail("loading another copy of sio_steer");
    return copy;
}

// A sessions map filled with --sessions other clients; says how many it kept.
std::shared_ptr<const session_store> filled(int fd, const settings& cfg, const real_state& r, const std::string& what)
{
    auto store = std::make_shared<session_store>(fd, r.base.hash_seed);
    const auto start = std::chrono::steady_clock::now();
    store->fill(cfg.sessions, r.base, r.ring_entries, r.slot_entries);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const std::size_t kept = store->count();
    std::printf("bpf_cost: %s: %zu of %u other sessions recorded in %.2f s (room for %u)\n", what.c_str(), kept,
                cfg.sessions, s, store->capacity());
    if (kept + cfg.sessions / 10 < cfg.sessions)
        throw std::runtime_error(what + " kept only " + std::to_string(kept) + " of " + std::to_string(cfg.sessions) +
                                 " sessions: raise --max-sessions");
    return store;
}

// The copies of the real program: `big`, a sessions map of the same size holding --sessions
// recorded clients; with --profile `little` (a map just big enough for the benchmark's clients).
void load_real_copies(loaded_programs& l, const settings& cfg, const real_state& r)
{
    l.big = load_real(r, r.base.session_sets);
    l.big_sessions = filled(bpf_map__fd(l.big->maps.sessions), cfg, r, "sessions_1m");
    l.small_max = std::max<std::uint32_t>(16384, std::bit_ceil(4u * static_cast<std::uint32_t>(cfg.clients)));
    if (cfg.profile) {
        l.little = load_real(r, sio_steer::session_sets_for(l.small_max));
        l.little_sessions = std::make_shared<session_store>(bpf_map__fd(l.little->maps.sessions), r.base.hash_seed);
    }
}

// --candidate: a changed steering program, on the pinned maps but for a sessions map of its own:
// a table of the pinned one's size, or, for a program of ABI 2 (the LRU_HASH), an LRU of its capacity.
void load_candidate(loaded_programs& l, const settings& cfg, const real_state& r, const std::string& path)
{
    object_ptr obj(bpf_object__open_file(path.c_str(), nullptr));
    if (!obj)
        fail("opening " + path);
    const std::pair<const char*, int> shared[] = {{"workers", r.workers_map.get()},
                                                  {"slots", r.slots_map.get()},
                                                  {"ring", r.ring_map.get()},
                                                  {"config", r.config_map.get()},
                                                  {"stats", r.stats_map.get()}};
    for (const auto& [name, fd] : shared) {
        bpf_map* m = bpf_object__find_map_by_name(obj.get(), name);
        if (!m)
            throw std::runtime_error(path + " has no map " + name);
        reuse(m, fd);
    }
    bpf_map* sessions = bpf_object__find_map_by_name(obj.get(), "sessions");
    bpf_program* steer = bpf_object__find_program_by_name(obj.get(), "steer");
    if (!sessions || !steer)
        throw std::runtime_error(path + " has no sessions map or no steer program");
    const bool lru = bpf_map__type(sessions) == BPF_MAP_TYPE_LRU_HASH;
    bpf_map__set_max_entries(sessions, lru ? r.base.session_sets * SIO_STEER_SESSION_WAYS : r.base.session_sets);
    if (bpf_object__load(obj.get()))
        fail("loading " + path);
    std::string name = fs::path(path).filename().string();
    name = "candidate_" + name.substr(0, name.find('.'));
    l.candidate_variants.push_back(
        {.name = name,
         .what = path + (lru ? " (LRU_HASH), " : ", ") + std::to_string(cfg.sessions) + " other sessions recorded",
         .prog_fd = bpf_program__fd(steer),
         .sessions = filled(bpf_map__fd(sessions), cfg, r, name)});
    l.candidates.push_back(std::move(obj));
}

// The variants, in the table's order, less those --only leaves out.
std::vector<variant> variants_of(const settings& cfg, const real_state& r, const loaded_programs& l)
{
    const std::uint64_t never = ~0ull;
    const std::string table = std::to_string(r.base.session_sets) + " sets";
    std::vector<variant> variants = {
        {.name = "empty",
         .what = "returns SK_PASS, selects nothing (dispatch + accounting)",
         .prog_fd = bpf_program__fd(l.floors->progs.empty),
         .sticky = false},
        {.name = "select_fixed",
         .what = "selects one fixed slot (+ bpf_sk_select_reuseport)",
         .prog_fd = bpf_program__fd(l.floors->progs.select_fixed)},
        {.name = "hash_only",
         .what = "reads the client, masks, hashes, ring, selects",
         .prog_fd = bpf_program__fd(l.hashed->progs.hash_only)},
        {.name = "sessions_0",
         .what = "real program, sessions table (" + table + ") empty but for the benchmark's clients",
         .prog_fd = r.program.get(),
         .sessions = r.sessions},
        {.name = "sessions_1m",
         .what = "real program, " + std::to_string(cfg.sessions) + " other sessions recorded (" + table + ")",
         .prog_fd = bpf_program__fd(l.big->progs.steer),
         .sessions = l.big_sessions},
    };
    if (cfg.profile) {
        std::vector<variant> more = {
            {.name = "select_spread",
             .what = "selects a random live slot (bpf_get_prandom_u32)",
             .prog_fd = bpf_program__fd(l.steps->progs.select_spread),
             .sticky = false},
            {.name = "read_only",
             .what = "select_fixed + read_client()",
             .prog_fd = bpf_program__fd(l.steps->progs.read_only)},
            {.name = "hash_fixed",
             .what = "read_only + config, mask, hash (no ring)",
             .prog_fd = bpf_program__fd(l.steps->progs.hash_fixed)},
            {.name = "small_ring",
             .what = "hash_only with a 1021-entry ring",
             .prog_fd = bpf_program__fd(l.steps->progs.small_ring)},
            {.name = "sessions_0_ro",
             .what = "sessions_0, hit without the last_seen write",
             .prog_fd = r.program.get(),
             .sessions = r.sessions,
             .refresh_ns = never},
            {.name = "sessions_1m_ro",
             .what = "sessions_1m, hit without the last_seen write",
             .prog_fd = bpf_program__fd(l.big->progs.steer),
             .sessions = l.big_sessions,
             .refresh_ns = never},
            {.name = "sessions_small",
             .what = "sessions_0 on a table of " + std::to_string(l.small_max) + " clients",
             .prog_fd = bpf_program__fd(l.little->progs.steer),
             .sessions = l.little_sessions,
             .session_sets = sio_steer::session_sets_for(l.small_max)},
        };
        variants.insert(variants.end(), more.begin(), more.end());
    }
    variants.insert(variants.end(), l.candidate_variants.begin(), l.candidate_variants.end());
    if (!cfg.only.empty()) {
        std::erase_if(variants, [&](const variant& v) {
            return std::find(cfg.only.begin(), cfg.only.end(), v.name) == cfg.only.end();
        });
        if (variants.empty())
            throw std::runtime_error("--only names no variant");
    }
    return variants;
}

// Every variant has clients of its own, so that variants sharing a sessions map never find each
// other's clients recorded: 127.a.b.c with a >= 1 (127.0.0.1 is the server's address).
struct client_population {
    std::vector<sockaddr_in> sources;
    std::vector<client_key> keys;
    sockaddr_in dest{};
};

client_population make_clients(std::size_t per, std::size_t nv, const config& base, std::uint16_t port)
{
    client_population p;
    p.sources.resize(per * nv);
    p.keys.resize(per * nv);
    for (std::size_t i = 0; i < p.sources.size(); i++) {
        const auto a = static_cast<std::uint32_t>(1 + i / (254 * 256)), b = static_cast<std::uint32_t>(i / 254 % 256),
                   c = static_cast<std::uint32_t>(1 + i % 254);
        p.sources[i].sin_family = AF_INET;
        p.sources[i].sin_addr.s_addr = htonl(0x7f000000u | a << 16 | b << 8 | c);
        p.keys[i] = v4_key(p.sources[i].sin_addr.s_addr, base);
    }
    p.dest.sin_family = AF_INET;
    p.dest.sin_port = htons(port);
    p.dest.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return p;
}

// The rounds. The variants take turns chunk by chunk, so that all of them meet the same background
// load (other processes, other tests on the machine); the order rotates from chunk to chunk.
class measurement {
public:
    measurement(const settings& cfg, const std::vector<variant>& variants, const client_population& clients,
                const real_state& real, int member)
        : cfg_(cfg),
          variants_(variants),
          clients_(clients),
          real_(real),
          member_(member),
          per_(static_cast<std::size_t>(cfg.clients)),
          nv_(variants.size()),
          current_(real.base)
    {}

    std::map<std::string, variant_result> run()
    {
        const auto started = std::chrono::steady_clock::now();
        for (int round = 0; round < cfg_.rounds; round++) {
            forget_clients();
            first_answer_.assign(per_ * nv_, std::string());
            std::vector<std::vector<double>> first_chunks(nv_), again_chunks(nv_);
            for (int pass = 0; pass < cfg_.passes; pass++)
                run_pass(round, pass, pass == 0 ? first_chunks : again_chunks);
            for (std::size_t vi = 0; vi < nv_; vi++) {
                variant_result& r = results_[variants_[vi].name];
                if (!first_chunks[vi].empty())
                    r.first.ns_per_run.push_back(median(first_chunks[vi]));
                if (!again_chunks[vi].empty())
                    r.again.ns_per_run.push_back(median(again_chunks[vi]));
            }
            std::fprintf(stderr, "bpf_cost: round %d of %d done (%.0f s)\n", round + 1, cfg_.rounds,
                         std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
        }
        write_config(real_.config_map.get(), real_.base);
        return std::move(results_);
    }

private:
    // Each round's clients are new again.
    void forget_clients() const
    {
        for (std::size_t vi = 0; vi < nv_; vi++) {
            const variant& v = variants_[vi];
            for (std::size_t i = vi * per_; i < (vi + 1) * per_ && v.keyed(); i++)
                v.sessions->forget(clients_.keys[i]);
        }
    }

    void run_pass(int round, int pass, std::vector<std::vector<double>>& chunks)
    {
        if (pass > 0)  // every recorded client comes back after the refresh interval
            std::this_thread::sleep_for(std::chrono::nanoseconds(real_.base.refresh_ns) +
                                        std::chrono::milliseconds(50));
        std::vector<std::uint64_t> taken(nv_), expected(nv_);
        for (std::size_t from = 0, turn = 0; from < per_; from += static_cast<std::size_t>(cfg_.chunk), turn++) {
            check_interrupted();
            const std::size_t to = std::min(per_, from + static_cast<std::size_t>(cfg_.chunk));
            for (std::size_t k = 0; k < nv_; k++) {
                const std::size_t vi = (k + turn + static_cast<std::size_t>(round)) % nv_;
                run_chunk(vi, pass, from, to, chunks[vi], taken[vi], expected[vi]);
            }
        }
        for (std::size_t vi = 0; vi < nv_; vi++)
            if (variants_[vi].keyed() && taken[vi] < expected[vi])
                std::fprintf(stderr, "bpf_cost: warning: %s pass %d: %llu %s for %llu connections\n",
                             variants_[vi].name.c_str(), pass + 1, static_cast<unsigned long long>(taken[vi]),
                             pass == 0 ? "new sessions" : "session hits",
                             static_cast<unsigned long long>(expected[vi]));
    }

    // The group runs `v`, with its refresh interval and table size.
    void use(const variant& v)
    {
        if (setsockopt(member_, SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF, &v.prog_fd, sizeof(v.prog_fd)))
            fail("attaching " + v.name);
        config c = real_.base;
        c.refresh_ns = v.refresh_ns.value_or(real_.base.refresh_ns);
        c.session_sets = v.session_sets.value_or(real_.base.session_sets);
        if (std::memcmp(&c, &current_, sizeof(c)) != 0) {
            write_config(real_.config_map.get(), c);
            current_ = c;
        }
    }

    // Clients [from, to) of variant `vi` connect once each; the program's counters before and after.
    void run_chunk(std::size_t vi, int pass, std::size_t from, std::size_t to, std::vector<double>& chunks,
                   std::uint64_t& taken, std::uint64_t& expected)
    {
        const variant& v = variants_[vi];
        variant_result& r = results_[v.name];
        phase_result& ph = pass == 0 ? r.first : r.again;
        use(v);
        const stats s0 = v.keyed() ? real_.state->read_stats() : stats{};
        const prog_counters c0 = read_counters(v.prog_fd);
        std::uint64_t failures = 0;
        for (std::size_t i = vi * per_ + from; i < vi * per_ + to; i++) {
            std::string answer = connect_once(clients_.sources[i], clients_.dest);
            failures += answer.empty();
            if (pass == 0)
                first_answer_[i] = answer;
            else if (!answer.empty() && answer != first_answer_[i])
                r.moved++;
        }
        const prog_counters c1 = read_counters(v.prog_fd);
        const std::uint64_t runs = c1.runs - c0.runs, ns = c1.ns - c0.ns;
        if (runs * 2 >= static_cast<std::uint64_t>(cfg_.chunk))  // not a short tail
            chunks.push_back(static_cast<double>(ns) / static_cast<double>(runs));
        ph.ns += ns;
        ph.runs += runs;
        ph.connections += to - from;
        ph.failures += failures;
        if (v.keyed()) {  // the path the counters say it took is the one we mean
            const stats s1 = real_.state->read_stats();
            taken += pass == 0 ? s1.new_sessions - s0.new_sessions : s1.session_hits - s0.session_hits;
            expected += to - from - failures;
            if (s1.errors != s0.errors || s1.expired != s0.expired)
                std::fprintf(stderr, "bpf_cost: warning: %s: errors or expired sessions\n", v.name.c_str());
        }
    }

    const settings& cfg_;
    const std::vector<variant>& variants_;
    const client_population& clients_;
    const real_state& real_;
    const int member_;
    const std::size_t per_, nv_;
    config current_;                         // what the config map holds now
    std::vector<std::string> first_answer_;  // this round's, per client
    std::map<std::string, variant_result> results_;
};

// One row of the table, with warnings for runs that do not match the connections; false if
// connections failed.
bool print_row(const variant& v, const char* label, const phase_result& ph, int width)
{
    if (ph.ns_per_run.empty())
        return true;
    auto [lo, hi] = std::minmax_element(ph.ns_per_run.begin(), ph.ns_per_run.end());
    std::printf("%-*s %-16s %7.1f %7.1f %7.1f %7.1f %8llu  %s\n", width, v.name.c_str(), label, median(ph.ns_per_run),
                *lo, *hi, ph.mean(), static_cast<unsigned long long>(ph.runs), v.what.c_str());
    // A retransmitted SYN runs the program again: a few extra runs are normal on a busy machine.
    if (ph.runs < ph.connections - ph.failures || ph.runs > ph.connections + ph.connections / 100) {
        std::fprintf(stderr, "bpf_cost: warning: %s: %llu runs for %llu connections\n", v.name.c_str(),
                     static_cast<unsigned long long>(ph.runs), static_cast<unsigned long long>(ph.connections));
    }
    if (ph.failures) {
        std::fprintf(stderr, "bpf_cost: warning: %s: %llu connections failed\n", v.name.c_str(),
                     static_cast<unsigned long long>(ph.failures));
        return false;
    }
    return true;
}

// The table, then the JSON line; false if a connection failed or a client moved.
bool report(const settings& cfg, const std::vector<variant>& variants,
            const std::map<std::string, variant_result>& results, const config& base, std::size_t recorded)
{
    std::printf("\nns per program run (kernel.bpf_stats_enabled=1). A round's value is the median over its chunks of\n"
                "%d connections of run_time_ns/run_cnt; median, min and max of %d rounds; mean: all runs together\n",
                cfg.chunk, cfg.rounds);
    int width = 16;
    for (const variant& v : variants)
        width = std::max(width, static_cast<int>(v.name.size()));
    std::printf("%-*s %-16s %7s %7s %7s %7s %8s  %s\n", width, "variant", "connection", "median", "min", "max", "mean",
                "runs", "program");
    bool healthy = true;
    for (const variant& v : variants) {
        const variant_result& r = results.at(v.name);
        if (v.keyed() && !v.refresh_ns)
            healthy = print_row(v, "new client", r.first, width) && healthy;
        healthy = print_row(v, v.keyed() ? "recorded client" : "any", r.again, width) && healthy;
        if (v.sticky && r.moved) {
            std::fprintf(stderr, "bpf_cost: warning: %s: %llu reconnections reached another worker\n", v.name.c_str(),
                         static_cast<unsigned long long>(r.moved));
            healthy = false;
        }
    }
    std::printf("(\"recorded client\": reconnects after the %.1f s refresh interval, so the hit rewrites last_seen;%s\n"
                " the sessions_1m map held %zu sessions at the end)\n",
                static_cast<double>(base.refresh_ns) / 1e9,
                cfg.profile ? "\n *_ro: the same hit with refresh_ns = max, as for a reconnect within the interval;"
                            : "",
                recorded);

    // Per round, each session variant against hash_only of the same round (they take turns chunk
    // by chunk, so they met the same load): the median ratio of the rounds, and their spread.
    auto ratios = [&](const std::string& name, bool recorded) {
        std::vector<double> out;
        auto v = results.find(name), h = results.find("hash_only");
        if (v == results.end() || h == results.end())
            return out;
        const std::vector<double>& num = (recorded ? v->second.again : v->second.first).ns_per_run;
        const std::vector<double>& den = h->second.again.ns_per_run;
        for (std::size_t i = 0; i < std::min(num.size(), den.size()); i++)
            out.push_back(num[i] / den[i]);
        return out;
    };
    if (results.count("hash_only")) {
        std::printf("\nagainst hash_only, round by round: median ratio (min-max of %d rounds)\n", cfg.rounds);
        for (const variant& v : variants)
            for (bool recorded : {true, false}) {
                const std::vector<double> x = ratios(v.name, recorded);
                if (!v.keyed() || x.empty() || (!recorded && v.refresh_ns))
                    continue;
                auto [lo, hi] = std::minmax_element(x.begin(), x.end());
                std::printf("%-*s %-16s %6.2fx  (%.2f-%.2f)\n", width, v.name.c_str(),
                            recorded ? "recorded client" : "new client", median(x), *lo, *hi);
            }
    }

    // The same rounding as the table; a variant left out by --only is null.
    auto json = [&](const char* name) {
        auto it = results.find(name);
        if (it == results.end() || it->second.again.ns_per_run.empty())
            return std::string("null");
        char buf[32];
        std::snprintf(buf, sizeof(buf), "%.1f", median(it->second.again.ns_per_run));
        return std::string(buf);
    };
    const std::vector<double> ratio = ratios("sessions_1m", true);
    char ratio_text[32] = "null";
    if (!ratio.empty())
        std::snprintf(ratio_text, sizeof(ratio_text), "%.2f", median(ratio));
    std::printf("{\"bpf_ns\": {\"empty\": %s, \"hash_only\": %s, \"sessions_0\": %s, \"sessions_1m\": %s}, "
                "\"bpf_ratio\": {\"sessions_1m_to_hash_only\": %s}}\n",
                json("empty").c_str(), json("hash_only").c_str(), json("sessions_0").c_str(),
                json("sessions_1m").c_str(), ratio_text);
    return healthy;
}

// Runs the benchmark in the namespaces main() entered: 0, or 3 if a connection failed or moved.
int run(const settings& cfg)
{
    const std::uint16_t port = sio_steer::test::free_port();
    std::printf("bpf_cost: %s; %d workers, %d clients x %d passes, %d rounds\n",
                sio_steer::bench::machine_line().c_str(), cfg.workers, cfg.clients, cfg.passes, cfg.rounds);
    sio_steer::test::workers workers;
    for (int i = 0; i < cfg.workers; i++)
        workers.push_back(sio_steer::test::worker_process::instance(port, i));

    // The real controller attaches the real program, with maps pinned in the private bpffs.
    const real_state real = attach_real(cfg, port);
    // A socket of the group, to swap the program it runs (SO_ATTACH_REUSEPORT_EBPF).
    sio_steer::worker_sockets group = sio_steer::take_listeners(port);
    const int member = group.fds.front().get();

    loaded_programs programs;
    load_floors(programs, real);
    if (cfg.profile)
        load_profile(programs, real);
    load_real_copies(programs, cfg, real);
    for (const std::string& path : cfg.candidates)
        load_candidate(programs, cfg, real, path);
    const std::vector<variant> variants = variants_of(cfg, real, programs);
    const client_population clients =
        make_clients(static_cast<std::size_t>(cfg.clients), variants.size(), real.base, port);

    // Statistics on for as long as this fd is open (BPF_ENABLE_STATS: the kernel counts the
    // holders, so it composes with kernel.bpf_stats_enabled and needs no restore, even on a crash).
    int stats_fd = bpf_enable_stats(BPF_STATS_RUN_TIME);
    if (stats_fd < 0)
        fail("BPF_ENABLE_STATS", -stats_fd);
    unique_fd stats_on(stats_fd);
    const std::map<std::string, variant_result> results = measurement(cfg, variants, clients, real, member).run();
    stats_on.reset();
    int none = 0;
    setsockopt(member, SOL_SOCKET, SO_DETACH_REUSEPORT_BPF, &none, sizeof(none));
    const std::size_t recorded = programs.big_sessions->count();
    return report(cfg, variants, results, real.base, recorded) ? 0 : 3;
}

}  // namespace

int main(int argc, char** argv)
{
    setvbuf(stdout, nullptr, _IOLBF, 0);
    const settings cfg = parse(argc, argv);
    return sio_steer::bench::run_as_root("bpf_cost", "BPF, network and mount namespaces", [&] { return run(cfg); });
}
