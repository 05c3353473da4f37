// Taking the workers' sockets (take_sockets) and writing them into the maps (sync), driven through
// the controller's API: a socket taken by an fd number that now names another socket, and a socket
// the workers map refuses, both leave the steering as it was.
#include <bpf/bpf.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <set>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "harness.h"
#include "kernel/controller.h"
#include "kernel/discovery.h"
#include "kernel/pinned_state.h"

namespace sio_steer::test {
namespace {

steer_options options_for(std::uint16_t port, const pin_root& pins)
{
    steer_options o;
    o.port = port;
    o.pin_root = pins.path();
    o.lock_dir = pins.lock_dir();
    return o;
}

std::vector<std::uint64_t> workers_map(const pinned_state& state)
{
    std::vector<std::uint64_t> cookies;
    for (std::uint32_t s = 0; s < SIO_STEER_MAX_SLOTS; s++)
        cookies.push_back(state.worker_cookie(s));
    return cookies;
}

std::set<std::uint64_t> recorded_cookies(const pinned_state& state)
{
    std::set<std::uint64_t> cookies;
    for (const slot& s : state.read_slots())
        if (s.cookie)
            cookies.insert(s.cookie);
    return cookies;
}

const listener& listener_of(const std::vector<listener>& ls, pid_t pid)
{
    for (const listener& l : ls)
        if (l.pid == pid)
            return l;
    throw std::runtime_error("no listener of pid " + std::to_string(pid));
}

TEST(TakeSockets, AnFdNumberReusedForAnotherSocketIsNotInserted)
{
    enter_fresh_netns();
    pin_root pins;
    const std::uint16_t port = free_port(), other_port = free_port(port);
    auto w = worker_process::start(port, {"NODE_APP_INSTANCE=0"}, {.swap_port = other_port});
    steer_options o = options_for(port, pins);
    auto [state, created] = pinned_state::load(o);

    std::vector<listener> found = find_listeners(port);  // discovery: pid and fd number
    ASSERT_EQ(found.size(), 1u);
    ASSERT_EQ(found[0].pid, w->pid());
    w->signal(SIGUSR1);  // the worker closes it and puts a listener of another port on that fd number
    for (int i = 0; i < 200 && still_owns(found[0]); i++)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    ASSERT_FALSE(still_owns(found[0]));
    std::vector<listener> other = list_listeners(other_port);
    ASSERT_EQ(other.size(), 1u);

    worker_sockets taken = take_sockets(port, found, take_mode::follow);  // take: by that fd number
    EXPECT_FALSE(taken.fds[0]) << "the fd now names another socket: left to the next resync";
    sync(state, o, taken);
    for (std::uint64_t cookie : workers_map(state))
        EXPECT_NE(cookie, other[0].cookie) << "a listener of port " << other_port << " entered the workers map";
    EXPECT_FALSE(recorded_cookies(state).contains(other[0].cookie));
}

TEST(Sync, ASocketTheWorkersMapRefusesLeavesTheSteeringAsItWas)
{
    enter_fresh_netns();
    pin_root pins;
    const std::uint16_t port = free_port();
    workers ws;
    ws.push_back(worker_process::instance(port, 0));
    steer_options o = options_for(port, pins);
    auto [state, created] = pinned_state::load(o);
    sync_report first = sync(state, o, take_listeners(port));
    ASSERT_EQ(first.recorded.size(), 1u);

    // Worker 1's socket is held by another REUSEPORT_SOCKARRAY: the kernel refuses it in ours (EBUSY).
    ws.push_back(worker_process::instance(port, 1));
    std::vector<listener> found = find_listeners(port);
    const listener refused = listener_of(found, ws[1]->pid());  // a copy: `found` is listed again below
    unique_fd elsewhere(bpf_map_create(BPF_MAP_TYPE_REUSEPORT_SOCKARRAY, "elsewhere", 4, 8, 1, nullptr));
    ASSERT_TRUE(elsewhere);
    {
        unique_fd sock = duplicate_socket(refused.pid, refused.fd);
        std::uint32_t zero = 0;
        std::uint64_t value = static_cast<std::uint64_t>(sock.get());
        ASSERT_EQ(bpf_map_update_elem(elsewhere.get(), &zero, &value, BPF_ANY), 0);
    }

    const std::vector<slot> slots_before = state.read_slots();
    const std::vector<std::uint64_t> map_before = workers_map(state);
    const std::vector<std::uint32_t> ring_before = state.read_ring();
    std::set<std::uint64_t> steered = {first.recorded.begin()->first};
    sync_report report;
    EXPECT_NO_THROW(report = sync(state, o, take_sockets(port, found, take_mode::follow, steered), first.ring));
    EXPECT_EQ(report.skipped, std::vector<std::uint64_t>{refused.cookie});
    EXPECT_FALSE(report.changed());
    EXPECT_EQ(workers_map(state), map_before);
    EXPECT_EQ(state.read_ring(), ring_before);
    std::vector<slot> slots_after = state.read_slots();
    for (std::uint32_t s = 0; s < SIO_STEER_MAX_SLOTS; s++) {
        EXPECT_EQ(slots_after[s].cookie, slots_before[s].cookie) << "slot " << s;
        EXPECT_EQ(slots_after[s].generation, slots_before[s].generation) << "slot " << s;
        EXPECT_EQ(slots_after[s].successor, slots_before[s].successor) << "slot " << s;
    }

    // A worker that can be inserted is steered all the same; the refused one stays out.
    ws.push_back(worker_process::instance(port, 2));
    found = find_listeners(port);
    const listener& added = listener_of(found, ws[2]->pid());
    EXPECT_NO_THROW(report = sync(state, o, take_sockets(port, found, take_mode::follow, steered), first.ring));
    EXPECT_EQ(report.skipped, std::vector<std::uint64_t>{refused.cookie});
    EXPECT_EQ(report.added.size(), 1u);
    EXPECT_EQ(recorded_cookies(state), (std::set<std::uint64_t>{first.recorded.begin()->first, added.cookie}));
    std::set<std::uint64_t> in_map;
    for (std::uint64_t c : workers_map(state))
        if (c)
            in_map.insert(c);
    EXPECT_EQ(in_map, recorded_cookies(state));
    for (std::uint32_t s : state.read_ring())
        EXPECT_TRUE(s != SIO_STEER_SLOT_NONE && state.worker_cookie(s)) << "a ring entry points at an empty slot";

    // status shows it: listening, not in the workers map, so not in sync.
    run_result r = sio_steer(
        {"status", "--port", std::to_string(port), "--pin-root", pins.path(), "--lock-dir", pins.lock_dir(), "--json"});
    ASSERT_EQ(r.code, 0) << r.err;
    auto status = nlohmann::json::parse(r.out);
    EXPECT_FALSE(status["in_sync"].get<bool>());
    ASSERT_EQ(status["unmanaged_listeners"].size(), 1u);
    EXPECT_EQ(status["unmanaged_listeners"][0]["cookie"].get<std::uint64_t>(), refused.cookie);
}

}  // namespace
}  // namespace sio_steer::test
