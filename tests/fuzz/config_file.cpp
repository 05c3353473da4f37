// `attach --config FILE` (cli/config_file.h), read through its real entry point, then the value
// parsers attach runs on what it stored. The options are attach's names and kinds; attach's own
// table lives in the CLI layer, which the fuzz build does not link.
#include <sys/mman.h>
#include <unistd.h>

#include "cli/config_file.h"
#include "fuzz_util.h"
#include "logic/listen_address.h"
#include "logic/options.h"

namespace po = boost::program_options;
namespace ss = sio_steer;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    // The file: a memfd, opened again by path as config_file::read opens a file.
    static const int fd = memfd_create("sio-steer-fuzz.conf", MFD_CLOEXEC);
    static const std::string path = "/proc/self/fd/" + std::to_string(fd);
    FUZZ_CHECK(fd >= 0 && ftruncate(fd, 0) == 0);
    FUZZ_CHECK(pwrite(fd, data, size, 0) == static_cast<ssize_t>(size));

    std::string port, config, key = "address", v4 = "32", v6 = "64", max_sessions = "262144", ttl = "600",
                                  resync = "2000", follow = "auto", metrics, lock_dir = "/run/sio-steer",
                                  pin_root = "/sys/fs/bpf/sio-steer";
    bool once = false;
    po::options_description options("attach options");
    options.add_options()
        ("port", po::value(&port))
        ("config", po::value(&config))
        ("help", "")
        ("once", po::bool_switch(&once))
        ("key", po::value(&key)->default_value(key))
        ("v4-prefix", po::value(&v4)->default_value(v4))
        ("v6-prefix", po::value(&v6)->default_value(v6))
        ("max-sessions", po::value(&max_sessions)->default_value(max_sessions))
        ("session-ttl", po::value(&ttl)->default_value(ttl))
        ("resync-interval", po::value(&resync)->default_value(resync))
        ("follow", po::value(&follow)->default_value(follow))
        ("metrics-listen", po::value(&metrics))
        ("lock-dir", po::value(&lock_dir)->default_value(lock_dir))
        ("pin-root", po::value(&pin_root)->default_value(pin_root));
    po::variables_map vm;
    const char* argv[] = {"attach", "--port", "5001"};
    po::store(po::parse_command_line(3, argv, options), vm);

    std::optional<ss::config_file> file;
    try {
        file = ss::config_file::read(path, options, vm);
        po::notify(vm);
    } catch (const ss::steer_error& e) {
        FUZZ_CHECK(e.code() == ss::exit_code::usage);
        return 0;
    }
    FUZZ_CHECK(port == "5001");  // the command line wins, and the file cannot set the port
    try {
        ss::steer_options o;
        o.port = ss::parse_port(port);
        o.key_mode = ss::parse_key_mode(key);
        o.session_ttl = ss::parse_duration("--session-ttl", ttl);
        o.v4_prefix = static_cast<std::uint32_t>(ss::parse_number("--v4-prefix", v4, 0, UINT32_MAX));
        o.v6_prefix = static_cast<std::uint32_t>(ss::parse_number("--v6-prefix", v6, 0, UINT32_MAX));
        o.max_sessions = static_cast<std::uint32_t>(ss::parse_number("--max-sessions", max_sessions, 0, UINT32_MAX));
        ss::parse_number("--resync-interval", resync, 100, 3'600'000);
        ss::validate(o);
        if (!metrics.empty())
            ss::parse_listen_address(metrics);
    } catch (const ss::steer_error& e) {
        FUZZ_CHECK(e.code() == ss::exit_code::usage);
        // A refused value that came from the file is located in it.
        const std::string located = file->locate(e).what();
        FUZZ_CHECK(located.size() >= std::string(e.what()).size());
    }
    return 0;
}
