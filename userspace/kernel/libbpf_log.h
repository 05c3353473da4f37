// libbpf's messages go to spdlog at debug level, so a user never sees raw "libbpf:" lines; where
// a failure matters, the caller's own message explains it and may quote libbpf's first warning.
#pragma once

#include <bpf/libbpf.h>

#include <cstdarg>
#include <string>

namespace sio_steer {

// Installs the route (libbpf_set_print) for the whole process; called once by main().
void route_libbpf_log();

// While alive, remembers the first warning libbpf prints on this thread.
class libbpf_log_capture {
public:
    libbpf_log_capture();
    ~libbpf_log_capture();
    libbpf_log_capture(const libbpf_log_capture&) = delete;
    libbpf_log_capture& operator=(const libbpf_log_capture&) = delete;

    // " (libbpf: <first warning>)", or "" if libbpf warned of nothing.
    std::string last_error() const;

private:
    friend int libbpf_print(enum libbpf_print_level level, const char* format, va_list args);
    std::string first_warning_;
    libbpf_log_capture* outer_;
};

}  // namespace sio_steer
