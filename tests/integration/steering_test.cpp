// The steering program in the real kernel: test_worker processes with their own SO_REUSEPORT
// listeners, `sio-steer attach --once`, and clients from hundreds of source addresses. Each test
// runs in a fresh network namespace with a private pin root.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <map>
#include <set>

#include "harness.h"
#include "kernel/pinned_state.h"
#include "logic/client_key.h"

namespace sio_steer::test {
namespace {

constexpr int v4_clients = 500;
constexpr int v6_subnets = 40;

class SteeringTest : public integration_test {
protected:
    SteeringTest() : integration_test(v6_subnets) {}

    void SetUp() override
    {
        integration_test::SetUp();
        start_workers(4);
        clients = client_addresses(v4_clients, v6_subnets);
    }

    void attach()
    {
        run_result r = sio_steer(args("attach", {"--once"}));
        ASSERT_EQ(r.code, 0) << r.err;
    }

    // client -> the one worker it reached; fails the test if it reached several or none.
    std::map<std::string, std::string> sticky_map(int connections)
    {
        std::map<std::string, std::string> where;
        for (const auto& [client, answers] : probe(clients, port, connections)) {
            EXPECT_EQ(answers.size(), 1u) << client << " reached several workers";
            EXPECT_FALSE(answers.front().empty()) << client << " was refused";
            where[client] = answers.front();
        }
        return where;
    }

    // How many of `who` reached more than one worker over `connections` fresh connections each.
    int split_clients(const std::vector<std::string>& who, int connections) const
    {
        int split = 0;
        for (const auto& [client, answers] : probe(who, port, connections))
            split += answers.size() > 1;
        return split;
    }

    std::vector<std::string> clients;
};

TEST_F(SteeringTest, EveryClientAddressStaysOnOneWorkerAndWorkersShareEvenly)
{
    attach();
    std::map<std::string, std::string> where = sticky_map(3);
    ASSERT_EQ(where.size(), clients.size());

    std::map<std::string, int> share;
    for (const auto& [client, worker] : where)
        share[worker]++;
    ASSERT_EQ(share.size(), 4u) << "every worker gets clients";
    double even = static_cast<double>(clients.size()) / 4;
    for (const auto& [worker, n] : share) {
        EXPECT_GE(n, even * 0.75) << worker;
        EXPECT_LE(n, even * 1.25) << worker;
    }
}

TEST_F(SteeringTest, WithoutTheProgramClientsAreSplitAcrossWorkers)
{
    // The failure sio-steer fixes: the kernel's 4-tuple hash spreads one client's connections.
    EXPECT_GT(split_clients(clients, 3), static_cast<int>(clients.size()) / 2);
}

TEST_F(SteeringTest, SessionsClientAgreesWithWhereConnectionsWent)
{
    attach();
    std::map<std::string, std::string> where = sticky_map(1);
    int checked = 0;
    for (std::size_t i = 0; i < clients.size(); i += 9, checked++) {
        const std::string& client = clients[i];
        run_result r = sio_steer(args("sessions", {"--client", client, "--json"}));
        ASSERT_EQ(r.code, 0) << r.err;
        auto j = nlohmann::json::parse(r.out);
        EXPECT_EQ(j["reason"], "recorded") << client;
        std::string expected = where[client];
        EXPECT_EQ(std::to_string(j["worker"]["pid"].get<int>()), expected.substr(expected.find(' ') + 1)) << client;
    }
    EXPECT_GT(checked, 50);
}

TEST_F(SteeringTest, RingPredictsWhereANewClientGoes)
{
    attach();
    const std::string client = "127.200.3.4";
    run_result r = sio_steer(args("sessions", {"--client", client, "--json"}));
    ASSERT_EQ(r.code, 0) << r.err;
    auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["reason"], "ring");
    std::string answer = ask_worker(client, "127.0.0.1", port);
    EXPECT_EQ(answer.substr(answer.find(' ') + 1), std::to_string(j["worker"]["pid"].get<int>()));
}

TEST_F(SteeringTest, SessionsClientPrintsTheBpftoolCommandThatReadsTheClientsSet)
{
    attach();
    const std::string client = "127.9.8.7";
    const std::string answer = ask_worker(client, "127.0.0.1", port);  // recorded by the program
    ASSERT_FALSE(answer.empty());
    run_result r = sio_steer(args("sessions", {"--client", client, "--json"}));
    ASSERT_EQ(r.code, 0) << r.err;
    auto j = nlohmann::json::parse(r.out);
    ASSERT_EQ(j["reason"], "recorded") << r.out;
    ASSERT_EQ(j["map"], "sessions") << r.out;
    EXPECT_EQ(std::to_string(j["worker"]["pid"].get<int>()), answer.substr(answer.find(' ') + 1));
    const std::string command = j["bpftool"];
    EXPECT_TRUE(command.starts_with("bpftool map lookup pinned " + pins().dir(port) + "/sessions key 0x")) << command;
    run_result text = sio_steer(args("sessions", {"--client", client}));
    EXPECT_NE(
        text.out.find("\n  sessions set " + std::to_string(j["set"].get<std::uint32_t>()) + ": " + command + "\n"),
        std::string::npos)
        << text.out;

    // The command as printed; with BTF, bpftool prints the set as JSON, field names and all.
    run_result lookup = capture(command);
    ASSERT_EQ(lookup.code, 0) << lookup.err;
    auto set = nlohmann::json::parse(lookup.out);
    EXPECT_EQ(set["key"], j["set"]);
    int found = 0;
    for (const auto& entry : set["value"]["clients"]) {
        if (entry["client"]["addr"] != nlohmann::json({0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 127, 9, 8, 7}))
            continue;
        found++;
        EXPECT_EQ(entry["session"]["slot"], j["worker"]["slot"]) << lookup.out;
        EXPECT_GT(entry["session"]["last_seen_ns"].get<std::uint64_t>(), 1u);
    }
    EXPECT_EQ(found, 1) << lookup.out;
}

TEST_F(SteeringTest, KilledWorkersClientsEachLandOnOneLiveWorkerAndNobodyElseMoves)
{
    attach();
    std::map<std::string, std::string> before = sticky_map(2);
    std::string victim = std::to_string(w[2]->pid());
    w[2]->kill_now();

    std::map<std::string, std::string> after = sticky_map(3);
    int moved = 0, orphans = 0;
    for (const auto& [client, worker] : before) {
        if (worker.ends_with(" " + victim)) {
            orphans++;
            EXPECT_FALSE(after[client].ends_with(" " + victim));
        } else {
            moved += after[client] != worker;
        }
    }
    EXPECT_EQ(moved, 0) << "clients of live workers must stay";
    EXPECT_GT(orphans, 0);
}

TEST_F(SteeringTest, PerConnectionKeySpreadsOneClientsConnections)
{
    ASSERT_EQ(sio_steer(args("attach", {"--once", "--key", "address,port"})).code, 0);
    std::vector<std::string> few(clients.begin(), clients.begin() + 20);
    EXPECT_GT(split_clients(few, 8), 15);
}

TEST_F(SteeringTest, ShorterPrefixKeepsAWholeSubnetOnOneWorker)
{
    ASSERT_EQ(sio_steer(args("attach", {"--once", "--v4-prefix", "16"})).code, 0);
    std::map<std::string, std::set<std::string>> per_subnet;
    for (const auto& [client, answers] : probe(clients, port, 1))
        if (client.find(':') == std::string::npos)
            per_subnet[client.substr(0, client.find('.', 4))].insert(answers.front());
    ASSERT_GE(per_subnet.size(), 2u);
    for (const auto& [subnet, reached] : per_subnet)
        EXPECT_EQ(reached.size(), 1u) << subnet;
}

TEST_F(SteeringTest, DetachRemovesThePinsAndTheKernelHashReturns)
{
    attach();
    ASSERT_TRUE(std::filesystem::exists(pins().dir(port)));
    run_result r = sio_steer(args("detach"));
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_FALSE(std::filesystem::exists(pins().dir(port)));
    EXPECT_GT(split_clients(clients, 3), static_cast<int>(clients.size()) / 2);
}

TEST_F(SteeringTest, PinnedStateIsRootOnlyAndReadableByBpftool)
{
    attach();
    EXPECT_EQ(std::filesystem::status(pins().dir(port)).permissions() & std::filesystem::perms::all,
              std::filesystem::perms::owner_all);
    probe({"127.9.9.9"}, port, 1);
    // The client's set of the sessions table, as `sio-steer sessions --client` finds it.
    const config c = pinned_state::open(pins().dir(port))->read_config();
    const client_key key = key_for(*parse_address("127.9.9.9"), c);
    const std::uint32_t set = sio_steer_session_set(sio_steer_hash(&key, 0, c.hash_seed), c.session_sets);
    std::string set_bytes;
    for (int i = 0; i < 4; i++)
        set_bytes += " " + std::to_string(set >> (8 * i) & 0xff);
    run_result lookup = capture("bpftool -j map lookup pinned " + pins().dir(port) + "/sessions key" + set_bytes);
    ASSERT_EQ(lookup.code, 0) << lookup.err;
    auto j = nlohmann::json::parse(lookup.out);
    // BTF gives the field names; the client reads as the IPv4-mapped address, byte by byte.
    int found = 0;
    for (const auto& entry : j["formatted"]["value"]["clients"]) {
        if (entry["client"]["addr"] != nlohmann::json({0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 127, 9, 9, 9}))
            continue;
        found++;
        EXPECT_TRUE(entry["session"].contains("slot"));
        EXPECT_GT(entry["session"]["last_seen_ns"].get<std::uint64_t>(), 1u);
    }
    EXPECT_EQ(found, 1) << lookup.out;
}

}  // namespace
}  // namespace sio_steer::test
