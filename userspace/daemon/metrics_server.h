// The /metrics endpoint of `attach --metrics-listen ADDR:PORT`, served by cpp-httplib on a
// background thread. Each scrape renders the metrics anew (from the pinned maps).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "listen_address.h"

namespace httplib {
class Server;
}

namespace sio_steer {

class metrics_server {
public:
    // Binds now, so that an address in use is refused before steering changes
    // (steer_error(environment)); serves nothing until serve().
    explicit metrics_server(const listen_address& where);
    ~metrics_server();  // stops serving and joins the thread
    metrics_server(const metrics_server&) = delete;
    metrics_server& operator=(const metrics_server&) = delete;

    // Answers GET /metrics with render() (a 500 with the error text if it throws) from now on.
    void serve(std::function<std::string()> render);

private:
    std::unique_ptr<httplib::Server> server_;
    std::thread thread_;
    std::atomic<bool> finished_{false};
};

}  // namespace sio_steer
