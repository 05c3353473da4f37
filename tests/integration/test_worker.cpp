// test_worker: a stand-in for one PM2 worker. It opens one SO_REUSEPORT listener on the port
// (dual-stack "::" by default) and answers every connection with "<instance> <pid>\n", where
// instance is NODE_APP_INSTANCE from its environment, as PM2 would set it. It prints "ready"
// once listening, so that a test knows when the socket exists, and runs until killed.
// With --http it reads an HTTP request first and answers "HTTP/1.1 200" with the same body
// "<instance> <pid>" and the header "X-Peer: <client address>" (IPv4 as a.b.c.d), e.g. behind nginx.
// Each line "PATH REQUEST" on its stdin is sent to the Unix stream socket PATH as "REQUEST\n", and
// the reply line printed: requests from this worker's pid, as a draining worker sends them to sio-steer.
// With --swap-port P, SIGUSR1 makes it close its listener and put a new SO_REUSEPORT listener on
// port P under the same fd number (a worker that reuses an fd number between the controller's
// discovery and its pidfd_getfd).
//
// With --uid N it listens, then becomes user N (a pid the controller recorded, now another user's).
//
//   test_worker --port N [--address ADDR] [--no-reuseport] [--http] [--uid N] [--swap-port P]
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <grp.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <chrono>
#include <thread>
#include <vector>

namespace {

volatile sig_atomic_t swap_asked = 0;

// A listener on `address`:port, or -1.
int listen_on(const std::string& address, int port, bool reuseport)
{
    sockaddr_storage ss{};
    socklen_t len;
    int family = address.find(':') != std::string::npos ? AF_INET6 : AF_INET;
    if (family == AF_INET6) {
        auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(port);
        inet_pton(AF_INET6, address.c_str(), &a->sin6_addr);
        len = sizeof(*a);
    } else {
        auto* a = reinterpret_cast<sockaddr_in*>(&ss);
        a->sin_family = AF_INET;
        a->sin_port = htons(port);
        inet_pton(AF_INET, address.c_str(), &a->sin_addr);
        len = sizeof(*a);
    }
    int fd = socket(family, SOCK_STREAM, 0);
    int one = 1, zero = 0;
    if (reuseport)
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
    if (bind(fd, reinterpret_cast<sockaddr*>(&ss), len) || listen(fd, 1024)) {
        close(fd);
        return -1;
    }
    return fd;
}

// One request over a fresh connection to the Unix socket at `path`; the reply line or why not.
std::string unix_request(const std::string& path, const std::string& request)
{
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr))) {
        close(fd);
        return std::string("connect failed: ") + std::strerror(errno);
    }
    std::string line = request + "\n", reply;
    (void)!send(fd, line.data(), line.size(), MSG_NOSIGNAL);  // a refusal may close it first
    char c;
    while (read(fd, &c, 1) == 1 && c != '\n')
        reply += c;
    close(fd);
    return reply;
}

int connect_unix(const std::string& path)
{
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd >= 0 && connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr))) {
        close(fd);
        return -1;
    }
    return fd;
}

// What arrived on `fd` within timeout_ms: "" (nothing yet), the first line, or "EOF" (closed).
std::string poll_line(int fd, int timeout_ms)
{
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0)
        return "";
    char buf[512];
    ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
    if (n <= 0)
        return "EOF";
    std::string line(buf, static_cast<std::size_t>(n));
    return line.substr(0, line.find('\n'));
}

std::vector<int> held;  // connections opened by "hold", kept until the process exits

// "hold N PATH": opens N idle connections to PATH (this worker's pid holding them) and prints
// "<answered>/<N> <last answer>": how many got a line within 500 ms. "held": prints "closed K/N",
// how many of them the other end has closed since (after its line, if any).
void hold_or_held(const std::string& line)
{
    if (line == "held") {
        int closed = 0;
        for (int fd : held) {
            std::string first = poll_line(fd, 0);
            closed += first == "EOF" || (!first.empty() && poll_line(fd, 100) == "EOF");
        }
        std::printf("closed %d/%zu\n", closed, held.size());
        return;
    }
    std::size_t space = line.find(' ', 5);
    int n = std::atoi(line.substr(5, space - 5).c_str());
    const std::string path = line.substr(space + 1);
    for (int i = 0; i < n; i++)
        held.push_back(connect_unix(path));
    int answered = 0;
    std::string last;
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    for (int fd : held) {
        std::string first = poll_line(fd, 0);
        if (!first.empty() && first != "EOF") {
            answered++;
            last = first;
        }
    }
    std::printf("%d/%d %s\n", answered, n, last.c_str());
}

void serve_requests_from_stdin()
{
    for (std::string line; std::getline(std::cin, line);) {
        if (line == "held" || line.starts_with("hold ")) {
            hold_or_held(line);
            std::fflush(stdout);
            continue;
        }
        std::size_t space = line.find(' ');
        std::string reply = space == std::string::npos ? "bad request line"
                                                       : unix_request(line.substr(0, space), line.substr(space + 1));
        std::printf("%s\n", reply.c_str());
        std::fflush(stdout);
    }
}

std::string peer_text(const sockaddr_storage& peer)
{
    char text[INET6_ADDRSTRLEN] = {};
    if (peer.ss_family == AF_INET) {
        inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&peer)->sin_addr, text, sizeof(text));
        return text;
    }
    const in6_addr& a = reinterpret_cast<const sockaddr_in6*>(&peer)->sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(&a))
        inet_ntop(AF_INET, a.s6_addr + 12, text, sizeof(text));
    else
        inet_ntop(AF_INET6, &a, text, sizeof(text));
    return text;
}

// Reads the request head (up to the blank line, 2 s at most) and answers it.
void answer_http(int c, const std::string& body, const sockaddr_storage& peer)
{
    timeval tv{2, 0};
    setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    std::string request;
    char buf[4096];
    while (request.find("\r\n\r\n") == std::string::npos && request.size() < 65536) {
        ssize_t n = read(c, buf, sizeof(buf));
        if (n <= 0)
            return;
        request.append(buf, static_cast<std::size_t>(n));
    }
    std::string response =
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " + std::to_string(body.size()) +
        "\r\nX-Peer: " + peer_text(peer) + "\r\nConnection: close\r\n\r\n" + body;
    (void)!write(c, response.data(), response.size());
}

}  // namespace

int main(int argc, char** argv)
{
    std::string address = "::";
    int port = 0;
    bool reuseport = true, http = false;
    int uid = -1;
    int swap_port = 0;
    for (int i = 1; i < argc; i++) {
        std::string arg = argv[i];
        if (arg == "--port" && i + 1 < argc)
            port = std::atoi(argv[++i]);
        else if (arg == "--address" && i + 1 < argc)
            address = argv[++i];
        else if (arg == "--no-reuseport")
            reuseport = false;
        else if (arg == "--http")
            http = true;
        else if (arg == "--uid" && i + 1 < argc)
            uid = std::atoi(argv[++i]);
        else if (arg == "--swap-port" && i + 1 < argc)
            swap_port = std::atoi(argv[++i]);
        else {
            std::fprintf(stderr, "usage: test_worker --port N [--address ADDR] [--no-reuseport] [--http] [--uid N] "
                                 "[--swap-port P]\n");
            return 2;
        }
    }
    const char* instance = std::getenv("NODE_APP_INSTANCE");

    int fd = listen_on(address, port, reuseport);
    if (fd < 0) {
        std::perror("test_worker: bind/listen");
        return 1;
    }
    // --uid: another user's process now, under the pid that listened (as after a pid reuse).
    if (uid >= 0 && (setgroups(0, nullptr) || setresgid(uid, uid, uid) || setresuid(uid, uid, uid))) {
        std::perror("test_worker: --uid");
        return 1;
    }
    std::printf("ready\n");
    std::fflush(stdout);
    std::thread(serve_requests_from_stdin).detach();

    std::string reply = std::string(instance ? instance : "-") + " " + std::to_string(getpid()) + "\n";
    if (swap_port) {
        struct sigaction sa {};
        sa.sa_handler = [](int) { swap_asked = 1; };
        sigaction(SIGUSR1, &sa, nullptr);  // no SA_RESTART: poll() returns EINTR
    }
    for (;;) {
        if (swap_asked) {
            swap_asked = 0;
            int other = listen_on(address, swap_port, true);
            if (other < 0 || dup2(other, fd) != fd) {  // closes the old listener, same fd number
                std::perror("test_worker: swap");
                return 1;
            }
            close(other);
        }
        pollfd pfd{fd, POLLIN, 0};
        if (poll(&pfd, 1, -1) <= 0)
            continue;
        sockaddr_storage peer{};
        socklen_t peer_len = sizeof(peer);
        int c = accept(fd, reinterpret_cast<sockaddr*>(&peer), &peer_len);
        if (c < 0)
            continue;
        if (http)
            answer_http(c, reply.substr(0, reply.size() - 1), peer);
        else
            (void)!write(c, reply.data(), reply.size());
        close(c);
    }
}
