// Checks made before anything changes: privileges, bpffs, and one controller per port (port_lock.h).
#pragma once

#include <string>
#include <vector>

#include "logic/port_lock.h"  // the third check: one controller per port

namespace sio_steer {

struct capability_check {
    const char* name;
    bool present;
    const char* needed_for;
};

// The capabilities the controller needs, and whether this process has them (effective set).
std::vector<capability_check> check_capabilities();

// Throws steer_error(environment) naming every missing capability.
void require_capabilities();

// Throws steer_error(environment) when `pin_root` is not on a mounted bpffs (or could not be).
void require_bpffs(const std::string& pin_root);

}  // namespace sio_steer
