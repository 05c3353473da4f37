// Where `attach --metrics-listen` serves /metrics (metrics_server.h), as the user writes it.
#pragma once

#include <cstdint>
#include <string>

namespace sio_steer {

struct listen_address {
    std::string host;  // "127.0.0.1", "::1", "0.0.0.0"
    std::uint16_t port = 0;
};

// "127.0.0.1:9477", "[::1]:9477", ":9477" (loopback, 127.0.0.1), "0.0.0.0:9477" (every address); throws steer_error(usage) naming the option.
listen_address parse_listen_address(const std::string& text);

}  // namespace sio_steer
