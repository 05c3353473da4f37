// The head of an HTTP/1.x request to /metrics, as much of it as has arrived (metrics_server.h).
// Pure: bytes in, a verdict out. The server answers from the verdict and never reads a body.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace sio_steer {

// The longest request head accepted; a longer one is refused (431) rather than buffered.
inline constexpr std::size_t max_request_head = 8192;

struct http_request {
    enum class verdict {
        incomplete,   // no blank line yet: wait for more (within the connection's deadline)
        serve,        // GET /metrics (query ignored), no body
        not_found,    // 404: another path
        not_allowed,  // 405: another method
        has_body,     // 413: Content-Length other than 0, or Transfer-Encoding: never read
        too_large,    // 431: no end of head within max_request_head bytes
        bad,          // 400: not an HTTP/1.x request line, or a malformed header line
    };
    verdict what = verdict::incomplete;
    std::string method, target;
};

// Judges the bytes received so far on a connection (they need not be complete).
http_request parse_http_request(std::string_view received);

// "HTTP/1.1 <status> <reason>" for a verdict other than incomplete/serve, with a one-line text body.
std::string http_refusal(http_request::verdict what);

}  // namespace sio_steer
