#include "logic/options.h"

#include <charconv>

#include "logic/errors.h"

namespace sio_steer {

namespace {

bool parse_uint(const std::string& text, std::uint64_t& value, std::size_t& used)
{
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    used = static_cast<std::size_t>(end - text.data());
    return ec == std::errc() && used > 0;
}

}  // namespace

std::uint16_t parse_port(const std::string& text)
{
    std::uint64_t value = 0;
    std::size_t used = 0;
    if (!parse_uint(text, value, used) || used != text.size() || value < 1 || value > 65535)
        throw steer_error(exit_code::usage, "--port " + text + " is not a TCP port",
                          "a port is a whole number from 1 to 65535",
                          "give the port the workers listen on, e.g. --port 5001");
    return static_cast<std::uint16_t>(value);
}

sio_steer_key_mode parse_key_mode(const std::string& text)
{
    if (text == "address")
        return SIO_STEER_KEY_ADDRESS;
    if (text == "address,port")
        return SIO_STEER_KEY_ADDRESS_PORT;
    if (text == "destination")
        return SIO_STEER_KEY_DESTINATION;
    throw steer_error(exit_code::usage, "--key " + text + " is not a key mode",
                      "the client key is its address, its address and port, or the address it connected to",
                      "use --key address (one worker per client), --key address,port (per connection) or "
                      "--key destination (behind `sio-steer nginx-conf --key destination`)");
}

std::string key_mode_name(std::uint32_t mode)
{
    return mode == SIO_STEER_KEY_ADDRESS_PORT  ? "address,port"
           : mode == SIO_STEER_KEY_DESTINATION ? "destination"
                                               : "address";
}

std::uint64_t parse_number(const std::string& option, const std::string& text, std::uint64_t min, std::uint64_t max)
{
    // Digits only: a "-1" that an unsigned parser would wrap to 4294967295 is refused, not taken.
    std::uint64_t value = 0;
    std::size_t used = 0;
    bool digits = parse_uint(text, value, used) && used == text.size();
    if (digits && value >= min && value <= max)
        return value;
    if (!digits)
        throw steer_error(exit_code::usage, option + " " + text + " is not a whole number",
                          "it takes digits only: no sign, no unit, no space",
                          "write it like " + option + " " + std::to_string(min));
    throw steer_error(
        exit_code::usage,
        option + " " + text + " is not a number from " + std::to_string(min) + " to " + std::to_string(max),
        "the value is checked before anything changes", "write it like " + option + " " + std::to_string(min));
}

std::chrono::seconds parse_duration(const std::string& option, const std::string& text)
{
    std::uint64_t value = 0;
    std::size_t used = 0;
    if (parse_uint(text, value, used)) {
        std::string unit = text.substr(used);
        std::uint64_t scale = unit.empty() || unit == "s" ? 1 : unit == "m" ? 60 : unit == "h" ? 3600 : 0;
        if (scale && value > 0 && value <= 7 * 24 * 3600 / scale)
            return std::chrono::seconds(value * scale);
    }
    throw steer_error(exit_code::usage, option + " " + text + " is not a duration",
                      "a duration is a positive whole number of seconds up to a week, with an optional unit",
                      "write it like 600, 600s, 10m or 1h");
}

void validate(const steer_options& o)
{
    if (o.v4_prefix < 1 || o.v4_prefix > 32)
        throw steer_error(exit_code::usage, "--v4-prefix " + std::to_string(o.v4_prefix) + " is out of range",
                          "an IPv4 prefix keeps 1 to 32 leading bits of the client address",
                          "use 32 (one key per address) or a shorter prefix such as 24 for a /24");
    if (o.v6_prefix < 1 || o.v6_prefix > 128)
        throw steer_error(exit_code::usage, "--v6-prefix " + std::to_string(o.v6_prefix) + " is out of range",
                          "an IPv6 prefix keeps 1 to 128 leading bits of the client address",
                          "use 64 (one key per subnet, the default) or 128 (one per address)");
    if (o.max_sessions < 1024 || o.max_sessions > 16u << 20)
        throw steer_error(exit_code::usage, "--max-sessions " + std::to_string(o.max_sessions) + " is out of range",
                          "the sessions map holds 1,024 to 16,777,216 clients (32 bytes each)",
                          "size it above the number of clients seen within --session-ttl, e.g. 262144");
    if (o.max_moved < 1024 || o.max_moved > 16u << 20)
        throw steer_error(exit_code::usage, "--max-moved " + std::to_string(o.max_moved) + " is out of range",
                          "the moved map holds 1,024 to 16,777,216 clients (about 100 bytes each, preallocated)",
                          "size it above the clients a scale change or a reload leaves off the ring, e.g. 131072");
}

std::uint32_t session_sets_for(std::uint32_t max_sessions)
{
    return (max_sessions + SIO_STEER_SESSION_WAYS - 1) / SIO_STEER_SESSION_WAYS;
}

config make_config(const steer_options& o, std::uint32_t hash_seed)
{
    config c{};
    c.abi_version = SIO_STEER_ABI_VERSION;
    c.key_mode = o.key_mode;
    c.v4_prefix = o.v4_prefix;
    c.v6_prefix = o.v6_prefix;
    c.session_ttl_ns = static_cast<std::uint64_t>(o.session_ttl.count()) * 1'000'000'000ull;
    c.refresh_ns = 1'000'000'000ull;  // a hit rewrites last_seen at most once a second
    c.hash_seed = hash_seed;
    c.session_sets = session_sets_for(o.max_sessions);
    c.v4_mask = sio_steer_prefix_mask(96 + o.v4_prefix);
    c.v6_mask = sio_steer_prefix_mask(o.v6_prefix);
    return c;
}

}  // namespace sio_steer
