// sio-steer: steers the TCP connections of a client to one PM2 worker, in the kernel.
#include <iostream>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/cfg/env.h>
#include <spdlog/spdlog.h>

#include "cli/cli.h"
#include "kernel/libbpf_log.h"

int main(int argc, char** argv)
{
    // Logs go to stderr (journald keeps them), a line at a time; command output goes to stdout.
    spdlog::set_default_logger(spdlog::stderr_color_mt("sio-steer"));
    spdlog::set_pattern("%^%l%$: %v");
    spdlog::flush_on(spdlog::level::info);
    spdlog::cfg::load_env_levels();  // SPDLOG_LEVEL=debug shows libbpf's messages too
    sio_steer::route_libbpf_log();
    return sio_steer::run_cli(sio_steer::args(argv + 1, argv + argc), std::cout, std::cerr);
}
