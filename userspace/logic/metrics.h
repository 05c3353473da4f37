// Prometheus text (exposition format 0.0.4) of what `status` reports: served at /metrics by
// `attach --metrics-listen`, printed once by `status --prometheus` (node_exporter's textfile
// collector). The data is status_report()'s, read from the pinned maps at each call.
// Every metric is described in docs/metrics.md.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "logic/follow_status.h"

namespace sio_steer {

// What only a following `attach` knows: process-local, zero again when it restarts.
struct controller_counters {
    std::atomic<std::uint64_t> syncs{0};      // resyncs done
    std::atomic<std::uint64_t> reactions{0};  // resyncs that changed something (a worker came or went)
    std::atomic<std::uint64_t> releases{0};   // clients a draining worker released to its successor
    std::atomic<std::uint64_t> control_refusals{0};  // control socket peers refused: not a worker of the port

    // How it follows the port (events or polling), once the follower knows; set from the
    // follower's thread, read from the metrics server's.
    void set_follow(const follow_status& f)
    {
        std::lock_guard hold(follow_mutex_);
        follow_ = f;
    }
    std::optional<follow_status> follow() const
    {
        std::lock_guard hold(follow_mutex_);
        return follow_;
    }

private:
    mutable std::mutex follow_mutex_;
    std::optional<follow_status> follow_;
};

struct port_metrics {
    std::uint16_t port = 0;
    std::optional<nlohmann::json> report;             // status_report(); nullopt when nothing is pinned
    const controller_counters* controller = nullptr;  // only from a following attach
};

// One exposition of every family over every port: # HELP and # TYPE once per family, its samples
// together, labelled port="N".
std::string prometheus_text(const std::vector<port_metrics>& ports);

}  // namespace sio_steer
