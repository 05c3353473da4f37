#include "raw_syn.h"

#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "logic/unique_fd.h"

namespace sio_steer::test {

using namespace std::chrono;

namespace {

std::uint32_t sum16(const void* data, std::size_t len, std::uint32_t sum = 0)
{
    const auto* p = static_cast<const std::uint8_t*>(data);
    for (std::size_t i = 0; i + 1 < len; i += 2)
        sum += static_cast<std::uint32_t>(p[i] << 8 | p[i + 1]);
    if (len & 1)
        sum += static_cast<std::uint32_t>(p[len - 1] << 8);
    return sum;
}

std::uint16_t fold(std::uint32_t sum)
{
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return htons(static_cast<std::uint16_t>(~sum));
}

// One SYN as a client sends it: IPv4 header, TCP header with an MSS option.
struct syn_packet {
    iphdr ip;
    tcphdr tcp;
    std::uint8_t mss[4];
};
static_assert(sizeof(syn_packet) == 44);

void make_syn(syn_packet& p, std::uint32_t source, std::uint16_t source_port, std::uint16_t port, std::uint32_t seq)
{
    std::memset(&p, 0, sizeof(p));
    p.ip.version = 4;
    p.ip.ihl = 5;
    p.ip.tot_len = htons(sizeof(p));
    p.ip.ttl = 64;
    p.ip.protocol = IPPROTO_TCP;
    p.ip.saddr = htonl(source);
    p.ip.daddr = htonl(INADDR_LOOPBACK);  // the IP checksum: the kernel fills it in (IP_HDRINCL)
    p.tcp.source = htons(source_port);
    p.tcp.dest = htons(port);
    p.tcp.seq = htonl(seq);
    p.tcp.doff = (sizeof(tcphdr) + sizeof(p.mss)) / 4;
    p.tcp.syn = 1;
    p.tcp.window = htons(64240);
    const std::uint8_t mss[4] = {2, 4, 0x05, 0xb4};
    std::memcpy(p.mss, mss, sizeof(mss));
    struct {
        std::uint32_t saddr, daddr;
        std::uint8_t zero, protocol;
        std::uint16_t len;
    } pseudo{p.ip.saddr, p.ip.daddr, 0, IPPROTO_TCP, htons(sizeof(tcphdr) + sizeof(p.mss))};
    p.tcp.check = fold(sum16(&p.tcp, sizeof(tcphdr) + sizeof(p.mss), sum16(&pseudo, sizeof(pseudo))));
}

}  // namespace

flood_result spoofed_syn_flood(std::uint16_t port, std::uint32_t sources, int times, milliseconds limit,
                               std::uint32_t first_source)
{
    unique_fd raw(socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW));  // IPPROTO_RAW implies IP_HDRINCL
    if (!raw)
        throw std::runtime_error(std::string("raw socket: ") + std::strerror(errno));
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    constexpr std::uint32_t group = 256;
    std::vector<syn_packet> packets(group);
    std::vector<iovec> iov(group);
    std::vector<mmsghdr> msgs(group);
    for (std::uint32_t i = 0; i < group; i++) {
        iov[i] = {&packets[i], sizeof(syn_packet)};
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_name = &to;
        msgs[i].msg_hdr.msg_namelen = sizeof(to);
    }
    std::uint32_t rng = 0x2545f491;
    auto next = [&] { return rng ^= rng << 13, rng ^= rng >> 17, rng ^= rng << 5; };
    // i -> 127.64.0.0 + (i * odd) mod 2^22: distinct addresses for distinct i, scattered over the /10.
    auto address = [](std::uint32_t i) { return 0x7f400000u | ((i * 2654435761u) & 0x3fffffu); };

    flood_result r;
    const auto start = steady_clock::now(), deadline = start + limit;
    for (std::uint32_t first = 0; first < sources && steady_clock::now() < deadline; first += group) {
        const std::uint32_t n = std::min(group, sources - first);
        for (int t = 0; t < times; t++) {
            for (std::uint32_t i = 0; i < n; i++)
                make_syn(packets[i], address(first_source + first + i),
                         static_cast<std::uint16_t>(1024 + next() % 60000), port, next());
            for (std::uint32_t done = 0; done < n;) {
                int k = sendmmsg(raw.get(), msgs.data() + done, n - done, 0);
                if (k < 0 && errno != ENOBUFS && errno != EAGAIN && errno != EINTR)
                    throw std::runtime_error(std::string("sendmmsg: ") + std::strerror(errno));
                done += k > 0 ? static_cast<std::uint32_t>(k) : 1;  // a dropped SYN is a sent SYN
                r.sent += k > 0 ? static_cast<std::uint64_t>(k) : 1;
            }
        }
        r.sources = first + n;
    }
    r.seconds = duration<double>(steady_clock::now() - start).count();
    return r;
}

}  // namespace sio_steer::test
