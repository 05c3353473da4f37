// sio-steer doctor: checks everything steering a port needs, a line each, and a verdict.
#include <ostream>

#include "cli/cli.h"
#include "kernel/doctor.h"
#include "logic/errors.h"
#include "logic/options.h"

namespace sio_steer {

namespace {

const char* label(verdict v)
{
    switch (v) {
    case verdict::ok:
        return "ok";
    case verdict::skip:
        return "skip";
    case verdict::note:
        return "note";
    case verdict::warn:
        return "WARN";
    case verdict::fail:
        return "FAIL";
    }
    return "?";
}

}  // namespace

int run_doctor(const args& a, std::ostream& out)
{
    std::optional<steer_options> parsed = parse_port_args("doctor", "--port N [--pin-root DIR]", a, out);
    if (!parsed)
        return 0;
    const steer_options& o = *parsed;

    std::vector<finding> findings = examine({o.port, o.pin_root, o.lock_dir});
    print(out, "sio-steer doctor: port %u\n", o.port);
    int problems = 0, warnings = 0;
    for (const finding& f : findings) {
        print(out, "  %-5s %-11s %s\n", label(f.result), f.check.c_str(), f.detail.c_str());
        if (!f.fix.empty())
            print(out, "  %-5s %-11s fix: %s\n", "", "", f.fix.c_str());
        problems += f.result == verdict::fail;
        warnings += f.result == verdict::warn;
    }
    if (all_well(findings)) {
        print(out, "verdict: all is well\n");
        return 0;
    }
    print(out, "verdict: NOT well: %d problem%s (FAIL), %d warning%s (WARN); see the fix lines\n", problems,
          problems == 1 ? "" : "s", warnings, warnings == 1 ? "" : "s");
    return static_cast<int>(exit_code::unhealthy);
}

}  // namespace sio_steer
