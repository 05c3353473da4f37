#include "logic/control_request.h"

#include "logic/client_key.h"

namespace sio_steer {

std::variant<release_request, std::string> parse_control_request(std::string_view line)
{
    constexpr std::string_view verb = "release ";
    if (!line.starts_with(verb) || line.size() == verb.size())
        return std::string("error unknown request; the one request is: release ADDRESS");
    std::string address(line.substr(verb.size()));
    std::optional<client_key> key = parse_address(address);
    if (!key)
        return "error " + address + " is not an IP address";
    return release_request{std::move(address), *key};
}

}  // namespace sio_steer
