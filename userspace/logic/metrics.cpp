#include "logic/metrics.h"

#include <functional>

#include "bpf/sio_steer.h"

namespace sio_steer {

using nlohmann::json;

namespace {

struct family {
    const char* name;
    const char* type;  // counter | gauge
    const char* help;
    // Appends this family's samples for one port; `labels` is `port="N"`.
    std::function<void(std::string& out, const std::string& labels, const port_metrics& p)> samples;
};

void sample(std::string& out, const char* name, const std::string& labels, std::uint64_t value)
{
    out += name;
    out += "{" + labels + "} " + std::to_string(value) + "\n";
}

// A label value as the exposition format wants it: backslash, quote and newline escaped.
std::string label_value(const std::string& text)
{
    std::string out;
    for (char c : text) {
        if (c == '\\' || c == '"')
            out += '\\';
        out += c == '\n' ? std::string("\\n") : std::string(1, c);
    }
    return out;
}

using number_of = std::function<std::uint64_t(const json&)>;

// A gauge or counter from the status report, for ports that have one.
family from_report(const char* name, const char* type, const char* help, number_of value)
{
    return {name, type, help, [name, value](std::string& out, const std::string& labels, const port_metrics& p) {
                if (p.report)
                    sample(out, name, labels, value(*p.report));
            }};
}

// A gauge or counter from the status report, for ports whose report has a value for it.
family from_report_if(const char* name, const char* type, const char* help,
                      std::function<std::optional<std::uint64_t>(const json&)> value)
{
    return {name, type, help, [name, value](std::string& out, const std::string& labels, const port_metrics& p) {
                if (!p.report)
                    return;
                if (std::optional<std::uint64_t> v = value(*p.report))
                    sample(out, name, labels, *v);
            }};
}

// One of the kernel's migration counters (the report's "kernel"), where the kernel has them.
family kernel_counter(const char* name, const char* field, const char* help)
{
    return from_report_if(name, "counter", help, [field](const json& r) -> std::optional<std::uint64_t> {
        if (r["kernel"].is_null())
            return std::nullopt;
        return r["kernel"][field].get<std::uint64_t>();
    });
}

// One of the program's counters (struct stats, summed over CPUs), as the report names it.
family program_counter(const char* name, const char* field, const char* help)
{
    return from_report(name, "counter", help,
                       [field](const json& r) { return r["counters"][field].get<std::uint64_t>(); });
}

// One of this controller process's counters (attach --metrics-listen only).
family controller_counter(const char* name, const std::atomic<std::uint64_t> controller_counters::*field,
                          const char* help)
{
    return {name, "counter", help, [name, field](std::string& out, const std::string& labels, const port_metrics& p) {
                if (p.controller)
                    sample(out, name, labels, (p.controller->*field).load());
            }};
}

// One sample per worker slot, labelled with who holds it.
family per_worker(const char* name, const char* type, const char* help, number_of value)
{
    return {name, type, help, [name, value](std::string& out, const std::string& labels, const port_metrics& p) {
                if (!p.report)
                    return;
                for (const json& w : (*p.report)["workers"]) {
                    std::string instance =
                        w["instance"].is_null() ? "" : std::to_string(w["instance"].get<std::uint32_t>());
                    sample(out, name,
                           labels + ",slot=\"" + std::to_string(w["slot"].get<std::uint32_t>()) + "\",pid=\"" +
                               std::to_string(w["pid"].get<std::uint32_t>()) + "\",instance=\"" + instance + "\"",
                           value(w));
                }
            }};
}

std::uint64_t live_workers(const json& r)
{
    std::uint64_t n = 0;
    for (const json& w : r["workers"])
        n += w["live"].get<bool>();
    return n;
}

// What the pinned state, the program and the kernel say of a port.
std::vector<family> port_families()
{
    return {
        {"sio_steer_attached", "gauge",
         "1 if the steering program is attached: a worker socket of the workers map listens on the port",
         [](std::string& out, const std::string& labels, const port_metrics& p) {
             sample(out, "sio_steer_attached", labels, p.report && (*p.report)["attached"].get<bool>());
         }},
        from_report("sio_steer_followed", "gauge",
                    "1 if a sio-steer attach holds the port's lock and follows its workers (0: worker restarts, "
                    "reloads and scale changes are not followed)",
                    [](const json& r) { return r["follow"]["mode"] != "none"; }),
        from_report("sio_steer_in_sync", "gauge",
                    "1 if the workers map holds exactly the sockets listening on the port",
                    [](const json& r) { return r["in_sync"].get<bool>(); }),
        from_report("sio_steer_workers_live", "gauge", "Worker sockets in the workers map that are listening",
                    live_workers),
        from_report("sio_steer_unmanaged_listeners", "gauge",
                    "Sockets listening on the port that are not in the workers map",
                    [](const json& r) { return r["unmanaged_listeners"].size(); }),
        from_report_if("sio_steer_pm2_instances", "gauge",
                       "PM2's instances setting of the workers' app, as the newest worker's pm2_env says (pm2 scale "
                       "does not change it)",
                       [](const json& r) -> std::optional<std::uint64_t> {
                           if (r["pm2_instances"].is_null())
                               return std::nullopt;
                           return r["pm2_instances"].get<std::uint64_t>();
                       }),
        per_worker("sio_steer_worker_live", "gauge", "1 if the socket in this slot of the workers map is listening",
                   [](const json& w) { return w["live"].get<bool>(); }),
        per_worker("sio_steer_selections_total", "counter",
                   "Connections the program sent to this slot's worker socket (since the slot was first used)",
                   [](const json& w) { return w["selections"].get<std::uint64_t>(); }),
        from_report("sio_steer_sessions", "gauge", "Client sessions recorded in the sessions map now",
                    [](const json& r) { return r["sessions"]["count"].get<std::uint64_t>(); }),
        from_report("sio_steer_sessions_capacity", "gauge",
                    "Client sessions the sessions map can hold (beyond, the least recently seen are forgotten)",
                    [](const json& r) { return r["sessions"]["capacity"].get<std::uint64_t>(); }),
        from_report("sio_steer_moved_clients", "gauge",
                    "Clients off the ring (their recorded worker is not the ring's choice) kept in the moved map, "
                    "which a flood of new clients cannot evict",
                    [](const json& r) { return r["moved"]["count"].get<std::uint64_t>(); }),
        from_report("sio_steer_moved_capacity", "gauge", "Clients the moved map can hold (max-moved)",
                    [](const json& r) { return r["moved"]["capacity"].get<std::uint64_t>(); }),
        program_counter("sio_steer_moved_full_total", "moved_full",
                        "Clients off the ring recorded in the sessions map (evictable) because the moved map was full"),
        program_counter("sio_steer_sessions_recorded_total", "new_sessions",
                        "New client sessions: first connection of a client, or one after its session expired"),
        program_counter("sio_steer_sessions_hit_total", "session_hits",
                        "Connections sent to the worker recorded for their client"),
        program_counter("sio_steer_sessions_expired_total", "expired",
                        "Recorded sessions found idle past the session TTL"),
        program_counter("sio_steer_fallbacks_total", "fallbacks",
                        "Connections whose chosen worker socket was gone: a successor or another ring entry took them"),
        program_counter("sio_steer_migrations_total", "migrations",
                        "Queued connections handed over from a closing worker socket"),
        program_counter("sio_steer_selection_errors_total", "errors",
                        "Connections the program could not steer (no live worker, unreadable packet): the kernel's "
                        "hash chose"),
        kernel_counter("sio_steer_kernel_migrate_req_success_total", "migrate_req_success",
                       "Connections queued on a closing listener that the kernel moved to another one "
                       "(TcpExt TCPMigrateReqSuccess of the workers' network namespace, every port of it)"),
        kernel_counter("sio_steer_kernel_migrate_req_failure_total", "migrate_req_failure",
                       "Connections queued on a closing listener that the kernel could not move and reset "
                       "(TcpExt TCPMigrateReqFailure of the workers' network namespace, every port of it)"),
    };
}

// What this controller process says of itself (attach --metrics-listen only).
std::vector<family> controller_families()
{
    return {
        controller_counter("sio_steer_controller_syncs_total", &controller_counters::syncs,
                           "Resyncs of the workers map by this controller process (attach --metrics-listen only)"),
        controller_counter(
            "sio_steer_controller_reactions_total", &controller_counters::reactions,
            "Resyncs by this controller process that changed the workers map (attach --metrics-listen only)"),
        {"sio_steer_controller_follow_mode", "gauge",
         "1, labelled with how this controller process learns that listeners come and go: events (a BPF watch) "
         "or polling, and why it polls: asked (--follow polling) or no_watch (attach --metrics-listen only)",
         [](std::string& out, const std::string& labels, const port_metrics& p) {
             if (!p.controller)
                 return;
             std::optional<follow_status> f = p.controller->follow();
             if (!f)
                 return;
             // Why it polls: asked for (--follow polling), or no listener watch could be attached.
             std::string why = f->mode != "polling" ? "" : f->asked ? ",reason=\"asked\"" : ",reason=\"no_watch\"";
             sample(out, "sio_steer_controller_follow_mode", labels + ",mode=\"" + label_value(f->mode) + "\"" + why,
                    1);
         }},
        controller_counter("sio_steer_controller_releases_total", &controller_counters::releases,
                           "Clients that draining workers released to their successors over the control socket "
                           "(attach --metrics-listen only)"),
        controller_counter("sio_steer_controller_control_refusals_total", &controller_counters::control_refusals,
                           "Control socket peers refused because they are not a worker listening on the port: they "
                           "cannot release clients (attach --metrics-listen only)"),
    };
}

const std::vector<family>& families()
{
    static const std::vector<family> all = [] {
        std::vector<family> v = port_families();
        for (family& f : controller_families())
            v.push_back(std::move(f));
        return v;
    }();
    return all;
}

}  // namespace

std::string prometheus_text(const std::vector<port_metrics>& ports)
{
    std::string out;
    for (const family& f : families()) {
        std::string samples;
        for (const port_metrics& p : ports)
            f.samples(samples, "port=\"" + std::to_string(p.port) + "\"", p);
        if (samples.empty())
            continue;  // e.g. the controller families in `status --prometheus`
        out += std::string("# HELP ") + f.name + " " + f.help + "\n# TYPE " + f.name + " " + f.type + "\n" + samples;
    }
    out += "# HELP sio_steer_build_info The sio-steer that wrote these metrics\n# TYPE sio_steer_build_info gauge\n";
    out += "sio_steer_build_info{version=\"" SIO_STEER_VERSION "\",abi=\"" + std::to_string(SIO_STEER_ABI_VERSION) +
           "\"} 1\n";
    return out;
}

}  // namespace sio_steer
