#include "port_lock.h"

#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <fcntl.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <spdlog/spdlog.h>

#include "errors.h"

namespace sio_steer {

namespace fs = std::filesystem;

namespace {

std::string lock_path(const std::string& lock_dir, const std::string& pin_dir)
{
    std::string name = pin_dir;
    for (char& c : name)
        if (c == '/')
            c = '-';
    return lock_dir + "/" + name + ".lock";
}

// Line 1 of a lock file: the pid of the process that took it last (it may be gone).
std::optional<pid_t> recorded_pid(const std::string& path)
{
    std::ifstream in(path);
    long pid = 0;
    if (!(in >> pid) || pid <= 0)
        return std::nullopt;
    return static_cast<pid_t>(pid);
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

port_lock::port_lock(const std::string& lock_dir, const std::string& pin_dir)
{
    std::error_code ec;
    fs::create_directories(lock_dir, ec);
    std::string path = lock_path(lock_dir, pin_dir);
    fd_ = unique_fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
    if (!fd_)
        throw_system_error("cannot open the lock file " + path, errno);
    if (flock(fd_.get(), LOCK_EX | LOCK_NB)) {
        std::string holder;
        std::ifstream(path) >> holder;
        throw steer_error(exit_code::busy,
                          "another sio-steer" + (holder.empty() ? std::string() : " (pid " + holder + ")") +
                              " is already managing " + pin_dir,
                          "two controllers writing the same maps would undo each other's slots",
                          "use `sio-steer status` to see it; stop it (e.g. systemctl stop sio-steer@PORT) first");
    }
    std::string pid = std::to_string(getpid()) + "\n";
    if (ftruncate(fd_.get(), 0) == 0)
        (void)!pwrite(fd_.get(), pid.data(), pid.size(), 0);
}

port_lock port_lock::wait(const std::string& lock_dir, const std::string& pin_dir, std::chrono::milliseconds timeout)
{
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        try {
            return port_lock(lock_dir, pin_dir);
        } catch (const steer_error& e) {
            if (e.code() != exit_code::busy || std::chrono::steady_clock::now() > deadline)
                throw;
        }
        usleep(20'000);
    }
}

void port_lock::publish(const follow_status& status)
{
    // Written over the old content, then cut to its length: a reader that stops at the end of
    // line 2 never sees the tail of a longer old line (and one small pwrite is not seen half-done).
    const std::string text = std::to_string(getpid()) + "\n" + follow_line(status) + "\n";
    if (pwrite(fd_.get(), text.data(), text.size(), 0) != static_cast<ssize_t>(text.size()) ||
        ftruncate(fd_.get(), static_cast<off_t>(text.size())))
        spdlog::warn("cannot record the follow mode in the lock file: {}; `status` and `doctor` will say "
                     "\"unknown\" for it",
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

std::optional<pid_t> lock_holder(const std::string& lock_dir, const std::string& pin_dir)
{
    const std::string path = lock_path(lock_dir, pin_dir);
    struct stat st {};
    if (stat(path.c_str(), &st))
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

std::optional<follow_status> read_follow_status(const std::string& lock_dir, const std::string& pin_dir)
{
    std::optional<pid_t> holder = lock_holder(lock_dir, pin_dir);
    if (!holder)
        return std::nullopt;
    std::ifstream in(lock_path(lock_dir, pin_dir));
    std::string pid_line, line;
    std::getline(in, pid_line);
    if (std::getline(in, line) && pid_line == std::to_string(*holder))
        if (std::optional<follow_status> f = parse_follow_line(line))
            return f;
    return follow_status{"unknown", "pid " + std::to_string(*holder) +
                                        " holds the port's lock but has not said how it follows (it is starting, "
                                        "or it is not a following attach)"};
}

}  // namespace sio_steer
