// What `status` shows, as one JSON document: the same data serves the text table, --json and
// the metrics (metrics.h). Field names follow the maps: workers, slots, sessions, stats.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "options.h"
#include "pinned_state.h"
#include "proxy_check.h"

namespace sio_steer {

// {"port", "pin_dir", "attached", "in_sync", "config": {...}, "sessions": {"count", "capacity"},
//  "counters": {...}, "workers": [{"slot", "pid", "instance", "process", "uid", "cookie", "live",
//  "in_map", "selections"}], "unmanaged_listeners": [...], "warnings": ["what looks wrong, and what to do", ...],
//  "follow": {"mode", "reason", "pid"}}
// "follow" is what the controller holding the port's lock in `lock_dir` published: mode "events" or
// "polling" (port_lock::publish), "unknown" before it has, "none" (pid null) when none holds it.
nlohmann::json status_report(const pinned_state& state, std::uint16_t port,
                             const std::string& lock_dir = steer_options().lock_dir);

// proxy_warning() (proxy_check.h) on a sample of the pinned state of a port: the connections
// and new clients the program counted, the client keys of the sessions seen within the TTL.
std::optional<std::string> proxy_warning(const pinned_state& state);

}  // namespace sio_steer
