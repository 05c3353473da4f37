// sio-steer nginx-conf: prints the nginx configuration that keeps each client on one worker when
// nginx (behind a CDN or not) proxies to the workers on this host. Reads nothing, changes nothing.
#include <cstdint>
#include <ostream>

#include "cli/cli.h"
#include "logic/errors.h"
#include "logic/nginx_conf.h"
#include "logic/options.h"

namespace po = boost::program_options;

namespace sio_steer {

int run_nginx_conf(const args& a, std::ostream& out)
{
    nginx_conf_options o;
    bool location_snippet = false;
    std::string key = "address";
    // Numbers as text, parsed strictly below: an unsigned option would wrap "-1" silently (and
    // "-4294967295" to 1).
    std::string destinations = std::to_string(o.destinations), keepalive = std::to_string(o.keepalive);
    po::options_description options("nginx-conf options");
    // one option per line, as --help lists them
    // clang-format off
    options.add_options()
        ("listen", po::value(&o.listen),
         "also print a server {} listening here (443, ADDR:PORT, [V6]:PORT); without it, the directives "
         "for your own location {}")
        ("upstream", po::value(&o.upstream)->default_value(o.upstream),
         "the workers: an IPv4 loopback address and their port (--key destination: the first destination)")
        ("key", po::value(&key)->default_value(key),
         "how sio-steer tells the clients apart: address (nginx connects from a source per client, no "
         "upstream keepalive) or destination (nginx hashes each client onto one of --destinations addresses, "
         "with upstream keepalive; attach with --key destination)")
        ("destinations", po::value(&destinations)->default_value(destinations),
         "--key destination: how many loopback destinations, from --upstream's address on")
        ("keepalive", po::value(&keepalive)->default_value(keepalive),
         "--key destination: idle upstream connections per destination and nginx worker process")
        ("ssl-certificate", po::value(&o.ssl_certificate), "TLS on --listen: the certificate (chain) file")
        ("ssl-certificate-key", po::value(&o.ssl_certificate_key), "TLS on --listen: its key file")
        ("real-ip-header", po::value(&o.real_ip_header),
         "behind a CDN: the header carrying the visitor's address (X-Forwarded-For, CF-Connecting-IP, ...)")
        ("trusted", po::value(&o.trusted)->multitoken()->composing(),
         "behind a CDN: the CIDRs whose --real-ip-header is believed (repeat, or list several)")
        ("location-snippet", po::bool_switch(&location_snippet),
         "print only the location {} directives, to `include` in your own location");
    // clang-format on
    po::variables_map vm;
    if (!parse_args("nginx-conf",
                    "[--listen ADDR:PORT] [--upstream HOST:PORT] [--key address|destination [--destinations N] "
                    "[--keepalive K]] [--real-ip-header NAME --trusted CIDR...] [--ssl-certificate FILE "
                    "--ssl-certificate-key FILE] [--location-snippet]",
                    a, options, vm, out))
        return 0;
    // Digits only here; nginx_conf() checks the ranges and says why.
    o.destinations = static_cast<unsigned>(parse_number("--destinations", destinations, 0, UINT32_MAX));
    o.keepalive = static_cast<unsigned>(parse_number("--keepalive", keepalive, 0, UINT32_MAX));
    if (key == "destination")
        o.destination_key = true;
    else if (key != "address")
        throw steer_error(exit_code::usage, "--key " + key + " is not a key nginx-conf knows",
                          "behind nginx, sio-steer tells clients apart by their source or by their destination",
                          "use --key address (the default) or --key destination (with `attach --key destination`)");
    if (!o.destination_key && (!vm["destinations"].defaulted() || !vm["keepalive"].defaulted()))
        throw steer_error(exit_code::usage, "--destinations and --keepalive need --key destination",
                          "with --key address nginx keeps no upstream connection alive", "add --key destination");

    std::string command_line = "sio-steer nginx-conf";
    for (const auto& arg : a)
        command_line += " " + arg;
    out << (location_snippet ? nginx_location_snippet(o) : nginx_conf(o, command_line));
    return 0;
}

}  // namespace sio_steer
