// /proc/net/netstat as the kernel writes it: the migration counters that `status` and /metrics show.
#include <gtest/gtest.h>

#include <string>

#include "logic/netstat.h"

using namespace sio_steer;

namespace {

// Shaped like Linux 6.x's file: TcpExt, IpExt and MPTcpExt, each a header line then a value line
// (cut short here; the kernel writes over a hundred TcpExt fields).
const std::string netstat =
    "TcpExt: SyncookiesSent SyncookiesRecv TCPMigrateReqSuccess TCPMigrateReqFailure TCPPLBRehash\n"
    "TcpExt: 0 7 42 3 0\n"
    "IpExt: InNoRoutes InTruncatedPkts InOctets\n"
    "IpExt: 0 0 2268610399\n"
    "MPTcpExt: MPCapableSYNRX TCPMigrateReqSuccess\n"
    "MPTcpExt: 0 99\n";

}  // namespace

TEST(Netstat, ReadsTheMigrationCountersOfTcpExt)
{
    std::optional<migrate_req_counters> m = migrate_req_from_netstat(netstat);
    ASSERT_TRUE(m);
    EXPECT_EQ(m->success, 42u);
    EXPECT_EQ(m->failure, 3u);
}

TEST(Netstat, ReadsAnyCounterOfItsOwnGroup)
{
    EXPECT_EQ(netstat_counter(netstat, "TcpExt", "SyncookiesRecv"), 7u);
    EXPECT_EQ(netstat_counter(netstat, "IpExt", "InOctets"), 2268610399u);
    EXPECT_EQ(netstat_counter(netstat, "MPTcpExt", "TCPMigrateReqSuccess"), 99u) << "a name of another group";
    EXPECT_EQ(netstat_counter(netstat, "IpExt", "TCPMigrateReqSuccess"), std::nullopt);
    EXPECT_EQ(netstat_counter(netstat, "TcpExt", "NoSuchCounter"), std::nullopt);
}

TEST(Netstat, AKernelWithoutMigrationHasNoCounters)
{
    // Linux < 5.14: no TCPMigrateReq*; and half of them is not an answer either.
    EXPECT_EQ(migrate_req_from_netstat("TcpExt: SyncookiesSent TW\nTcpExt: 0 5\n"), std::nullopt);
    EXPECT_EQ(migrate_req_from_netstat("TcpExt: TCPMigrateReqSuccess\nTcpExt: 5\n"), std::nullopt);
    EXPECT_EQ(migrate_req_from_netstat(""), std::nullopt);
}

TEST(Netstat, RefusesValuesThatAreNotTheHeadersOrNotNumbers)
{
    // A value line shorter than its header: which value is whose cannot be told.
    EXPECT_EQ(netstat_counter("TcpExt: A B C\nTcpExt: 1 2\n", "TcpExt", "A"), std::nullopt);
    EXPECT_EQ(netstat_counter("TcpExt: A B\nTcpExt: 1 x\n", "TcpExt", "B"), std::nullopt);
    EXPECT_EQ(netstat_counter("TcpExt: A B\nTcpExt: 1 -2\n", "TcpExt", "B"), std::nullopt);
    EXPECT_EQ(netstat_counter("TcpExt: A\nTcpExt: 18446744073709551616\n", "TcpExt", "A"), std::nullopt)
        << "2^64 does not fit";
    EXPECT_EQ(netstat_counter("TcpExt: A\nTcpExt: 18446744073709551615\n", "TcpExt", "A"), 18446744073709551615u);
    EXPECT_EQ(netstat_counter("TcpExt: A B\n", "TcpExt", "A"), std::nullopt) << "a header without values";
}
