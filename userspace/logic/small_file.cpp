#include "logic/small_file.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

#include "logic/unique_fd.h"

namespace sio_steer {

namespace {

// O_NONBLOCK: opening a FIFO for reading would wait for a writer; fstat() refuses it afterwards.
constexpr int open_flags = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY;

unique_fd open_in_root(const std::string& root, const std::string& path)
{
    unique_fd dir(::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!dir)
        return {};
    open_how how{};
    how.flags = open_flags;
    how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
    long fd = syscall(SYS_openat2, dir.get(), path.c_str(), &how, sizeof(how));
    if (fd < 0 && errno == ENOSYS)  // Linux < 5.6: at least the last component is not followed
        fd = ::open((root + path).c_str(), open_flags);
    return unique_fd(static_cast<int>(fd));
}

}  // namespace

std::optional<std::string> read_small_file(const std::string& path, std::size_t max_bytes, const std::string& root)
{
    unique_fd fd = root.empty() ? unique_fd(::open(path.c_str(), open_flags)) : open_in_root(root, path);
    struct stat st {};
    if (!fd || fstat(fd.get(), &st) || !S_ISREG(st.st_mode))
        return std::nullopt;
    std::string text(max_bytes, '\0');
    std::size_t used = 0;
    while (used < max_bytes) {
        ssize_t n = ::read(fd.get(), text.data() + used, max_bytes - used);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return std::nullopt;
        if (n == 0)
            break;
        used += static_cast<std::size_t>(n);
    }
    text.resize(used);
    return text;
}

}  // namespace sio_steer
