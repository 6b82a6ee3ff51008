// The HTTP client that payments calls the PSP with, against scripted loopback servers (port 0):
// keep-alive reuse, a body ended by the connection's close, and the outcome contract on hostile
// peers (no answer, a truncated answer, garbage, silence until the deadline, nobody listening).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <string>
#include <thread>

#include "common/errors.h"
#include "platform/http/client.h"

namespace emporium::http {
namespace {

// Accepts connections on 127.0.0.1:0 and hands each to `serve` on the server thread, one at a
// time, until destroyed. Every request is at most `kRequestBytesMax` and read in one recv.
class ScriptedServer {
 public:
  using Serve = std::function<void(int fd)>;
  explicit ScriptedServer(Serve serve) : serve_(std::move(serve)) {
    listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    EXPECT_EQ(::listen(listener_, 16), 0);
    socklen_t length = sizeof(address);
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
    thread_ = std::thread([this] {
      while (true) {
        const int fd = ::accept(listener_, nullptr, nullptr);
        if (fd < 0) return;  // the listener was shut down
        serve_(fd);
        ::close(fd);
        ++closed_;
      }
    });
  }
  ~ScriptedServer() {
    ::shutdown(listener_, SHUT_RDWR);
    thread_.join();
    ::close(listener_);
  }
  uint16_t port() const { return port_; }
  // Connections served and closed so far.
  int closed() const { return closed_.load(); }

  // Reads one request (headers and a small body arrive in one segment on loopback).
  static bool ReadRequest(int fd) {
    char buffer[kRequestBytesMax];
    return ::recv(fd, buffer, sizeof(buffer), 0) > 0;
  }
  static void Write(int fd, const std::string& bytes) {
    ASSERT_EQ(::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(bytes.size()));
  }

 private:
  static constexpr size_t kRequestBytesMax = 64 << 10;
  Serve serve_;
  int listener_ = -1;
  uint16_t port_ = 0;
  std::atomic<int> closed_{0};
  std::thread thread_;
};

constexpr char kOk[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok";

ClientRequest Post(absl::Duration timeout = absl::Seconds(5)) {
  ClientRequest request;
  request.method = "POST";
  request.target = "/v1/authorizations";
  request.body = R"({"amount_minor":1})";
  request.headers.Set("Idempotency-Key", "k1");
  request.timeout = timeout;
  return request;
}

TEST(PaymentsHttpClient, ReusesOneKeepAliveConnection) {
  std::atomic<int> requests{0};
  ScriptedServer server([&](int fd) {
    for (int i = 0; i < 3 && ScriptedServer::ReadRequest(fd); ++i) {
      ++requests;
      ScriptedServer::Write(fd, kOk);
    }
  });
  HttpClient client({.port = server.port()});
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<ClientResponse> response = client.Send(Post());
    ASSERT_TRUE(response.ok()) << response.status();
    EXPECT_EQ(response->status, 200);
    EXPECT_EQ(response->body, "ok");
    EXPECT_EQ(response->headers.Get("Content-Type").value_or(""), "text/plain");
  }
  EXPECT_EQ(requests.load(), 3);
  EXPECT_EQ(client.connections_opened(), 1);
}

TEST(PaymentsHttpClient, ABodyEndedByCloseIsComplete) {
  ScriptedServer server([](int fd) {
    if (!ScriptedServer::ReadRequest(fd)) return;
    ScriptedServer::Write(fd, "HTTP/1.1 201 Created\r\nConnection: close\r\n\r\n{\"id\":\"a\"}");
  });
  HttpClient client({.port = server.port()});
  absl::StatusOr<ClientResponse> response = client.Send(Post());
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->status, 201);
  EXPECT_EQ(response->body, R"({"id":"a"})");
  // The closed connection is not reused: the next call opens another.
  ASSERT_TRUE(client.Send(Post()).ok());
  EXPECT_EQ(client.connections_opened(), 2);
}

TEST(PaymentsHttpClient, NoAnswerOrATruncatedOneIsOutcomeUnknown) {
  std::atomic<int> script{0};
  ScriptedServer server([&](int fd) {
    if (!ScriptedServer::ReadRequest(fd)) return;
    switch (script.fetch_add(1)) {
      case 0:
        return;  // closes without a word
      case 1:
        ScriptedServer::Write(fd, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort");
        return;
      default:
        ScriptedServer::Write(fd, "NOT HTTP AT ALL\r\n\r\n");
        return;
    }
  });
  HttpClient client({.port = server.port()});
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<ClientResponse> response = client.Send(Post());
    ASSERT_FALSE(response.ok()) << i;
    EXPECT_EQ(response.status().code(), absl::StatusCode::kUnknown) << i;
    EXPECT_EQ(ErrorCode(response.status()), "outcome_unknown") << i;
  }
}

TEST(PaymentsHttpClient, SilenceUntilTheDeadlineIsOutcomeUnknown) {
  std::atomic<bool> release{false};
  ScriptedServer server([&](int fd) {
    if (!ScriptedServer::ReadRequest(fd)) return;
    // Holds the connection open without answering until the client gave up (bounded).
    for (int i = 0; i < 2'000 && !release.load(); ++i) ::usleep(1'000);
  });
  HttpClient client({.port = server.port()});
  const absl::Time started = absl::Now();
  absl::StatusOr<ClientResponse> response = client.Send(Post(absl::Milliseconds(100)));
  release = true;
  ASSERT_FALSE(response.ok());
  EXPECT_EQ(response.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(ErrorCode(response.status()), "outcome_unknown");
  EXPECT_LT(absl::Now() - started, absl::Seconds(2));
}

TEST(PaymentsHttpClient, NobodyListeningIsCertainlyNotSent) {
  uint16_t port = 0;
  {
    ScriptedServer closed([](int) {});
    port = closed.port();
  }
  HttpClient client({.port = port});
  absl::StatusOr<ClientResponse> response = client.Send(Post());
  ASSERT_FALSE(response.ok());
  EXPECT_EQ(response.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ErrorCode(response.status()), "connect_failed");
  ClientRequest late = Post();
  late.deadline = absl::Now() - absl::Seconds(1);
  EXPECT_EQ(ErrorCode(client.Send(late).status()), "deadline_passed");
}

TEST(PaymentsHttpClient, AStaleKeepAliveConnectionIsReplacedBeforeSending) {
  ScriptedServer server([](int fd) {
    if (!ScriptedServer::ReadRequest(fd)) return;
    ScriptedServer::Write(fd, kOk);  // then closes: the pooled connection goes stale
  });
  HttpClient client({.port = server.port()});
  ASSERT_TRUE(client.Send(Post()).ok());
  // The server's close reaches the client's socket before the next send (bounded wait).
  for (int i = 0; i < 2'000 && server.closed() < 1; ++i) ::usleep(1'000);
  ASSERT_EQ(server.closed(), 1);
  absl::StatusOr<ClientResponse> second = client.Send(Post());
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(client.connections_opened(), 2);
}

}  // namespace
}  // namespace emporium::http
