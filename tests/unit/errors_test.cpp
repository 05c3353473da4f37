// sys_error: a failed system call keeps its errno, so callers catch only what they expect.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>

#include "logic/errors.h"

using namespace sio_steer;

TEST(SysError, KeepsTheErrnoAndSaysWhatFailed)
{
    try {
        throw_system_error("pidfd_open", ESRCH);
        FAIL() << "no throw";
    } catch (const sys_error& e) {
        EXPECT_EQ(e.errnum(), ESRCH);
        EXPECT_EQ(std::string(e.what()), std::string("pidfd_open: ") + std::strerror(ESRCH));
        EXPECT_EQ(e.code(), exit_code::failure);
        EXPECT_TRUE(e.why().empty());
    }
}

TEST(SysError, IsASteerErrorWithItsExitCodeWhyAndFix)
{
    try {
        throw sys_error("pidfd_getfd", EPERM, exit_code::environment, "needs CAP_SYS_PTRACE", "run as root");
    } catch (const steer_error& e) {
        EXPECT_EQ(e.code(), exit_code::environment);
        EXPECT_EQ(e.why(), "needs CAP_SYS_PTRACE");
        EXPECT_EQ(e.fix(), "run as root");
        ASSERT_NE(dynamic_cast<const sys_error*>(&e), nullptr);
        EXPECT_EQ(dynamic_cast<const sys_error&>(e).errnum(), EPERM);
    }
}
