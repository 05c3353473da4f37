// What the BPF benchmarks (bpf_cost.cpp, bpf_end_to_end.cpp) share: a private world to run in,
// the real program attached by the real controller, the machine they ran on, CPU time as the
// scheduler counts it.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "logic/unique_fd.h"

namespace sio_steer::bench {

// Throws std::runtime_error with `what` and, if err, strerror(err).
[[noreturn]] void fail(const std::string& what, int err);

// SIGINT, SIGTERM and SIGHUP set a flag that check_interrupted() turns into an exception, so that
// a benchmark stopped by hand still unwinds (workers killed, namespaces gone with the process).
void catch_stop_signals();
void check_interrupted();

// A private mount namespace with a fresh bpffs on /sys/fs/bpf and a fresh tmpfs on /run (for the
// controller's lock files), then a fresh network namespace with loopback up: pins, locks and
// sockets live and die with the processes of this benchmark, and never meet the real ones.
void enter_private_world();

// A benchmark's main() after its options: refuses to run but as root (exit 2; `needs` says for
// what), catches stop signals, enters the private world and runs `run`; an exception is printed
// with the benchmark's name (exit 1).
int run_as_root(const char* name, const char* needs, const std::function<int()>& run);

// One line for the table's head: CPUs, model, kernel, clocksource, load average.
std::string machine_line();
std::string load_average();

// `sio-steer attach --once` on the port (the real controller, the real program, --max-sessions
// as given), pinned under /sys/fs/bpf/bench: returns the pin folder.
std::string attach_real(std::uint16_t port, std::uint32_t max_sessions);

unique_fd pinned(const std::string& path);

// CPU time (ns) the scheduler has charged to a task: /proc/PID/task/TID/schedstat. Without
// CONFIG_IRQ_TIME_ACCOUNTING (as here) it includes the softirq work done while the task ran,
// e.g. the receive side of loopback packets it sent.
std::uint64_t task_cpu_ns(pid_t pid, pid_t tid);
// All threads of a process.
std::uint64_t process_cpu_ns(pid_t pid);
// The ksoftirqd threads: softirq work deferred out of the tasks that raised it.
std::vector<pid_t> ksoftirqd_pids();

}  // namespace sio_steer::bench
