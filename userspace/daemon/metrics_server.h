// The /metrics endpoint of `attach --metrics-listen ADDR:PORT`: one thread, non-blocking sockets,
// bounded in every way a client could stretch it (docs/metrics.md, "Limits"):
//   - at most max_connections open; a new one beyond takes the place of the oldest that has not
//     sent a whole request yet (idle connections cannot lock scrapes out), else it is refused (503);
//   - a request head of at most 8 KiB, a GET without a body: anything else is answered with a 4xx
//     at once and the body never read (the socket buffer is all it can fill);
//   - each connection has `deadline` from accept to the last byte of the reply, then it is closed
//     (a slowloris ends there), and gets one reply (Connection: close).
// A scrape renders from what the controller reads at a fixed cost; the costly part (the session
// count) is refreshed by a second thread every refresh_every, off the request path.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "logic/listen_address.h"
#include "logic/unique_fd.h"

namespace sio_steer {

struct metrics_limits {
    std::size_t max_connections = 32;
    std::chrono::milliseconds deadline{5000};
    std::chrono::milliseconds refresh_every{2000};
};

class metrics_server {
public:
    // Binds now, so that an address in use is refused before steering changes
    // (steer_error(environment)); serves nothing until serve().
    explicit metrics_server(const listen_address& where, metrics_limits limits = {});
    ~metrics_server();  // stops serving and joins the threads
    metrics_server(const metrics_server&) = delete;
    metrics_server& operator=(const metrics_server&) = delete;

    // Calls refresh() once now and every limits.refresh_every on a thread of its own, and answers
    // GET /metrics with render() (a 500 with the error text if it throws) from now on.
    void serve(std::function<std::string()> render, std::function<void()> refresh = {});

private:
    void run(const std::function<std::string()>& render);

    metrics_limits limits_;
    unique_fd listener_, wake_;  // wake_: an eventfd that stops run()
    std::thread thread_, refresher_;
    std::mutex mutex_;
    std::condition_variable stop_;
    bool stopping_ = false;
};

}  // namespace sio_steer
