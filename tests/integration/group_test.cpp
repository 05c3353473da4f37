// The reuseport group a controller steers is the one it found at the first attach: its bound
// address and its workers' uid, recorded next to the maps. Another local user's listener on the
// port (another address, or the group's own address once every worker is gone) is ignored with
// one warning, never adopted. Real kernel, test_worker processes, the listener of user nobody.
#include <gtest/gtest.h>

#include <unistd.h>

#include <chrono>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "harness.h"

namespace sio_steer::test {
namespace {

using namespace std::chrono;
using nlohmann::json;

const uid_t nobody = 65534;  // the attacker: any local user

class GroupTest : public integration_test {
protected:
    void SetUp() override
    {
        integration_test::SetUp();
        for (int i = 0; i < 2; i++)
            w.push_back(
                worker_process::start(port, {"NODE_APP_INSTANCE=" + std::to_string(i)}, {.address = "127.0.0.1"}));
    }

    json status() const
    {
        run_result r = sio_steer(args("status", {"--json"}));
        json doc = json::parse(r.out, nullptr, false);
        return doc.is_object() ? doc : json::object();
    }

    // The pids the slots map records with a live socket in the workers map.
    std::set<pid_t> steered_pids() const
    {
        std::set<pid_t> pids;
        json s = status();
        for (const json& worker : s.value("workers", json::array()))
            if (worker["live"].get<bool>() && worker["in_map"].get<bool>())
                pids.insert(worker["pid"].get<pid_t>());
        return pids;
    }

    bool wait_steered(const std::set<pid_t>& pids) const
    {
        for (int i = 0; i < 100; i++) {
            if (steered_pids() == pids)
                return true;
            std::this_thread::sleep_for(milliseconds(100));
        }
        return false;
    }

    static std::size_t count(const std::string& text, const std::string& word)
    {
        std::size_t n = 0;
        for (std::size_t at = text.find(word); at != std::string::npos; at = text.find(word, at + 1))
            n++;
        return n;
    }
};

TEST_F(GroupTest, AForeignListenerOnAnotherAddressIsIgnoredAndFollowingGoesOn)
{
    start_controller({"--resync-interval", "100"});
    ASSERT_TRUE(wait_steered({w[0]->pid(), w[1]->pid()}));

    // User nobody listens on another address of the port, with SO_REUSEPORT and without.
    auto foreign = worker_process::start(port, {}, {.address = "127.0.0.2", .uid = nobody});
    auto foreign_plain = worker_process::start(port, {}, {.address = "::1", .reuseport = false, .uid = nobody});

    // A worker restart is still followed.
    w[1]->kill_now();
    w[1] = worker_process::start(port, {"NODE_APP_INSTANCE=1"}, {.address = "127.0.0.1"});
    EXPECT_TRUE(wait_steered({w[0]->pid(), w[1]->pid()})) << controller->output();
    EXPECT_EQ(controller->wait_exit(0), -1) << "the controller exited: " << controller->output();

    json s = status();
    EXPECT_TRUE(s.value("in_sync", false)) << s.dump(2);
    for (const json& worker : s.value("workers", json::array())) {
        EXPECT_NE(worker["pid"].get<pid_t>(), foreign->pid());
        EXPECT_NE(worker["pid"].get<pid_t>(), foreign_plain->pid());
    }
    EXPECT_EQ(s.value("foreign_listeners", json::array()).size(), 2u) << s.dump(2);
    // One warning per foreign listener, however many resyncs ran.
    std::this_thread::sleep_for(milliseconds(500));
    EXPECT_EQ(count(controller->output(), "not of the group"), 2u) << controller->output();

    // A controller restart keeps the group it recorded: no "several groups" refusal.
    controller.reset();
    run_result again = sio_steer(args("attach", {"--once"}));
    EXPECT_EQ(again.code, 0) << again.out << again.err;
    EXPECT_EQ(steered_pids(), (std::set<pid_t>{w[0]->pid(), w[1]->pid()}));
}

TEST_F(GroupTest, AnotherUidsListenerOnTheGroupsAddressIsNotAdopted)
{
    start_controller({"--resync-interval", "100"});
    ASSERT_TRUE(wait_steered({w[0]->pid(), w[1]->pid()}));
    w.clear();  // every worker gone
    ASSERT_TRUE(wait_steered({}));

    auto foreign = worker_process::start(port, {}, {.address = "127.0.0.1", .uid = nobody});
    std::this_thread::sleep_for(milliseconds(1000));  // ten resyncs
    json s = status();
    for (const json& worker : s.value("workers", json::array()))
        EXPECT_NE(worker["pid"].get<pid_t>(), foreign->pid()) << s.dump(2);
    EXPECT_FALSE(s.value("in_sync", true)) << s.dump(2);
    EXPECT_EQ(s.value("foreign_listeners", json::array()).size(), 1u) << s.dump(2);
    EXPECT_EQ(count(controller->output(), "not of the group"), 1u) << controller->output();
}

}  // namespace
}  // namespace sio_steer::test
