// Behind nginx: a real nginx from Debian, started by the test on loopback with the configuration
// `sio-steer nginx-conf` prints, in front of test_worker processes (--http) steered by sio-steer.
// Clients connect to nginx from hundreds of source addresses (or, CDN-style, through a few trusted
// "edges" that name the visitor in X-Forwarded-For); each worker names itself and the source
// address nginx connected from (X-Peer). Each test runs in a fresh network namespace.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "harness.h"
#include "logic/unique_fd.h"

namespace sio_steer::test {
namespace {

std::string nginx_binary()
{
    for (const char* p : {"/usr/sbin/nginx", "/usr/bin/nginx"})
        if (access(p, X_OK) == 0)
            return p;
    return "";
}

// An nginx of the test's own: a private prefix folder holding the configuration, logs, temp
// folders and pid file; one process (master_process off), stopped by pid and removed with the
// object. `http_conf` goes into http {} as it is.
class nginx_server {
public:
    explicit nginx_server(const std::string& http_conf)
    {
        static int counter = 0;
        dir_ = "/tmp/sio-steer-test-nginx-" + std::to_string(getpid()) + "-" + std::to_string(counter++);
        std::filesystem::create_directories(dir_);
        std::ofstream(dir_ + "/generated.conf") << http_conf;
        std::ofstream(dir_ + "/nginx.conf") << "master_process off;\n"
                                               "daemon off;\n"
                                               "pid "
                                            << dir_
                                            << "/nginx.pid;\n"
                                               "error_log "
                                            << dir_
                                            << "/error.log info;\n"
                                               "events { worker_connections 1024; }\n"
                                               "http {\n"
                                               "    access_log off;\n"
                                               "    client_body_temp_path "
                                            << dir_
                                            << "/body;\n"
                                               "    proxy_temp_path "
                                            << dir_
                                            << "/proxy;\n"
                                               "    fastcgi_temp_path "
                                            << dir_
                                            << "/fastcgi;\n"
                                               "    uwsgi_temp_path "
                                            << dir_
                                            << "/uwsgi;\n"
                                               "    scgi_temp_path "
                                            << dir_
                                            << "/scgi;\n"
                                               "    include "
                                            << dir_
                                            << "/generated.conf;\n"
                                               "}\n";
    }
    ~nginx_server()
    {
        stop();
        std::error_code ec;
        std::filesystem::remove_all(dir_, ec);
    }
    nginx_server(const nginx_server&) = delete;
    nginx_server& operator=(const nginx_server&) = delete;

    // `nginx -t`: its exit code and what it said.
    std::pair<int, std::string> check() const
    {
        run_result r =
            run({nginx_binary(), "-t", "-q", "-p", dir_, "-c", dir_ + "/nginx.conf", "-e", dir_ + "/check.log"});
        return {r.code, r.out + r.err + read_text(dir_ + "/check.log")};
    }

    // Starts nginx and waits until it accepts on 127.0.0.1:`port`; throws with its log if not in 5 s.
    void start(std::uint16_t port)
    {
        const std::string log = dir_ + "/stderr.log";
        unique_fd out(::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
        pid_ = spawn({.argv = {nginx_binary(), "-p", dir_, "-c", dir_ + "/nginx.conf", "-e", log},
                      .out = out.get(),
                      .err = out.get()});
        for (int i = 0; i < 500; i++) {
            if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
                pid_ = -1;
                throw std::runtime_error("nginx exited: " + read_text(log) + read_text(dir_ + "/error.log"));
            }
            unique_fd s(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
            sockaddr_in a{};
            a.sin_family = AF_INET;
            a.sin_port = htons(port);
            a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            if (connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0)
                return;
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        }
        throw std::runtime_error("nginx did not listen on " + std::to_string(port) + " within 5 s: " + read_text(log));
    }

    void stop()
    {
        if (pid_ <= 0)
            return;
        kill(pid_, SIGTERM);
        for (int i = 0; i < 500 && waitpid(pid_, nullptr, WNOHANG) == 0; i++)
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        if (kill(pid_, 0) == 0) {
            kill(pid_, SIGKILL);
            waitpid(pid_, nullptr, 0);
        }
        pid_ = -1;
    }

    const std::string& dir() const { return dir_; }

private:
    std::string dir_;
    pid_t pid_ = -1;
};

struct http_answer {
    int status = 0;
    std::string body;  // test_worker: "<instance> <pid>"
    std::string peer;  // X-Peer: the source address nginx connected from
};

// GET `path` from 127.0.0.1:`port`, connecting from `source`, with extra header lines.
http_answer http_get(const std::string& source, std::uint16_t port, const std::string& path = "/",
                     const std::string& headers = "")
{
    http_answer r;
    unique_fd s(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    timeval tv{3, 0};
    setsockopt(s.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(s.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    sockaddr_in src{}, dst{};
    src.sin_family = dst.sin_family = AF_INET;
    inet_pton(AF_INET, source.c_str(), &src.sin_addr);
    dst.sin_port = htons(port);
    dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(s.get(), reinterpret_cast<sockaddr*>(&src), sizeof(src)) ||
        connect(s.get(), reinterpret_cast<sockaddr*>(&dst), sizeof(dst)))
        return r;
    std::string request = "GET " + path + " HTTP/1.1\r\nHost: chat.example\r\n" + headers + "Connection: close\r\n\r\n";
    if (write(s.get(), request.data(), request.size()) != static_cast<ssize_t>(request.size()))
        return r;
    std::string response;
    char buf[4096];
    for (ssize_t n; (n = read(s.get(), buf, sizeof(buf))) > 0;)
        response.append(buf, static_cast<std::size_t>(n));
    std::sscanf(response.c_str(), "HTTP/1.1 %d", &r.status);
    std::size_t head_end = response.find("\r\n\r\n");
    if (head_end != std::string::npos)
        r.body = response.substr(head_end + 4);
    std::size_t peer = response.find("\r\nX-Peer: ");
    if (peer != std::string::npos && peer < head_end)
        r.peer = response.substr(peer + 10, response.find("\r\n", peer + 10) - peer - 10);
    return r;
}

// What nginx-conf's map gives an IPv4 client a.b.c.d: 127.b.c.d.
std::string expected_source(const std::string& client) { return "127" + client.substr(client.find('.')); }

constexpr int clients_through_nginx = 320;
constexpr int rounds = 3;

// Expects each of the clients_through_nginx clients on one worker and every worker with clients;
// returns how many clients stayed on one worker, and the clients per worker (" n n n n").
std::pair<int, std::string>
expect_each_client_on_one_worker(const std::map<std::string, std::set<std::string>>& workers_of)
{
    int sticky = 0;
    std::map<std::string, int> share;
    for (const auto& [c, seen] : workers_of) {
        sticky += seen.size() == 1;
        share[*seen.begin()]++;
    }
    EXPECT_EQ(sticky, clients_through_nginx) << "each client on one worker";
    EXPECT_EQ(share.size(), 4u) << "every worker has clients";
    std::string spread;
    for (const auto& [worker, n] : share)
        spread += " " + std::to_string(n);
    return {sticky, spread};
}

class NginxTest : public integration_test {
protected:
    void SetUp() override
    {
        ASSERT_NO_FATAL_FAILURE(start_http_workers());
        run_result r = sio_steer(args("attach", {"--once"}));
        ASSERT_EQ(r.code, 0) << r.err;
    }

    // The test's namespace and port, with 4 workers speaking HTTP, and a port for nginx.
    void start_http_workers()
    {
        ASSERT_FALSE(nginx_binary().empty()) << "nginx is not installed: run scripts/install-deps.sh";
        integration_test::SetUp();
        nginx_port = free_port(port);
        for (int i = 0; i < 4; i++)
            w.push_back(worker_process::http_instance(port, i));
    }

    std::string nginx_conf(std::vector<std::string> extra)
    {
        std::vector<std::string> a = {"nginx-conf", "--upstream", "127.0.0.1:" + std::to_string(port)};
        a.insert(a.end(), extra.begin(), extra.end());
        run_result r = sio_steer(a);
        EXPECT_EQ(r.code, 0) << r.err;
        return r.out;
    }

    std::string listen_here() const { return "127.0.0.1:" + std::to_string(nginx_port); }

    nlohmann::json status()
    {
        run_result r = sio_steer(args("status", {"--json"}));
        EXPECT_EQ(r.code, 0) << r.err;
        return nlohmann::json::parse(r.out);
    }

    std::uint16_t nginx_port = 0;
};

TEST_F(NginxTest, NginxAcceptsEveryGeneratedConfiguration)
{
    const std::vector<std::vector<std::string>> variants = {
        {"--listen", listen_here()},
        {"--listen", listen_here(), "--real-ip-header", "X-Forwarded-For", "--trusted", "127.250.0.0/16",
         "2001:db8:ffff::/48"},
        {"--listen", "[::1]:" + std::to_string(nginx_port), "--real-ip-header", "proxy_protocol", "--trusted",
         "10.0.0.0/8"},
        {},  // maps only, the location directives commented out
        {"--real-ip-header", "CF-Connecting-IP", "--trusted", "173.245.48.0/20"},
    };
    for (const auto& v : variants) {
        nginx_server nginx(nginx_conf(v));
        auto [rc, said] = nginx.check();
        EXPECT_EQ(rc, 0) << "nginx -t refused `sio-steer nginx-conf` with " << ::testing::PrintToString(v) << ":\n"
                         << said;
    }
    // The snippet, included in a location of the user's own server.
    nginx_server nginx(nginx_conf({}) + "server {\n    listen " + listen_here() + ";\n    location /socket.io/ {\n" +
                       nginx_conf({"--location-snippet"}) + "    }\n}\n");
    auto [rc, said] = nginx.check();
    EXPECT_EQ(rc, 0) << said;
}

TEST_F(NginxTest, EveryClientThroughNginxStaysOnOneWorkerAndEveryWorkerIsUsed)
{
    nginx_server nginx(nginx_conf({"--listen", listen_here()}));
    ASSERT_EQ(nginx.check().first, 0) << nginx.check().second;
    nginx.start(nginx_port);

    std::vector<std::string> clients = client_addresses(clients_through_nginx, 0);
    std::map<std::string, std::set<std::string>> workers_of;
    int wrong_source = 0, failed = 0;
    for (int round = 0; round < rounds; round++)
        for (const auto& c : clients) {
            http_answer a = http_get(c, nginx_port);
            failed += a.status != 200;
            wrong_source += a.peer != expected_source(c);
            workers_of[c].insert(a.body);
        }
    EXPECT_EQ(failed, 0);
    EXPECT_EQ(wrong_source, 0) << "nginx connects from 127.b.c.d for client a.b.c.d";
    auto [sticky, spread] = expect_each_client_on_one_worker(workers_of);
    std::printf("through nginx: %d/%d clients on one worker (%d requests each), clients per worker:%s\n", sticky,
                clients_through_nginx, rounds, spread.c_str());
    EXPECT_TRUE(status()["warnings"].empty()) << status()["warnings"].dump();
}

TEST_F(NginxTest, WithoutProxyBindEveryClientLandsOnTheSameWorkerAndStatusSaysWhy)
{
    // The proof: the same configuration minus the generated proxy_bind line.
    std::string conf = nginx_conf({"--listen", listen_here()});
    std::size_t bind = conf.find("proxy_bind $sio_steer_src;");
    ASSERT_NE(bind, std::string::npos);
    conf.erase(bind, conf.find('\n', bind) - bind);
    nginx_server nginx(conf);
    nginx.start(nginx_port);

    std::vector<std::string> clients = client_addresses(clients_through_nginx, 0);
    std::set<std::string> workers_used, sources;
    for (int round = 0; round < rounds; round++)
        for (const auto& c : clients) {
            http_answer a = http_get(c, nginx_port);
            ASSERT_EQ(a.status, 200) << c;
            workers_used.insert(a.body);
            sources.insert(a.peer);
        }
    EXPECT_EQ(sources, std::set<std::string>{"127.0.0.1"}) << "the workers see only nginx";
    EXPECT_EQ(workers_used.size(), 1u) << "so every client is steered to the same worker";
    std::printf("without proxy_bind: %d clients on %zu worker(s)\n", clients_through_nginx, workers_used.size());

    nlohmann::json warnings = status()["warnings"];
    ASSERT_EQ(warnings.size(), 1u) << "status warns about the proxy";
    std::string warning = warnings[0].get<std::string>();
    EXPECT_NE(warning.find("127.0.0.1"), std::string::npos) << warning;
    EXPECT_NE(warning.find("sio-steer nginx-conf"), std::string::npos) << warning;
    run_result text = sio_steer(args("status"));
    EXPECT_NE(text.out.find("warning: "), std::string::npos) << text.out;
}

TEST_F(NginxTest, BehindACdnEachVisitorKeepsItsWorkerWhicheverEdgeForwardsIt)
{
    // Four CDN edges in 127.250.0.0/16 pass the visitor in X-Forwarded-For; a visitor's requests
    // arrive through different edges, and an IPv6 visitor's from different addresses of its /64.
    nginx_server nginx(
        nginx_conf({"--listen", listen_here(), "--real-ip-header", "X-Forwarded-For", "--trusted", "127.250.0.0/16"}));
    nginx.start(nginx_port);
    const std::vector<std::string> edges = {"127.250.0.1", "127.250.0.2", "127.250.0.3", "127.250.0.4"};

    std::vector<std::string> visitors;
    for (int i = 0; i < 300; i++)
        visitors.push_back("198." + std::to_string(18 + i / 200) + "." + std::to_string(i % 200) + "." +
                           std::to_string(1 + i % 250));
    // IPv6 visitors: /64s with zero groups in different places, so that nginx's text of their
    // addresses compresses differently from one interface ID to the next.
    static const char* prefixes[] = {"2001:db8:0:", "2001:0:0:", "0:0:0:"};
    for (int i = 0; i < 60; i++) {
        char group[8];
        std::snprintf(group, sizeof(group), "%x", 0x100 + i);
        visitors.push_back(prefixes[i % 3] + std::string(group));
    }
    auto visitor_address = [](const std::string& v, int round) {
        if (v.find(':') == std::string::npos)
            return v;
        static const char* interface_ids[] = {":1:2:3:4", ":0:0:0:1", ":0:5:0:0", ":dead:0:0:0"};
        return v + interface_ids[round % 4];
    };

    std::map<std::string, std::set<std::string>> workers_of, sources_of;
    int failed = 0, wrong_source = 0;
    for (int round = 0; round < 4; round++)
        for (std::size_t i = 0; i < visitors.size(); i++) {
            const std::string& v = visitors[i];
            http_answer a = http_get(edges[(i + round) % edges.size()], nginx_port, "/",
                                     "X-Forwarded-For: " + visitor_address(v, round) + "\r\n");
            failed += a.status != 200;
            workers_of[v].insert(a.body);
            sources_of[v].insert(a.peer);
            if (v.find(':') == std::string::npos)
                wrong_source += a.peer != expected_source(v);
            else
                wrong_source += !a.peer.starts_with("127.255.");
        }
    EXPECT_EQ(failed, 0);
    EXPECT_EQ(wrong_source, 0) << "sources come from the visitor, not from the edge";

    int sticky = 0;
    std::set<std::string> workers_used, v6_sources;
    for (const auto& v : visitors) {
        sticky += workers_of[v].size() == 1 && sources_of[v].size() == 1;
        workers_used.insert(*workers_of[v].begin());
        if (v.find(':') != std::string::npos)
            v6_sources.insert(*sources_of[v].begin());
    }
    EXPECT_EQ(sticky, static_cast<int>(visitors.size())) << "each visitor on one worker, through any edge";
    EXPECT_EQ(workers_used.size(), 4u);
    EXPECT_GE(v6_sources.size(), 55u) << "60 IPv6 /64s hash to (nearly) as many sources";
    std::printf("behind a CDN: %d/%zu visitors (300 IPv4, 60 IPv6 /64s) on one worker through 4 edges; "
                "%zu sources for the 60 /64s\n",
                sticky, visitors.size(), v6_sources.size());

    // A sender outside --trusted cannot pick its address: the header is ignored.
    http_answer forged = http_get("127.9.9.9", nginx_port, "/", "X-Forwarded-For: 203.0.113.5\r\n");
    EXPECT_EQ(forged.peer, "127.9.9.9");
}

TEST_F(NginxTest, TheLocationSnippetInTheUsersOwnServerKeepsAffinity)
{
    nginx_server nginx(nginx_conf({}) + "server {\n    listen " + listen_here() +
                       ";\n    location / { return 404; }\n    location /socket.io/ {\n" +
                       nginx_conf({"--location-snippet"}) + "    }\n}\n");
    nginx.start(nginx_port);
    std::vector<std::string> clients = client_addresses(100, 0);
    int sticky = 0;
    std::set<std::string> workers_used;
    for (const auto& c : clients) {
        std::set<std::string> seen;
        for (int round = 0; round < rounds; round++) {
            http_answer a = http_get(c, nginx_port, "/socket.io/?EIO=4&transport=polling");
            EXPECT_EQ(a.status, 200);
            EXPECT_EQ(a.peer, expected_source(c));
            seen.insert(a.body);
        }
        sticky += seen.size() == 1;
        workers_used.insert(*seen.begin());
    }
    EXPECT_EQ(sticky, 100);
    EXPECT_EQ(workers_used.size(), 4u);
    EXPECT_EQ(http_get("127.1.0.1", nginx_port, "/elsewhere").status, 404) << "the snippet stays in its location";
}

// --key destination: nginx keeps upstream connections alive and hashes each client onto one of many
// destination addresses of the port; the program keys on the destination.
class NginxDestinationTest : public NginxTest {
protected:
    void SetUp() override { start_http_workers(); }

    void attach(const std::string& key)
    {
        run_result r = sio_steer(args("attach", {"--once", "--key", key}));
        ASSERT_EQ(r.code, 0) << r.err;
    }

    // Each client's workers and the destinations its requests went to, `rounds` requests each.
    void run_clients(const std::vector<std::string>& clients, std::map<std::string, std::set<std::string>>& workers_of,
                     int& failed)
    {
        for (int round = 0; round < rounds; round++)
            for (const auto& c : clients) {
                http_answer a = http_get(c, nginx_port);
                failed += a.status != 200;
                workers_of[c].insert(a.body);
            }
    }
};

TEST_F(NginxDestinationTest, EveryClientStaysOnOneWorkerThroughKeptAliveUpstreams)
{
    attach("destination");
    std::string conf = nginx_conf({"--listen", listen_here(), "--key", "destination", "--destinations", "64"});
    nginx_server nginx(conf);
    ASSERT_EQ(nginx.check().first, 0) << nginx.check().second;
    nginx.start(nginx_port);

    std::map<std::string, std::set<std::string>> workers_of;
    int failed = 0;
    run_clients(client_addresses(clients_through_nginx, 0), workers_of, failed);
    EXPECT_EQ(failed, 0);
    auto [sticky, spread] = expect_each_client_on_one_worker(workers_of);

    // The sessions are the destinations nginx used: many of the 64, all in 127.0.0.1 ... 127.0.0.64.
    run_result r = sio_steer(args("sessions", {"--json"}));
    ASSERT_EQ(r.code, 0) << r.err;
    nlohmann::json sessions = nlohmann::json::parse(r.out);
    std::set<std::string> keys;
    for (const auto& s : sessions)
        keys.insert(s["client"].get<std::string>());
    EXPECT_GE(keys.size(), 48u) << "320 clients hash onto most of the 64 destinations";
    EXPECT_LE(keys.size(), 64u);
    for (const auto& k : keys) {
        in_addr a{};
        ASSERT_EQ(inet_pton(AF_INET, k.c_str(), &a), 1) << k;
        EXPECT_GE(ntohl(a.s_addr), 0x7f000001u) << k;
        EXPECT_LE(ntohl(a.s_addr), 0x7f000040u) << k;
    }
    std::printf("destination mode: %d/%d clients on one worker (%d requests each) over %zu destinations, "
                "clients per worker:%s\n",
                sticky, clients_through_nginx, rounds, keys.size(), spread.c_str());
}

TEST_F(NginxDestinationTest, WithoutTheDestinationKeyClientsHopBetweenWorkers)
{
    // The same nginx configuration, but the workers spread per connection (as the kernel's own
    // reuseport hash does): a client's requests land on several workers.
    attach("address,port");
    nginx_server nginx(nginx_conf({"--listen", listen_here(), "--key", "destination", "--destinations", "64"}));
    nginx.start(nginx_port);
    std::map<std::string, std::set<std::string>> workers_of;
    int failed = 0;
    run_clients(client_addresses(100, 0), workers_of, failed);
    EXPECT_EQ(failed, 0);
    int hopped = 0;
    for (const auto& [c, seen] : workers_of)
        hopped += seen.size() > 1;
    EXPECT_GT(hopped, 50) << "most clients reach more than one worker in 3 requests";
    std::printf("destination configuration without --key destination: %d/100 clients on more than one worker\n",
                hopped);
}

TEST_F(NginxDestinationTest, NginxAcceptsTheDestinationVariants)
{
    const std::vector<std::vector<std::string>> variants = {
        {"--listen", listen_here(), "--key", "destination"},
        {"--listen", listen_here(), "--key", "destination", "--destinations", "1000", "--keepalive", "2",
         "--real-ip-header", "X-Forwarded-For", "--trusted", "127.250.0.0/16"},
        {"--key", "destination"},
    };
    for (const auto& v : variants) {
        nginx_server nginx(nginx_conf(v));
        auto [rc, said] = nginx.check();
        EXPECT_EQ(rc, 0) << "nginx -t refused `sio-steer nginx-conf` with " << ::testing::PrintToString(v) << ":\n"
                         << said;
    }
    nginx_server nginx(nginx_conf({"--key", "destination"}) + "server {\n    listen " + listen_here() +
                       ";\n    location /socket.io/ {\n" + nginx_conf({"--key", "destination", "--location-snippet"}) +
                       "    }\n}\n");
    auto [rc, said] = nginx.check();
    EXPECT_EQ(rc, 0) << said;
}

}  // namespace
}  // namespace sio_steer::test
