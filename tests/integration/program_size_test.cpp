// The steering program's size as the verifier sees it: it runs for every SYN, and the verifier's
// work grows with every branch added. docs/architecture.md quotes the figure; this pins it, so
// growth is a decision rather than a surprise. Real kernel, a private pin root.
#include <gtest/gtest.h>

#include <bpf/bpf.h>

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

class ProgramSizeTest : public integration_test {};

TEST_F(ProgramSizeTest, TheVerifierWalksAtMostTwelveThousandInstructions)
{
    steer_options o;
    o.port = port;
    o.pin_root = pins().path();
    auto [state, created] = pinned_state::load(o);
    ASSERT_TRUE(created);
    std::uint32_t walked = verified_instructions(state.program());
    std::printf("steering program: the verifier walked %u instructions\n", walked);
    ASSERT_GT(walked, 0u) << "the kernel did not report verified_insns";
    // ~9,500 when this test was written (select_by_ring() is a global function, checked once);
    // 11,007 with the moved map (a second lookup, the ring's first choice on the successor path).
    EXPECT_LE(walked, 12000u) << "the program grew: check docs/architecture.md's figure and the SYN path's cost";
}

}  // namespace
}  // namespace sio_steer::test
