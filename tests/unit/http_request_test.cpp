// The request heads /metrics accepts and refuses (http_request.h): only GET /metrics without a body.
#include <gtest/gtest.h>

#include "logic/http_request.h"

namespace sio_steer {
namespace {

using v = http_request::verdict;

v judge(const std::string& text) { return parse_http_request(text).what; }

TEST(HttpRequest, GetMetricsIsServedOnceTheHeadIsWhole)
{
    std::string head = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9477\r\nAccept: */*\r\n\r\n";
    for (std::size_t n = 0; n < head.size(); n++)
        EXPECT_EQ(judge(head.substr(0, n)), v::incomplete) << n;
    EXPECT_EQ(judge(head), v::serve);
    EXPECT_EQ(judge("GET /metrics?name[]=x HTTP/1.0\r\n\r\n"), v::serve);
    EXPECT_EQ(judge("GET /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n"), v::serve);
    EXPECT_EQ(parse_http_request(head).target, "/metrics");
}

TEST(HttpRequest, BodiesAreRefusedUnread)
{
    EXPECT_EQ(judge("POST /metrics HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n100000\r\nxx"), v::has_body);
    EXPECT_EQ(judge("GET /metrics HTTP/1.1\r\ncontent-length: 5\r\n\r\n"), v::has_body);
    EXPECT_EQ(judge("GET /metrics HTTP/1.1\r\nTRANSFER-ENCODING: identity\r\n\r\n"), v::has_body);
}

TEST(HttpRequest, OtherMethodsPathsAndGarbage)
{
    EXPECT_EQ(judge("DELETE /metrics HTTP/1.1\r\n\r\n"), v::not_allowed);
    EXPECT_EQ(judge("HEAD /metrics HTTP/1.1\r\n\r\n"), v::not_allowed);
    EXPECT_EQ(judge("GET / HTTP/1.1\r\n\r\n"), v::not_found);
    EXPECT_EQ(judge("GET /metricsx HTTP/1.1\r\n\r\n"), v::not_found);
    for (const char* bad :
         {"\r\n\r\n", "GET\r\n\r\n", "GET /metrics\r\n\r\n", "GET /metrics HTTP/2\r\n\r\n",
          "get /metrics HTTP/1.1\r\n\r\n", "GET  HTTP/1.1\r\n\r\n", "GET /metrics HTTP/1.1\r\nNoColon\r\n\r\n",
          "GET /metrics HTTP/1.1\r\n folded: x\r\n\r\n", "GET /metrics HTTP/1.1\r\n: x\r\n\r\n"})
        EXPECT_EQ(judge(bad), v::bad) << bad;
}

TEST(HttpRequest, AHeadOver8KiBIsRefusedNotBuffered)
{
    std::string big = "GET /metrics HTTP/1.1\r\nX: " + std::string(max_request_head, 'a');
    EXPECT_EQ(judge(big), v::too_large);
    EXPECT_EQ(judge(big + "\r\n\r\n"), v::too_large);
    EXPECT_EQ(judge(std::string(max_request_head - 1, 'a')), v::incomplete);
}

TEST(HttpRequest, RefusalsAreWholeResponsesThatClose)
{
    for (v what : {v::not_found, v::not_allowed, v::has_body, v::too_large, v::bad, v::incomplete}) {
        std::string r = http_refusal(what);
        EXPECT_TRUE(r.starts_with("HTTP/1.1 4") || r.starts_with("HTTP/1.1 503")) << r;
        std::size_t end = r.find("\r\n\r\n");
        ASSERT_NE(end, std::string::npos) << r;
        EXPECT_NE(r.find("Connection: close\r\n"), std::string::npos) << r;
        EXPECT_NE(r.find("Content-Length: " + std::to_string(r.size() - end - 4) + "\r\n"), std::string::npos) << r;
    }
    EXPECT_NE(http_refusal(v::not_allowed).find("Allow: GET\r\n"), std::string::npos);
}

}  // namespace
}  // namespace sio_steer
