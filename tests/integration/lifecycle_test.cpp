// Following the workers (issue: restarts, reloads, scale changes and controller restarts lose no
// live session). Real kernel, test_worker processes, a following `sio-steer attach` in the
// background, 300 client addresses. Every step compares the client -> worker map before and after.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <set>
#include <thread>

#include <bpf/bpf.h>

#include "harness.h"
#include "kernel/pinned_state.h"
#include "logic/unique_fd.h"

namespace sio_steer::test {
namespace {

using namespace std::chrono;
using client_map = std::map<std::string, std::string>;  // client -> "<instance> <pid>"

std::string pid_of(const std::string& answer) { return answer.substr(answer.find(' ') + 1); }

class LifecycleTest : public integration_test {
protected:
    void SetUp() override
    {
        integration_test::SetUp();
        start_workers(4);
        clients = client_addresses(300, 0);
    }

    // A following attach, once it follows the port (its control socket open) and the workers map
    // holds the live workers.
    void start_controller(const std::vector<std::string>& extra = {})
    {
        integration_test::start_controller(extra);
        wait_for_workers();
    }

    // The pids whose sockets are in the workers map right now, once the ring points at the newest
    // socket of every instance (the last step of a sync before attaching); empty until then.
    std::set<std::string> pids_in_map() const
    {
        std::set<std::string> pids, instances;
        try {
            auto state = pinned_state::open(pins().dir(port));
            if (!state)
                return {};
            std::vector<slot> slots = state->read_slots();
            for (const slot& s : slots)
                if (s.cookie) {
                    pids.insert(std::to_string(s.pid));
                    instances.insert(std::to_string(s.instance));
                }
            std::set<std::uint32_t> in_ring;
            for (std::uint32_t s : state->read_ring())
                in_ring.insert(s);
            for (std::uint32_t s : in_ring)
                if (s == SIO_STEER_SLOT_NONE ? !pids.empty() : !slots[s].cookie)
                    return {};
            if (in_ring.size() != std::max<std::size_t>(instances.size(), 1))
                return {};
        } catch (const std::exception&) {
            return {};
        }
        return pids;
    }

    bool ring_empty() const
    {
        auto state = pinned_state::open(pins().dir(port));
        if (!state)
            return false;
        for (std::uint32_t s : state->read_ring())
            if (s != SIO_STEER_SLOT_NONE)
                return false;
        return true;
    }

    std::set<std::string> live_pids() const
    {
        std::set<std::string> pids;
        for (const auto& p : w)
            if (p && p->pid() > 0)
                pids.insert(std::to_string(p->pid()));
        return pids;
    }

    // Waits until the map holds exactly the live workers; returns how long that took.
    milliseconds wait_for_workers(milliseconds limit = patience)
    {
        auto start = steady_clock::now();
        while (pids_in_map() != live_pids() && !(live_pids().empty() && ring_empty())) {
            if (steady_clock::now() - start > limit) {
                ADD_FAILURE() << "the workers map did not follow the workers within " << limit.count() << " ms\n"
                              << (controller ? controller->output() : "");
                break;
            }
            std::this_thread::sleep_for(milliseconds(1));
        }
        return duration_cast<milliseconds>(steady_clock::now() - start);
    }

    client_map where(const std::vector<std::string>& who, int connections = 2)
    {
        client_map m;
        for (const auto& [client, answers] : probe(who, port, connections)) {
            EXPECT_EQ(answers.size(), 1u) << client << " reached several workers";
            EXPECT_FALSE(answers.front().empty()) << client << " was refused or reset";
            m[client] = answers.front();
        }
        return m;
    }

    static int moved(const client_map& before, const client_map& after, const std::string& except_pid = "")
    {
        int n = 0;
        for (const auto& [client, worker] : before)
            if (pid_of(worker) != except_pid)
                n += after.at(client) != worker;
        return n;
    }

    std::vector<std::string> clients;
};

TEST_F(LifecycleTest, RestartedWorkerLeavesEveryOtherClientInPlace)
{
    start_controller();
    client_map before = where(clients);
    std::string victim = std::to_string(w[2]->pid());
    w[2]->kill_now();
    wait_for_workers();
    w[2] = worker_process::instance(port, 2);
    wait_for_workers();

    client_map after = where(clients, 3);
    EXPECT_EQ(moved(before, after, victim), 0);
}

TEST_F(LifecycleTest, ReloadOverlapKeepsOldClientsOnOldSocketThenMovesThemOnceToTheNewOne)
{
    start_controller();
    client_map before = where(clients);
    std::string old_pid = std::to_string(w[2]->pid());

    // pm2 reload: the new worker of instance 2 listens while the old one still does.
    auto replacement = worker_process::instance(port, 2);
    std::string new_pid = std::to_string(replacement->pid());
    w.push_back(std::move(replacement));
    wait_for_workers();
    client_map during = where(clients);
    EXPECT_EQ(moved(before, during), 0) << "recorded clients keep their socket, old worker included";

    // New clients of instance 2's share reach the new socket, none the old one.
    std::vector<std::string> fresh = client_addresses(600, 0);
    fresh.erase(fresh.begin(), fresh.begin() + 300);
    int to_new = 0, to_old = 0;
    for (const auto& [client, worker] : where(fresh, 1)) {
        to_new += pid_of(worker) == new_pid;
        to_old += pid_of(worker) == old_pid;
    }
    EXPECT_GT(to_new, 0);
    EXPECT_EQ(to_old, 0);

    // The old worker stops: each of its clients moves to the new instance-2 worker and stays.
    w[2]->kill_now();
    wait_for_workers();
    client_map after = where(clients, 3);
    EXPECT_EQ(moved(before, after, old_pid), 0);
    int orphans = 0;
    for (const auto& [client, worker] : before)
        if (pid_of(worker) == old_pid) {
            orphans++;
            EXPECT_EQ(pid_of(after[client]), new_pid) << client;
        }
    EXPECT_GT(orphans, 0);
}

// A draining worker (docs/pm2.md) releases its clients one at a time over the control socket:
// each released client goes to the successor at once, the others still reach the old worker.
TEST_F(LifecycleTest, DrainingWorkerReleasesItsClientsOneByOneToItsSuccessor)
{
    start_controller();
    client_map before = where(clients);
    const std::string control = pins().lock_dir() + "/" + std::to_string(port) + ".sock";
    const std::string old_pid = std::to_string(w[2]->pid());
    auto replacement = worker_process::instance(port, 2);
    const std::string new_pid = std::to_string(replacement->pid());
    w.push_back(std::move(replacement));
    wait_for_workers();

    std::vector<std::string> old_clients;
    for (const auto& [client, worker] : before)
        if (pid_of(worker) == old_pid)
            old_clients.push_back(client);
    ASSERT_GE(old_clients.size(), 3u);
    const std::string released = old_clients[0], kept = old_clients[1];

    std::string reply = w[2]->request(control, "release " + released);
    EXPECT_TRUE(reply.starts_with("ok " + released + " slot ")) << reply << "\ncontroller:\n" << controller->output();
    client_map after = where(clients);
    EXPECT_EQ(pid_of(after[released]), new_pid) << "the released client goes to the successor";
    for (const auto& [client, worker] : before) {
        if (client == released)
            continue;
        EXPECT_EQ(after[client], worker) << client << ": only the released client moved";
    }

    // Another worker cannot give it away, nor learn whose it is; the old one cannot release what is
    // not recorded.
    const std::string w0_pid = std::to_string(w[0]->pid());
    EXPECT_EQ(w[0]->request(control, "release " + kept), "none " + kept + ": not a recorded client of pid " + w0_pid);
    EXPECT_EQ(w[2]->request(control, "release 203.0.113.9"),
              "none 203.0.113.9: not a recorded client of pid " + old_pid);
    EXPECT_TRUE(w[2]->request(control, "steal everything").starts_with("error unknown request")) << "bad request";
    // A worker with no replacement listening keeps its clients until its socket closes.
    std::string of_w1;
    for (const auto& [client, worker] : before)
        if (pid_of(worker) == std::to_string(w[1]->pid()))
            of_w1 = client;
    ASSERT_FALSE(of_w1.empty());
    reply = w[1]->request(control, "release " + of_w1);
    EXPECT_TRUE(reply.starts_with("none " + of_w1 + ": slot ")) << reply;
    EXPECT_NE(reply.find("no live successor"), std::string::npos) << reply;
    after = where(clients);
    EXPECT_EQ(after[kept], before[kept]);
    EXPECT_EQ(after[of_w1], before[of_w1]);

    // The old worker goes: the rest of its clients follow, the released one stays.
    w[2]->kill_now();
    wait_for_workers();
    after = where(clients, 2);
    for (const std::string& client : old_clients)
        EXPECT_EQ(pid_of(after[client]), new_pid) << client;
    EXPECT_EQ(moved(before, after, old_pid), 0);
}

// PM2 stops a worker as soon as its replacement listens, so the drain's first release can reach
// the controller before it has seen the replacement: an event not read yet, a poll not due. Here
// the controller is stopped while the replacement listens and the release is sent, then woken: it
// must find the replacement before it answers (it said "none ...: no live successor" before).
TEST_F(LifecycleTest, AReleaseSentAsTheReplacementListensFindsTheReplacement)
{
    for (const char* follow : {"polling", "auto"}) {
        SCOPED_TRACE(std::string("--follow ") + follow);
        start_controller({"--follow", follow});
        client_map before = where(clients);
        const std::string control = pins().lock_dir() + "/" + std::to_string(port) + ".sock";
        const std::string old_pid = std::to_string(w[2]->pid());
        std::string client;
        for (const auto& [c, worker] : before)
            if (pid_of(worker) == old_pid)
                client = c;
        ASSERT_FALSE(client.empty());

        ASSERT_EQ(kill(controller->pid(), SIGSTOP), 0);
        auto replacement = worker_process::instance(port, 2);
        const std::string new_pid = std::to_string(replacement->pid());
        std::string reply;
        std::thread drain([&] { reply = w[2]->request(control, "release " + client); });
        std::this_thread::sleep_for(milliseconds(300));  // the line waits in the socket
        kill(controller->pid(), SIGCONT);
        drain.join();
        EXPECT_TRUE(reply.starts_with("ok " + client + " slot ")) << reply << "\ncontroller:\n" << controller->output();
        w.push_back(std::move(replacement));
        wait_for_workers();
        EXPECT_EQ(pid_of(where({client})[client]), new_pid) << "the released client goes to the replacement";

        // Next round: the replacement is instance 2 (the old worker goes), under a new controller.
        w[2] = std::move(w.back());
        w.pop_back();
        wait_for_workers();
        controller.reset();
    }
}

TEST_F(LifecycleTest, ScaleUpKeepsRecordedClientsAndSendsNewOnesToTheNewWorker)
{
    start_controller();
    client_map before = where(clients);
    w.push_back(worker_process::instance(port, 4));
    std::string fifth = std::to_string(w.back()->pid());
    milliseconds reaction = wait_for_workers();
    RecordProperty("reaction_ms", static_cast<int>(reaction.count()));
    std::printf("reaction time, new listener -> slot filled: %lld ms\n", static_cast<long long>(reaction.count()));

    EXPECT_EQ(moved(before, where(clients)), 0);
    std::vector<std::string> fresh = client_addresses(600, 0);
    fresh.erase(fresh.begin(), fresh.begin() + 300);
    int to_fifth = 0;
    for (const auto& [client, worker] : where(fresh, 1))
        to_fifth += pid_of(worker) == fifth;
    EXPECT_GT(to_fifth, 300 / 5 / 2) << "about a fifth of new clients reach the new worker";
}

TEST_F(LifecycleTest, ConnectionsQueuedOnAKilledWorkerAreServedByAnother)
{
    start_controller();
    client_map before = where(clients);
    std::string client;
    for (const auto& [c, worker] : before)
        if (pid_of(worker) == std::to_string(w[1]->pid())) {
            client = c;
            break;
        }
    ASSERT_FALSE(client.empty());

    w[1]->signal(SIGSTOP);
    ASSERT_TRUE(w[1]->wait_stopped()) << "a worker still running could accept a connection and stop before answering";
    std::vector<std::unique_ptr<pending_connection>> queued;
    for (int i = 0; i < 10; i++)
        queued.push_back(std::make_unique<pending_connection>(client, "127.0.0.1", port));
    std::this_thread::sleep_for(milliseconds(50));  // handshakes done: they sit in the accept queue
    w[1]->kill_now();

    int served = 0;
    for (auto& c : queued)
        served += !c->answer().empty();
    EXPECT_EQ(served, 10) << "queued connections are migrated, not reset";
}

TEST_F(LifecycleTest, KilledControllerLeavesSteeringAndANewOneAdoptsIt)
{
    start_controller();
    client_map before = where(clients);
    ::kill(controller->pid(), SIGKILL);
    controller->wait_exit(5000);
    EXPECT_EQ(moved(before, where(clients)), 0) << "steering outlives the controller";

    auto state = pinned_state::open(pins().dir(port));
    ASSERT_TRUE(state);
    std::size_t sessions = state->count_sessions();
    std::uint64_t hits = state->read_stats().session_hits;

    start_controller();
    std::this_thread::sleep_for(milliseconds(300));
    EXPECT_EQ(moved(before, where(clients)), 0);
    EXPECT_EQ(state->count_sessions(), sessions) << "sessions adopted";
    EXPECT_GT(state->read_stats().session_hits, hits) << "counters adopted and counting";
    EXPECT_EQ(controller->wait_exit(0), -1) << "the new controller runs:\n" << controller->output();
}

TEST_F(LifecycleTest, PinnedProgramIsReplacedInPlaceKeepingSessions)
{
    ASSERT_EQ(sio_steer(args("attach", {"--once"})).code, 0);
    client_map before = where(clients);
    auto program_id = [&] {
        unique_fd fd(bpf_obj_get((pins().dir(port) + "/program").c_str()));
        bpf_prog_info info{};
        __u32 len = sizeof(info);
        EXPECT_EQ(bpf_obj_get_info_by_fd(fd.get(), &info, &len), 0);
        return info.id;
    };
    std::uint32_t first = program_id();
    std::size_t sessions = pinned_state::open(pins().dir(port))->count_sessions();

    // A new controller (another build) loads its own program onto the pinned maps.
    ASSERT_EQ(sio_steer(args("attach", {"--once"})).code, 0);
    EXPECT_NE(program_id(), first) << "the pinned program was replaced";
    EXPECT_EQ(pinned_state::open(pins().dir(port))->count_sessions(), sessions) << "no session dropped";
    EXPECT_EQ(moved(before, where(clients)), 0) << "and the new program serves them where they were";
}

TEST_F(LifecycleTest, RestartOfAllWorkersReattachesAndKeepsClientsSticky)
{
    start_controller();
    where(clients);
    for (int i = 0; i < 4; i++) {
        w[i]->kill_now();
        w[i].reset();
    }
    wait_for_workers();
    for (int i = 0; i < 4; i++)
        w[i] = worker_process::instance(port, i);
    wait_for_workers();
    client_map after = where(clients, 3);  // where() fails the test on any split client
    std::set<std::string> used;
    for (const auto& [client, worker] : after)
        used.insert(pid_of(worker));
    EXPECT_EQ(used, live_pids());
}

TEST_F(LifecycleTest, DetachStopsARunningController)
{
    start_controller();
    run_result r = sio_steer(args("detach"));
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(controller->wait_exit(3000), 0) << controller->output();
}

TEST_F(LifecycleTest, SigtermLeavesSteeringAttached)
{
    start_controller();
    client_map before = where(clients);
    ::kill(controller->pid(), SIGTERM);
    EXPECT_EQ(controller->wait_exit(3000), 0);
    EXPECT_NE(controller->output().find("stays attached"), std::string::npos) << controller->output();
    EXPECT_EQ(moved(before, where(clients)), 0);
}

// The same steps without following (--once): they break, so the tests above can fail.
TEST_F(LifecycleTest, WithoutFollowingANewWorkerNeverGetsClients)
{
    ASSERT_EQ(sio_steer(args("attach", {"--once"})).code, 0);
    w.push_back(worker_process::instance(port, 4));
    std::string fifth = std::to_string(w.back()->pid());
    int to_fifth = 0;
    for (const auto& [client, answers] : probe(client_addresses(300, 0), port, 1))
        to_fifth += pid_of(answers.front()) == fifth;
    EXPECT_EQ(to_fifth, 0);
}

TEST_F(LifecycleTest, WithoutFollowingARestartOfAllWorkersLosesSteering)
{
    ASSERT_EQ(sio_steer(args("attach", {"--once"})).code, 0);
    for (int i = 0; i < 4; i++) {
        w[i]->kill_now();
        w[i] = worker_process::instance(port, i);
    }
    int split = 0;
    for (const auto& [client, answers] : probe(clients, port, 3))
        split += answers.size() > 1;
    EXPECT_GT(split, 100) << "the kernel's own hash splits clients again";
}

}  // namespace
}  // namespace sio_steer::test
