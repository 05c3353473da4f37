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
// round), and the table gives median, min and max over rounds, plus the plain mean of all runs.
// The last line printed is JSON: {"bpf_ns": {"empty": …, "hash_only": …, "sessions_0": …,
// "sessions_1m": …}} (medians over rounds of the recorded-client passes).
// --profile adds the steps in between (bpf/bench/profile.bpf.c), hits without the last_seen write,
// and the real program on a small sessions map: where the time goes. --candidate runs a changed
// build of bpf/sio_steer.bpf.c (its program `steer`, same maps) beside the real one, on a sessions
// map of its own holding --sessions clients too: variant "candidate_<file name>".
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
#include "bpf/sio_steer.skel.h"
#include "harness.h"
#include "kernel/controller.h"
#include "kernel/pinned_state.h"
#include "logic/unique_fd.h"

namespace {

using sio_steer::unique_fd;
namespace fs = std::filesystem;

volatile sig_atomic_t interrupted = 0;
void on_signal(int) { interrupted = 1; }

void check_interrupted()
{
    if (interrupted)
        throw std::runtime_error("interrupted");
}

[[noreturn]] void fail(const std::string& what, int err = errno)
{
    throw std::runtime_error(what + (err ? std::string(": ") + std::strerror(err) : std::string()));
}

struct settings {
    int clients = 8000;  // distinct client addresses (127.x.y.z)
    int passes = 2;      // connections per client and variant per round (the first is "new client")
    int rounds = 5;
    std::uint32_t sessions = 1'000'000;      // background sessions recorded for "sessions_1m"
    std::uint32_t max_sessions = 1'100'000;  // --max-sessions of the attach (same for both session maps)
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
                 "                [--max-sessions N (1100000)] [--workers N (4)] [--chunk N (200)]\n"
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

// ---- Environment: private mounts (bpffs), machine description. ----

// A private mount namespace with a fresh bpffs on /sys/fs/bpf and a fresh tmpfs on /run (for the
// controller's lock files): pins and locks live and die with the processes of this benchmark, and
// never meet the real /sys/fs/bpf/sio-steer or /run/sio-steer.
void enter_private_mounts()
{
    if (unshare(CLONE_NEWNS))
        fail("unshare(CLONE_NEWNS)");
    if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr))
        fail("making mounts private");
    if (mount("bpf", "/sys/fs/bpf", "bpf", 0, "mode=0700"))
        fail("mounting a private bpffs on /sys/fs/bpf");
    if (mount("tmpfs", "/run", "tmpfs", 0, "mode=0755,size=16m"))
        fail("mounting a private tmpfs on /run");
}

std::string cpu_model()
{
    std::ifstream in("/proc/cpuinfo");
    for (std::string line; std::getline(in, line);)
        if (line.rfind("model name", 0) == 0)
            return line.substr(line.find(':') + 2);
    return "unknown";
}

std::string kernel_release()
{
    utsname u{};
    uname(&u);
    return u.release;
}

// ---- Workers: test_worker processes (NODE_APP_INSTANCE=i), killed if the benchmark dies. ----

class worker {
public:
    worker(std::uint16_t port, int instance)
    {
        int p[2];
        if (pipe2(p, O_CLOEXEC))
            fail("pipe2");
        unique_fd read_end(p[0]), write_end(p[1]);
        const std::string port_text = std::to_string(port), env = "NODE_APP_INSTANCE=" + std::to_string(instance);
        const char* argv[] = {TEST_WORKER_BIN, "--port", port_text.c_str(), nullptr};
        const char* envp[] = {env.c_str(), nullptr};
        pid_t parent = getpid();
        pid_ = fork();
        if (pid_ < 0)
            fail("fork");
        if (pid_ == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != parent)
                _exit(1);
            dup2(write_end.get(), STDOUT_FILENO);
            execve(argv[0], const_cast<char* const*>(argv), const_cast<char* const*>(envp));
            _exit(127);
        }
        write_end.reset();
        std::string out;
        while (out.find('\n') == std::string::npos) {
            pollfd pfd{read_end.get(), POLLIN, 0};
            char buf[64];
            ssize_t n = poll(&pfd, 1, 5000) > 0 ? read(read_end.get(), buf, sizeof(buf)) : -1;
            if (n <= 0) {
                stop();
                throw std::runtime_error("test_worker did not start listening");
            }
            out.append(buf, static_cast<std::size_t>(n));
        }
    }
    ~worker() { stop(); }
    worker(const worker&) = delete;
    worker& operator=(const worker&) = delete;

private:
    void stop()
    {
        if (pid_ <= 0)
            return;
        kill(pid_, SIGKILL);
        while (waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {}
        pid_ = -1;
    }
    pid_t pid_ = -1;
};

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

// `count` sessions of clients 10.0.0.0 + i (none of them a benchmark client), fresh (last_seen =
// now) and bound to live slots, written with BPF_MAP_UPDATE_BATCH from each CPU in turn (a
// BPF_F_NO_COMMON_LRU map takes an element from the writing CPU's own list).
void fill_sessions(int sessions_fd, std::uint32_t count, const config& c, const std::vector<std::uint32_t>& ring,
                   const std::vector<slot>& slots)
{
    constexpr std::uint32_t chunk = 65536;
    std::vector<client_key> keys(chunk);
    std::vector<session> values(chunk);
    const std::uint64_t now = coarse_now_ns();
    LIBBPF_OPTS(bpf_map_batch_opts, opts, .elem_flags = BPF_ANY);
    cpu_set_t original;
    sched_getaffinity(0, sizeof(original), &original);
    std::vector<int> cpus;
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &original))
            cpus.push_back(c);
    for (std::uint32_t base = 0; base < count; base += chunk) {
        check_interrupted();
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(cpus[(base / chunk) % cpus.size()], &one);
        sched_setaffinity(0, sizeof(one), &one);
        std::uint32_t n = std::min(chunk, count - base);
        for (std::uint32_t j = 0; j < n; j++) {
            std::uint32_t i = base + j;
            keys[j] = v4_key(htonl(0x0a000000u + i), c);
            std::uint32_t s = ring[i % ring.size()];
            values[j] = session{s, s < slots.size() ? slots[s].generation : 0, now};
        }
        __u32 done = n;
        if (bpf_map_update_batch(sessions_fd, keys.data(), values.data(), &done, &opts) || done != n) {
            sched_setaffinity(0, sizeof(original), &original);
            fail("filling the sessions map (" + std::to_string(base + done) + " of " + std::to_string(count) + ")");
        }
    }
    sched_setaffinity(0, sizeof(original), &original);
}

std::size_t count_entries(int map_fd)
{
    client_key key{}, next{};
    const void* prev = nullptr;
    std::size_t n = 0;
    while (bpf_map_get_next_key(map_fd, prev, &next) == 0 && n < 64'000'000) {
        n++;
        key = next;
        prev = &key;
    }
    return n;
}

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
    int sessions_fd = -1;                     // session variants: their sessions map
    std::optional<std::uint64_t> refresh_ns;  // overrides config.refresh_ns while it runs
    bool sticky = true;                       // every connection of a client reaches one worker
    int direct_fd = -1;                       // direct_mapped: its session array
    bool keyed() const { return sessions_fd >= 0 || direct_fd >= 0; }
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
    std::optional<sio_steer::pinned_state> state;  // the stats summed over CPUs as `sio-steer status` sums them
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
    const std::string lock_dir = "/run/sio-steer-bench";
    const std::string pin_root = "/sys/fs/bpf/bench", dir = pin_root + "/" + std::to_string(port);
    auto attach =
        sio_steer::test::sio_steer({"attach", "--once", "--port", std::to_string(port), "--pin-root", pin_root,
                                    "--lock-dir", lock_dir, "--max-sessions", std::to_string(cfg.max_sessions)});
    if (attach.code != 0)
        throw std::runtime_error("sio-steer attach failed (" + std::to_string(attach.code) + "): " + attach.err);
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
    profile_skel steps;             // --profile
    real_skel big, little, percpu;  // the real program on a sessions map of its own (little, percpu: --profile)
    std::uint32_t small_max = 0;    // little's max_entries
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
// map of its own.
real_skel load_real(const real_state& r, std::uint32_t sessions_max, std::uint32_t extra_flags = 0)
{
    real_skel copy(sio_steer_bpf__open());
    if (!copy)
        fail("opening sio_steer");
    reuse(copy->maps.workers, r.workers_map.get());
    reuse(copy->maps.slots, r.slots_map.get());
    reuse(copy->maps.ring, r.ring_map.get());
    reuse(copy->maps.config, r.config_map.get());
    reuse(copy->maps.stats, r.stats_map.get());
    bpf_map__set_max_entries(copy->maps.sessions, sessions_max);
    if (extra_flags)
        bpf_map__set_map_flags(copy->maps.sessions, bpf_map__map_flags(copy->maps.sessions) | extra_flags);
    if (sio_steer_bpf__load(copy.get()))
        fail("loading another copy of sio_steer");
    return copy;
}

// The copies of the real program: `big`, a sessions map of the same size holding --sessions
// recorded clients; with --profile `little` (a map just big enough for the benchmark's clients)
// and `percpu` (per-CPU LRU lists, BPF_F_NO_COMMON_LRU, --sessions clients too).
void load_real_copies(loaded_programs& l, const settings& cfg, const real_state& r)
{
    const std::uint32_t max_sessions = map_max_entries(r.sessions_map.get());
    l.big = load_real(r, max_sessions);
    l.small_max = std::max<std::uint32_t>(16384, std::bit_ceil(2u * static_cast<std::uint32_t>(cfg.clients)));
    if (cfg.profile) {
        l.little = load_real(r, l.small_max);
        l.percpu = load_real(r, max_sessions, BPF_F_NO_COMMON_LRU);
    }
    const int big_sessions = bpf_map__fd(l.big->maps.sessions);
    auto fill_start = std::chrono::steady_clock::now();
    fill_sessions(big_sessions, cfg.sessions, r.base, r.ring_entries, r.slot_entries);
    double fill_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - fill_start).count();
    std::size_t recorded = count_entries(big_sessions);
    std::printf("bpf_cost: %zu sessions recorded in the second map in %.2f s (max_entries %u)\n", recorded, fill_s,
                max_sessions);
    if (recorded != cfg.sessions)
        throw std::runtime_error("the sessions map holds " + std::to_string(recorded) + " entries, not " +
                                 std::to_string(cfg.sessions));
    if (l.percpu) {
        fill_sessions(bpf_map__fd(l.percpu->maps.sessions), cfg.sessions, r.base, r.ring_entries, r.slot_entries);
        std::size_t n = count_entries(bpf_map__fd(l.percpu->maps.sessions));
        if (n + cfg.sessions / 100 < cfg.sessions)  // a per-CPU LRU may evict early: say so
            std::fprintf(stderr, "bpf_cost: warning: the per-CPU LRU map kept %zu of %u sessions\n", n, cfg.sessions);
    }
}

// --candidate: a changed steering program, on the pinned maps but for a sessions map of its own.
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
    bpf_map__set_max_entries(sessions, map_max_entries(r.sessions_map.get()));
    if (bpf_object__load(obj.get()))
        fail("loading " + path);
    fill_sessions(bpf_map__fd(sessions), cfg.sessions, r.base, r.ring_entries, r.slot_entries);
    std::string name = fs::path(path).filename().string();
    name = "candidate_" + name.substr(0, name.find('.'));
    l.candidate_variants.push_back({name, path + ", " + std::to_string(cfg.sessions) + " other sessions recorded",
                                    bpf_program__fd(steer), bpf_map__fd(sessions), std::nullopt, true});
    l.candidates.push_back(std::move(obj));
}

// The variants, in the table's order, less those --only leaves out.
std::vector<variant> variants_of(const settings& cfg, const real_state& r, const loaded_programs& l)
{
    const std::uint64_t never = ~0ull;
    const int big_sessions = bpf_map__fd(l.big->maps.sessions);
    std::vector<variant> variants = {
        {"empty", "returns SK_PASS, selects nothing (dispatch + accounting)", bpf_program__fd(l.floors->progs.empty),
         -1, std::nullopt, false},
        {"select_fixed", "selects one fixed slot (+ bpf_sk_select_reuseport)",
         bpf_program__fd(l.floors->progs.select_fixed), -1, std::nullopt, true},
        {"hash_only", "reads the client, masks, hashes, ring, selects", bpf_program__fd(l.hashed->progs.hash_only), -1,
         std::nullopt, true},
        {"sessions_0", "real program, sessions map empty but for the benchmark's clients", r.program.get(),
         r.sessions_map.get(), std::nullopt, true},
        {"sessions_1m", "real program, " + std::to_string(cfg.sessions) + " other sessions recorded",
         bpf_program__fd(l.big->progs.steer), big_sessions, std::nullopt, true},
    };
    if (cfg.profile) {
        std::vector<variant> more = {
            {"select_spread", "selects a random live slot (bpf_get_prandom_u32)",
             bpf_program__fd(l.steps->progs.select_spread), -1, std::nullopt, false},
            {"read_only", "select_fixed + read_client()", bpf_program__fd(l.steps->progs.read_only), -1, std::nullopt,
             true},
            {"hash_fixed", "read_only + config, mask, hash (no ring)", bpf_program__fd(l.steps->progs.hash_fixed), -1,
             std::nullopt, true},
            {"small_ring", "hash_only with a 1021-entry ring", bpf_program__fd(l.steps->progs.small_ring), -1,
             std::nullopt, true},
            {"sessions_0_ro", "sessions_0, hit without the last_seen write", r.program.get(), r.sessions_map.get(),
             never, true},
            {"sessions_1m_ro", "sessions_1m, hit without the last_seen write", bpf_program__fd(l.big->progs.steer),
             big_sessions, never, true},
            {"sessions_1m_pcpu", "sessions_1m with BPF_F_NO_COMMON_LRU (per-CPU LRU lists)",
             bpf_program__fd(l.percpu->progs.steer), bpf_map__fd(l.percpu->maps.sessions), std::nullopt, true},
            {"direct_mapped", "prototype: sessions in a direct-mapped 2^20-entry ARRAY (profile.bpf.c)",
             bpf_program__fd(l.steps->progs.direct_mapped), -1, std::nullopt, true,
             bpf_map__fd(l.steps->maps.direct_sessions)},
            {"sessions_small", "sessions_0 on a map of max_entries " + std::to_string(l.small_max),
             bpf_program__fd(l.little->progs.steer), bpf_map__fd(l.little->maps.sessions), std::nullopt, true},
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
          current_refresh_(real.base.refresh_ns)
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
            for (std::size_t i = vi * per_; i < (vi + 1) * per_ && v.keyed(); i++) {
                if (v.sessions_fd >= 0)
                    bpf_map_delete_elem(v.sessions_fd, &clients_.keys[i]);
                if (v.direct_fd >= 0) {
                    std::uint32_t index = sio_steer_hash(&clients_.keys[i], 0, real_.base.hash_seed) & ((1u << 20) - 1);
                    const std::uint8_t empty_entry[32] = {};
                    bpf_map_update_elem(v.direct_fd, &index, empty_entry, BPF_ANY);
                }
            }
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
            if (variants_[vi].sessions_fd >= 0 && taken[vi] < expected[vi])
                std::fprintf(stderr, "bpf_cost: warning: %s pass %d: %llu %s for %llu connections\n",
                             variants_[vi].name.c_str(), pass + 1, static_cast<unsigned long long>(taken[vi]),
                             pass == 0 ? "new sessions" : "session hits",
                             static_cast<unsigned long long>(expected[vi]));
    }

    // The group runs `v`, with its refresh interval.
    void use(const variant& v)
    {
        if (setsockopt(member_, SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF, &v.prog_fd, sizeof(v.prog_fd)))
            fail("attaching " + v.name);
        const std::uint64_t refresh = v.refresh_ns.value_or(real_.base.refresh_ns);
        if (refresh != current_refresh_) {
            config c = real_.base;
            c.refresh_ns = refresh;
            write_config(real_.config_map.get(), c);
            current_refresh_ = refresh;
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
        const stats s0 = v.sessions_fd >= 0 ? real_.state->read_stats() : stats{};
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
        if (v.sessions_fd >= 0) {  // the path the counters say it took is the one we mean
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
    std::uint64_t current_refresh_;
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

    // The same rounding as the table; a variant left out by --only is null.
    auto json = [&](const char* name) {
        auto it = results.find(name);
        if (it == results.end() || it->second.again.ns_per_run.empty())
            return std::string("null");
        char buf[32];
        std::snprintf(buf, sizeof(buf), "%.1f", median(it->second.again.ns_per_run));
        return std::string(buf);
    };
    std::printf("{\"bpf_ns\": {\"empty\": %s, \"hash_only\": %s, \"sessions_0\": %s, \"sessions_1m\": %s}}\n",
                json("empty").c_str(), json("hash_only").c_str(), json("sessions_0").c_str(),
                json("sessions_1m").c_str());
    return healthy;
}

// Runs the benchmark in the namespaces main() entered: 0, or 3 if a connection failed or moved.
int run(const settings& cfg)
{
    const std::uint16_t port = sio_steer::test::free_port();
    std::printf("bpf_cost: kernel %s, %ld CPUs (%s), %d workers, %d clients x %d passes, %d rounds\n",
                kernel_release().c_str(), sysconf(_SC_NPROCESSORS_ONLN), cpu_model().c_str(), cfg.workers, cfg.clients,
                cfg.passes, cfg.rounds);
    std::vector<std::unique_ptr<worker>> workers;
    for (int i = 0; i < cfg.workers; i++)
        workers.push_back(std::make_unique<worker>(port, i));

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
    const std::size_t recorded = count_entries(bpf_map__fd(programs.big->maps.sessions));
    return report(cfg, variants, results, real.base, recorded) ? 0 : 3;
}

}  // namespace

int main(int argc, char** argv)
{
    setvbuf(stdout, nullptr, _IOLBF, 0);
    const settings cfg = parse(argc, argv);
    if (geteuid() != 0) {
        std::fprintf(stderr, "bpf_cost: run as root (BPF, network and mount namespaces)\n");
        return 2;
    }
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    sigaction(SIGHUP, &sa, nullptr);
    try {
        enter_private_mounts();
        sio_steer::test::enter_fresh_netns(0);
        return run(cfg);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "bpf_cost: %s\n", e.what());
        return 1;
    }
}
