#include "logic/errors.h"

#include <cstring>

namespace sio_steer {

sys_error::sys_error(const std::string& what, int errnum, exit_code code, std::string why, std::string fix)
    : steer_error(code, what + ": " + std::strerror(errnum), std::move(why), std::move(fix)),
      errnum_(errnum)
{}

void throw_system_error(const std::string& what, int err) { throw sys_error(what, err); }

}  // namespace sio_steer
