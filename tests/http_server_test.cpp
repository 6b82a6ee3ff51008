// The real HTTP server on an ephemeral port, driven by HttpClient and by raw sockets for the
// hostile cases (stalled headers, malformed request lines).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/errors.h"
#include "common/json.h"
#include "gtest/gtest.h"
#include "platform/http/client.h"
#include "platform/http/router.h"
#include "platform/http/server.h"
#include "platform/http/trace_context.h"
#include "platform/obs/metrics.h"

namespace emporium::http {
namespace {

using Clock = std::chrono::steady_clock;

ClientRequest MakeGet(std::string target, std::optional<absl::Duration> timeout = std::nullopt) {
  ClientRequest request;
  request.target = std::move(target);
  request.timeout = timeout;
  return request;
}

// A connected loopback socket with a receive timeout, for speaking raw HTTP.
class RawSocket {
 public:
  explicit RawSocket(uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0;
  }
  ~RawSocket() { ::close(fd_); }
  bool connected() const { return connected_; }
  void Send(std::string_view data) { (void)!::send(fd_, data.data(), data.size(), MSG_NOSIGNAL); }
  // Reads until the peer closes or `bound` passes; returns what arrived and whether it closed.
  std::pair<std::string, bool> ReadUntilClosed(std::chrono::milliseconds bound) {
    std::string data;
    auto deadline = Clock::now() + bound;
    while (Clock::now() < deadline) {
      pollfd entry{fd_, POLLIN, 0};
      int left = static_cast<int>(
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
      if (::poll(&entry, 1, std::max(left, 1)) <= 0) continue;
      char chunk[4096];
      ssize_t read = ::recv(fd_, chunk, sizeof(chunk), 0);
      if (read <= 0) return {data, true};
      data.append(chunk, static_cast<size_t>(read));
    }
    return {data, false};
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
};

struct Parked {
  std::mutex mutex;
  std::vector<Responder> responders;
  std::atomic<int> count{0};
};

class HttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    router_.AddSync("GET", "/api/v1/orders/{id}", [](const Request& request) {
      return Response::Json(200, Json{{"id", request.PathParam("id")},
                                      {"route", request.route},
                                      {"request_id", request.request_id},
                                      {"traceparent", request.traceparent},
                                      {"q", request.QueryParam("q").value_or("")}});
    });
    router_.AddSync("POST", "/api/v1/orders", [](const Request& request) {
      absl::StatusOr<Json> body = ParseJsonObject(request.body);
      if (!body.ok()) return ErrorResponse(body.status());
      return Response::Json(201, *body);
    });
    router_.AddSync("GET", "/boom", [](const Request&) -> Response {
      throw std::runtime_error("handler exploded");
    });
    router_.AddSync("GET", "/shared", [this](const Request&) {
      Response response = Response::Text(200, "");
      response.body.clear();
      response.shared_body = shared_body_;
      return response;
    });
    router_.AddSync("GET", "/shared-error", [](const Request&) {
      Response response = Response::Text(409, "");
      response.shared_body = std::make_shared<const std::string>("not json");
      return response;
    });
    router_.AddSync("GET", "/plain-error",
                    [](const Request&) { return Response::Text(418, "teapot"); });
    router_.Add("GET", "/park", [this](Request&, Responder respond) {
      std::lock_guard<std::mutex> lock(parked_.mutex);
      parked_.responders.push_back(std::move(respond));
      parked_.count.fetch_add(1);
    });
    router_.Add("GET", "/slow", [](Request&, Responder respond) {
      // Answers from another thread, as a group-commit writer would.
      std::thread([respond = std::move(respond)] {
        std::this_thread::sleep_for(std::chrono::milliseconds(150));
        respond(Response::Text(200, "slow done"));
      }).detach();
    });
  }

  void StartServer(ServerOptions options = {}) {
    options.host = "127.0.0.1";
    options.port = 0;
    if (options.io_threads == 0) options.io_threads = 2;
    options.metrics = &metrics_;
    options.access_log = [this](const AccessLogEntry& entry) {
      std::lock_guard<std::mutex> lock(log_mutex_);
      log_.push_back(entry);
    };
    server_ = std::make_unique<HttpServer>(options, router_);
    ASSERT_TRUE(server_->Start().ok());
    ASSERT_NE(server_->port(), 0);
    ClientOptions client_options;
    client_options.port = server_->port();
    client_options.connection_count_max = 4;
    client_options.request_timeout = absl::Seconds(5);
    client_ = std::make_unique<HttpClient>(client_options);
  }

  void TearDown() override {
    client_.reset();
    if (server_ != nullptr) server_->Shutdown(absl::Seconds(1));
    std::lock_guard<std::mutex> lock(parked_.mutex);
    parked_.responders.clear();
  }

  ClientResponse Get(std::string target, Headers headers = {}) {
    ClientRequest request;
    request.target = std::move(target);
    request.headers = std::move(headers);
    absl::StatusOr<ClientResponse> response = client_->Send(request);
    EXPECT_TRUE(response.ok()) << response.status();
    return response.ok() ? *response : ClientResponse{};
  }

  ClientResponse Post(std::string target, std::string body, std::string content_type) {
    ClientRequest request;
    request.method = "POST";
    request.target = std::move(target);
    request.body = std::move(body);
    if (!content_type.empty()) request.headers.Add("Content-Type", content_type);
    absl::StatusOr<ClientResponse> response = client_->Send(request);
    EXPECT_TRUE(response.ok()) << response.status();
    return response.ok() ? *response : ClientResponse{};
  }

  static Json ErrorOf(const ClientResponse& response) {
    EXPECT_EQ(response.headers.Get("Content-Type"), "application/json");
    Json body = Json::parse(response.body, nullptr, false);
    EXPECT_TRUE(body.contains("error")) << response.body;
    return body.contains("error") ? body["error"] : Json::object();
  }

  std::shared_ptr<const std::string> shared_body_ =
      std::make_shared<const std::string>(std::string(3000, 'x') + "end");
  Router router_;
  obs::MetricsRegistry metrics_;
  Parked parked_;
  std::mutex log_mutex_;
  std::vector<AccessLogEntry> log_;
  std::unique_ptr<HttpServer> server_;
  std::unique_ptr<HttpClient> client_;
};

TEST_F(HttpServerTest, RoutesWithPathParamsAndQuery) {
  StartServer();
  ClientResponse response = Get("/api/v1/orders/o%201?q=red+shoes");
  EXPECT_EQ(response.status, 200);
  Json body = Json::parse(response.body);
  EXPECT_EQ(body["id"], "o 1");
  EXPECT_EQ(body["route"], "/api/v1/orders/{id}");
  EXPECT_EQ(body["q"], "red shoes");
  EXPECT_EQ(response.headers.Get("Server"), "emporium");
}

TEST_F(HttpServerTest, UnknownPathIs404WrongMethodIs405) {
  StartServer();
  ClientResponse missing = Get("/nope");
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(ErrorOf(missing)["type"], "not_found_error");
  ClientRequest request;
  request.method = "DELETE";
  request.target = "/api/v1/orders/o1";
  absl::StatusOr<ClientResponse> wrong = client_->Send(request);
  ASSERT_TRUE(wrong.ok());
  EXPECT_EQ(wrong->status, 405);
  EXPECT_EQ(wrong->headers.Get("Allow"), "GET, HEAD");
  EXPECT_EQ(ErrorOf(*wrong)["code"], "method_not_allowed");
}

TEST_F(HttpServerTest, HeadServedByGetWithoutBody) {
  StartServer();
  ClientRequest request;
  request.method = "HEAD";
  request.target = "/api/v1/orders/o1";
  absl::StatusOr<ClientResponse> head = client_->Send(request);
  ASSERT_TRUE(head.ok()) << head.status();
  EXPECT_EQ(head->status, 200);
  EXPECT_TRUE(head->body.empty());
  EXPECT_NE(head->headers.Get("Content-Length"), "0");
  EXPECT_EQ(Get("/api/v1/orders/o2").status, 200);  // the connection stayed usable
}

TEST_F(HttpServerTest, SharedBodySentWithoutCopyAndNotOnHead) {
  StartServer();
  for (int i = 0; i < 3; ++i) {  // kept alive: the same connection sends it again
    ClientResponse response = Get("/shared");
    EXPECT_EQ(response.status, 200);
    EXPECT_EQ(response.body, *shared_body_);
    EXPECT_EQ(response.headers.Get("Content-Length"), std::to_string(shared_body_->size()));
  }
  ClientRequest request;
  request.method = "HEAD";
  request.target = "/shared";
  absl::StatusOr<ClientResponse> head = client_->Send(request);
  ASSERT_TRUE(head.ok()) << head.status();
  EXPECT_TRUE(head->body.empty());
  EXPECT_EQ(head->headers.Get("Content-Length"), std::to_string(shared_body_->size()));
  // A shared 4xx body that is not JSON is reshaped like any other.
  ClientResponse error = Get("/shared-error");
  EXPECT_EQ(error.status, 409);
  EXPECT_EQ(ErrorOf(error)["type"], "conflict_error");
  {
    std::lock_guard<std::mutex> lock(log_mutex_);
    ASSERT_FALSE(log_.empty());
    EXPECT_EQ(log_.front().bytes, shared_body_->size());
    EXPECT_EQ(log_.front().trace_id.size(), 32u);
  }
  // No response holds the body once sent (the server drops it right after the write).
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  while (shared_body_.use_count() != 1 && Clock::now() < deadline) std::this_thread::yield();
  EXPECT_EQ(shared_body_.use_count(), 1);
}

TEST_F(HttpServerTest, KeepAliveReusesOneConnection) {
  StartServer();
  for (int i = 0; i < 20; ++i) EXPECT_EQ(Get("/api/v1/orders/o1").status, 200);
  EXPECT_EQ(client_->connections_opened(), 1);
}

TEST_F(HttpServerTest, RequestIdEchoedOrGenerated) {
  StartServer();
  Headers sane;
  sane.Add("X-Request-Id", "req-123_abc.DEF");
  ClientResponse echoed = Get("/api/v1/orders/o1", sane);
  EXPECT_EQ(echoed.headers.Get("X-Request-Id"), "req-123_abc.DEF");
  EXPECT_EQ(Json::parse(echoed.body)["request_id"], "req-123_abc.DEF");

  Headers hostile;
  hostile.Add("X-Request-Id", "<script>" + std::string(200, 'a'));
  ClientResponse replaced = Get("/api/v1/orders/o1", hostile);
  std::string id(replaced.headers.Get("X-Request-Id").value_or(""));
  EXPECT_EQ(id.size(), 32u);
  EXPECT_EQ(id.find('<'), std::string::npos);
  ClientResponse generated = Get("/api/v1/orders/o1");
  EXPECT_EQ(generated.headers.Get("X-Request-Id").value_or("").size(), 32u);
  EXPECT_NE(generated.headers.Get("X-Request-Id"), replaced.headers.Get("X-Request-Id"));
}

TEST_F(HttpServerTest, TraceparentPassedThroughOrStarted) {
  StartServer();
  const std::string incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  Headers headers;
  headers.Add("traceparent", incoming);
  ClientResponse passed = Get("/api/v1/orders/o1", headers);
  EXPECT_EQ(passed.headers.Get("traceparent"), incoming);
  EXPECT_EQ(Json::parse(passed.body)["traceparent"], incoming);

  Headers bad;
  bad.Add("traceparent", "00-00000000000000000000000000000000-00f067aa0ba902b7-01");
  ClientResponse fresh = Get("/api/v1/orders/o1", bad);
  std::string started(fresh.headers.Get("traceparent").value_or(""));
  ASSERT_TRUE(ParseTraceparent(started).has_value()) << started;
  EXPECT_NE(started, incoming);
  EXPECT_EQ(Json::parse(fresh.body)["traceparent"], started);
  // The access log is written after the response, so the client may see the answer first.
  std::string logged_trace_id;
  auto deadline = Clock::now() + std::chrono::seconds(5);
  while (logged_trace_id.empty() && Clock::now() < deadline) {
    std::lock_guard<std::mutex> lock(log_mutex_);
    if (log_.size() >= 2) logged_trace_id = log_[1].trace_id;
  }
  EXPECT_EQ(logged_trace_id, ParseTraceparent(started)->TraceIdHex());
}

TEST_F(HttpServerTest, OversizeBodyIs413) {
  ServerOptions options;
  options.body_bytes_max = 1024;
  StartServer(options);
  ClientResponse response =
      Post("/api/v1/orders", "{\"pad\":\"" + std::string(4096, 'x') + "\"}", "application/json");
  EXPECT_EQ(response.status, 413);
  EXPECT_EQ(ErrorOf(response)["code"], "payload_too_large");
  EXPECT_EQ(Get("/api/v1/orders/o1").status, 200);  // a new connection works
}

TEST_F(HttpServerTest, WrongContentTypeIs415) {
  StartServer();
  ClientResponse response = Post("/api/v1/orders", "a=1", "application/x-www-form-urlencoded");
  EXPECT_EQ(response.status, 415) << response.body;
  EXPECT_EQ(ErrorOf(response)["type"], "invalid_request_error");
}

TEST_F(HttpServerTest, BadJsonHandledAs400Shape) {
  StartServer();
  ClientResponse response = Post("/api/v1/orders", "{not json", "application/json");
  EXPECT_EQ(response.status, 400);
  Json error = ErrorOf(response);
  EXPECT_EQ(error["type"], "invalid_request_error");
  EXPECT_EQ(error["code"], "invalid_json");
  EXPECT_EQ(Post("/api/v1/orders", R"({"a":1})", "application/json").status, 201);
}

TEST_F(HttpServerTest, NonJsonErrorBodyIsReshaped) {
  StartServer();
  ClientResponse response = Get("/plain-error");
  EXPECT_EQ(response.status, 418);
  EXPECT_TRUE(ErrorOf(response).contains("code"));
}

TEST_F(HttpServerTest, ThrowingHandlerIs500AndServerKeepsServing) {
  StartServer();
  ClientResponse boom = Get("/boom");
  EXPECT_EQ(boom.status, 500);
  EXPECT_EQ(ErrorOf(boom)["type"], "api_error");
  EXPECT_EQ(boom.body.find("exploded"), std::string::npos);
  EXPECT_EQ(Get("/api/v1/orders/o1").status, 200);
}

TEST_F(HttpServerTest, HandlerPastDeadlineIs504AndLateAnswerIgnored) {
  ServerOptions options;
  options.request_timeout = absl::Milliseconds(200);
  StartServer(options);
  auto started = Clock::now();
  ClientResponse response = Get("/park");
  EXPECT_EQ(response.status, 504);
  EXPECT_EQ(ErrorOf(response)["code"], "deadline_exceeded");
  EXPECT_LT(Clock::now() - started, std::chrono::seconds(3));
  {
    std::lock_guard<std::mutex> lock(parked_.mutex);
    ASSERT_EQ(parked_.responders.size(), 1u);
    parked_.responders[0](Response::Text(200, "too late"));
  }
  EXPECT_EQ(Get("/api/v1/orders/o1").status, 200);
  EXPECT_EQ(client_->connections_opened(), 1);
}

TEST_F(HttpServerTest, AsyncAnswerFromAnotherThread) {
  StartServer();
  ClientResponse response = Get("/slow");
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.body, "slow done");
}

TEST_F(HttpServerTest, StalledHeadersAreDisconnected) {
  ServerOptions options;
  options.header_timeout = absl::Milliseconds(300);
  StartServer(options);
  RawSocket socket(server_->port());
  ASSERT_TRUE(socket.connected());
  socket.Send("GET /api/v1/orders/o1 HTTP/1.1\r\nHost: x\r\nX-Slow: ");
  auto started = Clock::now();
  auto [data, closed] = socket.ReadUntilClosed(std::chrono::seconds(5));
  EXPECT_TRUE(closed);
  EXPECT_LT(Clock::now() - started, std::chrono::seconds(3));

  RawSocket silent(server_->port());
  ASSERT_TRUE(silent.connected());
  EXPECT_TRUE(silent.ReadUntilClosed(std::chrono::seconds(5)).second);
}

TEST_F(HttpServerTest, MalformedRequestLineIs400AndClosed) {
  StartServer();
  RawSocket socket(server_->port());
  ASSERT_TRUE(socket.connected());
  socket.Send("THIS IS NOT HTTP\r\n\r\n");
  auto [data, closed] = socket.ReadUntilClosed(std::chrono::seconds(5));
  EXPECT_TRUE(closed);
  EXPECT_EQ(data.rfind("HTTP/1.1 400", 0), 0u) << data;
  EXPECT_NE(data.find("\"error\""), std::string::npos);
  EXPECT_NE(data.find("application/json"), std::string::npos);

  RawSocket bad_target(server_->port());
  bad_target.Send("GET /a%zz HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(bad_target.ReadUntilClosed(std::chrono::seconds(5)).first.rfind("HTTP/1.1 400", 0), 0u);
}

TEST_F(HttpServerTest, GracefulShutdownFinishesInFlightRequest) {
  StartServer();
  std::atomic<int> status{0};
  std::thread caller([&] {
    absl::StatusOr<ClientResponse> response = client_->Send(MakeGet("/park"));
    status = response.ok() ? response->status : -1;
  });
  auto deadline = Clock::now() + std::chrono::seconds(5);
  while (parked_.count.load() == 0 && Clock::now() < deadline) std::this_thread::yield();
  ASSERT_EQ(parked_.count.load(), 1);
  std::thread stopper([&] { server_->Shutdown(absl::Seconds(5)); });
  // Shutdown waits for the parked request; answer it from here, as a writer thread would.
  {
    std::lock_guard<std::mutex> lock(parked_.mutex);
    parked_.responders[0](Response::Text(200, "finished"));
  }
  stopper.join();
  caller.join();
  EXPECT_EQ(status.load(), 200);
  server_->Wait();
  RawSocket after(server_->port());
  EXPECT_FALSE(after.connected());
}

TEST_F(HttpServerTest, ManyConcurrentClients) {
  StartServer();
  constexpr int kThreads = 8;
  constexpr int kRequestsPerThread = 40;
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kRequestsPerThread; ++i) {
        absl::StatusOr<ClientResponse> response = client_->Send(
            MakeGet("/api/v1/orders/t" + std::to_string(t) + "-" + std::to_string(i)));
        if (response.ok() && response->status == 200) ok.fetch_add(1);
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(ok.load(), kThreads * kRequestsPerThread);
  EXPECT_LE(client_->connections_opened(), 4);
  std::string text = metrics_.RenderPrometheus();
  EXPECT_NE(text.find("emporium_http_requests_total"), std::string::npos);
  EXPECT_NE(text.find("route=\"/api/v1/orders/{id}\""), std::string::npos);
  EXPECT_NE(text.find("emporium_http_request_duration_seconds"), std::string::npos);
}

TEST_F(HttpServerTest, UnmatchedRouteLabel) {
  StartServer();
  EXPECT_EQ(Get("/nope").status, 404);
  obs::Counter& counter =
      metrics_.GetCounter("emporium_http_requests_total", "",
                          {{"method", "GET"}, {"route", "unmatched"}, {"status", "404"}});
  // The server records after the write completes, so the client may see the answer first.
  auto deadline = Clock::now() + std::chrono::seconds(5);
  while (counter.value() == 0 && Clock::now() < deadline) std::this_thread::yield();
  EXPECT_EQ(counter.value(), 1);
}

TEST_F(HttpServerTest, ClientPoolExhaustedIsUnavailable) {
  StartServer();
  ClientOptions options;
  options.port = server_->port();
  options.connection_count_max = 1;
  HttpClient single(options);
  std::thread holder([&] { (void)single.Send(MakeGet("/park")); });
  auto deadline = Clock::now() + std::chrono::seconds(5);
  while (parked_.count.load() == 0 && Clock::now() < deadline) std::this_thread::yield();
  absl::StatusOr<ClientResponse> second =
      single.Send(MakeGet("/api/v1/orders/o1", absl::Milliseconds(100)));
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ErrorCode(second.status()), "pool_exhausted");
  {
    std::lock_guard<std::mutex> lock(parked_.mutex);
    parked_.responders[0](Response::Text(200, "released"));
  }
  holder.join();
}

TEST(HttpClientTest, ConnectRefusedIsUnavailable) {
  // A bound but not listening socket: connecting to it is refused.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  socklen_t length = sizeof(address);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  ClientOptions options;
  options.port = ntohs(address.sin_port);
  HttpClient client(options);
  absl::StatusOr<ClientResponse> response = client.Send(ClientRequest{});
  ::close(fd);
  EXPECT_EQ(response.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ErrorCode(response.status()), "connect_failed");
}

TEST(HttpClientTest, SilentServerIsDeadlineExceededWithinBound) {
  // Listening but never answering: the kernel completes the handshake, nobody reads.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  ASSERT_EQ(::listen(fd, 8), 0);
  socklen_t length = sizeof(address);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  ClientOptions options;
  options.port = ntohs(address.sin_port);
  HttpClient client(options);
  auto started = Clock::now();
  absl::StatusOr<ClientResponse> response = client.Send(MakeGet("/", absl::Milliseconds(300)));
  auto elapsed = Clock::now() - started;
  ::close(fd);
  EXPECT_EQ(response.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(ErrorCode(response.status()), "outcome_unknown");
  EXPECT_GE(elapsed, std::chrono::milliseconds(250));
  EXPECT_LT(elapsed, std::chrono::seconds(2));
}

TEST(HttpServerStartTest, BadHostFailsAndWaitReturns) {
  Router router;
  ServerOptions bad;
  bad.host = "not an ip";
  HttpServer server(bad, router);
  EXPECT_EQ(server.Start().code(), absl::StatusCode::kInvalidArgument);
  server.Wait();  // returns: never started
}

}  // namespace
}  // namespace emporium::http
