// Keeps the kernel's BPF run-time statistics on (run_time_ns, run_cnt of every program) while it
// runs: BPF_ENABLE_STATS returns an fd, and statistics stay on until the last such fd closes, so
// they go off by themselves when this process is killed, whatever happens to the benchmark.
// Prints "on" once they are on, then waits for a signal.
#include <linux/bpf.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(void)
{
    union bpf_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.enable_stats.type = BPF_STATS_RUN_TIME;
    long fd = syscall(SYS_bpf, BPF_ENABLE_STATS, &attr, sizeof attr);
    if (fd < 0) {
        perror("bpf-stats: BPF_ENABLE_STATS");
        return 1;
    }
    puts("on");
    fflush(stdout);
    for (;;)
        pause();
}
