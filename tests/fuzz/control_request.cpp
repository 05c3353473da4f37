// The control socket's requests (logic/control_request.h): any local user can connect and send
// any bytes. The input is the byte stream, cut into lines as control_socket.cpp cuts it.
#include <arpa/inet.h>

#include <cstring>

#include "fuzz_util.h"
#include "logic/client_key.h"
#include "logic/control_request.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    std::string_view stream = fuzz::input(data, size);
    for (std::size_t eol; (eol = stream.find('\n')) != std::string_view::npos; stream.remove_prefix(eol + 1)) {
        std::string_view line = stream.substr(0, eol);
        if (line.ends_with('\r'))
            line.remove_suffix(1);
        auto request = sio_steer::parse_control_request(line);
        if (auto* refusal = std::get_if<std::string>(&request)) {
            FUZZ_CHECK(refusal->starts_with("error "));
            continue;
        }
        const auto& r = std::get<sio_steer::release_request>(request);
        // Accepted: the line is exactly `release ADDRESS`, and ADDRESS is all of one address.
        FUZZ_CHECK(line == "release " + r.address);
        FUZZ_CHECK(r.address.find('\0') == std::string::npos);
        auto again = sio_steer::parse_address(r.address);
        FUZZ_CHECK(again && std::memcmp(&*again, &r.key, sizeof(r.key)) == 0);
        char text[INET6_ADDRSTRLEN];
        FUZZ_CHECK(inet_ntop(AF_INET6, r.key.addr, text, sizeof(text)));
    }
    return 0;
}
