// The steering program's size as the verifier sees it: it runs for every SYN, and the verifier's
// work grows with every branch added. docs/architecture.md quotes the figure; this pins it, so
// growth is a decision rather than a surprise. Real kernel, a private pin root.
#include <gtest/gtest.h>

#include <bpf/bpf.h>
#include <sys/utsname.h>

#include <cstdio>

#include "harness.h"
#include "kernel/pinned_state.h"

namespace sio_steer::test {
namespace {

// Instructions the verifier walked for the steering program (bpf_prog_info.verified_insns, Linux 5.16+).
std::uint32_t verified_instructions(int prog)
{
    bpf_prog_info info{};
    __u32 len = sizeof(info);
    if (bpf_obj_get_info_by_fd(prog, &info, &len))
        return 0;
    return info.verified_insns;
}

// The running kernel's major and minor version, as one number (6.18: 618).
int kernel_version()
{
    utsname u{};
    int major = 0, minor = 0;
    if (uname(&u) == 0)
        std::sscanf(u.release, "%d.%d", &major, &minor);
    return major * 100 + minor;
}

class ProgramSizeTest : public integration_test {};

TEST_F(ProgramSizeTest, TheVerifierWalksNoMoreThanTheProgramsBudget)
{
    steer_options o;
    o.port = port;
    o.pin_root = pins().path();
    auto [state, created] = pinned_state::load(o);
    ASSERT_TRUE(created);
    std::uint32_t walked = verified_instructions(state.program());
    std::printf("steering program: the verifier walked %u instructions\n", walked);
    ASSERT_GT(walked, 0u) << "the kernel did not report verified_insns";
    // On 6.18: ~9,500 when this test was written (select_by_ring() is a global function, checked
    // once); 11,007 with the moved map; 11,085 with the set-associative sessions table. An older
    // verifier prunes less: Debian 12's 6.1 walked 20,571 for the same program (tests/vm).
    const std::uint32_t budget = kernel_version() >= 618 ? 12000u : 24000u;
    EXPECT_LE(walked, budget) << "the program grew: check docs/architecture.md's figure and the SYN path's cost";
}

}  // namespace
}  // namespace sio_steer::test
