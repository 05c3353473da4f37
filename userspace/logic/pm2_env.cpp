#include "logic/pm2_env.h"

#include <charconv>
#include <cstdint>

#include <nlohmann/json.hpp>

namespace sio_steer {
namespace {

std::optional<std::uint32_t> number_from_text(std::string_view text)
{
    std::uint64_t value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (text.empty() || ec != std::errc{} || end != text.data() + text.size() || value > UINT32_MAX)
        return std::nullopt;
    return static_cast<std::uint32_t>(value);
}

// A field of pm2_env that PM2 writes as a number; a numeric string is accepted as well.
std::optional<std::uint32_t> number_from_pm2_env(std::string_view document, const char* field)
{
    using nlohmann::json;
    const json env = json::parse(document, nullptr, /*allow_exceptions=*/false);
    if (!env.is_object())
        return std::nullopt;  // also covers a parse error (json::value_t::discarded)
    auto it = env.find(field);
    if (it == env.end())
        return std::nullopt;
    if (it->is_number_unsigned() && it->get<std::uint64_t>() <= UINT32_MAX)
        return static_cast<std::uint32_t>(it->get<std::uint64_t>());
    if (it->is_string())
        return number_from_text(it->get_ref<const std::string&>());
    return std::nullopt;  // negative, fractional, null, ...
}

// The pm2_env=<JSON> document of an environ blob, parsed for `field`.
std::optional<std::uint32_t> from_pm2_env(std::string_view environ, const char* field)
{
    auto pm2_env = environ_value(environ, "pm2_env");
    if (!pm2_env)
        return std::nullopt;
    try {
        return number_from_pm2_env(*pm2_env, field);
    } catch (const nlohmann::json::exception&) {
        return std::nullopt;  // parse() does not throw when told not to; this is belt and braces
    }
}

}  // namespace

std::optional<std::string_view> environ_value(std::string_view environ, std::string_view var)
{
    while (!environ.empty()) {
        auto end = environ.find('\0');
        std::string_view entry = environ.substr(0, end);
        if (entry.size() > var.size() && entry.starts_with(var) && entry[var.size()] == '=')
            return entry.substr(var.size() + 1);
        if (end == std::string_view::npos)
            break;
        environ.remove_prefix(end + 1);
    }
    return std::nullopt;
}

std::optional<std::uint32_t> pm2_instance_from_environ(std::string_view environ)
{
    // A launcher that sets NODE_APP_INSTANCE itself is authoritative. PM2 7 cluster workers
    // have none at the top level (PM2 sets it at run time), only inside pm2_env. An
    // unparsable top-level value is ignored rather than trusted.
    if (auto top = environ_value(environ, "NODE_APP_INSTANCE"))
        if (auto instance = number_from_text(*top))
            return instance;
    return from_pm2_env(environ, "NODE_APP_INSTANCE");
}

std::optional<std::uint32_t> pm2_instances_from_environ(std::string_view environ)
{
    std::optional<std::uint32_t> n = from_pm2_env(environ, "instances");
    if (n == 0u)
        return std::nullopt;  // not a count PM2 starts workers for (it resolves 0, "max", to the CPUs)
    return n;
}

}  // namespace sio_steer
