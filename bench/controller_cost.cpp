// controller_cost: the moving parts of bench/controller.sh (what a following `sio-steer
// attach` costs). A benchmark helper, not a test. Four verbs:
//
//   controller_cost hold --procs N [--fds 30] [--pid-file FILE]
//       Forks N sleeping children, each holding FDS open fds beyond stdio (TCP, UDP and Unix
//       sockets, pipes, files), as the other processes of a busy host do. Prints "ready N" once
//       every child holds its fds, then waits for SIGTERM/SIGINT and kills every child by pid
//       (SIGKILL) and reaps it. Children die with their parent (PR_SET_PDEATHSIG) even if it is
//       SIGKILLed. --pid-file: the children's pids, one a line, written before "ready".
//
//   controller_cost storm --port P [--rate 1000] [--seconds 60] [--address ::]
//       socket(), bind(P), listen(), close(), RATE times a second for SECONDS (paced against the
//       clock, at most RATE x SECONDS rounds, stopped at 2 x SECONDS whatever happened). Prints
//       one JSON line: {"listens": …, "errors": …, "seconds": …, "rate": …}.
//
//   controller_cost react --port P --pin-dir DIR [--runs 50] [--instance 2] [--timeout-ms 5000]
//       Per run: starts a PM2-like worker (this program's `listen` verb, NODE_APP_INSTANCE and
//       pm2's other variables in its environment) with a SO_REUSEPORT listener on [::]:P; from
//       the moment its listen() returned, polls the pinned maps DIR/slots and DIR/ring every
//       0.5 ms (one batched read each; of the ring, its first 1024 entries, all of it every 20 ms)
//       until a slot holds the socket's SO_COOKIE and at least one ring entry points at that slot. Then kills the worker and waits until its slot is freed,
//       and pauses 100–300 ms (random) so that runs do not share a phase with a polling
//       controller. Prints a line per run and one JSON line with p50/p99/max (nearest rank).
//
//   controller_cost listen --port P      (used by react) the worker: listens, writes
//       "<CLOCK_MONOTONIC ns after listen()> <SO_COOKIE>\n" to stdout, then sleeps until killed.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "sio_steer.h"

namespace {

[[noreturn]] void die(const std::string& what)
{
    std::fprintf(stderr, "controller_cost: %s\n", what.c_str());
    std::exit(1);
}

std::int64_t now_ns()
{
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return std::int64_t(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

void sleep_until_ns(std::int64_t t)
{
    timespec ts{time_t(t / 1'000'000'000), long(t % 1'000'000'000)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR) {}
}

// --name value pairs after the verb.
std::map<std::string, std::string> parse(int argc, char** argv, const std::map<std::string, std::string>& defaults)
{
    std::map<std::string, std::string> o = defaults;
    for (int i = 2; i < argc; i++) {
        std::string a = argv[i];
        if (a.rfind("--", 0) != 0 || i + 1 >= argc || !o.count(a.substr(2)))
            die("unknown or incomplete option " + a +
                " (see the comment at the top of bench/controller_cost.cpp)");
        o[a.substr(2)] = argv[++i];
    }
    for (auto& [k, v] : o)
        if (v.empty())
            die("--" + k + " is required");
    return o;
}

long number(const std::map<std::string, std::string>& o, const std::string& k)
{
    char* end = nullptr;
    long v = std::strtol(o.at(k).c_str(), &end, 10);
    if (*end || v < 0)
        die("--" + k + ": not a number: " + o.at(k));
    return v;
}

// --- hold ---------------------------------------------------------------------------------------

// Opens `fds` descriptors, in this mix (repeated beyond 30): 8 TCP and 4 UDP sockets, 2 Unix
// socket pairs (16 socket fds), 3 pipes (6 fds), 8 files.
void open_fds(int fds)
{
    static const char* files[] = {"/dev/null", "/etc/passwd", "/proc/self/status", "/dev/zero", "/etc/hostname"};
    static const char kinds[] = "TTTTTTTTUUUUSSPPPFFFFFFFF";  // S and P open two fds each
    int opened = 0;
    for (int k = 0; opened < fds; k++) {
        char kind = kinds[k % (sizeof(kinds) - 1)];
        int two[2];
        if ((kind == 'S' || kind == 'P') && opened + 2 <= fds &&
            (kind == 'S' ? socketpair(AF_UNIX, SOCK_STREAM, 0, two) : pipe(two)) == 0) {
            opened += 2;
            continue;
        }
        int fd = kind == 'T'   ? socket(k % 2 ? AF_INET : AF_INET6, SOCK_STREAM, 0)
                 : kind == 'U' ? socket(AF_INET, SOCK_DGRAM, 0)
                               : open(files[k % 5], O_RDONLY);
        if (fd < 0 && (fd = open("/dev/null", O_RDONLY)) < 0)
            _exit(3);
        opened++;
    }
}

int hold(int argc, char** argv)
{
    auto o = parse(argc, argv, {{"procs", ""}, {"fds", "30"}, {"pid-file", "-"}});
    long procs = number(o, "procs"), fds = number(o, "fds");
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    sigprocmask(SIG_BLOCK, &stop, nullptr);  // children unblock; the parent waits in sigwait()

    int ready[2];
    if (pipe(ready))
        die("pipe");
    const pid_t parent = getpid();
    std::vector<pid_t> children;
    children.reserve(procs);
    auto kill_all = [&] {
        for (pid_t c : children)
            kill(c, SIGKILL);
        for (pid_t c : children)
            while (waitpid(c, nullptr, 0) < 0 && errno == EINTR) {}
    };
    for (long i = 0; i < procs; i++) {
        pid_t c = fork();
        if (c < 0) {
            int err = errno;
            kill_all();
            die(std::string("fork: ") + std::strerror(err) + " after " + std::to_string(i) + " children");
        }
        if (c == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != parent)
                _exit(0);
            sigprocmask(SIG_UNBLOCK, &stop, nullptr);
            signal(SIGTERM, SIG_DFL);
            close(ready[0]);
            open_fds(static_cast<int>(fds));
            char b = 1;
            (void)!write(ready[1], &b, 1);
            close(ready[1]);  // the fd count stays `fds`: ready[1] was not one of them
            for (;;)
                pause();
        }
        children.push_back(c);
    }
    close(ready[1]);
    if (o["pid-file"] != "-") {
        std::ofstream f(o["pid-file"]);
        for (pid_t c : children)
            f << c << "\n";
    }
    long got = 0;
    char buf[4096];
    while (got < procs) {
        ssize_t n = read(ready[0], buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += n;
    }
    close(ready[0]);
    std::printf("ready %ld\n", got);
    std::fflush(stdout);
    int sig = 0;
    sigwait(&stop, &sig);
    kill_all();
    return got == procs ? 0 : 1;
}

// --- storm --------------------------------------------------------------------------------------

bool make_addr(const std::string& address, int port, sockaddr_storage& ss, socklen_t& len)
{
    ss = {};
    if (address.find(':') != std::string::npos) {
        auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(port);
        len = sizeof(*a);
        return inet_pton(AF_INET6, address.c_str(), &a->sin6_addr) == 1;
    }
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(port);
    len = sizeof(*a);
    return inet_pton(AF_INET, address.c_str(), &a->sin_addr) == 1;
}

int storm(int argc, char** argv)
{
    auto o = parse(argc, argv, {{"port", ""}, {"rate", "1000"}, {"seconds", "60"}, {"address", "::"}});
    long rate = std::max(1L, number(o, "rate")), seconds = number(o, "seconds");
    sockaddr_storage ss;
    socklen_t len;
    if (!make_addr(o["address"], static_cast<int>(number(o, "port")), ss, len))
        die("bad --address");
    const long rounds = rate * seconds;
    const std::int64_t start = now_ns(), hard_stop = start + 2 * seconds * 1'000'000'000LL;
    long listens = 0, errors = 0;
    std::string first_error;
    for (long i = 0; i < rounds && now_ns() < hard_stop; i++) {
        sleep_until_ns(start + i * 1'000'000'000LL / rate);
        int fd = socket(ss.ss_family, SOCK_STREAM, 0);
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (fd >= 0 && bind(fd, reinterpret_cast<sockaddr*>(&ss), len) == 0 && listen(fd, 16) == 0)
            listens++;
        else {
            if (first_error.empty())
                first_error = std::strerror(errno);
            errors++;
        }
        if (fd >= 0)
            close(fd);
    }
    double took = double(now_ns() - start) / 1e9;
    std::printf("{\"listens\": %ld, \"errors\": %ld, \"seconds\": %.2f, \"rate\": %.0f, \"first_error\": \"%s\"}\n",
                listens, errors, took, listens / took, first_error.c_str());
    return errors && !listens ? 1 : 0;
}

// --- listen (the worker react starts) -----------------------------------------------------------

int listen_verb(int argc, char** argv)
{
    auto o = parse(argc, argv, {{"port", ""}});
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    sockaddr_storage ss;
    socklen_t len;
    make_addr("::", static_cast<int>(number(o, "port")), ss, len);
    int fd = socket(AF_INET6, SOCK_STREAM, 0), one = 1, zero = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
    if (bind(fd, reinterpret_cast<sockaddr*>(&ss), len) || listen(fd, 511)) {
        std::printf("error %s\n", std::strerror(errno));
        return 1;
    }
    std::int64_t t0 = now_ns();
    std::uint64_t cookie = 0;
    socklen_t cl = sizeof(cookie);
    getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &cl);
    std::printf("%lld %llu\n", static_cast<long long>(t0), static_cast<unsigned long long>(cookie));
    std::fflush(stdout);
    for (;;)
        pause();
}

// --- react --------------------------------------------------------------------------------------

struct maps {
    int slots = -1, ring = -1;
    std::vector<std::uint32_t> keys;
    std::vector<slot> slot_values;
    std::vector<std::uint32_t> ring_values;

    // Index of the slot holding `cookie`, or -1.
    int find(std::uint64_t cookie)
    {
        __u32 out = 0, count = SIO_STEER_MAX_SLOTS;
        LIBBPF_OPTS(bpf_map_batch_opts, opts);
        int err = bpf_map_lookup_batch(slots, nullptr, &out, keys.data(), slot_values.data(), &count, &opts);
        if (err && errno != ENOENT)
            die(std::string("cannot read the slots map: ") + std::strerror(errno));
        for (__u32 i = 0; i < count; i++)
            if (slot_values[i].cookie == cookie)
                return static_cast<int>(keys[i]);
        return -1;
    }
    // Ring entries pointing at `index` among the first `entries` (a batched read of the whole ring
    // takes ≈ 4 ms of CPU here, of the first 1024 entries 60 µs: polled every 0.5 ms, the whole ring
    // would compete with the controller for the CPU it needs to write that ring).
    long ring_entries(int index, __u32 entries = SIO_STEER_RING_SIZE)
    {
        __u32 out = 0, count = entries;
        LIBBPF_OPTS(bpf_map_batch_opts, opts);
        int err = bpf_map_lookup_batch(ring, nullptr, &out, keys.data(), ring_values.data(), &count, &opts);
        if (err && errno != ENOENT)
            die(std::string("cannot read the ring map: ") + std::strerror(errno));
        return std::count(ring_values.begin(), ring_values.begin() + count, static_cast<std::uint32_t>(index));
    }
};

// Nearest rank: with 50 runs, p99 is the largest.
double percentile(std::vector<double> v, double p)
{
    if (v.empty())
        return NAN;
    std::sort(v.begin(), v.end());
    std::size_t rank = static_cast<std::size_t>(std::ceil(p / 100.0 * v.size()));
    return v[std::min(v.size(), std::max<std::size_t>(rank, 1)) - 1];
}

int react(int argc, char** argv)
{
    auto o =
        parse(argc, argv, {{"port", ""}, {"pin-dir", ""}, {"runs", "50"}, {"instance", "2"}, {"timeout-ms", "5000"}});
    const long runs = number(o, "runs"), timeout_ms = number(o, "timeout-ms");
    maps m;
    m.slots = bpf_obj_get((o["pin-dir"] + "/slots").c_str());
    m.ring = bpf_obj_get((o["pin-dir"] + "/ring").c_str());
    if (m.slots < 0 || m.ring < 0)
        die("cannot open the pinned slots/ring maps in " + o["pin-dir"] + ": " + std::strerror(errno));
    m.keys.resize(SIO_STEER_RING_SIZE);
    m.slot_values.resize(SIO_STEER_MAX_SLOTS);
    m.ring_values.resize(SIO_STEER_RING_SIZE);

    // The worker's environment, as PM2 cluster mode sets it (the controller reads /proc/PID/environ).
    const std::string instance = o["instance"];
    std::vector<std::string> env = {"PATH=/usr/bin:/bin",  "NODE_APP_INSTANCE=" + instance, "pm_id=" + instance,
                                    "name=bench",          "exec_mode=cluster_mode",        "instances=4",
                                    "NODE_ENV=production", "PM2_HOME=/root/.pm2",           "PM2_USAGE=CLI"};
    std::vector<char*> envp;
    for (auto& e : env)
        envp.push_back(e.data());
    envp.push_back(nullptr);
    std::string self = "/proc/self/exe", port = o["port"];

    std::mt19937 rng(static_cast<unsigned>(now_ns()));
    std::vector<double> slot_ms, full_ms, gone_ms;
    long timeouts = 0;
    for (long run = 0; run < runs; run++) {
        int out[2];
        if (pipe(out))
            die("pipe");
        pid_t child = fork();
        if (child == 0) {
            dup2(out[1], 1);
            close(out[0]);
            close(out[1]);
            char* args[] = {const_cast<char*>("controller_cost"), const_cast<char*>("listen"),
                            const_cast<char*>("--port"), port.data(), nullptr};
            execve(self.c_str(), args, envp.data());
            _exit(127);
        }
        close(out[1]);
        char line[128] = {};
        ssize_t n = 0, got;
        while (n < static_cast<ssize_t>(sizeof(line)) - 1 && (got = read(out[0], line + n, sizeof(line) - 1 - n)) > 0) {
            n += got;
            if (std::memchr(line, '\n', n))
                break;
        }
        close(out[0]);
        long long t0 = 0;
        unsigned long long cookie = 0;
        if (std::sscanf(line, "%lld %llu", &t0, &cookie) != 2) {
            kill(child, SIGKILL);
            waitpid(child, nullptr, 0);
            die(std::string("the worker did not listen: ") + line);
        }
        const std::int64_t deadline = t0 + timeout_ms * 1'000'000LL;
        std::int64_t t_slot = 0, t_full = 0;
        int index = -1;
        // The controller writes the ring entries that change in one batch, in ascending order, so
        // the first 1024 entries hold one of a new worker's as soon as its share is being written
        // (with up to ~100 workers); every 20 ms the whole ring is read in case they do not.
        long polls = 0;
        for (std::int64_t next = now_ns(); now_ns() < deadline; next += 500'000, polls++) {
            if (index < 0 && (index = m.find(cookie)) >= 0)
                t_slot = now_ns();
            if (index >= 0 && m.ring_entries(index, polls % 40 ? 1024 : SIO_STEER_RING_SIZE) > 0) {
                t_full = now_ns();
                break;
            }
            sleep_until_ns(std::max(next + 500'000, now_ns()));
        }
        kill(child, SIGKILL);
        waitpid(child, nullptr, 0);
        const std::int64_t t_kill = now_ns();
        double gone = NAN;
        if (index >= 0) {
            for (std::int64_t next = now_ns(); now_ns() < t_kill + timeout_ms * 1'000'000LL; next += 500'000) {
                if (m.find(cookie) < 0) {
                    gone = double(now_ns() - t_kill) / 1e6;
                    gone_ms.push_back(gone);
                    break;
                }
                sleep_until_ns(std::max(next + 500'000, now_ns()));
            }
        }
        if (t_full) {
            slot_ms.push_back(double(t_slot - t0) / 1e6);
            full_ms.push_back(double(t_full - t0) / 1e6);
            std::fprintf(
                stderr,
                "run %ld: slot %d after %.2f ms, ring after %.2f ms; slot freed %.1f ms after the worker died\n",
                run + 1, index, slot_ms.back(), full_ms.back(), gone);
        } else {
            timeouts++;
            full_ms.push_back(double(timeout_ms));  // counted at the timeout, so percentiles do not hide it
            std::fprintf(stderr, "run %ld: no slot and ring entries within %ld ms (slot %d)\n", run + 1, timeout_ms,
                         index);
        }
        sleep_until_ns(now_ns() + (100 + static_cast<long>(rng() % 201)) * 1'000'000LL);
    }
    auto json = [](double v) {
        char b[32];
        std::snprintf(b, sizeof(b), "%.2f", v);
        return std::isnan(v) ? std::string("null") : std::string(b);
    };
    std::printf("{\"runs\": %ld, \"timeouts\": %ld, \"p50_ms\": %s, \"p99_ms\": %s, \"max_ms\": %s, "
                "\"slot_p50_ms\": %s, \"slot_p99_ms\": %s, \"gone_p50_ms\": %s, \"gone_p99_ms\": %s}\n",
                runs, timeouts, json(percentile(full_ms, 50)).c_str(), json(percentile(full_ms, 99)).c_str(),
                json(percentile(full_ms, 100)).c_str(), json(percentile(slot_ms, 50)).c_str(),
                json(percentile(slot_ms, 99)).c_str(), json(percentile(gone_ms, 50)).c_str(),
                json(percentile(gone_ms, 99)).c_str());
    return timeouts ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv)
{
    std::string verb = argc > 1 ? argv[1] : "";
    if (verb == "hold")
        return hold(argc, argv);
    if (verb == "storm")
        return storm(argc, argv);
    if (verb == "react")
        return react(argc, argv);
    if (verb == "listen")
        return listen_verb(argc, argv);
    std::fprintf(stderr, "usage: controller_cost hold|storm|react|listen ... (see bench/controller_cost.cpp)\n");
    return 2;
}
