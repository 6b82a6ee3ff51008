// The PSP sandbox over real loopback HTTP: idempotency, test cards, the lost response,
// captures/refunds/voids, expiry, balance, failure injection and signed notifications.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

#include "common/json.h"
#include "fmt/format.h"
#include "platform/http/client.h"
#include "platform/http/router.h"
#include "platform/http/server.h"
#include "platform/sql/sqlite_test_util.h"
#include "tools/psp_sandbox/sandbox.h"

namespace emporium::psp_sandbox {
namespace {

class SandboxTest : public ::testing::Test {
 protected:
  void StartSandbox(SandboxOptions options = {}) {
    options.db_path = dir_.File("psp.db");
    options.port = 0;
    if (options.clock == &SystemClock::Instance()) options.clock = &clock_;
    sandbox_ = std::make_unique<PspSandbox>(options);
    ASSERT_TRUE(sandbox_->Start().ok());
    http::ClientOptions client;
    client.port = sandbox_->port();
    client.request_timeout = absl::Seconds(5);
    client_ = std::make_unique<http::HttpClient>(client);
  }

  absl::StatusOr<http::ClientResponse> Post(const std::string& target, const Json& body,
                                            const std::string& key = "") {
    http::ClientRequest request;
    request.method = "POST";
    request.target = target;
    request.body = DumpJson(body);
    request.headers.Set("Content-Type", "application/json");
    if (!key.empty()) request.headers.Set("Idempotency-Key", key);
    return client_->Send(request);
  }

  absl::StatusOr<http::ClientResponse> Get(const std::string& target) {
    http::ClientRequest request;
    request.target = target;
    return client_->Send(request);
  }

  Json Balance() {
    auto response = Get("/v1/balance");
    EXPECT_TRUE(response.ok());
    return *ParseJson(response->body);
  }

  static Json Authorization(const char* card, int64_t amount = 1000) {
    return {{"amount_minor", amount}, {"currency", "USD"}, {"card_number", card}};
  }

  sql::TempDir dir_;
  ManualClock clock_;
  std::unique_ptr<PspSandbox> sandbox_;
  std::unique_ptr<http::HttpClient> client_;
};

TEST_F(SandboxTest, IdempotencyKeyReplaysAndRejectsAnotherBody) {
  StartSandbox();
  auto first = Post("/v1/authorizations", Authorization(kCardSuccess), "k1");
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->status, 201);
  Json object = *ParseJson(first->body);
  EXPECT_EQ(object["status"], "authorized");
  EXPECT_EQ(object["card_last4"], "4242");
  EXPECT_EQ(first->body.find(kCardSuccess), std::string::npos);
  auto replay = Post("/v1/authorizations", Authorization(kCardSuccess), "k1");
  ASSERT_TRUE(replay.ok());
  EXPECT_EQ(replay->status, 201);
  EXPECT_EQ(replay->body, first->body);
  EXPECT_EQ(replay->headers.Get("Idempotent-Replayed"), "true");
  auto other = Post("/v1/authorizations", Authorization(kCardSuccess, 2000), "k1");
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(other->status, 422);
  auto fresh = Post("/v1/authorizations", Authorization(kCardSuccess), "k2");
  EXPECT_NE(ParseJson(fresh->body)->at("id"), object["id"]);
  EXPECT_EQ(Balance()["authorization_count"], 2);
}

// Authorization ids keep their shape (auth_ + 24 hex digits) and sort by creation time; ids
// made in the same millisecond still differ. A request is parsed before its write job, but the
// Idempotency-Key is still checked first, and a refused body records nothing.
TEST_F(SandboxTest, AuthorizationIdsSortByTimeAndRefusedBodiesRecordNothing) {
  StartSandbox();
  clock_.Set(absl::FromUnixMillis(1'700'000'000'000));
  std::vector<std::string> ids;
  for (int i = 0; i < 4; ++i) {
    if (i == 2) clock_.Advance(absl::Milliseconds(1));
    auto response =
        Post("/v1/authorizations", Authorization(kCardSuccess), fmt::format("id-{}", i));
    ASSERT_TRUE(response.ok());
    ASSERT_EQ(response->status, 201);
    ids.push_back((*ParseJson(response->body))["id"].get<std::string>());
  }
  for (const std::string& id : ids) {
    ASSERT_EQ(id.size(), 5u + 24u) << id;
    EXPECT_EQ(id.substr(0, 5), "auth_");
    EXPECT_EQ(id.find_first_not_of("0123456789abcdef", 5), std::string::npos) << id;
  }
  EXPECT_NE(ids[0], ids[1]);
  EXPECT_LT(ids[0], ids[2]);
  EXPECT_LT(ids[1], ids[3]);

  // A used key with another (even a malformed) body is a key reuse, as before.
  http::ClientRequest reused;
  reused.method = "POST";
  reused.target = "/v1/authorizations";
  reused.body = "{not json";
  reused.headers.Set("Content-Type", "application/json");
  reused.headers.Set("Idempotency-Key", "id-0");
  auto conflict = client_->Send(reused);
  ASSERT_TRUE(conflict.ok());
  EXPECT_EQ(conflict->status, 422);
  // A fresh key with a malformed or invalid body is refused and not stored: the same key then
  // runs a valid request.
  reused.headers.Set("Idempotency-Key", "fresh");
  auto malformed = client_->Send(reused);
  ASSERT_TRUE(malformed.ok());
  EXPECT_EQ(malformed->status, 400);
  auto invalid = Post("/v1/authorizations", Authorization("12ab", 1000), "fresh");
  ASSERT_TRUE(invalid.ok());
  EXPECT_EQ(invalid->status, 400);
  auto valid = Post("/v1/authorizations", Authorization(kCardSuccess), "fresh");
  ASSERT_TRUE(valid.ok());
  EXPECT_EQ(valid->status, 201);
  EXPECT_EQ(Balance()["authorization_count"], 5);
}

TEST_F(SandboxTest, TestCardsPickTheOutcome) {
  StartSandbox();
  auto funds = Post("/v1/authorizations", Authorization(kCardInsufficientFunds), "a");
  EXPECT_EQ(funds->status, 402);
  EXPECT_EQ(ParseJson(funds->body)->at("error").at("code"), "insufficient_funds");
  auto stolen = Post("/v1/authorizations", Authorization(kCardStolen), "b");
  EXPECT_EQ(stolen->status, 402);
  EXPECT_EQ(ParseJson(stolen->body)->at("error").at("code"), "stolen_card");
  // A decline is stored: the same key gives the same decline.
  EXPECT_EQ(Post("/v1/authorizations", Authorization(kCardStolen), "b")->body, stolen->body);
  auto broken = Post("/v1/authorizations", Authorization(kCardProcessingError), "c");
  EXPECT_EQ(broken->status, 500);
  EXPECT_EQ(Balance()["authorization_count"], 0);
  auto bad = Post("/v1/authorizations", {{"amount_minor", -1}, {"currency", "USD"}}, "d");
  EXPECT_EQ(bad->status, 400);
  auto garbage = Post("/v1/authorizations", Json::array(), "e");
  EXPECT_EQ(garbage->status, 400);
}

TEST_F(SandboxTest, LostResponseChargesOnceAndTheSameKeyRecoversIt) {
  StartSandbox();
  auto lost = Post("/v1/authorizations", Authorization(kCardLostResponse, 777), "lost-1");
  ASSERT_FALSE(lost.ok());
  EXPECT_TRUE(lost.status().code() == absl::StatusCode::kUnknown ||
              lost.status().code() == absl::StatusCode::kDeadlineExceeded)
      << lost.status();
  EXPECT_EQ(Balance()["authorization_count"], 1);
  // The retry with the same key must not charge again: it gets the stored answer.
  auto retry = Post("/v1/authorizations", Authorization(kCardLostResponse, 777), "lost-1");
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_EQ(retry->status, 201);
  EXPECT_EQ(ParseJson(retry->body)->at("status"), "authorized");
  EXPECT_EQ(ParseJson(retry->body)->at("amount_minor"), 777);
  EXPECT_EQ(Balance()["authorization_count"], 1);
  // A new key is a new charge (and loses its response again).
  EXPECT_FALSE(Post("/v1/authorizations", Authorization(kCardLostResponse, 777), "lost-2").ok());
  EXPECT_EQ(Balance()["authorization_count"], 2);
}

// Answers to POSTs are written by the books' writer once durable and GETs by the connection
// thread: a client that pipelines both on one connection still gets every answer, in order,
// and a request with "Connection: close" gets its answer before the close.
TEST_F(SandboxTest, PipelinedRequestsAreAnsweredInOrder) {
  StartSandbox();
  constexpr int kRequests = 24;
  std::string wire;
  for (int i = 0; i < kRequests; ++i) {
    const bool last = i + 1 == kRequests;
    if (i % 6 == 5) {
      wire += fmt::format("GET /v1/balance HTTP/1.1\r\nHost: x\r\n{}\r\n",
                          last ? "Connection: close\r\n" : "");
      continue;
    }
    const std::string body = DumpJson(Authorization(kCardSuccess, 1000 + i));
    wire += fmt::format(
        "POST /v1/authorizations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Idempotency-Key: pipe-{}\r\nContent-Length: {}\r\n{}\r\n{}",
        i, body.size(), last ? "Connection: close\r\n" : "", body);
  }
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(sandbox_->port());
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  ASSERT_EQ(::send(fd, wire.data(), wire.size(), MSG_NOSIGNAL), static_cast<ssize_t>(wire.size()));
  // Read until the sandbox closes (the last request asked for it), bounded by a deadline.
  std::string received;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd waiting{fd, POLLIN, 0};
    if (::poll(&waiting, 1, 1000) <= 0) continue;
    char chunk[4096];
    const ssize_t n = ::recv(fd, chunk, sizeof(chunk), 0);
    if (n <= 0) break;
    received.append(chunk, static_cast<size_t>(n));
  }
  ::close(fd);
  // Split the stream into answers by their Content-Length.
  std::vector<std::pair<int, Json>> answers;
  size_t at = 0;
  while (at < received.size() && answers.size() < kRequests + 1) {
    const size_t head_end = received.find("\r\n\r\n", at);
    ASSERT_NE(head_end, std::string::npos);
    const std::string head = received.substr(at, head_end - at);
    const size_t length_at = head.find("Content-Length: ");
    ASSERT_NE(length_at, std::string::npos) << head;
    const size_t length = std::stoul(head.substr(length_at + 16));
    const int status = std::stoi(head.substr(9, 3));
    absl::StatusOr<Json> body = ParseJson(received.substr(head_end + 4, length));
    ASSERT_TRUE(body.ok()) << head;
    answers.emplace_back(status, *body);
    at = head_end + 4 + length;
  }
  ASSERT_EQ(answers.size(), static_cast<size_t>(kRequests));
  for (int i = 0; i < kRequests; ++i) {
    const auto& [status, body] = answers[static_cast<size_t>(i)];
    if (i % 6 == 5) {
      EXPECT_EQ(status, 200) << i;
      EXPECT_TRUE(body.contains("authorization_count")) << i;
    } else {
      EXPECT_EQ(status, 201) << i;
      EXPECT_EQ(body.at("amount_minor"), 1000 + i) << i;
    }
  }
  EXPECT_EQ(Balance()["authorization_count"], kRequests - kRequests / 6);
}

TEST_F(SandboxTest, CaptureRefundVoidAndBalance) {
  StartSandbox();
  auto auth = Post("/v1/authorizations", Authorization(kCardSuccess, 10'000), "a1");
  const std::string id = ParseJson(auth->body)->at("id");
  EXPECT_EQ(Post("/v1/authorizations/" + id + "/capture", {{"amount_minor", 10'001}}, "c0")->status,
            400);
  auto capture = Post("/v1/authorizations/" + id + "/capture", {{"amount_minor", 6'000}}, "c1");
  ASSERT_EQ(capture->status, 200);
  EXPECT_EQ(ParseJson(capture->body)->at("captured_minor"), 6'000);
  EXPECT_EQ(Post("/v1/authorizations/" + id + "/capture", {{"amount_minor", 1}}, "c2")->status,
            409);
  EXPECT_EQ(Post("/v1/refunds", {{"authorization_id", id}, {"amount_minor", 6'001}}, "r0")->status,
            400);
  auto refund = Post("/v1/refunds", {{"authorization_id", id}, {"amount_minor", 2'500}}, "r1");
  ASSERT_EQ(refund->status, 201);
  // Replay of the refund does not refund twice.
  EXPECT_EQ(Post("/v1/refunds", {{"authorization_id", id}, {"amount_minor", 2'500}}, "r1")->body,
            refund->body);
  EXPECT_EQ(Post("/v1/refunds", {{"authorization_id", id}, {"amount_minor", 3'501}}, "r2")->status,
            400);
  const std::string refund_id = ParseJson(refund->body)->at("id");
  EXPECT_EQ(Get("/v1/refunds/" + refund_id)->status, 200);
  EXPECT_EQ(Get("/v1/refunds/nope")->status, 404);
  Json balance = Balance();
  ASSERT_EQ(balance["balances"].size(), 1u);
  EXPECT_EQ(balance["balances"][0]["captured_minor"], 6'000);
  EXPECT_EQ(balance["balances"][0]["refunded_minor"], 2'500);
  EXPECT_EQ(balance["balances"][0]["net_minor"], 3'500);

  auto second = Post("/v1/authorizations", Authorization(kCardSuccess, 500), "a2");
  const std::string second_id = ParseJson(second->body)->at("id");
  EXPECT_EQ(Post("/v1/authorizations/" + second_id + "/void", Json::object(), "v1")->status, 200);
  EXPECT_EQ(Post("/v1/authorizations/" + second_id + "/capture", Json::object(), "c3")->status,
            409);
  EXPECT_EQ(
      Post("/v1/refunds", {{"authorization_id", second_id}, {"amount_minor", 1}}, "r3")->status,
      409);
  EXPECT_EQ(Get("/v1/authorizations/" + second_id)->status, 200);
  EXPECT_EQ(Get("/v1/authorizations/missing")->status, 404);
  EXPECT_EQ(Post("/v1/authorizations/missing/void", Json::object(), "v2")->status, 404);
}

TEST_F(SandboxTest, UncapturedAuthorizationsExpire) {
  SandboxOptions options;
  options.authorization_ttl = absl::Hours(1);
  StartSandbox(options);
  auto auth = Post("/v1/authorizations", Authorization(kCardSuccess), "a1");
  const std::string id = ParseJson(auth->body)->at("id");
  clock_.Advance(absl::Hours(2));
  EXPECT_EQ(ParseJson(Get("/v1/authorizations/" + id)->body)->at("status"), "expired");
  EXPECT_EQ(Post("/v1/authorizations/" + id + "/capture", Json::object(), "c1")->status, 409);
}

TEST_F(SandboxTest, FailureRateAnswers503WithoutEffect) {
  SandboxOptions options;
  options.failure_rate = 1.0;
  StartSandbox(options);
  auto response = Post("/v1/authorizations", Authorization(kCardSuccess), "a1");
  EXPECT_EQ(response->status, 503);
  EXPECT_EQ(Balance()["authorization_count"], 0);
}

TEST_F(SandboxTest, SignedNotificationsAreDeliveredWithDuplicates) {
  std::mutex mutex;
  std::vector<std::pair<std::string, std::string>> received;  // signature, body
  http::Router router;
  router.AddSync("POST", "/hooks/psp", [&](const http::Request& request) {
    std::lock_guard<std::mutex> lock(mutex);
    received.emplace_back(std::string(request.Header(kSignatureHeader).value_or("")), request.body);
    return http::Response::NoContent();
  });
  http::ServerOptions server_options;
  server_options.host = "127.0.0.1";
  server_options.port = 0;
  server_options.io_threads = 1;
  http::HttpServer receiver(server_options, router);
  ASSERT_TRUE(receiver.Start().ok());

  SandboxOptions options;
  options.notification_url = fmt::format("http://127.0.0.1:{}/hooks/psp", receiver.port());
  options.notification_secret = "whsec_test";
  options.notification_duplicate_rate = 1.0;
  options.notification_shuffle = true;
  StartSandbox(options);
  auto auth = Post("/v1/authorizations", Authorization(kCardSuccess), "a1");
  const std::string id = ParseJson(auth->body)->at("id");
  ASSERT_EQ(Post("/v1/authorizations/" + id + "/capture", Json::object(), "c1")->status, 200);
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (sandbox_->notifications_delivered() < 4 && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(sandbox_->notifications_delivered(), 4);
  std::lock_guard<std::mutex> lock(mutex);
  ASSERT_EQ(received.size(), 4u);
  for (const auto& [signature, body] : received) {
    const size_t comma = signature.find(',');
    ASSERT_NE(comma, std::string::npos);
    const int64_t timestamp = std::stoll(signature.substr(2, comma - 2));
    EXPECT_EQ(signature, SignNotification("whsec_test", timestamp, body));
    EXPECT_NE(signature, SignNotification("other", timestamp, body));
  }
  receiver.Shutdown(absl::Seconds(1));
}

}  // namespace
}  // namespace emporium::psp_sandbox
