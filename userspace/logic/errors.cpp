#include "errors.h"

#include <cstring>

namespace sio_steer {

void throw_system_error(const std::string& what, int err)
{
    throw steer_error(exit_code::failure, what + ": " + std::strerror(err));
}

}  // namespace sio_steer
