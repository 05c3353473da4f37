// Node versions (logic/node_version.h): the first line is a version text and the worker's binary
// path (both come from the worker), the rest the worker's include/node/node_version.h, read as
// `doctor` and `attach` read it, under a root folder this target makes.
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "fuzz_util.h"
#include "logic/node_version.h"

namespace {

const std::string& root()
{
    static const std::string dir = [] {
        char templ[] = "/tmp/sio-steer-fuzz-XXXXXX";
        std::string made = mkdtemp(templ);
        std::filesystem::create_directories(made + "/opt/node/bin");
        std::filesystem::create_directories(made + "/opt/node/include/node");
        return made;
    }();
    return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    std::vector<std::string> f = fuzz::fields(fuzz::input(data, size), 2);
    const std::string& first = f[0];
    if (auto v = sio_steer::parse_node_version(first)) {
        FUZZ_CHECK(v->major <= 9999 && v->minor <= 9999 && v->patch <= 9999);
        sio_steer::supports_reuse_port(*v);
        auto again = sio_steer::parse_node_version(v->text());
        FUZZ_CHECK(again && again->major == v->major && again->minor == v->minor && again->patch == v->patch);
    }
    // The binary's path as the worker's /proc/PID/exe gives it (absolute, no "..", no NUL).
    if (first.find("..") == std::string::npos && first.find('\0') == std::string::npos)
        sio_steer::node_runtime_from({}, "/" + first + "/node", "/nonexistent-fuzz-root");

    {
        std::ofstream header(root() + "/opt/node/include/node/node_version.h", std::ios::binary | std::ios::trunc);
        header << (f.size() > 1 ? f[1] : std::string());
    }
    sio_steer::node_runtime r = sio_steer::node_runtime_from({}, "/opt/node/bin/node", root());
    FUZZ_CHECK(r.is_node);
    return 0;
}
