// What `status` shows, as one JSON document: the same data serves the text table, --json and
// the metrics (metrics.h). Field names follow the maps: workers, slots, sessions, stats.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "options.h"
#include "pinned_state.h"

namespace sio_steer {

// {"port", "pin_dir", "attached", "in_sync", "config": {...}, "sessions": {"count", "capacity"},
//  "counters": {...}, "workers": [{"slot", "pid", "instance", "process", "uid", "cookie", "live",
//  "in_map", "selections"}], "unmanaged_listeners": [...], "warnings": ["what looks wrong, and what to do", ...],
//  "follow": {"mode", "reason", "pid"}}
// "follow" is what the controller holding the port's lock in `lock_dir` published: mode "events" or
// "polling" (port_lock::publish), "unknown" before it has, "none" (pid null) when none holds it.
nlohmann::json status_report(const pinned_state& state, std::uint16_t port,
                             const std::string& lock_dir = steer_options().lock_dir);

}  // namespace sio_steer
