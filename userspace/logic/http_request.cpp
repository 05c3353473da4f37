#include "logic/http_request.h"

#include <algorithm>
#include <cctype>

namespace sio_steer {

namespace {

bool iequals(std::string_view a, std::string_view b)
{
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
           });
}

std::string_view trim(std::string_view s)
{
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
        s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
        s.remove_suffix(1);
    return s;
}

bool is_token(std::string_view s)
{
    return !s.empty() &&
           std::all_of(s.begin(), s.end(), [](char c) { return std::isupper(static_cast<unsigned char>(c)); });
}

struct refusal {
    const char* status;
    const char* text;
    const char* extra = "";  // header lines besides Content-Type, Content-Length and Connection
};

refusal refusal_for(http_request::verdict what)
{
    using v = http_request::verdict;
    switch (what) {
    case v::not_found:
        return {"404 Not Found", "sio-steer serves /metrics only"};
    case v::not_allowed:
        return {"405 Method Not Allowed", "sio-steer answers GET /metrics only", "Allow: GET\r\n"};
    case v::has_body:
        return {"413 Content Too Large", "a /metrics request has no body"};
    case v::too_large:
        return {"431 Request Header Fields Too Large", "the request head is over 8 KiB"};
    case v::bad:
        return {"400 Bad Request", "not an HTTP/1.x request"};
    default:
        return {"503 Service Unavailable", "too many connections to /metrics"};
    }
}

}  // namespace

http_request parse_http_request(std::string_view received)
{
    using v = http_request::verdict;
    http_request r;
    std::size_t end = received.find("\r\n\r\n");
    if (end == std::string_view::npos) {
        r.what = received.size() >= max_request_head ? v::too_large : v::incomplete;
        return r;
    }
    if (end + 4 > max_request_head) {
        r.what = v::too_large;
        return r;
    }
    std::string_view head = received.substr(0, end + 2);  // every line ends in CRLF
    std::size_t eol = head.find("\r\n");
    std::string_view line = head.substr(0, eol);
    std::size_t sp1 = line.find(' '), sp2 = line.rfind(' ');
    if (sp1 == std::string_view::npos || sp2 == sp1) {
        r.what = v::bad;
        return r;
    }
    std::string_view method = line.substr(0, sp1), target = line.substr(sp1 + 1, sp2 - sp1 - 1),
                     version = line.substr(sp2 + 1);
    if (!is_token(method) || target.empty() || target.find(' ') != std::string_view::npos ||
        !(version == "HTTP/1.1" || version == "HTTP/1.0")) {
        r.what = v::bad;
        return r;
    }
    r.method = method;
    r.target = target;
    bool body = false;
    for (std::size_t at = eol + 2; at < head.size();) {
        std::size_t next = head.find("\r\n", at);
        std::string_view field = head.substr(at, next - at);
        at = next + 2;
        std::size_t colon = field.find(':');
        if (colon == 0 || colon == std::string_view::npos || field.front() == ' ' || field.front() == '\t') {
            r.what = v::bad;  // no folded lines, no nameless fields
            return r;
        }
        std::string_view name = field.substr(0, colon), value = trim(field.substr(colon + 1));
        if (iequals(name, "Transfer-Encoding") || (iequals(name, "Content-Length") && value != "0"))
            body = true;
    }
    std::string_view path = target.substr(0, target.find('?'));
    if (body)
        r.what = v::has_body;
    else if (method != "GET")
        r.what = v::not_allowed;
    else if (path != "/metrics")
        r.what = v::not_found;
    else
        r.what = v::serve;
    return r;
}

std::string http_refusal(http_request::verdict what)
{
    const refusal r = refusal_for(what);
    const std::string text = std::string(r.text) + "\n";
    return std::string("HTTP/1.1 ") + r.status +
           "\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: " + std::to_string(text.size()) + "\r\n" +
           r.extra + "Connection: close\r\n\r\n" + text;
}

}  // namespace sio_steer
