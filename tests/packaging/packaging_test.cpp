// The Debian package as an operator gets it: the .deb of `cpack -G DEB` from this build folder
// (the ctest fixture `deb` builds it into DEB_DIR once, for these tests and the vm test; run
// alone, this builds it there), then its control fields, its file list, the packaged binary run
// from a scratch root (dpkg -x), and the packaged unit checked by `systemd-analyze verify` in that
// root.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>
#include <vector>

#if !defined(CPACK_CONFIG) || !defined(DEB_DIR)
#error "CPACK_CONFIG must name the build folder's CPackConfig.cmake, DEB_DIR where cpack puts the .deb"
#endif

namespace {

namespace fs = std::filesystem;

struct command_result {
    int code = -1;
    std::string out;  // stdout and stderr together
};

command_result run(const std::string& command)
{
    command_result r;
    FILE* p = popen((command + " 2>&1").c_str(), "r");
    if (!p)
        return r;
    char buf[4096];
    while (std::size_t n = fread(buf, 1, sizeof(buf), p))
        r.out.append(buf, n);
    int status = pclose(p);
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return r;
}

std::string quoted(const std::string& s) { return "'" + s + "'"; }

class PackagingTest : public ::testing::Test {
protected:
    // One package for the whole suite: cpack takes a while.
    static void SetUpTestSuite()
    {
        work = fs::temp_directory_path() / ("sio-steer-deb-" + std::to_string(getpid()));
        fs::create_directories(work);
        deb = built_deb();
        if (deb.empty()) {
            cpack = run("cpack -G DEB --config " + quoted(CPACK_CONFIG) + " -B " + quoted(DEB_DIR));
            deb = built_deb();
        }
        if (!deb.empty())
            extracted = run("dpkg -x " + quoted(deb.string()) + " " + quoted((work / "root").string()));
    }
    static void TearDownTestSuite()
    {
        std::error_code ec;
        fs::remove_all(work, ec);
    }

    void SetUp() override { ASSERT_FALSE(deb.empty()) << "no .deb in " << DEB_DIR << ":\n" << cpack.out; }

    static fs::path root() { return work / "root"; }

    // The newest .deb in DEB_DIR ("" if none yet).
    static fs::path built_deb()
    {
        fs::path newest;
        std::error_code ec;
        for (const auto& entry : fs::directory_iterator(DEB_DIR, ec))
            if (entry.path().extension() == ".deb" &&
                (newest.empty() || fs::last_write_time(entry.path()) > fs::last_write_time(newest)))
                newest = entry.path();
        return newest;
    }

    // systemd-analyze verify of sio-steer@5001.service in the extracted tree: prints nothing when
    // the unit is sound (it exits 0 on warnings such as an unknown directive, which print a line).
    //
    // In this container systemd is not PID 1, so verify runs offline with --root: it then resolves
    // every unit, sysinit.target included, and the ExecStart= binary inside that root. The host's
    // unit files are copied next to ours for that (the copy, not symlinks: verify refuses symlinks
    // to outside the root for some unit types).
    static command_result verify_unit()
    {
        const fs::path units = root() / "usr/lib/systemd/system";
        for (const auto& entry : fs::directory_iterator("/usr/lib/systemd/system"))
            if (!fs::exists(units / entry.path().filename()))
                fs::copy(entry.path(), units / entry.path().filename(),
                         fs::copy_options::recursive | fs::copy_options::copy_symlinks);
        return run("systemd-analyze verify --root=" + quoted(root().string()) + " sio-steer@5001.service");
    }

    static fs::path work, deb;
    static command_result cpack, extracted;
};

fs::path PackagingTest::work, PackagingTest::deb;
command_result PackagingTest::cpack, PackagingTest::extracted;

TEST_F(PackagingTest, ControlFieldsDeclareTheDebianDependencies)
{
    command_result r = run("dpkg-deb -f " + quoted(deb.string()) + " Package Version Architecture Depends Recommends");
    ASSERT_EQ(r.code, 0) << r.out;
    EXPECT_NE(r.out.find("Package: sio-steer\n"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find(std::string("Version: ") + SIO_STEER_VERSION + "\n"), std::string::npos) << r.out;
    // The libraries the binary links, as dpkg-shlibdeps names their packages.
    std::smatch depends;
    ASSERT_TRUE(std::regex_search(r.out, depends, std::regex("\nDepends: ([^\n]*)\n"))) << r.out;
    for (const char* dep :
         {"libbpf1", "libboost-program-options", "libspdlog", "libmnl0", "libsystemd0", "libstdc++6", "libc6"})
        EXPECT_NE(depends[1].str().find(dep), std::string::npos) << dep << "\n" << r.out;
    EXPECT_NE(r.out.find("Recommends: bpftool"), std::string::npos) << r.out;
}

TEST_F(PackagingTest, HoldsTheBinaryTheUnitTheDocsAndTheExampleConfig)
{
    command_result r = run("dpkg-deb -c " + quoted(deb.string()));
    ASSERT_EQ(r.code, 0) << r.out;
    for (const std::string path :
         {"./usr/bin/sio-steer", "./usr/lib/systemd/system/sio-steer@.service", "./usr/share/doc/sio-steer/runbook.md",
          "./usr/share/doc/sio-steer/metrics.md", "./usr/share/doc/sio-steer/systemd.md",
          "./usr/share/doc/sio-steer/exit-codes.md", "./usr/share/doc/sio-steer/examples/sio-steer.conf",
          "./etc/sio-steer/", "./usr/share/sio-steer/prometheus/sio-steer.rules.yml",
          "./usr/share/sio-steer/sio-steer-drain-" SIO_STEER_VERSION ".tgz"})
        EXPECT_NE(r.out.find(" " + path + "\n"), std::string::npos) << path << " missing from:\n" << r.out;
    EXPECT_TRUE(std::regex_search(r.out, std::regex(R"(-rwxr-xr-x root/root +\d+ .* \./usr/bin/sio-steer\n)")))
        << r.out;
    EXPECT_EQ(r.out.find("test_worker"), std::string::npos) << "no test binaries in the package";
}

// The drain module for `npm install /usr/share/sio-steer/sio-steer-drain-<version>.tgz`: an npm
// tarball (package/...) whose package.json has the binary's version, holding the module's files as
// they are in the repository, and not its tests.
TEST_F(PackagingTest, TheDrainTarballIsTheModuleWithTheBinarysVersion)
{
    ASSERT_EQ(extracted.code, 0) << extracted.out;
    const fs::path tarball = root() / "usr/share/sio-steer/sio-steer-drain-" SIO_STEER_VERSION ".tgz";
    const fs::path out = work / "drain";
    fs::create_directories(out);
    command_result r = run("tar -xzf " + quoted(tarball.string()) + " -C " + quoted(out.string()));
    ASSERT_EQ(r.code, 0) << r.out;
    r = run("jq -r '.name + \" \" + .version' " + quoted((out / "package/package.json").string()));
    EXPECT_EQ(r.out, "sio-steer-drain " SIO_STEER_VERSION "\n");

    const fs::path source = fs::path(SIO_STEER_SOURCE_DIR) / "packages/sio-steer-drain";
    std::vector<fs::path> module = {"index.js", "README.md"};
    for (const auto& entry : fs::recursive_directory_iterator(source / "lib"))
        if (entry.is_regular_file())
            module.push_back(fs::relative(entry.path(), source));
    ASSERT_GT(module.size(), 3u);
    for (const fs::path& file : module) {
        r = run("cmp " + quoted((source / file).string()) + " " + quoted((out / "package" / file).string()));
        EXPECT_EQ(r.code, 0) << file << ": not the repository's\n" << r.out;
    }
    EXPECT_FALSE(fs::exists(out / "package/test")) << "the module's tests are not shipped";
}

// The alert rules as the repository has them, which promtool accepts.
TEST_F(PackagingTest, TheAlertRulesAreTheRepositorysAndPromtoolAcceptsThem)
{
    ASSERT_EQ(extracted.code, 0) << extracted.out;
    const fs::path rules = root() / "usr/share/sio-steer/prometheus/sio-steer.rules.yml";
    command_result r = run("cmp " + quoted(SIO_STEER_SOURCE_DIR "/packaging/prometheus/sio-steer.rules.yml") + " " +
                           quoted(rules.string()));
    EXPECT_EQ(r.code, 0) << r.out;
    r = run("promtool check rules " + quoted(rules.string()));
    EXPECT_EQ(r.code, 0) << r.out;
    EXPECT_NE(r.out.find("SUCCESS: 10 rules found"), std::string::npos) << r.out;
}

// apt remove must not leave steering attached with no binary left to detach it; an upgrade must
// leave it alone: the prerm acts on "remove" only.
TEST_F(PackagingTest, MaintainerScriptsDetachOnRemovalOnly)
{
    const fs::path control = work / "control";
    command_result r = run("dpkg-deb -e " + quoted(deb.string()) + " " + quoted(control.string()));
    ASSERT_EQ(r.code, 0) << r.out;
    for (const char* script : {"prerm", "postrm", "postinst"}) {
        EXPECT_TRUE(fs::exists(control / script)) << script;
        EXPECT_EQ(run("sh -n " + quoted((control / script).string())).code, 0) << script << " is not valid sh";
    }
    std::ifstream in(control / "prerm");
    std::string prerm{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    EXPECT_NE(prerm.find("if [ \"$1\" = remove ]; then"), std::string::npos) << prerm;
    EXPECT_NE(prerm.find("/usr/bin/sio-steer detach --port"), std::string::npos) << prerm;
    // Run as an upgrade would: it must not touch anything (no systemctl, no detach).
    r = run("PATH=/nonexistent /bin/sh " + quoted((control / "prerm").string()) + " upgrade 0.0.9");
    EXPECT_EQ(r.code, 0) << r.out;
    EXPECT_EQ(r.out, "");
}

TEST_F(PackagingTest, PackagedBinaryRunsAndPrintsItsVersion)
{
    ASSERT_EQ(extracted.code, 0) << extracted.out;
    command_result r = run(quoted((root() / "usr/bin/sio-steer").string()) + " --version");
    EXPECT_EQ(r.code, 0) << r.out;
    EXPECT_EQ(r.out.rfind(std::string("sio-steer ") + SIO_STEER_VERSION + " (ABI ", 0), 0u) << r.out;
}

TEST_F(PackagingTest, SystemdAnalyzeVerifiesThePackagedUnit)
{
    ASSERT_EQ(extracted.code, 0) << extracted.out;
    command_result r = verify_unit();
    EXPECT_EQ(r.code, 0) << r.out;
    EXPECT_EQ(r.out, "") << "systemd-analyze has remarks on the unit";
}

// The check above can fail: the same verify on a unit with a misspelt syscall group, and on one
// whose ExecStart= binary is missing, does not pass.
TEST_F(PackagingTest, VerifyCatchesABrokenUnit)
{
    ASSERT_EQ(extracted.code, 0) << extracted.out;
    const fs::path unit = root() / "usr/lib/systemd/system/sio-steer@.service";
    const fs::path saved = work / "unit.saved";
    fs::copy_file(unit, saved, fs::copy_options::overwrite_existing);
    run("sed -i 's/^SystemCallFilter=@system-service/SystemCallFilter=@system-servce/' " + quoted(unit.string()));
    command_result misspelt = verify_unit();
    EXPECT_NE(misspelt.out.find("@system-servce"), std::string::npos) << misspelt.out;

    fs::copy_file(saved, unit, fs::copy_options::overwrite_existing);
    fs::rename(root() / "usr/bin/sio-steer", work / "sio-steer.saved");
    command_result no_binary = verify_unit();
    fs::rename(work / "sio-steer.saved", root() / "usr/bin/sio-steer");
    EXPECT_NE(no_binary.code, 0) << no_binary.out;
    EXPECT_NE(no_binary.out.find("/usr/bin/sio-steer"), std::string::npos) << no_binary.out;
}

// What the issue asks of the unit, read from the packaged file: notify, restart on failure, the
// port as instance, and nothing on stop that would detach.
TEST_F(PackagingTest, UnitNotifiesRestartsOnFailureAndLeavesSteeringOnStop)
{
    std::ifstream in(root() / "usr/lib/systemd/system/sio-steer@.service");
    std::string unit{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    ASSERT_FALSE(unit.empty());
    EXPECT_NE(unit.find("\nType=notify\n"), std::string::npos);
    EXPECT_NE(unit.find("\nExecStart=/usr/bin/sio-steer attach --port %i"), std::string::npos);
    EXPECT_NE(unit.find("\nRestart=on-failure\n"), std::string::npos);
    EXPECT_FALSE(std::regex_search(unit, std::regex(R"(\nExecStop(Post)?=)"))) << "a stop must leave steering in place";
    EXPECT_EQ(unit.find("detach\n"), std::string::npos);
    std::smatch caps;
    ASSERT_TRUE(std::regex_search(unit, caps, std::regex(R"(\nCapabilityBoundingSet=([^\n]*)\n)")));
    EXPECT_EQ(caps[1].str(), "CAP_BPF CAP_PERFMON CAP_NET_ADMIN CAP_SYS_PTRACE CAP_DAC_READ_SEARCH");
}

}  // namespace
