// /proc/PID/environ of a listener's owner, and the pm2_env JSON inside it (logic/pm2_env.h,
// node_version.h): the controller, as root, reads them from processes other users may own.
#include "fuzz_util.h"
#include "logic/node_version.h"
#include "logic/pm2_env.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    const std::string_view environ = fuzz::input(data, size);
    for (const char* var : {"NODE_APP_INSTANCE", "pm2_env", "NODE_VERSION"})
        if (auto value = sio_steer::environ_value(environ, var)) {
            // A view into the blob: one entry's value, no NUL inside.
            FUZZ_CHECK(value->data() >= environ.data() &&
                       value->data() + value->size() <= environ.data() + environ.size());
            FUZZ_CHECK(value->find('\0') == std::string_view::npos);
        }
    sio_steer::pm2_instance_from_environ(environ);
    // The root does not exist: no file is read, only the environ and the binary's path decide.
    sio_steer::node_runtime r = sio_steer::node_runtime_from(environ, "/usr/bin/node", "/nonexistent-fuzz-root");
    FUZZ_CHECK(r.is_node);
    return 0;
}
