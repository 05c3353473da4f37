// What `status` shows, as one JSON document: the same data serves the text table, --json and
// the metrics (metrics.h). Field names follow the maps: workers, slots, sessions, stats.
#pragma once

#include <cstdint>

#include <nlohmann/json.hpp>

#include "pinned_state.h"

namespace sio_steer {

// {"port", "pin_dir", "attached", "in_sync", "config": {...}, "sessions": {"count", "capacity"},
//  "counters": {...}, "workers": [{"slot", "pid", "instance", "process", "uid", "cookie", "live",
//  "in_map", "selections"}], "unmanaged_listeners": [...], "warnings": ["what looks wrong, and what to do", ...]}
nlohmann::json status_report(const pinned_state& state, std::uint16_t port);

}  // namespace sio_steer
