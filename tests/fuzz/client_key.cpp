// Client addresses and prefixes (logic/client_key.h, options.h, listen_address.h): what
// `sessions --client`, `release` and the option values take. The first byte picks the prefixes,
// the rest is the text.
#include <cstring>

#include "fuzz_util.h"
#include "logic/client_key.h"
#include "logic/errors.h"
#include "logic/listen_address.h"
#include "logic/options.h"

namespace ss = sio_steer;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    if (size < 1)
        return 0;
    const std::uint8_t pick = data[0];
    const std::string text(fuzz::input(data + 1, size - 1));

    if (auto key = ss::parse_address(text)) {
        FUZZ_CHECK(text.find('\0') == std::string::npos);
        ss::steer_options o;
        o.v4_prefix = 1 + pick % 32;
        o.v6_prefix = 1 + (pick * 7u) % 128;
        ss::validate(o);
        const config c = ss::make_config(o, 0x5eed);
        const client_key masked = ss::key_for(*key, c);
        FUZZ_CHECK(ss::is_v4_mapped(masked) == ss::is_v4_mapped(*key));
        FUZZ_CHECK(ss::ring_bucket(masked, c) < SIO_STEER_RING_SIZE);
        ss::format_key(masked, c);
        // Unmasked, the text form reads back as the same key.
        ss::steer_options full;
        full.v4_prefix = 32;
        full.v6_prefix = 128;
        const config exact = ss::make_config(full, 0);
        auto back = ss::parse_address(ss::format_key(ss::key_for(*key, exact), exact));
        FUZZ_CHECK(back && std::memcmp(&*back, &*key, sizeof(*key)) == 0);
    }

    // Option values: a refusal is a steer_error (exit 2); anything else escaping is a finding.
    try {
        std::uint64_t v = ss::parse_number("--v4-prefix", text, 1, 32);
        FUZZ_CHECK(v >= 1 && v <= 32 && text.find_first_not_of("0123456789") == std::string::npos);
    } catch (const ss::steer_error& e) {
        FUZZ_CHECK(e.code() == ss::exit_code::usage);
    }
    try {
        std::uint64_t v = ss::parse_number("--max-sessions", text, 0, UINT32_MAX);
        FUZZ_CHECK(v <= UINT32_MAX && !text.empty() && text.find_first_not_of("0123456789") == std::string::npos);
    } catch (const ss::steer_error& e) {
        FUZZ_CHECK(e.code() == ss::exit_code::usage);
    }
    try {
        auto d = ss::parse_duration("--session-ttl", text);
        FUZZ_CHECK(d.count() > 0 && d.count() <= 7 * 24 * 3600);
    } catch (const ss::steer_error& e) {
        FUZZ_CHECK(e.code() == ss::exit_code::usage);
    }
    try {
        FUZZ_CHECK(ss::parse_port(text) >= 1);
    } catch (const ss::steer_error& e) {
        FUZZ_CHECK(e.code() == ss::exit_code::usage);
    }
    try {
        ss::parse_key_mode(text);
    } catch (const ss::steer_error& e) {
        FUZZ_CHECK(e.code() == ss::exit_code::usage);
    }
    try {
        ss::listen_address a = ss::parse_listen_address(text);
        FUZZ_CHECK(a.port >= 1 && !a.host.empty());
    } catch (const ss::steer_error& e) {
        FUZZ_CHECK(e.code() == ss::exit_code::usage);
    }
    return 0;
}
