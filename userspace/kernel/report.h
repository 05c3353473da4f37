// What `status` shows, as one JSON document: the same data serves the text table, --json and
// the metrics (metrics.h). Field names follow the maps: workers, slots, sessions, stats.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "kernel/pinned_state.h"
#include "logic/options.h"
#include "logic/proxy_check.h"

namespace sio_steer {

// {"port", "pin_dir", "attached", "in_sync", "config": {...}, "sessions": {"count", "capacity"},
//  "moved": {"count", "capacity"} (clients off the ring, kept apart from the sessions LRU),
//  "counters": {...}, "kernel": {"migrate_req_success", "migrate_req_failure"} (the kernel's TcpExt
//  TCPMigrateReq* of the workers' network namespace; null before Linux 5.14), "pm2_instances": PM2's
//  `instances` setting as the newest worker's pm2_env says (null if not PM2's), "workers": [{"slot",
//  "pid", "instance", "process", "uid", "cookie", "live", "in_map", "selections"}],
//  "unmanaged_listeners": [...], "group": "[::]:5001 of uid 1000" (null before the first attach
//  recorded it), "foreign_listeners": [{"pid", "process", "uid", "cookie", "address"}] (listeners
//  not of the group: ignored), "warnings": ["what looks wrong, and what to do", ...],
//  "follow": {"mode", "reason", "pid"}}
// "follow" is what the controller holding the port's lock in `lock_dir` published: mode "events" or
// "polling" (port_lock::publish), "unknown" before it has, "none" (pid null) when none holds it.
// What a report reads: everything for `status`; for /metrics only what costs the same however
// many clients are recorded and processes run (a scrape must not be a lever on the controller).
struct report_scope {
    bool owners = true;                     // each listener's process: a walk of /proc/*/fd ("process" is "" without)
    bool warnings = true;                   // proxy_warning(): a walk of the sessions map (no "warnings" without)
    std::optional<std::uint64_t> sessions;  // "sessions.count" if known already; else the map is counted
    std::optional<std::uint64_t> moved;     // "moved.count" likewise
};

nlohmann::json status_report(const pinned_state& state, std::uint16_t port,
                             const std::string& lock_dir = steer_options().lock_dir, const report_scope& scope = {});

// proxy_warning() (proxy_check.h) on a sample of the pinned state of a port: the connections
// and new clients the program counted, the client keys of the sessions seen within the TTL.
std::optional<std::string> proxy_warning(const pinned_state& state);

}  // namespace sio_steer
