// plan_slots(): which socket sits in which slot, what the ring is built from, who succeeds whom.
#include <gtest/gtest.h>

#include "logic/slot_table.h"

namespace sio_steer {
namespace {

std::uint32_t slot_of(const slot_plan& p, std::uint64_t cookie)
{
    for (std::uint32_t s = 0; s < p.slots.size(); s++)
        if (p.slots[s].cookie == cookie)
            return s;
    return SIO_STEER_SLOT_NONE;
}

std::vector<live_socket> workers(int n, std::uint64_t first_cookie = 100)
{
    std::vector<live_socket> live;
    for (int i = 0; i < n; i++)
        live.push_back({first_cookie + static_cast<std::uint64_t>(i), static_cast<std::uint32_t>(i), 1000 + i});
    return live;
}

TEST(SlotTable, NewSocketsGetSlotsAndOneRingMemberPerInstance)
{
    slot_plan p = plan_slots(empty_slots(), workers(4));
    EXPECT_EQ(p.inserts.size(), 4u);
    EXPECT_EQ(p.ring_members.size(), 4u);
    for (const auto& m : p.ring_members)
        EXPECT_EQ(m.id, p.slots[m.slot].instance);
}

TEST(SlotTable, SocketsAlreadyInASlotStayThereAndAreNotInsertedAgain)
{
    slot_plan first = plan_slots(empty_slots(), workers(4));
    slot_plan again = plan_slots(first.slots, workers(4));
    EXPECT_TRUE(again.inserts.empty()) << "re-inserting a socket is EBUSY";
    EXPECT_TRUE(again.changed.empty());
    EXPECT_TRUE(again.removed.empty());
}

TEST(SlotTable, RestartedWorkerTakesANewSlotAndBackItsInstance)
{
    slot_plan first = plan_slots(empty_slots(), workers(4));
    auto live = workers(4);
    live[2] = {999, 2u, 4242};  // instance 2 restarted: new socket, new pid
    slot_plan next = plan_slots(first.slots, live);
    std::uint32_t old_slot = slot_of(first, 102);
    ASSERT_EQ(next.removed, std::vector<std::uint32_t>{old_slot});
    ASSERT_EQ(next.inserts.size(), 1u);
    std::uint32_t new_slot = next.inserts[0].first;
    EXPECT_NE(new_slot, old_slot) << "a freed slot is reused as late as possible";
    EXPECT_GT(next.slots[new_slot].generation, first.slots[old_slot].generation);
    EXPECT_EQ(next.slots[old_slot].generation, first.slots[old_slot].generation) << "its sessions still match";
    EXPECT_EQ(next.slots[old_slot].successor, new_slot) << "the closed socket's clients go to the replacement";
    for (const auto& m : next.ring_members) {
        if (m.id == 2) {
            EXPECT_EQ(m.slot, new_slot);
        }
    }
}

TEST(SlotTable, DuringAReloadOverlapTheNewestSocketOfAnInstanceGetsTheRing)
{
    slot_plan first = plan_slots(empty_slots(), workers(4));
    auto live = workers(4);
    live.push_back({555, 1u, 7777});  // the new worker of instance 1, the old one still listens
    slot_plan overlap = plan_slots(first.slots, live);
    std::uint32_t old_slot = slot_of(first, 101), new_slot = slot_of(overlap, 555);
    EXPECT_TRUE(overlap.removed.empty()) << "the old socket keeps its slot and its clients";
    EXPECT_EQ(overlap.slots[old_slot].successor, new_slot);
    EXPECT_EQ(overlap.ring_members.size(), 4u);
    for (const auto& m : overlap.ring_members) {
        if (m.id == 1) {
            EXPECT_EQ(m.slot, new_slot);
        }
    }
}

TEST(SlotTable, WorkersWithoutAnInstanceAreIdentifiedByPid)
{
    std::vector<live_socket> live = {{1, std::nullopt, 10}, {2, std::nullopt, 11}};
    slot_plan p = plan_slots(empty_slots(), live);
    ASSERT_EQ(p.ring_members.size(), 2u);
    EXPECT_EQ(p.ring_members[0].id, member_id(no_instance, 10));
    EXPECT_EQ(p.ring_members[1].id, member_id(no_instance, 11));
}

TEST(SlotTable, NoWorkersLeavesAnEmptyRing)
{
    slot_plan first = plan_slots(empty_slots(), workers(2));
    slot_plan none = plan_slots(first.slots, {});
    EXPECT_EQ(none.removed.size(), 2u);
    EXPECT_TRUE(none.ring_members.empty());
}

TEST(SlotTable, MoreSocketsThanSlotsIsRefused)
{
    EXPECT_THROW(plan_slots(empty_slots(), workers(SIO_STEER_MAX_SLOTS + 1)), std::exception);
}

}  // namespace
}  // namespace sio_steer
