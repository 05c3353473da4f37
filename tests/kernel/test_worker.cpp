// test_worker: a stand-in for one PM2 worker. It opens one SO_REUSEPORT listener on the port
// (dual-stack "::" by default) and answers every connection with "<instance> <pid>\n", where
// instance is NODE_APP_INSTANCE from its environment, as PM2 would set it. It prints "ready"
// once listening, so that a test knows when the socket exists, and runs until killed.
//
//   test_worker --port N [--address ADDR] [--no-reuseport]
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

int main(int argc, char** argv)
{
    std::string address = "::";
    int port = 0;
    bool reuseport = true;
    for (int i = 1; i < argc; i++) {
        std::string arg = argv[i];
        if (arg == "--port" && i + 1 < argc)
            port = std::atoi(argv[++i]);
        else if (arg == "--address" && i + 1 < argc)
            address = argv[++i];
        else if (arg == "--no-reuseport")
            reuseport = false;
        else {
            std::fprintf(stderr, "usage: test_worker --port N [--address ADDR] [--no-reuseport]\n");
            return 2;
        }
    }
    const char* instance = std::getenv("NODE_APP_INSTANCE");

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
        std::perror("test_worker: bind/listen");
        return 1;
    }
    std::printf("ready\n");
    std::fflush(stdout);

    std::string reply = std::string(instance ? instance : "-") + " " + std::to_string(getpid()) + "\n";
    for (;;) {
        int c = accept(fd, nullptr, nullptr);
        if (c < 0)
            continue;
        (void)!write(c, reply.data(), reply.size());
        close(c);
    }
}
