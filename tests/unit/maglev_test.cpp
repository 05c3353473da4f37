#include "logic/maglev.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <random>
#include <stdexcept>
#include <vector>

#include "bpf/sio_steer.h"

namespace sio_steer {
namespace {

constexpr std::uint32_t ring_size = SIO_STEER_RING_SIZE;

// Slots differ from ids so that a mix-up of the two shows.
std::uint32_t slot_of(std::uint64_t id) { return static_cast<std::uint32_t>(id) + 100; }

std::vector<maglev_member> members_0_to(std::uint64_t n)
{
    std::vector<maglev_member> members;
    for (std::uint64_t id = 0; id < n; ++id)
        members.push_back({id, slot_of(id)});
    return members;
}

std::map<std::uint32_t, std::size_t> shares(const std::vector<std::uint32_t>& table)
{
    std::map<std::uint32_t, std::size_t> count;
    for (auto slot : table)
        ++count[slot];
    return count;
}

TEST(Maglev, EveryMemberGetsAnEvenShare)
{
    for (std::uint64_t n = 2; n <= 64; ++n) {
        auto table = maglev_table(members_0_to(n), ring_size);
        ASSERT_EQ(table.size(), ring_size);
        auto count = shares(table);
        ASSERT_EQ(count.size(), n) << "every member has entries, and nothing else does";
        for (std::uint64_t id = 0; id < n; ++id)
            ASSERT_TRUE(count.contains(slot_of(id))) << "n=" << n << " id=" << id;
        auto [min, max] =
            std::minmax_element(count.begin(), count.end(), [](auto& a, auto& b) { return a.second < b.second; });
        EXPECT_LE(double(max->second) / double(min->second), 1.1) << "n=" << n;
    }
}

// Maglev trades strict minimal disruption for balance (NSDI 2016, section 3.4): besides the
// entries the new member takes, a few entries move between existing members (measured: at most
// ~0.5% of the table). Pin both: about 1/(N+1) moves in all, and only a few between old members.
TEST(Maglev, AddingAMemberMovesAboutItsShareMostlyToIt)
{
    for (std::uint64_t n = 2; n <= 32; ++n) {
        auto before = maglev_table(members_0_to(n), ring_size);
        auto after = maglev_table(members_0_to(n + 1), ring_size);
        std::size_t changed = 0, between_old = 0;
        for (std::size_t i = 0; i < ring_size; ++i) {
            if (before[i] == after[i])
                continue;
            ++changed;
            if (after[i] != slot_of(n))
                ++between_old;
        }
        EXPECT_LE(double(changed) / ring_size, 1.0 / double(n + 1) + 0.01) << "n=" << n;
        EXPECT_LE(double(between_old) / ring_size, 0.01) << "n=" << n;
    }
}

TEST(Maglev, RemovingAMemberMovesItsEntriesAndFewOthers)
{
    for (std::uint64_t n = 3; n <= 33; ++n) {
        auto all = members_0_to(n);
        auto before = maglev_table(all, ring_size);
        const std::uint64_t gone = n / 2;
        all.erase(all.begin() + static_cast<std::ptrdiff_t>(gone));
        auto after = maglev_table(all, ring_size);
        std::size_t between_survivors = 0;
        for (std::size_t i = 0; i < ring_size; ++i) {
            ASSERT_NE(after[i], slot_of(gone));
            if (before[i] != slot_of(gone) && before[i] != after[i])
                ++between_survivors;
        }
        EXPECT_LE(double(between_survivors) / ring_size, 0.01) << "n=" << n;
    }
}

TEST(Maglev, RestartedWorkerKeepsItsEntriesUnderItsNewSlot)
{
    auto members = members_0_to(8);
    auto before = maglev_table(members, ring_size);
    const std::uint32_t old_slot = members[3].slot, new_slot = 250;
    members[3].slot = new_slot;
    auto after = maglev_table(members, ring_size);
    for (std::size_t i = 0; i < ring_size; ++i)
        ASSERT_EQ(after[i], before[i] == old_slot ? new_slot : before[i]) << "entry " << i;
}

TEST(Maglev, TableDependsOnlyOnTheSetOfMembers)
{
    // Sparse, large ids: not only PM2's 0..n-1.
    std::mt19937_64 rng(42);
    std::vector<maglev_member> members;
    for (std::uint32_t slot = 0; slot < 20; ++slot)
        members.push_back({rng(), slot});
    auto reference = maglev_table(members, ring_size);
    for (int round = 0; round < 5; ++round) {
        std::shuffle(members.begin(), members.end(), rng);
        EXPECT_EQ(maglev_table(members, ring_size), reference);
    }
}

TEST(Maglev, NoMembersMeansEveryEntryIsNone)
{
    auto table = maglev_table({}, ring_size);
    ASSERT_EQ(table.size(), ring_size);
    EXPECT_TRUE(
        std::all_of(table.begin(), table.end(), [](std::uint32_t slot) { return slot == SIO_STEER_SLOT_NONE; }));
}

TEST(Maglev, NonPrimeSizeThrows)
{
    auto members = members_0_to(4);
    for (std::uint32_t size : {0u, 1u, 4u, 65535u, 65536u})
        EXPECT_THROW(maglev_table(members, size), std::invalid_argument) << "size " << size;
    EXPECT_THROW(maglev_table({}, 65536), std::invalid_argument);
    EXPECT_NO_THROW(maglev_table(members, 7));
}

TEST(Maglev, DuplicateIdsThrow)
{
    std::vector<maglev_member> members{{5, 1}, {9, 2}, {5, 3}};
    EXPECT_THROW(maglev_table(members, ring_size), std::invalid_argument);
}

}  // namespace
}  // namespace sio_steer
