#include "metrics_server.h"

#include <signal.h>
#include <sys/socket.h>

#include <httplib.h>
#include <spdlog/spdlog.h>

#include "errors.h"

namespace sio_steer {

metrics_server::metrics_server(const listen_address& where) : server_(std::make_unique<httplib::Server>())
{
    // httplib's default sets SO_REUSEPORT, which would let two controllers share one metrics port
    // silently (each scrape reaching either): plain SO_REUSEADDR makes a taken port an error.
    server_->set_socket_options([](int fd) {
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    });
    // One scrape at a time is plenty, and keeps the thread count low.
    server_->new_task_queue = [] { return new httplib::ThreadPool(1); };
    if (!server_->bind_to_port(where.host, where.port))
        throw steer_error(
            exit_code::environment, "cannot listen for metrics on " + where.host + ":" + std::to_string(where.port),
            "the address is not local, or another process listens on that port",
            "pick another --metrics-listen address (see `ss -ltnp 'sport = :" + std::to_string(where.port) + "'`)");
}

metrics_server::~metrics_server()
{
    if (!thread_.joinable())
        return;
    // stop() does nothing until the thread is inside listen_after_bind(): repeat until it is out.
    while (!finished_) {
        server_->stop();
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    thread_.join();
}

void metrics_server::serve(std::function<std::string()> render)
{
    server_->Get("/metrics", [render](const httplib::Request&, httplib::Response& res) {
        try {
            res.set_content(render(), "text/plain; version=0.0.4; charset=utf-8");
        } catch (const std::exception& e) {
            res.status = 500;
            res.set_content(std::string("sio-steer: ") + e.what() + "\n", "text/plain");
        }
    });
    thread_ = std::thread([this] {
        // SIGTERM must reach the follower's signalfd: a thread that does not block it could take
        // the signal and its default action would kill the process mid-sync.
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGTERM);
        pthread_sigmask(SIG_BLOCK, &set, nullptr);
        if (!server_->listen_after_bind())
            spdlog::warn("the metrics endpoint stopped serving");
        finished_ = true;
    });
}

}  // namespace sio_steer
