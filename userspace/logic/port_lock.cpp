#include "logic/port_lock.h"

#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <fcntl.h>
#include <unistd.h>

#include <cctype>
#include <charconv>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <spdlog/spdlog.h>

#include "logic/errors.h"
#include "logic/small_file.h"

namespace sio_steer {

namespace fs = std::filesystem;

namespace {

// Per port, not per pin folder: two attaches with different --pin-root must not both steer it.
std::string lock_path(const std::string& lock_dir, std::uint16_t port)
{
    return lock_dir + "/" + std::to_string(port) + ".lock";
}

// The lock file as it is, never through a link (small_file.h); "" if it cannot be read. Its
// control line holds at most one cookie per slot of the workers map.
std::string lock_text(const std::string& path) { return read_small_file(path, 16384).value_or(""); }

// The lines after line 1 of the lock file of `port`, if line 1 names the live holder of the lock.
std::optional<std::vector<std::string>> holder_lines(const std::string& lock_dir, std::uint16_t port)
{
    std::optional<pid_t> holder = lock_holder(lock_dir, port);
    if (!holder)
        return std::nullopt;
    std::istringstream in(lock_text(lock_path(lock_dir, port)));
    std::string line;
    std::getline(in, line);
    if (line != std::to_string(*holder))
        return std::vector<std::string>{};
    std::vector<std::string> lines;
    while (std::getline(in, line))
        lines.push_back(line);
    return lines;
}

// Line 1 of a lock file: the pid of the process that took it last (it may be gone).
std::optional<pid_t> recorded_pid(const std::string& path)
{
    std::istringstream in(lock_text(path));
    long pid = 0;
    if (!(in >> pid) || pid <= 0)
        return std::nullopt;
    return static_cast<pid_t>(pid);
}

[[noreturn]] void refuse_lock_file(const std::string& path, const std::string& what)
{
    throw steer_error(exit_code::environment, "the lock file " + path + " " + what,
                      "root opens it to write its pid: another user who can write in the lock folder may have put "
                      "it there to make root write elsewhere",
                      "remove it, and keep the lock folder writable by root only (/run/sio-steer is mode 0755)");
}

// True when one of `pid`'s own fds is the file `st` describes and holds an flock on it (a
// "lock:" line in its fdinfo). Independent of the device number /proc/locks prints, which on
// overlayfs is the overlay's while stat() gives the upper layer's.
bool holds_flock_on(pid_t pid, const struct stat& st)
{
    const std::string proc = "/proc/" + std::to_string(pid);
    std::error_code ec;
    for (fs::directory_iterator it(proc + "/fd", ec), end; !ec && it != end; it.increment(ec)) {
        struct stat fd_st {};
        if (stat(it->path().c_str(), &fd_st) || fd_st.st_dev != st.st_dev || fd_st.st_ino != st.st_ino)
            continue;
        std::ifstream info(proc + "/fdinfo/" + it->path().filename().string());
        for (std::string line; std::getline(info, line);)
            if (line.starts_with("lock:") && line.find(" FLOCK ") != std::string::npos &&
                line.find("->") == std::string::npos)
                return true;
    }
    return false;
}

}  // namespace

port_lock::port_lock(const std::string& lock_dir, std::uint16_t port)
{
    std::error_code ec;
    fs::create_directories(lock_dir, ec);
    std::string path = lock_path(lock_dir, port);
    // O_NOFOLLOW: a link planted here would make root create or truncate the file it names.
    fd_ = unique_fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0600));
    if (!fd_ && errno == ELOOP)
        refuse_lock_file(path, "is a symbolic link");
    if (!fd_)
        throw_system_error("cannot open the lock file " + path, errno);
    struct stat st {};
    if (fstat(fd_.get(), &st))
        throw_system_error("cannot stat the lock file " + path, errno);
    if (!S_ISREG(st.st_mode))
        refuse_lock_file(path, "is not a regular file");
    if (st.st_uid != geteuid())
        refuse_lock_file(path, "belongs to uid " + std::to_string(st.st_uid) + ", not to this user");
    if (flock(fd_.get(), LOCK_EX | LOCK_NB)) {
        std::optional<pid_t> holder = recorded_pid(path);
        throw steer_error(exit_code::busy,
                          "another sio-steer" + (holder ? " (pid " + std::to_string(*holder) + ")" : std::string()) +
                              " is already managing port " + std::to_string(port) + " (" + path + ")",
                          "two controllers writing the same maps would undo each other's slots",
                          "use `sio-steer status` to see it; stop it (e.g. systemctl stop sio-steer@PORT) first");
    }
    std::string pid = std::to_string(getpid()) + "\n";
    if (ftruncate(fd_.get(), 0) == 0)
        (void)!pwrite(fd_.get(), pid.data(), pid.size(), 0);
}

port_lock port_lock::wait(const std::string& lock_dir, std::uint16_t port, std::chrono::milliseconds timeout)
{
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        try {
            return port_lock(lock_dir, port);
        } catch (const steer_error& e) {
            if (e.code() != exit_code::busy || std::chrono::steady_clock::now() > deadline)
                throw;
        }
        usleep(20'000);
    }
}

void port_lock::publish(const follow_status& status)
{
    follow_ = status;
    write_out();
}

void port_lock::publish_control_peers(const std::vector<std::uint64_t>& cookies)
{
    control_peers_ = cookies;
    write_out();
}

void port_lock::write_out()
{
    std::string text = std::to_string(getpid()) + "\n";
    if (follow_)
        text += follow_line(*follow_) + "\n";
    if (control_peers_) {
        text += "control";
        for (std::uint64_t cookie : *control_peers_)
            text += " " + std::to_string(cookie);
        text += "\n";
    }
    // Written over the old content, then cut to its length: a reader that stops at the end of
    // a line never sees the tail of a longer old line (and one small pwrite is not seen half-done).
    if (pwrite(fd_.get(), text.data(), text.size(), 0) != static_cast<ssize_t>(text.size()) ||
        ftruncate(fd_.get(), static_cast<off_t>(text.size())))
        spdlog::warn("cannot record the follow mode and control socket peers in the lock file: {}; `status` and "
                     "`doctor` will say \"unknown\" for them",
                     std::strerror(errno));
}

std::string follow_line(const follow_status& status)
{
    std::string mode = status.mode.empty() ? "unknown" : status.mode, reason = status.reason;
    for (char& c : mode)
        if (std::isspace(static_cast<unsigned char>(c)))
            c = '_';
    for (char& c : reason)
        if (c == '\n' || c == '\r')
            c = ' ';
    return "follow " + mode + " " + reason;
}

std::optional<follow_status> parse_follow_line(const std::string& line)
{
    const std::string head = "follow ";
    if (!line.starts_with(head))
        return std::nullopt;
    std::size_t end = line.find(' ', head.size());
    follow_status f{line.substr(head.size(), end - head.size()), end == std::string::npos ? "" : line.substr(end + 1)};
    if (f.mode.empty())
        return std::nullopt;
    return f;
}

std::optional<pid_t> lock_holder(const std::string& lock_dir, std::uint16_t port)
{
    const std::string path = lock_path(lock_dir, port);
    struct stat st {};
    if (lstat(path.c_str(), &st) || !S_ISREG(st.st_mode))
        return std::nullopt;
    // "1: FLOCK  ADVISORY  WRITE 4242 00:1a:5678 0 EOF"; waiters have "->" after the number.
    std::ifstream locks("/proc/locks");
    std::string line;
    while (std::getline(locks, line)) {
        std::istringstream fields(line);
        std::string number, kind, advisory, mode, device;
        pid_t pid = 0;
        if (!(fields >> number >> kind >> advisory >> mode >> pid >> device) || kind != "FLOCK")
            continue;
        unsigned major_dev = 0, minor_dev = 0;
        unsigned long long inode = 0;
        if (std::sscanf(device.c_str(), "%x:%x:%llu", &major_dev, &minor_dev, &inode) == 3 && inode == st.st_ino &&
            major_dev == major(st.st_dev) && minor_dev == minor(st.st_dev))
            return pid;
    }
    // Not there under stat()'s device (overlayfs): ask the process the file names.
    if (std::optional<pid_t> pid = recorded_pid(path); pid && holds_flock_on(*pid, st))
        return pid;
    return std::nullopt;
}

std::optional<follow_status> read_follow_status(const std::string& lock_dir, std::uint16_t port)
{
    std::optional<pid_t> holder = lock_holder(lock_dir, port);
    if (!holder)
        return std::nullopt;
    std::istringstream in(lock_text(lock_path(lock_dir, port)));
    std::string pid_line, line;
    std::getline(in, pid_line);
    if (std::getline(in, line) && pid_line == std::to_string(*holder))
        if (std::optional<follow_status> f = parse_follow_line(line))
            return f;
    return follow_status{"unknown", "pid " + std::to_string(*holder) +
                                        " holds the port's lock but has not said how it follows (it is starting, "
                                        "or it is not a following attach)"};
}

std::optional<std::vector<std::uint64_t>> read_control_peers(const std::string& lock_dir, std::uint16_t port)
{
    std::optional<std::vector<std::string>> lines = holder_lines(lock_dir, port);
    if (!lines)
        return std::nullopt;
    for (const std::string& line : *lines) {
        if (line != "control" && !line.starts_with("control "))
            continue;
        std::istringstream words(line.substr(7));
        std::vector<std::uint64_t> cookies;
        for (std::string word; words >> word;) {
            std::uint64_t cookie = 0;
            auto [end, ec] = std::from_chars(word.data(), word.data() + word.size(), cookie);
            if (ec != std::errc{} || end != word.data() + word.size())
                return std::nullopt;  // not what a controller writes: no answer rather than a wrong one
            cookies.push_back(cookie);
        }
        return cookies;
    }
    return std::nullopt;
}

}  // namespace sio_steer
