// sio-steer status: what is attached to a port (or to every pinned port), per worker and in total.
#include <cctype>
#include <cerrno>
#include <filesystem>
#include <ostream>

#include "cli/cli.h"
#include "kernel/pinned_state.h"
#include "kernel/report.h"
#include "logic/errors.h"
#include "logic/metrics.h"
#include "logic/options.h"

namespace po = boost::program_options;

namespace sio_steer {

namespace {

void print_text(const nlohmann::json& r, std::ostream& out)
{
    const auto& c = r["config"];
    print(out, "port %d: %s\n", r["port"].get<int>(),
          !r["attached"].get<bool>() ? "NOT attached (no worker socket of the map is listening)"
          : r["in_sync"].get<bool>() ? "attached, in sync"
                                     : "attached, NOT in sync (listeners changed; is `sio-steer attach` running?)");
    print(out, "  pinned   %s\n", r["pin_dir"].get<std::string>().c_str());
    if (!r["group"].is_null())
        print(out, "  group    %s\n", r["group"].get<std::string>().c_str());
    const auto& f = r["follow"];
    if (f["mode"] == "none")
        print(out, "  follow   no controller follows this port\n");
    else
        print(out, "  follow   %s (%s)\n", f["mode"].get<std::string>().c_str(),
              f["reason"].get<std::string>().c_str());
    print(out, "  key      %s, IPv4 /%d, IPv6 /%d, session TTL %llus\n", c["key"].get<std::string>().c_str(),
          c["v4_prefix"].get<int>(), c["v6_prefix"].get<int>(), c["session_ttl_s"].get<unsigned long long>());
    print(out, "  sessions %zu of %zu, %zu of %zu moved (off the ring, kept apart)\n",
          r["sessions"]["count"].get<std::size_t>(), r["sessions"]["capacity"].get<std::size_t>(),
          r["moved"]["count"].get<std::size_t>(), r["moved"]["capacity"].get<std::size_t>());
    if (!r["pm2_instances"].is_null()) {
        std::size_t live = 0;
        for (const auto& w : r["workers"])
            live += w["live"].get<bool>();
        print(out, "  pm2      instances = %u (the app's setting), %zu worker sockets listen\n",
              r["pm2_instances"].get<unsigned>(), live);
    }
    print(out, "\n  %-5s %-8s %-9s %-22s %-6s %-12s %s\n", "slot", "pid", "instance", "process", "uid", "cookie",
          "selections");
    for (const auto& w : r["workers"]) {
        std::string instance = w["instance"].is_null() ? "-" : std::to_string(w["instance"].get<unsigned>());
        std::string uid = w["uid"].is_null() ? "-" : std::to_string(w["uid"].get<unsigned>());
        std::string process = w["live"].get<bool>() ? w["process"].get<std::string>() : "(gone)";
        print(out, "  %-5u %-8u %-9s %-22s %-6s %-12llu %llu\n", w["slot"].get<unsigned>(), w["pid"].get<unsigned>(),
              instance.c_str(), process.c_str(), uid.c_str(), w["cookie"].get<unsigned long long>(),
              w["selections"].get<unsigned long long>());
    }
    for (const auto& l : r["unmanaged_listeners"])
        print(out, "  %-5s %-8u %-9s %-22s (listening, not in the workers map)\n", "-", l["pid"].get<unsigned>(), "-",
              l["process"].get<std::string>().c_str());
    for (const auto& l : r["foreign_listeners"])
        print(out, "  %-5s %-8u %-9s %-22s %-6u (listening on %s, not of the group: ignored)\n", "-",
              l["pid"].get<unsigned>(), "-", l["process"].get<std::string>().c_str(), l["uid"].get<unsigned>(),
              l["address"].get<std::string>().c_str());
    print(out, "\n  counters");
    for (const auto& [name, value] : r["counters"].items())
        print(out, " %s=%llu", name.c_str(), value.get<unsigned long long>());
    print(out, "\n");
    // The kernel's own count, for the whole network namespace: queued connections of closing
    // listeners (a reload, a crash) moved to another listener, or reset.
    if (const auto& k = r["kernel"]; !k.is_null())
        print(
            out,
            "  kernel   migrate_req success=%llu failure=%llu (connections queued on closing listeners: moved, reset)\n",
            k["migrate_req_success"].get<unsigned long long>(), k["migrate_req_failure"].get<unsigned long long>());
    for (const auto& w : r["warnings"])
        print(out, "\n  warning: %s\n", w.get<std::string>().c_str());
}

}  // namespace

int run_status(const args& a, std::ostream& out)
{
    steer_options o;
    std::string port;
    bool json_out = false, prometheus = false;
    po::options_description options("status options");
    add_port_options(options, port, o, {.port_help = "TCP port (default: every pinned port)", .port_required = false});
    // one option per line, as --help lists them
    // clang-format off
    options.add_options()
        ("json", po::bool_switch(&json_out), "print one JSON document")
        ("prometheus", po::bool_switch(&prometheus), "print Prometheus metrics (docs/metrics.md), e.g. for node_exporter's textfile collector");
    // clang-format on
    po::variables_map vm;
    if (!parse_args("status", "[--port N] [--json | --prometheus] [--pin-root DIR] [--lock-dir DIR]", a, options, vm,
                    out))
        return 0;
    if (json_out && prometheus)
        throw steer_error(exit_code::usage, "--json and --prometheus do not go together", {}, "choose one");

    std::vector<std::uint16_t> ports;
    if (!port.empty()) {
        ports.push_back(parse_port(port));
    } else {
        std::error_code ec;
        for (const auto& entry : std::filesystem::directory_iterator(o.pin_root, ec))
            if (entry.is_directory() && std::isdigit(static_cast<unsigned char>(entry.path().filename().string()[0])))
                ports.push_back(parse_port(entry.path().filename().string()));
        if (ec.value() == EACCES || ec.value() == EPERM)
            throw_pins_unreadable(o.pin_root, ec.value());
        std::sort(ports.begin(), ports.end());
    }

    nlohmann::json all = nlohmann::json::array();
    std::vector<port_metrics> metrics;
    bool missing = false;
    for (std::uint16_t p : ports) {
        o.port = p;
        std::optional<pinned_state> state = pinned_state::open(o.pin_dir());
        if (prometheus) {
            metrics.push_back({p, state ? std::optional(status_report(*state, p, o.lock_dir)) : std::nullopt, nullptr});
            missing = missing || !state;
            continue;
        }
        if (!state) {
            missing = true;
            if (!json_out && pinned_state::half_removed(o.pin_dir()))
                print(out,
                      "port %u: not attached (%s has pins but no config map: a detach was interrupted; the next "
                      "`sio-steer attach --port %u` or `sio-steer detach --port %u` removes them)\n",
                      p, o.pin_dir().c_str(), p, p);
            else if (!json_out)
                print(out, "port %u: not attached (nothing pinned in %s)\n", p, o.pin_dir().c_str());
            continue;
        }
        nlohmann::json r = status_report(*state, p, o.lock_dir);
        if (json_out)
            all.push_back(r);
        else
            print_text(r, out);
    }
    if (prometheus)
        out << prometheus_text(metrics);
    else if (json_out)
        out << (port.empty() ? all : all.empty() ? nlohmann::json(nullptr) : all[0]).dump(2) << "\n";
    else if (ports.empty())
        print(out, "no port is steered (nothing pinned in %s)\n", o.pin_root.c_str());
    return missing || ports.empty() ? static_cast<int>(exit_code::not_attached) : 0;
}

}  // namespace sio_steer
