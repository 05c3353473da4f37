// The /metrics endpoint of `attach --metrics-listen ADDR:PORT`, served by cpp-httplib on a
// background thread. Each scrape renders the metrics anew (from the pinned maps).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

namespace httplib {
class Server;
}

namespace sio_steer {

struct listen_address {
    std::string host;  // "127.0.0.1", "::1", "0.0.0.0"
    std::uint16_t port = 0;
};

// "127.0.0.1:9477", "[::1]:9477", ":9477" (every address); throws steer_error(usage) naming the option.
listen_address parse_listen_address(const std::string& text);

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
