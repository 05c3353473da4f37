#include "logic/listen_address.h"

#include <charconv>

#include "logic/errors.h"

namespace sio_steer {

listen_address parse_listen_address(const std::string& text)
{
    auto refuse = [&] {
        return steer_error(
            exit_code::usage, "--metrics-listen " + text + " is not an ADDRESS:PORT",
            "the metrics endpoint listens on one local address and TCP port",
            "write it like 127.0.0.1:9477, [::1]:9477, :9477 (loopback) or 0.0.0.0:9477 (every address)");
    };
    std::size_t colon = text.rfind(':');
    if (colon == std::string::npos)
        throw refuse();
    std::string host = text.substr(0, colon);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
    else if (host.find(':') != std::string::npos)
        throw refuse();  // an IPv6 address needs brackets
    if (host.empty())
        host = "127.0.0.1";  // no address given: loopback; every address only when written out
    unsigned port = 0;
    const char* first = text.data() + colon + 1;
    const char* last = text.data() + text.size();
    auto [end, ec] = std::from_chars(first, last, port);
    if (ec != std::errc() || end != last || first == last || port < 1 || port > 65535)
        throw refuse();
    return {host, static_cast<std::uint16_t>(port)};
}

}  // namespace sio_steer
