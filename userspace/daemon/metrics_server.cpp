#include "daemon/metrics_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <optional>

#include <spdlog/spdlog.h>

#include "daemon/stop_signals.h"
#include "logic/errors.h"
#include "logic/http_request.h"

namespace sio_steer {

using namespace std::chrono;

namespace {

bool is_loopback(const listen_address& where)
{
    return where.host.starts_with("127.") || where.host == "::1" || where.host == "localhost";
}

struct connection {
    unique_fd fd;
    steady_clock::time_point accepted;
    std::string in, out;
    std::size_t sent = 0;
    bool replying = false;
};

// The endpoint's connections and the epoll set that watches them and the listener: one per
// run(), on the serving thread.
class scrape_loop {
public:
    scrape_loop(int listener, const metrics_limits& limits, const std::function<std::string()>& render)
        : ep_(epoll_create1(EPOLL_CLOEXEC)),
          listener_(listener),
          limits_(limits),
          render_(render)
    {
        if (!ep_)
            throw_system_error("epoll_create1", errno);
        watch(EPOLL_CTL_ADD, listener_, EPOLLIN);
    }

    int epoll() const { return ep_.get(); }

    void watch(int op, int fd, std::uint32_t events)
    {
        epoll_event e{};
        e.events = events;
        e.data.fd = fd;
        if (epoll_ctl(ep_.get(), op, fd, &e))
            throw_system_error("epoll_ctl", errno);
    }

    // Closes the connections past their deadline and resumes accepting after a pause; returns how
    // long epoll_wait may sleep: until the next deadline or the end of the pause, 1 s at most.
    milliseconds next_wait()
    {
        auto now = steady_clock::now();
        milliseconds wait = seconds(1);
        if (paused_until_ && *paused_until_ <= now) {
            watch(EPOLL_CTL_ADD, listener_, EPOLLIN);
            paused_until_.reset();
        }
        if (paused_until_)
            wait = duration_cast<milliseconds>(*paused_until_ - now) + milliseconds(1);
        for (auto it = open_.begin(); it != open_.end();) {
            auto ends = it->second.accepted + limits_.deadline;
            if (ends <= now) {
                it = open_.erase(it);  // past the deadline: a slowloris, an idle or a non-reading client
                continue;
            }
            wait = std::min(wait, duration_cast<milliseconds>(ends - now) + milliseconds(1));
            ++it;
        }
        return wait;
    }

    void accept_all()
    {
        for (int i = 0; i < 256; i++) {  // bounded: expired connections and the wake fd get their turn
            unique_fd fd(accept4(listener_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
            if (!fd && (errno == EMFILE || errno == ENFILE)) {
                // Out of fds (the process is at LimitNOFILE): stop accepting for a while rather than
                // spin on a listener that stays readable; the kernel keeps the rest queued (backlog 64).
                watch(EPOLL_CTL_DEL, listener_, 0);
                paused_until_ = steady_clock::now() + milliseconds(100);
                return;
            }
            if (!fd)
                return;  // EAGAIN, or the client gave up before we took it
            if (open_.size() >= limits_.max_connections && !make_way()) {
                std::string busy = http_refusal(http_request::verdict::incomplete);
                (void)!send(fd.get(), busy.data(), busy.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
                continue;
            }
            int raw = fd.get();
            watch(EPOLL_CTL_ADD, raw, EPOLLIN | EPOLLRDHUP);
            open_.emplace(raw, connection{std::move(fd), steady_clock::now(), {}, {}, 0, false});
        }
    }

    // A connection is readable (its request) or writable (the rest of its reply).
    void on_ready(int fd)
    {
        auto it = open_.find(fd);
        if (it == open_.end())
            return;  // closed earlier in this round
        connection& c = it->second;
        if (c.replying)
            return push(c);
        char buf[4096];
        ssize_t got = recv(fd, buf, std::min(sizeof(buf), max_request_head + 1 - c.in.size()), MSG_DONTWAIT);
        if (got == 0 || (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            open_.erase(it);
            return;
        }
        if (got > 0) {
            c.in.append(buf, static_cast<std::size_t>(got));
            answer(c);
        }
    }

private:
    // Idle or trickling connections make way for new ones, the oldest first; false if every open
    // connection is being answered.
    bool make_way()
    {
        auto oldest = open_.end();
        for (auto it = open_.begin(); it != open_.end(); ++it)
            if (!it->second.replying && (oldest == open_.end() || it->second.accepted < oldest->second.accepted))
                oldest = it;
        if (oldest == open_.end())
            return false;
        open_.erase(oldest);
        return true;
    }

    // Sends what is left of the reply; closes the connection once all of it is out.
    void push(connection& c)
    {
        while (c.sent < c.out.size()) {
            ssize_t n = send(c.fd.get(), c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                watch(EPOLL_CTL_MOD, c.fd.get(), EPOLLOUT);
                return;
            }
            if (n <= 0)
                break;
            c.sent += static_cast<std::size_t>(n);
        }
        open_.erase(c.fd.get());
    }

    void reply(connection& c, std::string text)
    {
        c.replying = true;
        c.out = std::move(text);
        c.in = {};
        push(c);
    }

    void answer(connection& c)
    {
        http_request r = parse_http_request(c.in);
        if (r.what == http_request::verdict::incomplete)
            return;
        if (r.what != http_request::verdict::serve)
            return reply(c, http_refusal(r.what));
        std::string body, status = "200 OK", type = "text/plain; version=0.0.4; charset=utf-8";
        try {
            body = render_();
        } catch (const std::exception& e) {
            status = "500 Internal Server Error";
            type = "text/plain; charset=utf-8";
            body = std::string("sio-steer: ") + e.what() + "\n";
        }
        reply(c, "HTTP/1.1 " + status + "\r\nContent-Type: " + type +
                     "\r\nContent-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body);
    }

    unique_fd ep_;
    int listener_;
    const metrics_limits& limits_;
    const std::function<std::string()>& render_;
    std::map<int, connection> open_;  // by fd; closing erases (and the fd leaves the epoll set)
    std::optional<steady_clock::time_point> paused_until_;
};

}  // namespace

metrics_server::metrics_server(const listen_address& where, metrics_limits limits) : limits_(limits)
{
    auto refuse = [&](int err) {
        return steer_error(
            exit_code::environment,
            "cannot listen for metrics on " + where.host + ":" + std::to_string(where.port) + ": " + std::strerror(err),
            "the address is not local, or another process listens on that port",
            "pick another --metrics-listen address (see `ss -ltnp 'sport = :" + std::to_string(where.port) + "'`)");
    };
    sockaddr_storage addr{};
    socklen_t len = 0;
    auto* v4 = reinterpret_cast<sockaddr_in*>(&addr);
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&addr);
    std::string host = where.host == "localhost" ? "127.0.0.1" : where.host;
    if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(where.port);
        len = sizeof(*v4);
    } else if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(where.port);
        len = sizeof(*v6);
    } else {
        throw refuse(EADDRNOTAVAIL);
    }
    listener_.reset(socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!listener_)
        throw refuse(errno);
    // Plain SO_REUSEADDR, not SO_REUSEPORT: a second controller on the same metrics port must fail.
    int one = 1;
    setsockopt(listener_.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(listener_.get(), reinterpret_cast<sockaddr*>(&addr), len) || listen(listener_.get(), 64))
        throw refuse(errno);
    wake_.reset(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
    if (!wake_)
        throw_system_error("cannot create an eventfd", errno);
    if (!is_loopback(where))
        spdlog::warn("metrics served on {}:{}, beyond loopback: restrict who reaches it (IPAddressAllow= in the unit, "
                     "a firewall)",
                     where.host, where.port);
}

metrics_server::~metrics_server()
{
    {
        std::lock_guard hold(mutex_);
        stopping_ = true;
    }
    stop_.notify_all();
    std::uint64_t one = 1;
    (void)!write(wake_.get(), &one, sizeof(one));
    if (thread_.joinable())
        thread_.join();
    if (refresher_.joinable())
        refresher_.join();
}

void metrics_server::serve(std::function<std::string()> render, std::function<void()> refresh)
{
    if (refresh) {
        refresh();
        refresher_ = std::thread([this, refresh] {
            const sigset_t stop = stop_signal_set();  // stop_signals.h: the follower's to read
            pthread_sigmask(SIG_BLOCK, &stop, nullptr);
            pthread_setname_np(pthread_self(), "sio-metrics-ref");
            std::unique_lock hold(mutex_);
            while (!stop_.wait_for(hold, limits_.refresh_every, [this] { return stopping_; })) {
                hold.unlock();
                try {
                    refresh();
                } catch (const std::exception& e) {
                    spdlog::warn("metrics: {}", e.what());
                }
                hold.lock();
            }
        });
    }
    thread_ = std::thread([this, render] {
        const sigset_t stop = stop_signal_set();
        pthread_sigmask(SIG_BLOCK, &stop, nullptr);
        pthread_setname_np(pthread_self(), "sio-metrics");
        try {
            run(render);
        } catch (const std::exception& e) {
            spdlog::warn("the metrics endpoint stopped serving: {}", e.what());
        }
    });
}

void metrics_server::run(const std::function<std::string()>& render)
{
    scrape_loop loop(listener_.get(), limits_, render);
    loop.watch(EPOLL_CTL_ADD, wake_.get(), EPOLLIN);
    epoll_event events[64];
    for (;;) {
        int n = epoll_wait(loop.epoll(), events, 64, static_cast<int>(loop.next_wait().count()));
        if (n < 0 && errno != EINTR)
            throw_system_error("epoll_wait", errno);
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd == wake_.get())
                return;
            if (fd == listener_.get())
                loop.accept_all();
            else
                loop.on_ready(fd);
        }
    }
}

}  // namespace sio_steer
