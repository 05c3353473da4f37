// `sio-steer nginx-conf` option values (logic/nginx_conf.h): what validate() accepts is written
// into nginx's configuration, so an accepted value must not be able to end a directive or a block.
// Input: one option a line (listen, upstream, real-ip-header, ssl-certificate, ssl-certificate-key,
// then trusted CIDRs); the first byte picks the key mode, destinations and keepalive.
#include <algorithm>

#include "fuzz_util.h"
#include "logic/errors.h"
#include "logic/nginx_conf.h"

namespace ss = sio_steer;

namespace {

// Nothing that nginx's parser treats as syntax, and nothing the CLI could not have passed.
bool plain(const std::string& value)
{
    return value.find_first_of(std::string(" \t\r\n;{}\"'#\\", 11) + std::string(1, '\0')) == std::string::npos;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size)
{
    if (size < 1)
        return 0;
    const std::uint8_t pick = data[0];
    std::vector<std::string> f = fuzz::fields(fuzz::input(data + 1, size - 1), 8);
    f.resize(std::max<std::size_t>(f.size(), 5));
    ss::nginx_conf_options o;
    o.listen = f[0];
    if (!f[1].empty())
        o.upstream = f[1];
    o.real_ip_header = f[2];
    o.ssl_certificate = f[3];
    o.ssl_certificate_key = f[4];
    o.trusted.assign(f.begin() + 5, f.end());
    o.destination_key = pick & 1;
    o.destinations = (pick & 2) ? 1 + pick * 41u : 256;  // up to 10,456: both sides of the limit
    o.keepalive = (pick & 4) ? pick * 5u : 8;
    try {
        ss::validate(o);
    } catch (const ss::steer_error& e) {
        FUZZ_CHECK(e.code() == ss::exit_code::usage);
        return 0;
    }
    for (const std::string* value : {&o.listen, &o.upstream, &o.real_ip_header, &o.ssl_certificate,
                                     &o.ssl_certificate_key})
        FUZZ_CHECK(plain(*value));
    for (const std::string& cidr : o.trusted)
        FUZZ_CHECK(plain(cidr));
    const std::string conf = ss::nginx_conf(o, "sio-steer nginx-conf");
    const std::string snippet = ss::nginx_location_snippet(o);
    FUZZ_CHECK(std::count(conf.begin(), conf.end(), '{') == std::count(conf.begin(), conf.end(), '}'));
    FUZZ_CHECK(conf.find('\0') == std::string::npos && snippet.find('\0') == std::string::npos);
    return 0;
}
