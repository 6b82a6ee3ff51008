// Payments over HTTP with the full app (ServerApp on port 0, temp data dir) and the PSP sandbox
// in process on port 0: card validation errors that never echo the number, idempotent replay,
// 422 and 409 for reused keys, authorize -> capture -> refund, staff auth, declines, signed
// notifications, a server that starts with the PSP down, and no card number in any database
// file or log line.
#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/time/clock.h"
#include "app/server_app.h"
#include "common/json.h"
#include "fmt/format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "payments/cli.h"
#include "platform/http/client.h"
#include "platform/obs/log.h"
#include "test_support.h"
#include "tools/psp_sandbox/sandbox.h"

namespace emporium {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kAdminKey[] = "payments-admin-key";
constexpr char kWebhookSecret[] = "whsec-test";
// A valid Visa number the sandbox authorizes, used nowhere else, so a grep finds only leaks.
constexpr char kCard[] = "4000056655665556";
constexpr char kCardHead[] = "400005665566";  // the digits no view may show

struct Fixture {
  absl::Duration psp_latency = absl::ZeroDuration();
  bool psp_down = false;
  std::string vault_key;  // empty: the development key file
};

class PaymentsApiTest : public ::testing::Test {
 protected:
  void Open(Fixture fixture = {}) {
    log_path_ = dir_.path() + "/logs/emporium.log";
    ASSERT_TRUE(obs::InitLogging({obs::LogLevel::kDebug, log_path_}).ok());
    uint16_t psp_port = 1;  // nothing listens there: the PSP is down
    if (!fixture.psp_down && !sandbox_) {
      psp_sandbox::SandboxOptions options;
      options.db_path = dir_.path() + "/psp/sandbox.db";
      std::filesystem::create_directories(dir_.path() + "/psp");
      options.latency_fixed = fixture.psp_latency;
      sandbox_ = std::make_unique<psp_sandbox::PspSandbox>(options);
      ASSERT_TRUE(sandbox_->Start().ok());
    }
    if (!fixture.psp_down) psp_port = sandbox_->port();
    app::Config config;
    config.server.port = 0;
    config.server.io_threads = 2;
    config.data_dir = dir_.path() + "/data";
    config.admin_api_key = kAdminKey;
    config.log_level = "debug";
    config.payments.psp_url = fmt::format("http://127.0.0.1:{}", psp_port);
    config.payments.webhook_secret = kWebhookSecret;
    config.payments.vault_key = fixture.vault_key;
    absl::StatusOr<std::unique_ptr<app::ServerApp>> app = app::ServerApp::Open(config);
    ASSERT_TRUE(app.ok()) << app.status();
    app_ = *std::move(app);
    ASSERT_TRUE(app_->Start().ok());
    http::ClientOptions options;
    options.port = app_->port();
    options.request_timeout = absl::Seconds(30);
    client_ = std::make_unique<http::HttpClient>(options);
  }

  void CloseApp() {
    client_.reset();
    if (app_) app_->Shutdown();
    app_.reset();
  }

  void TearDown() override {
    client_.reset();
    if (app_) app_->Shutdown();
    app_.reset();
    if (sandbox_) sandbox_->Shutdown();
    (void)obs::InitLogging({});
  }

  http::ClientResponse Call(const std::string& method, const std::string& target,
                            const std::string& body = "", const std::string& idempotency_key = "",
                            const std::string& bearer = "") {
    http::ClientRequest request;
    request.method = method;
    request.target = target;
    request.body = body;
    if (!body.empty()) request.headers.Set("Content-Type", "application/json");
    if (!idempotency_key.empty()) request.headers.Set("Idempotency-Key", idempotency_key);
    if (!bearer.empty()) request.headers.Set("Authorization", "Bearer " + bearer);
    absl::StatusOr<http::ClientResponse> response = client_->Send(request);
    EXPECT_TRUE(response.ok()) << response.status();
    return response.ok() ? *response : http::ClientResponse{};
  }

  // The same call as support staff would make it (intents over HTTP are staff only).
  http::ClientResponse StaffCall(const std::string& method, const std::string& target,
                                 const std::string& body = "",
                                 const std::string& idempotency_key = "") {
    return Call(method, target, body, idempotency_key, kAdminKey);
  }

  static Json Body(const http::ClientResponse& response) {
    absl::StatusOr<Json> parsed = ParseJson(response.body);
    return parsed.ok() ? *parsed : Json();
  }

  static int NextYear() {
    return static_cast<int>(absl::ToCivilYear(absl::Now(), absl::UTCTimeZone()).year()) + 1;
  }

  static std::string CardBody(const std::string& number, int month = 12, int year = NextYear(),
                              const std::string& cvc = "123") {
    return DumpJson(Json{{"customer_id", "guest-ada"},
                         {"number", number},
                         {"exp_month", month},
                         {"exp_year", year},
                         {"cvc", cvc},
                         {"holder", "Ada Lovelace"}});
  }

  std::string AddCard(const std::string& number = kCard) {
    http::ClientResponse response = Call("POST", "/api/v1/payment-methods", CardBody(number));
    EXPECT_EQ(response.status, 201) << response.body;
    return Body(response).value("token", std::string());
  }

  static std::string IntentBody(const std::string& order_id, const std::string& token,
                                int64_t amount_minor = 2500) {
    return DumpJson(Json{{"order_id", order_id},
                         {"amount_minor", amount_minor},
                         {"currency", "USD"},
                         {"payment_method", token},
                         {"customer_id", "guest-ada"},
                         {"billing_country", "US"},
                         {"shipping_country", "US"}});
  }

  // Every byte of every file under the data directories and the log.
  std::string AllStoredBytes() {
    std::string all;
    for (const auto& entry : std::filesystem::recursive_directory_iterator(dir_.path())) {
      if (!entry.is_regular_file()) continue;
      if (entry.path().string().find("/psp/") != std::string::npos) continue;  // the PSP's books
      std::ifstream file(entry.path(), std::ios::binary);
      std::stringstream bytes;
      bytes << file.rdbuf();
      all += bytes.str();
    }
    return all;
  }

  testing::TempDir dir_;
  std::string log_path_;
  std::unique_ptr<psp_sandbox::PspSandbox> sandbox_;
  std::unique_ptr<app::ServerApp> app_;
  std::unique_ptr<http::HttpClient> client_;
};

TEST_F(PaymentsApiTest, CardValidationErrorsNameTheParamAndNeverEchoTheNumber) {
  Open();
  struct Case {
    std::string body;
    std::string param;
  };
  const std::string bad_luhn = "4000056655665557";
  const std::vector<Case> cases = {
      {CardBody(bad_luhn), "number"},
      {CardBody("4000-0566-5566-555X"), "number"},
      {CardBody("40000566556655564000056655665556"), "number"},
      {CardBody(kCard, 13), "exp_month"},
      {CardBody(kCard, 1, 2001), "exp_year"},
      {CardBody(kCard, 12, NextYear(), "12"), "cvc"},
      {DumpJson(Json{{"customer_id", "guest-c"}, {"number", 4000056655665556}}), "number"},
      {DumpJson(Json{{"customer_id", "guest-c"}, {"number", kCard}}), "exp_month"},
  };
  for (const Case& c : cases) {
    http::ClientResponse response = Call("POST", "/api/v1/payment-methods", c.body);
    EXPECT_EQ(response.status, 400) << c.body;
    Json error = Body(response)["error"];
    EXPECT_EQ(error.value("param", std::string()), c.param) << response.body;
    EXPECT_THAT(response.body, Not(HasSubstr(kCardHead)));
    EXPECT_THAT(response.body, Not(HasSubstr("40000566556655")));
  }
  // Not JSON at all, with the number inside: the parser's complaint must not quote it.
  http::ClientResponse broken =
      Call("POST", "/api/v1/payment-methods", fmt::format("{{\"number\": {}x", kCard));
  EXPECT_EQ(broken.status, 400);
  EXPECT_THAT(broken.body, Not(HasSubstr(kCardHead)));

  http::ClientResponse unknown = Call("GET", "/api/v1/payment-methods/pm_nope");
  EXPECT_EQ(unknown.status, 404);
}

TEST_F(PaymentsApiTest, StoresACardAndShowsOnlyItsPublicView) {
  Open();
  http::ClientResponse created = Call("POST", "/api/v1/payment-methods", CardBody(kCard));
  ASSERT_EQ(created.status, 201) << created.body;
  Json card = Body(created);
  EXPECT_THAT(card.value("token", std::string()), HasSubstr("pm_"));
  EXPECT_EQ(card.value("brand", std::string()), "visa");
  EXPECT_EQ(card.value("last4", std::string()), "5556");
  EXPECT_EQ(card.value("exp_month", 0), 12);
  EXPECT_EQ(card.value("exp_year", 0), NextYear());
  EXPECT_THAT(created.body, Not(HasSubstr(kCardHead)));
  http::ClientResponse fetched =
      Call("GET", "/api/v1/payment-methods/" + card.value("token", std::string()));
  ASSERT_EQ(fetched.status, 200);
  EXPECT_EQ(Body(fetched).value("last4", std::string()), "5556");
  EXPECT_THAT(fetched.body, Not(HasSubstr(kCardHead)));
}

TEST_F(PaymentsApiTest, IdempotencyKeyReplaysTheSameRequestAndRefusesAnother) {
  Open();
  const std::string token = AddCard();
  http::ClientResponse missing =
      StaffCall("POST", "/api/v1/payment-intents", IntentBody("order-1", token));
  EXPECT_EQ(missing.status, 400);
  EXPECT_EQ(Body(missing)["error"].value("code", std::string()), "missing_idempotency_key");

  http::ClientResponse first =
      StaffCall("POST", "/api/v1/payment-intents", IntentBody("order-1", token), "key-1");
  ASSERT_EQ(first.status, 201) << first.body;
  EXPECT_EQ(Body(first).value("state", std::string()), "authorized");
  EXPECT_EQ(Body(first).value("authorized_minor", int64_t{0}), 2500);

  http::ClientResponse again =
      StaffCall("POST", "/api/v1/payment-intents", IntentBody("order-1", token), "key-1");
  EXPECT_EQ(again.status, 201);
  EXPECT_EQ(again.body, first.body);
  EXPECT_EQ(again.headers.Get("Idempotent-Replayed").value_or(""), "true");

  http::ClientResponse other =
      StaffCall("POST", "/api/v1/payment-intents", IntentBody("order-1", token, 9999), "key-1");
  EXPECT_EQ(other.status, 422);
  EXPECT_EQ(Body(other)["error"].value("code", std::string()), "idempotency_key_reused");

  // Another key for the same order and amount: still one intent per order.
  http::ClientResponse second_key =
      StaffCall("POST", "/api/v1/payment-intents", IntentBody("order-1", token), "key-2");
  EXPECT_EQ(second_key.status, 201);
  EXPECT_EQ(Body(second_key).value("id", std::string()), Body(first).value("id", std::string()));

  http::ClientResponse unknown_method =
      StaffCall("POST", "/api/v1/payment-intents", IntentBody("order-2", "pm_unknown"), "key-3");
  EXPECT_EQ(unknown_method.status, 400);
  EXPECT_EQ(Body(unknown_method)["error"].value("param", std::string()), "payment_method");
}

TEST_F(PaymentsApiTest, AConcurrentDuplicateIsAConflict) {
  Fixture slow;
  slow.psp_latency = absl::Milliseconds(600);
  Open(slow);
  const std::string token = AddCard();
  // While the first request waits on the slow PSP, the same key again is a 409 (whichever of
  // the two claimed the key first, the other one conflicts).
  http::ClientResponse first_response;
  std::atomic<bool> first_done{false};
  std::thread first([&] {
    first_response =
        StaffCall("POST", "/api/v1/payment-intents", IntentBody("order-c", token), "dup");
    first_done = true;
  });
  int conflicts = 0;
  int created = 0;
  EXPECT_TRUE(testing::WaitFor([&] {
    const int status =
        StaffCall("POST", "/api/v1/payment-intents", IntentBody("order-c", token), "dup").status;
    conflicts += status == 409 ? 1 : 0;
    created += status == 201 ? 1 : 0;
    return first_done.load();
  }));
  first.join();
  conflicts += first_response.status == 409 ? 1 : 0;
  created += first_response.status == 201 ? 1 : 0;
  EXPECT_GE(conflicts, 1);
  EXPECT_GE(created, 1);
  http::ClientResponse replay =
      StaffCall("POST", "/api/v1/payment-intents", IntentBody("order-c", token), "dup");
  EXPECT_EQ(replay.status, 201) << replay.body;
  EXPECT_EQ(replay.headers.Get("Idempotent-Replayed").value_or(""), "true");
}

TEST_F(PaymentsApiTest, AuthorizeCaptureRefundWithStaffAuthAndNoCardNumberAnywhere) {
  Open();
  const std::string token = AddCard();
  http::ClientResponse authorized =
      StaffCall("POST", "/api/v1/payment-intents", IntentBody("order-9", token, 5000), "auth-9");
  ASSERT_EQ(authorized.status, 201) << authorized.body;
  const std::string id = Body(authorized).value("id", std::string());
  const std::string base = "/api/v1/payment-intents/" + id;

  EXPECT_EQ(Call("POST", base + "/capture", "{}", "cap-9").status, 401);
  EXPECT_EQ(Call("POST", base + "/capture", "{}", "cap-9", "wrong-key").status, 401);
  EXPECT_EQ(Call("POST", base + "/capture", "{}", "", kAdminKey).status, 400);

  http::ClientResponse captured = Call("POST", base + "/capture", "{}", "cap-9", kAdminKey);
  ASSERT_EQ(captured.status, 200) << captured.body;
  EXPECT_EQ(Body(captured).value("state", std::string()), "captured");
  EXPECT_EQ(Body(captured).value("captured_minor", int64_t{0}), 5000);

  http::ClientResponse part =
      Call("POST", base + "/refund", R"({"amount_minor": 1500})", "ref-9a", kAdminKey);
  ASSERT_EQ(part.status, 200) << part.body;
  EXPECT_EQ(Body(part).value("state", std::string()), "partially_refunded");
  EXPECT_EQ(Body(part).value("refunded_minor", int64_t{0}), 1500);

  http::ClientResponse too_much =
      Call("POST", base + "/refund", R"({"amount_minor": 3501})", "ref-9b", kAdminKey);
  EXPECT_EQ(too_much.status, 409) << too_much.body;
  EXPECT_EQ(Body(too_much)["error"].value("code", std::string()), "exceeds_refundable");

  http::ClientResponse rest =
      Call("POST", base + "/refund", R"({"amount_minor": 3500})", "ref-9c", kAdminKey);
  ASSERT_EQ(rest.status, 200) << rest.body;
  EXPECT_EQ(Body(rest).value("state", std::string()), "refunded");

  http::ClientResponse voided = Call("POST", base + "/void", "", "void-9", kAdminKey);
  EXPECT_EQ(voided.status, 409);

  http::ClientResponse fetched = StaffCall("GET", base);
  ASSERT_EQ(fetched.status, 200);
  EXPECT_EQ(Body(fetched).value("refunded_minor", int64_t{0}), 5000);
  EXPECT_EQ(StaffCall("GET", "/api/v1/payment-intents/pi_missing").status, 404);

  // Nothing a person or a backup could read holds the number: every file the server wrote
  // (the databases with their WAL and the vault key) and every log line.
  client_.reset();
  app_->Shutdown();
  app_.reset();
  const std::string stored = AllStoredBytes();
  std::ifstream log(log_path_);
  std::stringstream log_text;
  log_text << log.rdbuf();
  EXPECT_THAT(log_text.str(), HasSubstr("payment-intents"));  // the capture really worked
  EXPECT_THAT(stored, HasSubstr("order-9"));                  // and so did the file walk
  EXPECT_THAT(stored, Not(HasSubstr(kCard)));
  EXPECT_THAT(stored, Not(HasSubstr(kCardHead)));
}

TEST_F(PaymentsApiTest, DeclinesAnswer402WithTheReason) {
  Open();
  const std::string token = AddCard(psp_sandbox::kCardInsufficientFunds);
  http::ClientResponse declined =
      StaffCall("POST", "/api/v1/payment-intents", IntentBody("order-d", token), "decl-1");
  EXPECT_EQ(declined.status, 402) << declined.body;
  Json error = Body(declined)["error"];
  EXPECT_EQ(error.value("code", std::string()), "insufficient_funds");
  const std::string id = error.value("payment_intent", std::string());
  ASSERT_FALSE(id.empty());
  EXPECT_EQ(Body(StaffCall("GET", "/api/v1/payment-intents/" + id)).value("state", std::string()),
            "failed");
}

TEST_F(PaymentsApiTest, NotificationsNeedAValidSignature) {
  Open();
  const std::string body = R"({"id":"evt_1","type":"authorization.succeeded","data":{}})";
  http::ClientRequest request;
  request.method = "POST";
  request.target = "/api/v1/payments/psp-notifications";
  request.body = body;
  request.headers.Set("Content-Type", "application/json");
  absl::StatusOr<http::ClientResponse> unsigned_response = client_->Send(request);
  ASSERT_TRUE(unsigned_response.ok());
  EXPECT_EQ(unsigned_response->status, 401);
  const int64_t now_s = absl::ToUnixSeconds(absl::Now());
  request.headers.Set(psp_sandbox::kSignatureHeader,
                      psp_sandbox::SignNotification("wrong-secret", now_s, body));
  EXPECT_EQ(client_->Send(request)->status, 401);
  request.headers.Set(psp_sandbox::kSignatureHeader,
                      psp_sandbox::SignNotification(kWebhookSecret, now_s, body));
  absl::StatusOr<http::ClientResponse> signed_response = client_->Send(request);
  ASSERT_TRUE(signed_response.ok());
  EXPECT_EQ(signed_response->status, 200) << signed_response->body;
}

TEST_F(PaymentsApiTest, ServesWithThePspDownAndNeverStoresA503) {
  Fixture down_fixture;
  down_fixture.psp_down = true;
  Open(down_fixture);
  http::ClientResponse ready = Call("GET", "/readyz");
  EXPECT_EQ(ready.status, 200) << ready.body;
  const std::string token = AddCard();
  http::ClientResponse down =
      StaffCall("POST", "/api/v1/payment-intents", IntentBody("order-x", token), "down-1");
  EXPECT_EQ(down.status, 503) << down.body;
  http::ClientResponse retried =
      StaffCall("POST", "/api/v1/payment-intents", IntentBody("order-x", token), "down-1");
  EXPECT_EQ(retried.status, 503);
  EXPECT_FALSE(retried.headers.Get("Idempotent-Replayed").has_value());
  EXPECT_EQ(Call("GET", "/api/v1/admin/payments/reviews", "", "", kAdminKey).status, 200);
  EXPECT_EQ(Call("GET", "/api/v1/admin/payments/reviews").status, 401);
  EXPECT_EQ(Call("GET", "/api/v1/admin/payments/reviews?limit=0", "", "", kAdminKey).status, 400);
}

TEST_F(PaymentsApiTest, AuditAgreesWithThePspAndRotationKeepsCardsUsable) {
  Open();
  const std::string token = AddCard();
  http::ClientResponse authorized =
      StaffCall("POST", "/api/v1/payment-intents", IntentBody("order-a", token, 5000), "auth-a");
  ASSERT_EQ(authorized.status, 201) << authorized.body;
  const std::string base = "/api/v1/payment-intents/" + Body(authorized).value("id", "");
  ASSERT_EQ(Call("POST", base + "/capture", "{}", "cap-a", kAdminKey).status, 200);
  ASSERT_EQ(Call("POST", base + "/refund", R"({"amount_minor": 1500})", "ref-a", kAdminKey).status,
            200);
  CloseApp();

  const std::string data_dir = dir_.path() + "/data";
  const std::string psp_url = fmt::format("http://127.0.0.1:{}", sandbox_->port());
  absl::StatusOr<payments::LedgerAudit> audit = payments::AuditDataDir(data_dir, psp_url);
  ASSERT_TRUE(audit.ok()) << audit.status();
  EXPECT_TRUE(audit->violations.empty()) << audit->violations.front();
  EXPECT_EQ(audit->transaction_count, 2);
  EXPECT_EQ(audit->ledger_clearing_minor["USD"], 3500);

  // Against a PSP whose books do not hold these payments, the audit reports the difference.
  psp_sandbox::SandboxOptions other_options;
  other_options.db_path = dir_.path() + "/psp/other.db";
  psp_sandbox::PspSandbox other(other_options);
  ASSERT_TRUE(other.Start().ok());
  absl::StatusOr<payments::LedgerAudit> disagreeing =
      payments::AuditDataDir(data_dir, fmt::format("http://127.0.0.1:{}", other.port()));
  ASSERT_TRUE(disagreeing.ok()) << disagreeing.status();
  ASSERT_EQ(disagreeing->violations.size(), 1u);
  EXPECT_THAT(disagreeing->violations[0], HasSubstr("USD"));
  other.Shutdown();
  EXPECT_FALSE(payments::AuditDataDir(data_dir, "http://127.0.0.1:1").ok());

  // Rotation: a new key first, the development key kept for reading; every card re-encrypted.
  std::ifstream dev_key(data_dir + "/" + payments::kDevKeyFileName);
  std::stringstream dev_text;
  dev_text << dev_key.rdbuf();
  const std::string keyring = payments::VaultKeyring::GenerateEntry("k2") + "\n" + dev_text.str();
  absl::StatusOr<payments::VaultKeyring> parsed = payments::VaultKeyring::Parse(keyring);
  ASSERT_TRUE(parsed.ok());
  absl::StatusOr<int64_t> rotated = payments::RotateDataDir(data_dir, *parsed);
  ASSERT_TRUE(rotated.ok()) << rotated.status();
  EXPECT_EQ(*rotated, 1);
  EXPECT_EQ(*payments::RotateDataDir(data_dir, *parsed), 0);  // nothing left to move

  // Only the new key is needed now: a server with k2 alone authorizes with the old token.
  Fixture rotated_fixture;
  rotated_fixture.vault_key = keyring.substr(0, keyring.find('\n'));
  Open(rotated_fixture);
  http::ClientResponse with_k2 =
      StaffCall("POST", "/api/v1/payment-intents", IntentBody("order-c", token, 800), "auth-c");
  EXPECT_EQ(with_k2.status, 201) << with_k2.body;
}

TEST_F(PaymentsApiTest, CardsBelongToTheirCustomerAndIntentsToSupportStaff) {
  Open();
  auto sign_up = [this](const std::string& email) {
    http::ClientResponse response = Call(
        "POST", "/api/v1/accounts/signup",
        DumpJson(Json{{"email", email}, {"password", "correct horse battery"}, {"name", "A"}}));
    EXPECT_EQ(response.status, 201) << response.body;
    Json body = Body(response);
    return std::pair{body["customer"].value("id", std::string()),
                     body["session"].value("token", std::string())};
  };
  auto [ada_id, ada] = sign_up("ada@example.com");
  auto [bob_id, bob] = sign_up("bob@example.com");
  ASSERT_FALSE(ada.empty());
  ASSERT_FALSE(bob.empty());
  auto card = [](std::optional<std::string> customer_id) {
    Json body = Json{{"number", kCard},
                     {"exp_month", 12},
                     {"exp_year", NextYear()},
                     {"cvc", "123"},
                     {"holder", "Ada Lovelace"}};
    if (customer_id) body["customer_id"] = *customer_id;
    return DumpJson(body);
  };

  // A signed-in customer's card is theirs, whatever the body says.
  http::ClientResponse own = Call("POST", "/api/v1/payment-methods", card(std::nullopt), "", ada);
  ASSERT_EQ(own.status, 201) << own.body;
  EXPECT_EQ(Body(own).value("customer_id", std::string()), ada_id);
  const std::string ada_token = Body(own).value("token", std::string());
  EXPECT_EQ(Call("POST", "/api/v1/payment-methods", card(ada_id), "", ada).status, 201);
  for (const auto& [body, bearer] :
       {std::pair{card(bob_id), ada}, std::pair{card(ada_id), std::string()},
        std::pair{card("cust-1"), std::string()},
        std::pair{card(ada_id), std::string(kAdminKey)}}) {
    http::ClientResponse planted = Call("POST", "/api/v1/payment-methods", body, "", bearer);
    EXPECT_EQ(planted.status, 400) << planted.body;
    EXPECT_EQ(Body(planted)["error"].value("param", std::string()), "customer_id");
    EXPECT_THAT(planted.body, Not(HasSubstr(kCardHead)));
  }

  // Only the owner reads a customer's card; everyone else gets the 404 of a missing token.
  EXPECT_EQ(Call("GET", "/api/v1/payment-methods/" + ada_token, "", "", ada).status, 200);
  for (const std::string& stranger : {bob, std::string(), std::string(kAdminKey)}) {
    http::ClientResponse hidden =
        Call("GET", "/api/v1/payment-methods/" + ada_token, "", "", stranger);
    EXPECT_EQ(hidden.status, 404);
    EXPECT_EQ(hidden.body, Call("GET", "/api/v1/payment-methods/pm_nope", "", "", stranger).body);
  }

  // A guest's card (no body customer_id means "guest") is readable by whoever holds the token.
  http::ClientResponse guest = Call("POST", "/api/v1/payment-methods", card(std::nullopt));
  ASSERT_EQ(guest.status, 201) << guest.body;
  EXPECT_EQ(Body(guest).value("customer_id", std::string()), "guest");
  const std::string guest_token = Body(guest).value("token", std::string());
  EXPECT_EQ(Call("GET", "/api/v1/payment-methods/" + guest_token).status, 200);
  EXPECT_EQ(Call("GET", "/api/v1/payment-methods/" + guest_token, "", "", bob).status, 200);

  // Intents over HTTP: support staff and admin only.
  const std::string intent = IntentBody("order-auth", AddCard());  // owned by "guest-ada"
  EXPECT_EQ(Call("POST", "/api/v1/payment-intents", intent, "k-auth").status, 401);
  EXPECT_EQ(Call("POST", "/api/v1/payment-intents", intent, "k-auth", ada).status, 403);
  EXPECT_EQ(Call("GET", "/api/v1/payment-intents/pi_missing", "", "", ada).status, 403);
  EXPECT_EQ(Call("GET", "/api/v1/admin/payments/reviews", "", "", ada).status, 403);
  auto staff_key = [this](const std::string& role) {
    http::ClientResponse response =
        Call("POST", "/api/v1/admin/staff-keys", DumpJson(Json{{"role", role}, {"label", "t"}}), "",
             kAdminKey);
    EXPECT_EQ(response.status, 201) << response.body;
    return Body(response).value("key", std::string());
  };
  const std::string support = staff_key("support");
  const std::string ops = staff_key("ops");
  EXPECT_EQ(Call("POST", "/api/v1/payment-intents", intent, "k-auth", ops).status, 403);
  EXPECT_EQ(Call("POST", "/api/v1/payment-intents/pi_missing/void", "", "k-v", ops).status, 403);
  http::ClientResponse authorized =
      Call("POST", "/api/v1/payment-intents", intent, "k-auth", support);
  EXPECT_EQ(authorized.status, 201) << authorized.body;
  EXPECT_EQ(Call("GET", "/api/v1/payment-intents/pi_missing", "", "", support).status, 404);
  EXPECT_EQ(Call("GET", "/api/v1/admin/payments/reviews", "", "", support).status, 200);
}

}  // namespace
}  // namespace emporium
