// Which listeners belong to the steered group (worker_group.h): recorded at the first attach,
// then address, family and uid decide; another user's listener never joins.
#include <sys/socket.h>

#include <gtest/gtest.h>

#include "logic/errors.h"
#include "logic/worker_group.h"

namespace sio_steer {
namespace {

const bound_listener worker4{AF_INET, "127.0.0.1", 1000}, worker6{AF_INET6, "::", 1000};

TEST(WorkerGroup, MembersShareFamilyAddressAndUid)
{
    worker_group g{AF_INET, "127.0.0.1", {1000}};
    EXPECT_TRUE(belongs(g, worker4));
    EXPECT_FALSE(belongs(g, {AF_INET, "127.0.0.2", 1000})) << "another address of the port";
    EXPECT_FALSE(belongs(g, {AF_INET6, "::1", 1000})) << "another family";
    EXPECT_FALSE(belongs(g, {AF_INET, "127.0.0.1", 65534})) << "the group's address, another uid (no worker left)";
    EXPECT_TRUE(belongs({AF_INET, "127.0.0.1", {}}, {AF_INET, "127.0.0.1", 65534})) << "--worker-uid any";
    EXPECT_FALSE(belongs({AF_INET6, "::", {1000}}, {AF_INET, "0.0.0.0", 1000})) << "dual-stack [::] is not 0.0.0.0";
}

TEST(WorkerGroup, FirstAttachRecordsTheOneGroupAndItsUid)
{
    worker_group g = first_group({worker6, worker6}, std::nullopt, 5001);
    EXPECT_EQ(g, (worker_group{AF_INET6, "::", {1000}}));
    EXPECT_EQ(group_text(g, 5001), "[::]:5001 of uid 1000");
}

TEST(WorkerGroup, FirstAttachWithSeveralGroupsRefusesUnlessTheUidSettlesIt)
{
    std::vector<bound_listener> ls = {worker4, worker4, {AF_INET6, "::1", 65534}};
    try {
        first_group(ls, std::nullopt, 5001);
        FAIL() << "several groups accepted";
    } catch (const steer_error& e) {
        EXPECT_EQ(e.code(), exit_code::not_steerable);
        EXPECT_NE(std::string(e.what()).find("[::1]:5001 of uid 65534"), std::string::npos) << e.what();
        EXPECT_NE(e.fix().find("--worker-uid"), std::string::npos);
    }
    EXPECT_EQ(first_group(ls, std::vector<std::uint32_t>{1000}, 5001), (worker_group{AF_INET, "127.0.0.1", {1000}}));
}

TEST(WorkerGroup, FirstAttachWithoutTheWorkersListenersIsNoListeners)
{
    try {
        first_group({{AF_INET, "127.0.0.1", 65534}}, std::vector<std::uint32_t>{1000}, 5001);
        FAIL();
    } catch (const steer_error& e) {
        EXPECT_EQ(e.code(), exit_code::no_listeners);
    }
}

TEST(WorkerGroup, ForeignListenerTextNamesBoth)
{
    std::string t = foreign_listener_text({AF_INET, "127.0.0.1", {0}}, {AF_INET6, "::1", 65534}, 5001);
    EXPECT_EQ(t.find("ignoring the listener [::1]:5001 of uid 65534: not of the group 127.0.0.1:5001 of uid 0"), 0u)
        << t;
}

TEST(WorkerGroup, WorkerUidOption)
{
    EXPECT_EQ(parse_worker_uids("1000", 8), std::vector<std::uint32_t>{1000});
    EXPECT_EQ(parse_worker_uids("1001,1000,1001", 8), (std::vector<std::uint32_t>{1000, 1001}));
    EXPECT_EQ(parse_worker_uids("root", 8), std::vector<std::uint32_t>{0});
    EXPECT_TRUE(parse_worker_uids("any", 8).empty());
    for (const char* bad : {"", "-1", "1000,", ",1000", "4294967295", "no-such-user-here", "1 000"})
        EXPECT_THROW(parse_worker_uids(bad, 8), steer_error) << bad;
    EXPECT_THROW(parse_worker_uids("1,2,3", 2), steer_error);
}

}  // namespace
}  // namespace sio_steer
