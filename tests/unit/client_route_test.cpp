// explain_client: `sessions --client` tells which worker a client goes to and why, the way the
// program decides it: a fresh recorded session on the same socket, else the closed socket's
// successor, else the ring.
#include <gtest/gtest.h>

#include <bit>
#include <cstdint>

#include "logic/client_key.h"
#include "logic/client_route.h"
#include "logic/options.h"
#include "logic/slot_table.h"

using namespace sio_steer;

namespace {

constexpr std::uint64_t second = 1'000'000'000ull;
constexpr std::uint64_t now = 10'000 * second;

struct ClientRoute : ::testing::Test {
    config c = make_config(steer_options{}, 42);
    client_key key = key_for(*parse_address("192.0.2.7"), c);
    client_maps maps;
    int ring_reads = 0;

    void SetUp() override
    {
        maps.cfg = c;
        maps.slots = empty_slots();
        maps.slots[1] = slot{1001, 3, 0, SIO_STEER_SLOT_NONE, 812};
        maps.slots[2] = slot{1002, 5, 1, SIO_STEER_SLOT_NONE, 813};
        maps.ring_at = [this](std::uint32_t) {
            ring_reads++;
            return 2u;
        };
    }
    nlohmann::json explain() { return explain_client("192.0.2.7", key, maps, now); }
};

}  // namespace

TEST_F(ClientRoute, FreshSessionOnTheSameSocketIsRecorded)
{
    maps.recorded = session{1, 3, now - 3 * second};
    nlohmann::json r = explain();
    EXPECT_EQ(r["reason"], "recorded");
    EXPECT_EQ(r["worker"]["slot"], 1);
    EXPECT_EQ(r["worker"]["pid"], 812);
    EXPECT_EQ(r["worker"]["instance"], 0);
    EXPECT_EQ(r["worker"]["live"], true);
    EXPECT_DOUBLE_EQ(r["last_seen_s"].get<double>(), 3.0);
    EXPECT_EQ(ring_reads, 0) << "the ring is not read when the session decides";
    EXPECT_EQ(explanation_line(r),
              "192.0.2.7 (key 192.0.2.7) -> slot 1 (pid 812, instance 0): recorded, last seen 3s ago");
}

TEST_F(ClientRoute, ClosedSocketHandsItsClientsToItsSuccessor)
{
    maps.slots[1].cookie = 0;  // the socket closed; slot 2 (the instance's newer socket) takes over
    maps.slots[1].successor = 2;
    maps.recorded = session{1, 3, now - second};
    nlohmann::json r = explain();
    EXPECT_EQ(r["reason"], "successor");
    EXPECT_EQ(r["worker"]["slot"], 2);
    EXPECT_FALSE(r.contains("recorded_but"));
}

TEST_F(ClientRoute, ClosedSocketWithoutSuccessorGoesToTheRing)
{
    maps.slots[1].cookie = 0;
    maps.recorded = session{1, 3, now - second};
    nlohmann::json r = explain();
    EXPECT_EQ(r["reason"], "ring");
    EXPECT_EQ(r["recorded_but"], "its worker socket closed");
    EXPECT_EQ(r["bucket"], ring_bucket(key, c));
    EXPECT_EQ(r["worker"]["slot"], 2);
    EXPECT_EQ(ring_reads, 1);
    EXPECT_EQ(explanation_line(r), "192.0.2.7 (key 192.0.2.7) -> slot 2 (pid 813, instance 1): ring, last seen 1s ago "
                                   "(a recorded session no longer binds: its worker socket closed)");
}

TEST_F(ClientRoute, SessionIdlePastTheTtlNoLongerBinds)
{
    maps.recorded = session{1, 3, now - c.session_ttl_ns - second};
    nlohmann::json r = explain();
    EXPECT_EQ(r["reason"], "ring");
    EXPECT_EQ(r["recorded_but"], "idle past the session TTL");
}

TEST_F(ClientRoute, ReusedSlotDoesNotInheritClients)
{
    maps.recorded = session{1, 2, now - second};  // recorded under generation 2; the slot is at 3
    nlohmann::json r = explain();
    EXPECT_EQ(r["reason"], "ring");
    EXPECT_EQ(r["recorded_but"], "its worker socket closed");
}

TEST_F(ClientRoute, NewClientIsPlacedByTheRing)
{
    nlohmann::json r = explain();
    EXPECT_EQ(r["reason"], "ring");
    EXPECT_FALSE(r.contains("last_seen_s"));
    EXPECT_FALSE(r.contains("recorded_but"));
    EXPECT_EQ(explanation_line(r), "192.0.2.7 (key 192.0.2.7) -> slot 2 (pid 813, instance 1): ring");
}

TEST_F(ClientRoute, PerConnectionKeysDependOnTheSourcePort)
{
    steer_options o;
    o.key_mode = SIO_STEER_KEY_ADDRESS_PORT;
    maps.cfg = make_config(o, 42);
    nlohmann::json r = explain_client("192.0.2.7", key, maps, now);
    EXPECT_EQ(r["reason"], "ring (per connection: depends on the source port)");
    EXPECT_EQ(r["bucket"], 0);
}

TEST_F(ClientRoute, GoneWorkerAndEmptyRingAreNamed)
{
    maps.slots[2].cookie = 0;
    EXPECT_EQ(explanation_line(explain()), "192.0.2.7 (key 192.0.2.7) -> slot 2 (pid 813, instance 1, gone): ring");
    maps.ring_at = [](std::uint32_t) { return SIO_STEER_SLOT_NONE; };
    EXPECT_EQ(explanation_line(explain()), "192.0.2.7 (key 192.0.2.7) -> no worker: ring");
}

TEST(WorkerJson, NoInstanceIsNull)
{
    std::vector<slot> slots = empty_slots();
    slots[0] = slot{7, 1, no_instance, SIO_STEER_SLOT_NONE, 900};
    EXPECT_TRUE(worker_json(slots, 0)["instance"].is_null());
    EXPECT_TRUE(worker_json(slots, SIO_STEER_MAX_SLOTS)["slot"].is_null());
}

TEST(BpftoolSetLookup, KeyIsTheSetIndexAsItsFourBytesInMemory)
{
    static_assert(std::endian::native == std::endian::little, "the expected bytes below are little-endian");
    EXPECT_EQ(bpftool_set_lookup("/sys/fs/bpf/sio-steer/5001/sessions", 0x0001012a),
              "bpftool map lookup pinned /sys/fs/bpf/sio-steer/5001/sessions key 0x2a 0x01 0x01 0x00");
    EXPECT_EQ(bpftool_set_lookup("/p/sessions", 0), "bpftool map lookup pinned /p/sessions key 0x00 0x00 0x00 0x00");
}

TEST_F(ClientRoute, TheSetAndItsBpftoolCommandFollowOnASecondLine)
{
    nlohmann::json r = explain();
    r["set"] = 298;
    r["bpftool"] = bpftool_set_lookup("/p/sessions", 298);
    EXPECT_EQ(explanation_line(r), "192.0.2.7 (key 192.0.2.7) -> slot 2 (pid 813, instance 1): ring\n"
                                   "  sessions set 298: bpftool map lookup pinned /p/sessions key 0x2a 0x01 0x00 0x00");
}
