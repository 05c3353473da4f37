// The exit codes users, scripts and the systemd unit see, as docs/exit-codes.md documents them:
// the one copy the test suites share (cli, integration). Written out here rather than taken from
// logic/errors.h, so that a renumbering fails the tests; cli_test.cpp checks that the two agree.
#pragma once

namespace sio_steer::test {

constexpr int exit_usage = 2;
constexpr int exit_no_listeners = 3;
constexpr int exit_not_steerable = 4;
constexpr int exit_environment = 5;
constexpr int exit_busy = 6;
constexpr int exit_incompatible = 7;
constexpr int exit_not_attached = 8;
constexpr int exit_unhealthy = 9;

}  // namespace sio_steer::test
