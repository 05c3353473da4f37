// sio-steer nginx-conf: prints the nginx configuration that keeps each client on one worker when
// nginx (behind a CDN or not) proxies to the workers on this host. Reads nothing, changes nothing.
#include <iostream>

#include "cli.h"
#include "nginx_conf.h"

namespace po = boost::program_options;

namespace sio_steer {

int run_nginx_conf(const args& a)
{
    nginx_conf_options o;
    bool location_snippet = false;
    po::options_description options("nginx-conf options");
    options.add_options()
        ("listen", po::value(&o.listen),
         "also print a server {} listening here (443, ADDR:PORT, [V6]:PORT); without it, the directives "
         "for your own location {}")
        ("upstream", po::value(&o.upstream)->default_value(o.upstream),
         "the workers: an IPv4 loopback address and their port")
        ("real-ip-header", po::value(&o.real_ip_header),
         "behind a CDN: the header carrying the visitor's address (X-Forwarded-For, CF-Connecting-IP, ...)")
        ("trusted", po::value(&o.trusted)->multitoken()->composing(),
         "behind a CDN: the CIDRs whose --real-ip-header is believed (repeat, or list several)")
        ("location-snippet", po::bool_switch(&location_snippet),
         "print only the location {} directives, to `include` in your own location");
    po::variables_map vm;
    if (!parse_args("nginx-conf",
                    "[--listen ADDR:PORT] [--upstream HOST:PORT] [--real-ip-header NAME --trusted CIDR...] "
                    "[--location-snippet]",
                    a, options, vm))
        return 0;

    std::string command_line = "sio-steer nginx-conf";
    for (const auto& arg : a)
        command_line += " " + arg;
    std::cout << (location_snippet ? nginx_location_snippet(o) : nginx_conf(o, command_line));
    return 0;
}

}  // namespace sio_steer
