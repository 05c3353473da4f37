// bpf_end_to_end: what the steering program costs where users feel it, with the program attached
// to a reuseport group against the kernel's own hash (no program), measured side by side in one
// run. A benchmark, not a test: scripts/bench-bpf.sh --end-to-end builds and runs it, and
// docs/benchmarks.md says what the numbers mean.
//
//   bpf_end_to_end [--workers N] [--rounds N] [--seconds S] [--in-flight N] [--clients N]
//                  [--max-sessions N] [--flood-sources N] [--flood-times N] [--flood-rounds N]
//                  [--only accept|flood]
//
// In a private network and mount namespace (loopback only, its own bpffs), test_worker processes
// listen with SO_REUSEPORT, each answering every connection with a line and closing it, and the
// real controller attaches the real program (`sio-steer attach --once`). Then, taking turns
// (program, kernel hash; the order alternates from round to round):
//
//  accept  clients connect over and over from --clients addresses (recorded clients, after the
//          first round), --in-flight connections at a time, each read to its answer and closed:
//          connections completed per second, and CPU per connection (workers, clients and
//          ksoftirqd, as the scheduler charged them: the SYNs are handled in the client's
//          context on loopback, the program with them).
//  flood   raw SYNs from --flood-sources spoofed addresses (fresh ones every round), each sending
//          --flood-times: the CPU the flood costs (the sender, whose context handles each SYN
//          and the SYN-ACK/RST it causes, plus ksoftirqd and the workers), per SYN.
//
// Statistics (kernel.bpf_stats_enabled) stay off: the program runs as deployed. The last line
// printed is JSON: {"end_to_end": {"accept": {...}, "syn_flood": {...}}}.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "bench_env.h"
#include "harness.h"
#include "kernel/controller.h"
#include "kernel/pinned_state.h"
#include "logic/unique_fd.h"
#include "raw_syn.h"

namespace {

using namespace std::chrono;
using sio_steer::unique_fd;
using sio_steer::bench::check_interrupted;
using sio_steer::bench::fail;

struct settings {
    int workers = 2;
    int rounds = 6;        // accept: pairs of measurements (program, kernel hash)
    double seconds = 2.0;  // accept: length of one measurement
    int in_flight = 64;    // accept: connections open at a time
    int clients = 10000;   // accept: client addresses, cycled
    std::uint32_t max_sessions = 262144;
    std::uint32_t flood_sources = 300'000;
    int flood_times = 3;
    int flood_rounds = 3;  // flood: pairs
    bool accept = true, flood = true;
};

[[noreturn]] void usage(int code)
{
    std::fprintf(
        stderr, "usage: bpf_end_to_end [--workers N (2)] [--rounds N (6)] [--seconds S (2)] [--in-flight N (64)]\n"
                "                      [--clients N (10000)] [--max-sessions N (262144)] [--flood-sources N (300000)]\n"
                "                      [--flood-times N (3)] [--flood-rounds N (3)] [--only accept|flood]\n");
    std::exit(code);
}

settings parse(int argc, char** argv)
{
    settings s;
    for (int i = 1; i < argc; i++) {
        const std::string a = argv[i];
        if (a == "--help" || a == "-h")
            usage(0);
        if (i + 1 >= argc)
            usage(2);
        const std::string v = argv[++i];
        auto number = [&](double lo, double hi) {
            char* end = nullptr;
            const double x = std::strtod(v.c_str(), &end);
            if (*end || !(x >= lo && x <= hi)) {
                std::fprintf(stderr, "bpf_end_to_end: %s must be in %g..%g\n", a.c_str(), lo, hi);
                std::exit(2);
            }
            return x;
        };
        if (a == "--workers")
            s.workers = static_cast<int>(number(1, 16));
        else if (a == "--rounds")
            s.rounds = static_cast<int>(number(1, 100));
        else if (a == "--seconds")
            s.seconds = number(0.2, 60);
        else if (a == "--in-flight")
            s.in_flight = static_cast<int>(number(1, 4096));
        else if (a == "--clients")
            s.clients = static_cast<int>(number(1, 1'000'000));
        else if (a == "--max-sessions")
            s.max_sessions = static_cast<std::uint32_t>(number(1024, 16u << 20));
        else if (a == "--flood-sources")
            s.flood_sources = static_cast<std::uint32_t>(number(256, 1u << 20));
        else if (a == "--flood-times")
            s.flood_times = static_cast<int>(number(1, 10));
        else if (a == "--flood-rounds")
            s.flood_rounds = static_cast<int>(number(1, 20));
        else if (a == "--only" && (v == "accept" || v == "flood"))
            s.accept = v == "accept", s.flood = v == "flood";
        else
            usage(2);
    }
    // Every flood takes fresh sources (two a round): 127.64.0.0/10 holds 2^22.
    if (2ull * s.flood_sources * static_cast<std::uint64_t>(s.flood_rounds) > (1u << 22)) {
        std::fprintf(stderr, "bpf_end_to_end: 2 x --flood-sources x --flood-rounds must stay within 4194304\n");
        std::exit(2);
    }
    return s;
}

double median(std::vector<double> v)
{
    if (v.empty())
        return NAN;
    std::sort(v.begin(), v.end());
    const std::size_t n = v.size();
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// ---- The reuseport group, with or without the program. ----

class group {
public:
    group(std::uint16_t port, const std::string& pin_dir)
        : program_(sio_steer::bench::pinned(pin_dir + "/program")),
          sockets_(sio_steer::take_listeners(port))
    {
        if (sockets_.fds.empty())
            throw std::runtime_error("no listener to steer");
    }
    // The program steers the group, or (false) the kernel's own hash does.
    void steer(bool with_program) const
    {
        const int member = sockets_.fds.front().get(), prog = program_.get(), none = 0;
        if (with_program ? setsockopt(member, SOL_SOCKET, SO_ATTACH_REUSEPORT_EBPF, &prog, sizeof(prog))
                         : setsockopt(member, SOL_SOCKET, SO_DETACH_REUSEPORT_BPF, &none, sizeof(none)) &&
                               errno != ENOENT)  // ENOENT: nothing attached (the kernel's hash already)
            fail(with_program ? "attaching the program" : "detaching the program", errno);
    }

private:
    unique_fd program_;
    sio_steer::worker_sockets sockets_;
};

const char* mode_name(bool with_program) { return with_program ? "program" : "kernel_hash"; }

// CPU the benchmark's own side of the machine used: these processes' threads and ksoftirqd.
class cpu_meter {
public:
    explicit cpu_meter(std::vector<pid_t> processes)
        : processes_(std::move(processes)),
          softirqd_(sio_steer::bench::ksoftirqd_pids())
    {}
    std::uint64_t now_ns() const
    {
        std::uint64_t ns = 0;
        for (pid_t p : processes_)
            ns += sio_steer::bench::process_cpu_ns(p);
        for (pid_t p : softirqd_)
            ns += sio_steer::bench::task_cpu_ns(p, p);
        return ns;
    }

private:
    std::vector<pid_t> processes_, softirqd_;
};

// ---- accept: closed-loop clients. ----

// Clients connecting from `sources` in turn, `in_flight` connections open at a time, each read to
// the worker's answer and closed with a reset (no TIME_WAIT piles up from round to round).
class client_load {
public:
    client_load(std::uint16_t port, int clients, int in_flight) : in_flight_(in_flight)
    {
        dest_.sin_family = AF_INET;
        dest_.sin_port = htons(port);
        dest_.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        for (int i = 0; i < clients; i++) {  // 127.1.0.1 on: outside 127.64/10, which the flood uses
            sockaddr_in a{};
            a.sin_family = AF_INET;
            a.sin_addr.s_addr = htonl(0x7f010000u + static_cast<std::uint32_t>(i / 254) * 256 + 1 + i % 254);
            sources_.push_back(a);
        }
        thread_ = std::thread([this] { run(); });
    }
    ~client_load()
    {
        stop_ = true;
        thread_.join();
    }
    std::uint64_t completed() const { return completed_.load(); }
    std::uint64_t failed() const { return failed_.load(); }

private:
    void open_one(int ep)
    {
        const sockaddr_in& src = sources_[next_source_++ % sources_.size()];
        int s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (s < 0)
            fail("socket", errno);
        int one = 1;
        linger reset{1, 0};
        setsockopt(s, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
        setsockopt(s, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
        if (bind(s, reinterpret_cast<const sockaddr*>(&src), sizeof(src)) ||
            (connect(s, reinterpret_cast<const sockaddr*>(&dest_), sizeof(dest_)) && errno != EINPROGRESS)) {
            failed_++;
            close(s);
            return;
        }
        epoll_event ev{};
        ev.events = EPOLLIN | EPOLLRDHUP;
        ev.data.fd = s;
        epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev);
        open_++;
    }

    void run()
    {
        unique_fd ep(epoll_create1(EPOLL_CLOEXEC));
        std::vector<epoll_event> events(256);
        while (!stop_) {
            while (open_ < in_flight_)
                open_one(ep.get());
            const int n = epoll_wait(ep.get(), events.data(), static_cast<int>(events.size()), 100);
            for (int i = 0; i < n; i++) {
                const int s = events[i].data.fd;
                char buf[64];
                const ssize_t got = read(s, buf, sizeof(buf));
                if (got < 0 && errno == EAGAIN)
                    continue;
                (got > 0 ? completed_ : failed_)++;
                close(s);  // also leaves the epoll set
                open_--;
            }
        }
    }

    std::vector<sockaddr_in> sources_;
    sockaddr_in dest_{};
    const int in_flight_;
    int open_ = 0;
    std::size_t next_source_ = 0;
    std::atomic<bool> stop_{false};
    std::atomic<std::uint64_t> completed_{0}, failed_{0};
    std::thread thread_;
};

struct accept_sample {
    double conn_per_s = 0, cpu_us_per_conn = 0;
};

struct accept_result {
    std::map<bool, std::vector<accept_sample>> by_mode;  // with_program -> one per round
    std::vector<double> rate_ratio, cpu_ratio;           // program / kernel hash, per round
    std::uint64_t failed = 0;
};

accept_result measure_accept(const settings& cfg, std::uint16_t port, const group& g, const cpu_meter& cpu)
{
    accept_result r;
    client_load load(port, cfg.clients, cfg.in_flight);
    const auto warmup = milliseconds(300);
    const auto window = duration_cast<nanoseconds>(duration<double>(cfg.seconds));
    for (int round = 0; round < cfg.rounds; round++) {
        accept_sample pair[2];
        for (int k = 0; k < 2; k++) {
            check_interrupted();
            const bool with_program = (k + round) % 2 == 0;
            g.steer(with_program);
            std::this_thread::sleep_for(warmup);
            const std::uint64_t c0 = load.completed(), f0 = load.failed(), cpu0 = cpu.now_ns();
            const auto t0 = steady_clock::now();
            std::this_thread::sleep_for(window);
            const std::uint64_t c1 = load.completed(), f1 = load.failed(), cpu1 = cpu.now_ns();
            const double s = duration<double>(steady_clock::now() - t0).count();
            const double done = static_cast<double>(c1 - c0);
            accept_sample a{done / s, done ? static_cast<double>(cpu1 - cpu0) / 1e3 / done : NAN};
            r.by_mode[with_program].push_back(a);
            pair[with_program] = a;
            r.failed += f1 - f0;
        }
        r.rate_ratio.push_back(pair[1].conn_per_s / pair[0].conn_per_s);
        r.cpu_ratio.push_back(pair[1].cpu_us_per_conn / pair[0].cpu_us_per_conn);
        std::fprintf(stderr, "bpf_end_to_end: accept round %d of %d: %.0f vs %.0f conn/s (%.3fx), load %s\n", round + 1,
                     cfg.rounds, pair[1].conn_per_s, pair[0].conn_per_s, r.rate_ratio.back(),
                     sio_steer::bench::load_average().c_str());
    }
    return r;
}

// ---- flood: spoofed SYNs. ----

struct flood_sample {
    double cpu_s = 0, wall_s = 0;
    std::uint64_t syns = 0;
    double ns_per_syn() const { return syns ? cpu_s * 1e9 / static_cast<double>(syns) : NAN; }
};

struct flood_outcome {
    std::map<bool, std::vector<flood_sample>> by_mode;
    std::vector<double> cpu_ratio;                     // program / kernel hash, per round
    std::uint64_t program_runs = 0, program_syns = 0;  // the program's own counters, to check it ran
};

flood_outcome measure_flood(const settings& cfg, std::uint16_t port, const group& g, const cpu_meter& cpu,
                            const sio_steer::pinned_state& state)
{
    flood_outcome r;
    std::uint32_t fresh = 0;  // the next unused source of 127.64/10
    for (int round = 0; round < cfg.flood_rounds; round++) {
        flood_sample pair[2];
        for (int k = 0; k < 2; k++) {
            check_interrupted();
            const bool with_program = (k + round) % 2 == 0;
            g.steer(with_program);
            std::this_thread::sleep_for(milliseconds(500));  // the previous flood's resets are done
            const stats s0 = state.read_stats();
            const std::uint64_t cpu0 = cpu.now_ns();
            const sio_steer::test::flood_result f =
                sio_steer::test::spoofed_syn_flood(port, cfg.flood_sources, cfg.flood_times, seconds(120), fresh);
            std::this_thread::sleep_for(milliseconds(200));  // what ksoftirqd still had queued
            const std::uint64_t cpu1 = cpu.now_ns();
            const stats s1 = state.read_stats();
            fresh += cfg.flood_sources;
            flood_sample x{static_cast<double>(cpu1 - cpu0) / 1e9, f.seconds, f.sent};
            r.by_mode[with_program].push_back(x);
            pair[with_program] = x;
            if (with_program) {
                r.program_runs += (s1.new_sessions - s0.new_sessions) + (s1.session_hits - s0.session_hits);
                r.program_syns += f.sent;
            }
        }
        r.cpu_ratio.push_back(pair[1].ns_per_syn() / pair[0].ns_per_syn());
        std::fprintf(stderr, "bpf_end_to_end: flood round %d of %d: %.0f vs %.0f ns CPU per SYN (%.3fx), load %s\n",
                     round + 1, cfg.flood_rounds, pair[1].ns_per_syn(), pair[0].ns_per_syn(), r.cpu_ratio.back(),
                     sio_steer::bench::load_average().c_str());
    }
    return r;
}

// ---- Report. ----

std::string range(const std::vector<double>& v, const char* format)
{
    if (v.empty())
        return "-";
    auto [lo, hi] = std::minmax_element(v.begin(), v.end());
    char buf[96];
    std::snprintf(buf, sizeof(buf), format, median(v), *lo, *hi);
    return buf;
}

template <class T, class F>
std::vector<double> field(const std::vector<T>& v, F f)
{
    std::vector<double> out;
    for (const T& x : v)
        out.push_back(f(x));
    return out;
}

std::string report_accept(const settings& cfg, const accept_result& r)
{
    const auto rate = [](const accept_sample& a) { return a.conn_per_s; };
    const auto cpu = [](const accept_sample& a) { return a.cpu_us_per_conn; };
    std::printf("\naccept: %d workers, clients from %d addresses, %d connections in flight, %d rounds of %.1f s each "
                "(program and kernel hash in turn), median (min-max)\n",
                cfg.workers, cfg.clients, cfg.in_flight, cfg.rounds, cfg.seconds);
    std::printf("  %-12s %-28s %s\n", "", "connections/s", "CPU us per connection");
    for (bool m : {false, true})
        std::printf("  %-12s %-28s %s\n", mode_name(m), range(field(r.by_mode.at(m), rate), "%.0f (%.0f-%.0f)").c_str(),
                    range(field(r.by_mode.at(m), cpu), "%.2f (%.2f-%.2f)").c_str());
    std::printf("  %-12s %-28s %s\n", "ratio", range(r.rate_ratio, "%.3fx (%.3f-%.3f)").c_str(),
                range(r.cpu_ratio, "%.3fx (%.3f-%.3f)").c_str());
    std::printf("  (ratio: program / kernel hash of the same round; goal for connections/s >= 0.97x)\n");
    if (r.failed)
        std::fprintf(stderr, "bpf_end_to_end: warning: %llu connections failed\n",
                     static_cast<unsigned long long>(r.failed));
    char json[512];
    std::snprintf(json, sizeof(json),
                  "\"accept\": {\"kernel_hash_conn_per_s\": %.0f, \"program_conn_per_s\": %.0f, \"conn_ratio\": %.3f, "
                  "\"kernel_hash_cpu_us_per_conn\": %.2f, \"program_cpu_us_per_conn\": %.2f, \"cpu_ratio\": %.3f}",
                  median(field(r.by_mode.at(false), rate)), median(field(r.by_mode.at(true), rate)),
                  median(r.rate_ratio), median(field(r.by_mode.at(false), cpu)), median(field(r.by_mode.at(true), cpu)),
                  median(r.cpu_ratio));
    return json;
}

std::string report_flood(const settings& cfg, const flood_outcome& r)
{
    const auto per_syn = [](const flood_sample& f) { return f.ns_per_syn(); };
    const auto cpu_s = [](const flood_sample& f) { return f.cpu_s; };
    const auto rate = [](const flood_sample& f) { return static_cast<double>(f.syns) / f.wall_s; };
    const std::uint64_t syns = r.by_mode.at(true).front().syns;
    std::printf("\nSYN flood: %u spoofed sources x %d SYNs (%llu SYNs, fresh sources every round), %d rounds each, "
                "median (min-max)\n",
                cfg.flood_sources, cfg.flood_times, static_cast<unsigned long long>(syns), cfg.flood_rounds);
    std::printf("  %-12s %-28s %-28s %s\n", "", "CPU s per flood", "CPU ns per SYN", "SYN/s sent");
    for (bool m : {false, true})
        std::printf("  %-12s %-28s %-28s %s\n", mode_name(m),
                    range(field(r.by_mode.at(m), cpu_s), "%.2f (%.2f-%.2f)").c_str(),
                    range(field(r.by_mode.at(m), per_syn), "%.0f (%.0f-%.0f)").c_str(),
                    range(field(r.by_mode.at(m), rate), "%.0f (%.0f-%.0f)").c_str());
    std::printf("  %-12s %-28s %s\n", "ratio", "", range(r.cpu_ratio, "%.3fx (%.3f-%.3f)").c_str());
    std::printf("  (CPU: the sender, which handles each SYN and its SYN-ACK and reset on loopback, ksoftirqd and the "
                "workers; the program ran %llu times for %llu SYNs)\n",
                static_cast<unsigned long long>(r.program_runs), static_cast<unsigned long long>(r.program_syns));
    char json[512];
    std::snprintf(
        json, sizeof(json),
        "\"syn_flood\": {\"sources\": %u, \"syns\": %llu, \"kernel_hash_cpu_s\": %.3f, \"program_cpu_s\": %.3f, "
        "\"kernel_hash_ns_per_syn\": %.0f, \"program_ns_per_syn\": %.0f, \"cpu_ratio\": %.3f}",
        cfg.flood_sources, static_cast<unsigned long long>(syns), median(field(r.by_mode.at(false), cpu_s)),
        median(field(r.by_mode.at(true), cpu_s)), median(field(r.by_mode.at(false), per_syn)),
        median(field(r.by_mode.at(true), per_syn)), median(r.cpu_ratio));
    return json;
}

int run(const settings& cfg)
{
    const std::uint16_t port = sio_steer::test::free_port();
    std::printf("bpf_end_to_end: %s\n", sio_steer::bench::machine_line().c_str());
    sio_steer::test::workers w;
    std::vector<pid_t> pids{getpid()};
    for (int i = 0; i < cfg.workers; i++) {
        w.push_back(sio_steer::test::worker_process::instance(port, i));
        pids.push_back(w.back()->pid());
    }
    const std::string dir = sio_steer::bench::attach_real(port, cfg.max_sessions);
    const std::optional<sio_steer::pinned_state> state = sio_steer::pinned_state::open(dir);
    if (!state)
        throw std::runtime_error("nothing pinned in " + dir + " after attach");
    const group g(port, dir);
    const cpu_meter cpu(pids);
    std::vector<std::string> parts;
    if (cfg.accept)
        parts.push_back(report_accept(cfg, measure_accept(cfg, port, g, cpu)));
    if (cfg.flood)
        parts.push_back(report_flood(cfg, measure_flood(cfg, port, g, cpu, *state)));
    std::printf("(load average at the end: %s)\n", sio_steer::bench::load_average().c_str());
    std::string json = "{\"end_to_end\": {";
    for (std::size_t i = 0; i < parts.size(); i++)
        json += (i ? ", " : "") + parts[i];
    std::printf("%s}}\n", json.c_str());
    return 0;
}

}  // namespace

int main(int argc, char** argv)
{
    setvbuf(stdout, nullptr, _IOLBF, 0);
    const settings cfg = parse(argc, argv);
    return sio_steer::bench::run_as_root("bpf_end_to_end", "BPF, raw sockets, network and mount namespaces",
                                         [&] { return run(cfg); });
}
