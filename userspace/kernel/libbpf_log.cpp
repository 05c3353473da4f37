#include "kernel/libbpf_log.h"

#include <bpf/libbpf.h>

#include <cstdio>

#include <spdlog/spdlog.h>

namespace sio_steer {

namespace {
thread_local libbpf_log_capture* capturing = nullptr;
}

int libbpf_print(enum libbpf_print_level level, const char* format, va_list args)
{
    // One message can be a whole verifier log: size it first.
    va_list again;
    va_copy(again, args);
    int size = vsnprintf(nullptr, 0, format, again);
    va_end(again);
    std::string text(size > 0 ? static_cast<std::size_t>(size) : 0, '\0');
    if (size > 0)
        vsnprintf(text.data(), text.size() + 1, format, args);
    while (!text.empty() && (text.back() == '\n' || text.back() == ' '))
        text.pop_back();
    if (text.empty())
        return 0;
    if (capturing && level == LIBBPF_WARN && capturing->first_warning_.empty())
        capturing->first_warning_ = (text.starts_with("libbpf: ") ? text.substr(8) : text).substr(0, 300);
    spdlog::debug("libbpf: {}", text.starts_with("libbpf: ") ? text.substr(8) : text);
    return 0;
}

void route_libbpf_log() { libbpf_set_print(libbpf_print); }

libbpf_log_capture::libbpf_log_capture() : outer_(capturing) { capturing = this; }

libbpf_log_capture::~libbpf_log_capture() { capturing = outer_; }

std::string libbpf_log_capture::last_error() const
{
    return first_warning_.empty() ? "" : " (libbpf: " + first_warning_ + ")";
}

}  // namespace sio_steer
