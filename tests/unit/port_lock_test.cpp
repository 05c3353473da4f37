// The per-port lock file: line 1 the holder's pid, line 2 how it follows the port
// ("follow <mode> <reason>"), read by `status` and `doctor` only while a live process holds it.
// flock on a temporary file: no privileges needed.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "logic/errors.h"
#include "logic/port_lock.h"

namespace {

using namespace sio_steer;

TEST(FollowLine, RoundTrips)
{
    follow_status events{"events", "fexit/inet_listen and tp_btf/inet_sock_set_state"};
    EXPECT_EQ(follow_line(events), "follow events fexit/inet_listen and tp_btf/inet_sock_set_state");
    std::optional<follow_status> back = parse_follow_line(follow_line(events));
    ASSERT_TRUE(back);
    EXPECT_EQ(back->mode, "events");
    EXPECT_EQ(back->reason, events.reason);
}

TEST(FollowLine, OneLineWhateverTheReasonHolds)
{
    follow_status polling{"polling", "fentry: refused\ntracepoint: tracefs is not mounted\r"};
    std::string line = follow_line(polling);
    EXPECT_EQ(line.find('\n'), std::string::npos) << line;
    std::optional<follow_status> back = parse_follow_line(line);
    ASSERT_TRUE(back);
    EXPECT_EQ(back->mode, "polling");
    EXPECT_EQ(back->reason, "fentry: refused tracepoint: tracefs is not mounted ");
    EXPECT_EQ(follow_line({"", "x"}), "follow unknown x") << "a mode is one word, never empty";
    EXPECT_EQ(parse_follow_line(follow_line({"two words", ""}))->mode, "two_words");
}

TEST(FollowLine, OtherLinesAreNotFollowLines)
{
    EXPECT_FALSE(parse_follow_line(""));
    EXPECT_FALSE(parse_follow_line("4242"));
    EXPECT_FALSE(parse_follow_line("follow "));
    EXPECT_FALSE(parse_follow_line("following events x"));
    std::optional<follow_status> bare = parse_follow_line("follow events");
    ASSERT_TRUE(bare);
    EXPECT_EQ(bare->mode, "events");
    EXPECT_EQ(bare->reason, "");
}

class LockFile : public ::testing::Test {
protected:
    void SetUp() override
    {
        char tmpl[] = "/tmp/sio-steer-lock-test.XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir = tmpl;
    }
    void TearDown() override { std::filesystem::remove_all(dir); }

    std::string content() const
    {
        std::ifstream in(dir + "/5001.lock");
        std::stringstream s;
        s << in.rdbuf();
        return s.str();
    }

    std::string dir;
    const std::uint16_t port = 5001;
};

TEST_F(LockFile, PublishedWhileHeldGoneWhenReleased)
{
    EXPECT_FALSE(read_follow_status(dir, port)) << "no lock file";
    {
        port_lock lock(dir, port);
        EXPECT_EQ(lock_holder(dir, port), getpid());
        std::optional<follow_status> f = read_follow_status(dir, port);
        ASSERT_TRUE(f);
        EXPECT_EQ(f->mode, "unknown") << "held, nothing published yet";
        EXPECT_NE(f->reason.find("pid " + std::to_string(getpid())), std::string::npos) << f->reason;

        lock.publish({"polling", "a rather long reason why no watch could be attached, with its fix"});
        lock.publish({"events", "fexit/inet_listen"});  // shorter: nothing of the first may remain
        EXPECT_EQ(content(), std::to_string(getpid()) + "\nfollow events fexit/inet_listen\n");
        f = read_follow_status(dir, port);
        ASSERT_TRUE(f);
        EXPECT_EQ(f->mode, "events");
        EXPECT_EQ(f->reason, "fexit/inet_listen");
    }
    EXPECT_FALSE(lock_holder(dir, port));
    EXPECT_FALSE(read_follow_status(dir, port)) << "the file stays, but nobody holds it:\n" << content();

    port_lock next(dir, port);  // a new holder starts from its pid alone
    EXPECT_EQ(content(), std::to_string(getpid()) + "\n");
    EXPECT_EQ(read_follow_status(dir, port)->mode, "unknown");
}

// Which workers' processes connected to the control socket (doctor's `drain` line): published by
// the holder beside its follow line, and known only while it holds the lock.
TEST_F(LockFile, ControlPeersArePublishedWhileHeld)
{
    {
        port_lock lock(dir, port);
        EXPECT_FALSE(read_control_peers(dir, port)) << "nothing published: cannot know";
        lock.publish_control_peers({});
        ASSERT_TRUE(read_control_peers(dir, port));
        EXPECT_TRUE(read_control_peers(dir, port)->empty()) << "published, nobody connected yet";
        lock.publish_control_peers({18446744073709551615ull, 4097});
        lock.publish({"events", "fexit/inet_listen"});  // keeps the peers
        EXPECT_EQ(content(),
                  std::to_string(getpid()) + "\nfollow events fexit/inet_listen\ncontrol 18446744073709551615 4097\n");
        EXPECT_EQ(read_control_peers(dir, port), (std::vector<std::uint64_t>{18446744073709551615ull, 4097}));
        EXPECT_EQ(read_follow_status(dir, port)->mode, "events");
    }
    EXPECT_FALSE(read_control_peers(dir, port)) << "nobody holds the lock:\n" << content();
}

TEST_F(LockFile, AControlLineThatIsNotACookieListIsNoAnswer)
{
    port_lock lock(dir, port);
    const std::string pid = std::to_string(getpid());
    for (const char* line : {"control 12 x", "control -1", "control 18446744073709551616"}) {
        std::ofstream(dir + "/5001.lock") << pid << "\nfollow events x\n" << line << "\n";
        EXPECT_FALSE(read_control_peers(dir, port)) << line;
    }
    std::ofstream(dir + "/5001.lock") << "1\ncontrol 12\n";
    EXPECT_FALSE(read_control_peers(dir, port)) << "line 1 is not the holder's pid: its lines are stale";
}

// Whatever sits at the lock's path is never followed, truncated or waited for: a link (another
// user's, in a lock folder they can write) is refused, and so is a FIFO; readers skip both.
TEST_F(LockFile, LinksAndFifosAtItsPathAreRefusedNotFollowed)
{
    const std::string victim = dir + "/victim", path = dir + "/5001.lock";
    std::ofstream(victim) << "precious\n";
    ASSERT_EQ(symlink(victim.c_str(), path.c_str()), 0);
    try {
        port_lock lock(dir, port);
        ADD_FAILURE() << "a symbolic link was taken as the lock file";
    } catch (const steer_error& e) {
        EXPECT_EQ(e.code(), exit_code::environment);
        EXPECT_NE(std::string(e.what()).find("is a symbolic link"), std::string::npos) << e.what();
    }
    std::ifstream in(victim);
    std::string line;
    std::getline(in, line);
    EXPECT_EQ(line, "precious");
    EXPECT_FALSE(lock_holder(dir, port));
    EXPECT_FALSE(read_follow_status(dir, port));

    ASSERT_EQ(unlink(path.c_str()), 0);
    ASSERT_EQ(mkfifo(path.c_str(), 0600), 0);
    EXPECT_THROW(port_lock(dir, port), steer_error);
    EXPECT_FALSE(read_follow_status(dir, port)) << "a FIFO is not read (it would block)";
}

}  // namespace
