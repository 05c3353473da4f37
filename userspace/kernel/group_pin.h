// The `group` pin beside the maps (<pin dir>/group, ARRAY[1] of struct group_record): the
// reuseport group the port steers, recorded at the first attach (logic/worker_group.h). Only the
// controller reads it, never the program: it is created here, not by the BPF object, so a pin
// folder of an older version gets it at the next attach (no ABI bump).
#pragma once

#include <cstddef>
#include <optional>
#include <string>

#include "logic/worker_group.h"

namespace sio_steer {

// The uids a group may name (--worker-uid).
constexpr std::size_t max_group_uids = 8;

// The group recorded in `pin_dir`, or nullopt if none is yet. Throws steer_error(incompatible)
// for a value this version cannot read.
std::optional<worker_group> read_group(const std::string& pin_dir);

// Records it, pinning `group` (filled first) if it is not pinned yet.
void record_group(const std::string& pin_dir, const worker_group& group);

}  // namespace sio_steer
