// The package's maintainer scripts as dpkg runs them. prerm (packaging/prerm) against live
// steering: on "remove" it detaches every port it steers (with /usr/bin/sio-steer about to go,
// nothing else could): the ports of /etc/sio-steer/*.conf with their own pin-root and lock-dir, and
// every port pinned under the default root; a following controller then exits 0. On "upgrade" it
// touches nothing. postrm (packaging/postrm): "remove" keeps the configuration, "purge" deletes it
// and the links that enabled sio-steer@ instances. The scripts run as packaged, their absolute paths
// pointed at the test's binary, config folder, systemd folder, pin roots and lock folders; systemd
// is not PID 1 here, so their systemctl calls are skipped as on such a host. (tests/vm runs them
// for real under systemd, with one port at the default paths.)
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <regex>

#include "harness.h"

namespace sio_steer::test {
namespace {

namespace fs = std::filesystem;

class PackageScriptsTest : public integration_test {
protected:
    void SetUp() override
    {
        integration_test::SetUp();
        root = fs::temp_directory_path() / ("sio-steer-scripts-" + std::to_string(getpid()));
        conf_dir = root / "etc/sio-steer";
        systemd_dir = root / "etc/systemd/system";
        fs::create_directories(conf_dir);
        fs::create_directories(systemd_dir);
    }
    void TearDown() override
    {
        std::error_code ec;
        fs::remove_all(root, ec);
    }

    // packaging/NAME with its paths pointed at this test's; run with `argument` as dpkg would.
    run_result script(const std::string& name, const std::string& argument)
    {
        std::string script = read_text(source_file("packaging/" + name));
        for (const auto& [from, to] :
             std::vector<std::pair<std::string, std::string>>{{"/usr/bin/sio-steer", SIO_STEER_BIN},
                                                              {"/etc/sio-steer", conf_dir.string()},
                                                              {"/sys/fs/bpf/sio-steer", pins().path()},
                                                              {"/run/sio-steer", pins().lock_dir()},
                                                              {"/run/systemd/system", "/nonexistent/systemd"},
                                                              {"/etc/systemd/system", systemd_dir.string()}})
            script = std::regex_replace(script, std::regex(std::regex_replace(from, std::regex("[./]"), "\\$&")), to);
        const fs::path file = root / name;
        std::ofstream(file) << script;
        return run({"sh", file.string(), argument});
    }
    run_result prerm(const std::string& argument) { return script("prerm", argument); }
    run_result postrm(const std::string& argument) { return script("postrm", argument); }

    fs::path root, conf_dir, systemd_dir;
};

TEST_F(PackageScriptsTest, RemovalDetachesEveryPortItSteersAndAnUpgradeNone)
{
    // Port 1: followed, pinned under the default root, no config file naming it.
    start_workers(2);
    start_controller();
    // Port 2: attached once, with a pin root and lock folder of its own named by its config file.
    const std::uint16_t port2 = free_port(port);
    for (int i = 0; i < 2; i++)
        w.push_back(worker_process::instance(port2, i));
    pin_root other;
    const std::string p2 = std::to_string(port2);
    ASSERT_EQ(
        sio_steer({"attach", "--once", "--port", p2, "--pin-root", other.path(), "--lock-dir", other.lock_dir()}).code,
        0);
    std::ofstream(conf_dir / (p2 + ".conf")) << "# options of port " << p2 << "\n#pin-root = /elsewhere\n"
                                             << "pin-root = " << other.path() << "  # its own\n"
                                             << "lock-dir = " << other.lock_dir() << "\n";

    run_result upgrade = prerm("upgrade");
    EXPECT_EQ(upgrade.code, 0) << upgrade.err;
    EXPECT_EQ(upgrade.out + upgrade.err, "") << "an upgrade leaves steering alone";
    EXPECT_TRUE(fs::exists(pins().dir(port)));
    EXPECT_TRUE(fs::exists(other.dir(port2)));
    EXPECT_EQ(controller->wait_exit(200), -1) << "the controller still follows";

    run_result remove = prerm("remove");
    EXPECT_EQ(remove.code, 0) << remove.out << remove.err;
    EXPECT_NE(remove.err.find("detached from port " + port_text() + ";"), std::string::npos) << remove.err;
    EXPECT_NE(remove.err.find("detached from port " + p2 + ";"), std::string::npos) << remove.err;
    EXPECT_FALSE(fs::exists(pins().dir(port)));
    EXPECT_FALSE(fs::exists(other.dir(port2)));
    EXPECT_EQ(controller->wait_exit(static_cast<int>(patience.count())), 0)
        << "a following controller sees the pins gone and exits 0\n"
        << controller->output();
    EXPECT_EQ(sio_steer(args("status")).code, exit_not_attached);

    // Nothing left to detach: a second removal (dpkg -r after a failed one) still succeeds.
    run_result again = prerm("remove");
    EXPECT_EQ(again.code, 0) << again.err;
}

TEST_F(PackageScriptsTest, RemovalKeepsTheConfigurationAPurgeDeletesIt)
{
    std::ofstream(conf_dir / "3000.conf") << "resync-interval = 2000\n";
    const fs::path wants = systemd_dir / "multi-user.target.wants";
    fs::create_directories(wants);
    fs::create_symlink("/lib/systemd/system/sio-steer@.service", wants / "sio-steer@3000.service");
    fs::create_symlink("/lib/systemd/system/pm2-root.service", wants / "pm2-root.service");

    run_result remove = postrm("remove");
    EXPECT_EQ(remove.code, 0) << remove.err;
    EXPECT_TRUE(fs::exists(conf_dir / "3000.conf")) << "apt remove keeps the configuration";
    EXPECT_TRUE(fs::is_symlink(wants / "sio-steer@3000.service")) << "and the enabled instance, for a reinstall";

    run_result purge = postrm("purge");
    EXPECT_EQ(purge.code, 0) << purge.err;
    EXPECT_FALSE(fs::exists(conf_dir)) << "a purge deletes /etc/sio-steer";
    EXPECT_FALSE(fs::is_symlink(wants / "sio-steer@3000.service")) << "and the links enabling its instances";
    EXPECT_TRUE(fs::is_symlink(wants / "pm2-root.service")) << "but no other unit's";

    // dpkg may run it again (a purge after a failed one): nothing left, still 0.
    EXPECT_EQ(postrm("purge").code, 0);
}

}  // namespace
}  // namespace sio_steer::test
