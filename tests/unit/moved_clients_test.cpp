// must_keep_apart: which recorded clients the moved map holds, apart from the LRU that a flood of
// new sources evicts: those whose record sends them to another worker than the ring would.
#include <gtest/gtest.h>

#include <cstdint>

#include "logic/moved_clients.h"
#include "logic/slot_table.h"

using namespace sio_steer;

namespace {

constexpr std::uint64_t second = 1'000'000'000ull;
constexpr std::uint64_t now = 10'000 * second, ttl = 600 * second;

struct MovedClients : ::testing::Test {
    std::vector<slot> slots = empty_slots();

    void SetUp() override
    {
        slots[1] = slot{1001, 3, 0, SIO_STEER_SLOT_NONE, 812};
        slots[2] = slot{1002, 5, 1, SIO_STEER_SLOT_NONE, 813};
        slots[3] = slot{1003, 1, 2, SIO_STEER_SLOT_NONE, 814};
    }
};

}  // namespace

TEST_F(MovedClients, AClientOnTheRingsChoiceLosesNothingWithItsRecord)
{
    EXPECT_FALSE(must_keep_apart(session{2, 5, now - second}, slots, 2, now, ttl));
}

TEST_F(MovedClients, AClientTheRingNoLongerChoosesIsKeptApart)
{
    // A scale-up gave its bucket to slot 3; the record still sends it to slot 2.
    EXPECT_TRUE(must_keep_apart(session{2, 5, now - second}, slots, 3, now, ttl));
    EXPECT_EQ(recorded_destination(session{2, 5, now - second}, slots, now, ttl), 2u);
}

TEST_F(MovedClients, AClosedSocketsClientGoesToItsSuccessorAndIsKeptApartOnlyIfTheRingChoosesAnother)
{
    slots[1].cookie = 0;  // closed; slot 2 replaced it
    slots[1].successor = 2;
    const session s{1, 3, now - second};
    EXPECT_EQ(recorded_destination(s, slots, now, ttl), 2u);
    EXPECT_FALSE(must_keep_apart(s, slots, 2, now, ttl)) << "the successor is the ring's choice";
    EXPECT_TRUE(must_keep_apart(s, slots, 3, now, ttl));
}

TEST_F(MovedClients, ARecordThatNoLongerBindsHasNothingToKeep)
{
    EXPECT_FALSE(must_keep_apart(session{2, 5, now - ttl - second}, slots, 3, now, ttl)) << "idle past the TTL";
    slots[1].cookie = 0;  // closed, no successor: the ring places it anyway
    EXPECT_FALSE(recorded_destination(session{1, 3, now}, slots, now, ttl));
    slots[1].successor = 3;
    slots[3].cookie = 0;  // a successor that closed too
    EXPECT_FALSE(must_keep_apart(session{1, 3, now}, slots, 2, now, ttl));
    EXPECT_FALSE(must_keep_apart(session{SIO_STEER_MAX_SLOTS, 1, now}, slots, 2, now, ttl)) << "no such slot";
}

TEST_F(MovedClients, AReusedSlotDoesNotInheritTheClient)
{
    // Slot 2 holds a newer socket (generation 6): the record of generation 5 binds no longer.
    slots[2].generation = 6;
    EXPECT_FALSE(recorded_destination(session{2, 5, now}, slots, now, ttl));
    EXPECT_FALSE(must_keep_apart(session{2, 5, now}, slots, 1, now, ttl));
}

TEST_F(MovedClients, ARecordRefreshedAfterNowIsFresh)
{
    // The controller takes `now` before its walk; the program refreshes records meanwhile.
    EXPECT_TRUE(must_keep_apart(session{2, 5, now + second}, slots, 3, now, ttl));
}
