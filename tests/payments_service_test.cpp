// Payments end to end against the PSP sandbox over loopback HTTP: the state machine through the
// service, idempotent commands, the lost-response card, the breaker, notifications, fraud
// review, a randomized run whose ledger must balance and agree with the sandbox's books, and
// no card number anywhere in the payments database.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <future>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "common/errors.h"
#include "common/json.h"
#include "fmt/format.h"
#include "payments/schema.h"
#include "payments/service.h"
#include "payments/store.h"
#include "platform/bus/schema.h"
#include "platform/http/client.h"
#include "platform/obs/metrics.h"
#include "platform/sql/migrations.h"
#include "platform/sql/sqlite_database.h"
#include "platform/sql/sqlite_test_util.h"
#include "test_support.h"
#include "tools/psp_sandbox/sandbox.h"

namespace emporium::payments {
namespace {

namespace sandbox = psp_sandbox;

// A PSP client that can be switched "down" (every call certainly not sent) and counts calls.
class SwitchablePsp final : public PspClient {
 public:
  explicit SwitchablePsp(std::unique_ptr<PspClient> real) : real_(std::move(real)) {}
  std::atomic<bool> down{false};
  std::atomic<int> calls{0};

  absl::StatusOr<PspResult> Authorize(const std::string& key, int64_t amount,
                                      const std::string& currency, const std::string& card,
                                      const std::string& reference) override {
    ++calls;
    if (down) return Down();
    return real_->Authorize(key, amount, currency, card, reference);
  }
  absl::StatusOr<PspResult> Capture(const std::string& key, const std::string& id,
                                    int64_t amount) override {
    ++calls;
    if (down) return Down();
    return real_->Capture(key, id, amount);
  }
  absl::StatusOr<PspResult> Void(const std::string& key, const std::string& id) override {
    ++calls;
    if (down) return Down();
    return real_->Void(key, id);
  }
  absl::StatusOr<PspResult> Refund(const std::string& key, const std::string& id,
                                   int64_t amount) override {
    ++calls;
    if (down) return Down();
    return real_->Refund(key, id, amount);
  }

 private:
  static absl::Status Down() {
    return WithErrorCode(absl::UnavailableError("connect refused"), "connect_failed");
  }
  std::unique_ptr<PspClient> real_;
};

// Forwards to a real database, except that the write numbered `fail_write` (counted from the
// first write through this wrapper) runs its job and then fails it: the job's changes roll
// back exactly as a crash before its commit would leave them (LevelDB's fault-injecting Env).
class FaultyDatabase final : public sql::Database {
 public:
  explicit FaultyDatabase(sql::Database& real) : real_(real) {}
  std::atomic<int> fail_write{0};  // 0: none
  std::atomic<int> writes{0};

  absl::Status Write(sql::WriteJob job) override { return real_.Write(Wrap(std::move(job))); }
  void SubmitWrite(sql::WriteJob job, sql::WriteDone done) override {
    real_.SubmitWrite(Wrap(std::move(job)), std::move(done));
  }
  absl::Status Read(sql::ReadJob job) override { return real_.Read(std::move(job)); }
  void AddCommitListener(std::function<void()> listener) override {
    real_.AddCommitListener(std::move(listener));
  }
  sql::WriteStats stats() const override { return real_.stats(); }
  std::string_view dialect() const override { return real_.dialect(); }
  void Close() override {}  // the fixture closes the real one

 private:
  sql::WriteJob Wrap(sql::WriteJob job) {
    const bool fail = ++writes == fail_write.load();
    return [job = std::move(job), fail](sql::Transaction& tx) -> absl::Status {
      absl::Status status = job(tx);
      if (status.ok() && fail) return absl::UnavailableError("injected: crashed before commit");
      return status;
    };
  }
  sql::Database& real_;
};

class PaymentsServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    sandbox::SandboxOptions sandbox_options;
    sandbox_options.db_path = dir_.File("psp.db");
    psp_sandbox_ = std::make_unique<sandbox::PspSandbox>(sandbox_options);
    ASSERT_TRUE(psp_sandbox_->Start().ok());
    auto db = sql::OpenSqlite({.path = dir_.File("payments.db"), .name = "payments"});
    ASSERT_TRUE(db.ok());
    db_ = std::move(*db);
    ASSERT_TRUE(bus::InstallBusSchema(*db_).ok());
    ASSERT_TRUE(sql::ApplyMigrations(*db_, "payments", PaymentsMigrations()).ok());
    psp_ = std::make_unique<SwitchablePsp>(
        MakeHttpPspClient({.host = "127.0.0.1", .port = psp_sandbox_->port()}));
    sandbox_client_ = std::make_unique<http::HttpClient>(
        http::ClientOptions{.host = "127.0.0.1", .port = psp_sandbox_->port()});
  }

  void StartService(PaymentsOptions options = {}) { StartServiceOn(*db_, std::move(options)); }

  void StartServiceOn(sql::Database& db, PaymentsOptions options = {}) {
    options.notification_secret = "whsec_test";
    options.sweep_interval = absl::Milliseconds(10);
    service_ = std::make_unique<PaymentsService>(db, Vault(*VaultKeyring::Parse(vault_entry_)),
                                                 *psp_, options);
    service_->Start();
  }

  // AuthorizeHttp, waited for (bounded).
  HttpCommandAnswer AuthorizeHttp(const AuthorizeCommand& command, const HttpIdempotency& http) {
    auto promise = std::make_shared<std::promise<HttpCommandAnswer>>();
    std::future<HttpCommandAnswer> future = promise->get_future();
    service_->AuthorizeHttp(command, http, [promise](HttpCommandAnswer answer) {
      promise->set_value(std::move(answer));
    });
    if (future.wait_for(std::chrono::seconds(30)) != std::future_status::ready) {
      ADD_FAILURE() << "AuthorizeHttp did not answer";
      return {};
    }
    return future.get();
  }

  // The attempt's status and its key's stored HTTP status, read in one snapshot; nullopt
  // when the key has no record.
  std::optional<std::pair<std::string, int64_t>> KeyAndAttempt(const std::string& key) {
    std::optional<std::pair<std::string, int64_t>> out;
    EXPECT_TRUE(db_->Read([&](sql::Transaction& tx) -> absl::Status {
                     auto rows = tx.Query(
                         "SELECT COALESCE(a.status, 'none'), h.status FROM http_idempotency h "
                         "LEFT JOIN payment_intents i ON i.order_id = 'o-http' "
                         "LEFT JOIN psp_attempts a ON a.intent_id = i.id "
                         "WHERE h.idempotency_key = ?",
                         {key});
                     if (!rows.ok()) return rows.status();
                     if (!rows->empty()) {
                       out = std::make_pair(rows->rows.front().Text(0), rows->rows.front().Int(1));
                     }
                     return absl::OkStatus();
                   })
                    .ok());
    return out;
  }

  void TearDown() override {
    if (service_) service_->Stop();
    service_.reset();
    if (db_) db_->Close();
    if (psp_sandbox_) psp_sandbox_->Shutdown();
  }

  std::string AddCard(const std::string& customer, const std::string& number) {
    auto method = service_->AddPaymentMethod(customer, {number, 12, 2035, "123", "Ada"});
    EXPECT_TRUE(method.ok()) << method.status();
    return method.ok() ? method->token : "";
  }

  AuthorizeCommand Command(const std::string& order, const std::string& token,
                           int64_t amount = 10'000, const std::string& customer = "cus_1") {
    return {"cmd-" + order, order, customer, token, amount, "USD", "US", "US", "", ""};
  }

  Json SandboxBalance() {
    http::ClientRequest request;
    request.target = "/v1/balance";
    auto response = sandbox_client_->Send(request);
    EXPECT_TRUE(response.ok());
    return *ParseJson(response->body);
  }

  int64_t SandboxAuthorizations() { return SandboxBalance()["authorization_count"]; }

  int64_t SandboxNet() {
    Json balance = SandboxBalance();
    return balance["balances"].empty() ? 0 : balance["balances"][0]["net_minor"].get<int64_t>();
  }

  int64_t Count(const std::string& sql) {
    int64_t count = -1;
    EXPECT_TRUE(db_->Read([&](sql::Transaction& tx) -> absl::Status {
                     auto rows = tx.Query(sql);
                     if (!rows.ok()) return rows.status();
                     count = rows->rows.front().Int(0);
                     return absl::OkStatus();
                   })
                    .ok());
    return count;
  }

  sql::TempDir dir_;
  std::unique_ptr<FaultyDatabase> faulty_;  // outlives the service, stopped in TearDown
  // One key for every service of a test, so a restarted service reads the cards stored before.
  const std::string vault_entry_ = VaultKeyring::GenerateEntry("k1");
  // Declared before service_, which must be destroyed first: its threads use them until then.
  obs::MetricsRegistry metrics_;
  ManualClock manual_clock_;
  std::unique_ptr<sandbox::PspSandbox> psp_sandbox_;
  std::unique_ptr<sql::Database> db_;
  std::unique_ptr<SwitchablePsp> psp_;
  std::unique_ptr<http::HttpClient> sandbox_client_;
  std::unique_ptr<PaymentsService> service_;
};

TEST_F(PaymentsServiceTest, AuthorizeCaptureRefundVoidThroughThePsp) {
  StartService();
  const std::string token = AddCard("cus_1", sandbox::kCardSuccess);
  auto intent = service_->Authorize(Command("o1", token));
  ASSERT_TRUE(intent.ok()) << intent.status();
  EXPECT_EQ(intent->state, IntentState::kAuthorized);
  EXPECT_FALSE(intent->psp_authorization_id.empty());
  // Capture more than authorized is refused before the PSP is asked.
  auto too_much = service_->Execute({"c0", intent->id, "", PspOperation::kCapture, 10'001});
  EXPECT_EQ(too_much.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ErrorCode(too_much.status()), "exceeds_authorized");
  auto captured = service_->Execute({"c1", intent->id, "", PspOperation::kCapture, 8'000});
  ASSERT_TRUE(captured.ok()) << captured.status();
  EXPECT_EQ(captured->state, IntentState::kCaptured);
  EXPECT_EQ(captured->amounts.captured_minor, 8'000);
  auto refund = service_->Execute({"r1", intent->id, "", PspOperation::kRefund, 3'000});
  ASSERT_TRUE(refund.ok()) << refund.status();
  EXPECT_EQ(refund->state, IntentState::kPartiallyRefunded);
  EXPECT_EQ(service_->Execute({"r2", intent->id, "", PspOperation::kRefund, 5'001}).status().code(),
            absl::StatusCode::kFailedPrecondition);
  auto rest = service_->Execute({"r3", intent->id, "", PspOperation::kRefund, 5'000});
  ASSERT_TRUE(rest.ok());
  EXPECT_EQ(rest->state, IntentState::kRefunded);
  EXPECT_EQ(service_->Execute({"v1", intent->id, "", PspOperation::kVoid, 0}).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(SandboxNet(), 0);

  auto second = service_->Authorize(Command("o2", token, 500));
  ASSERT_TRUE(second.ok());
  auto voided = service_->Execute({"v2", second->id, "", PspOperation::kVoid, 0});
  ASSERT_TRUE(voided.ok()) << voided.status();
  EXPECT_EQ(voided->state, IntentState::kVoided);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM outbox WHERE type = 'payment.voided'"), 1);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM outbox WHERE type = 'payment.captured'"), 1);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM outbox WHERE type = 'payment.refunded'"), 2);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM outbox WHERE type = 'payment.authorized'"), 2);
}

// A new authorization's attempt is driven with what step 1 committed (the card revealed by the
// read before it). Callers racing on one order, with the sweep re-driving open attempts every
// 10 ms, still make exactly one PSP call and one charge.
TEST_F(PaymentsServiceTest, ConcurrentAuthorizesOfOneOrderChargeOnce) {
  StartService();
  const std::string token = AddCard("cus_1", sandbox::kCardSuccess);
  constexpr int kCallers = 8;
  std::vector<absl::StatusOr<IntentRecord>> results(kCallers, absl::UnknownError("unset"));
  std::vector<std::thread> callers;
  for (int i = 0; i < kCallers; ++i) {
    callers.emplace_back([&, i] {
      AuthorizeCommand command = Command("o-race", token);
      command.command_id = fmt::format("cmd-race-{}", i);
      results[static_cast<size_t>(i)] = service_->Authorize(command);
    });
  }
  for (std::thread& caller : callers) caller.join();
  for (const auto& result : results) {
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_EQ(result->id, results.front()->id);
  }
  // Every caller answers once the one attempt is settled: a caller that arrives while it is
  // driven waits for it, one that arrives later reads the settled attempt.
  auto settled = service_->GetIntent(results.front()->id);
  ASSERT_TRUE(settled.ok());
  EXPECT_EQ(settled->state, IntentState::kAuthorized);
  EXPECT_EQ(psp_->calls.load(), 1);
  EXPECT_EQ(SandboxAuthorizations(), 1);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM psp_attempts"), 1);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM outbox WHERE type = 'payment.authorized'"), 1);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM payment_commands"), kCallers);
}

// AuthorizeAsync answers once, after the outcome is durable (its callback usually runs on the
// database's writer thread right after step 3's commit), and Stop() waits for the writes still
// in flight: every caller is answered exactly once, none after Stop() returns, and what was
// left open is settled by the next service's sweep without charging twice.
TEST_F(PaymentsServiceTest, AsyncAnswersComeOnceAfterTheCommitAndStopWaitsForThem) {
  PaymentsOptions options;
  // One customer buys 48 times at once here: velocity rules would (rightly) park them.
  options.fraud.card_attempts_max = INT64_MAX;
  options.fraud.customer_attempts_max = INT64_MAX;
  StartService(options);
  const std::string token = AddCard("cus_1", sandbox::kCardSuccess);
  constexpr int kSettled = 24;
  constexpr int kInterrupted = 24;
  std::atomic<int> answered{0};
  std::atomic<int> durable{0};
  std::mutex ids_mutex;
  std::set<std::string> answered_orders;
  auto submit = [&](int i) {
    const std::string order = fmt::format("o-async-{}", i);
    service_->AuthorizeAsync(Command(order, token), [&, order](absl::StatusOr<IntentRecord> r) {
      {
        std::lock_guard<std::mutex> lock(ids_mutex);
        EXPECT_TRUE(answered_orders.insert(order).second) << order << " answered twice";
      }
      if (r.ok()) {
        // What the answer says is already committed.
        absl::StatusOr<IntentRecord> stored = service_->GetIntent(r->id);
        EXPECT_TRUE(stored.ok()) << stored.status();
        if (stored.ok() && stored->state == r->state) durable.fetch_add(1);
      }
      answered.fetch_add(1);
    });
  };
  for (int i = 0; i < kSettled; ++i) submit(i);
  ASSERT_TRUE(testing::WaitFor([&] { return answered.load() == kSettled; }));
  EXPECT_EQ(durable.load(), kSettled);
  for (int i = kSettled; i < kSettled + kInterrupted; ++i) submit(i);
  service_->Stop();
  EXPECT_EQ(answered.load(), kSettled + kInterrupted);
  service_.reset();
  EXPECT_EQ(answered.load(), kSettled + kInterrupted);

  // The next service's sweep drives whatever Stop() left open; each order is charged once.
  StartService(options);
  EXPECT_TRUE(testing::WaitFor(
      [&] { return Count("SELECT COUNT(*) FROM psp_attempts WHERE status <> 'succeeded'") == 0; }));
  const int64_t intents = Count("SELECT COUNT(*) FROM payment_intents");
  EXPECT_EQ(intents, kSettled + kInterrupted);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM payment_intents WHERE state = 'authorized'"), intents);
  EXPECT_EQ(SandboxAuthorizations(), intents);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM outbox WHERE type = 'payment.authorized'"), intents);
}

// Screening runs in the write transaction, so a burst on one card submitted all at once (the
// authorizations share a batch) is counted exactly: each sees every earlier one, and only the
// first card_attempts_max pass the card velocity rule. (Read on a reader snapshot before the
// write, the whole burst saw the same empty history and passed.)
TEST_F(PaymentsServiceTest, ABurstOnOneCardIsCountedExactlyByTheVelocityRule) {
  PaymentsOptions options;
  options.fraud.card_attempts_max = 5;
  options.fraud.customer_attempts_max = INT64_MAX;
  options.fraud.ip_attempts_max = INT64_MAX;
  StartService(options);
  const std::string token = AddCard("cus_1", sandbox::kCardSuccess);
  constexpr int kBurst = 12;
  std::mutex mutex;
  std::map<IntentState, int> states;
  std::atomic<int> answered{0};
  for (int i = 0; i < kBurst; ++i) {
    service_->AuthorizeAsync(Command(fmt::format("o-burst-{}", i), token),
                             [&](absl::StatusOr<IntentRecord> r) {
                               EXPECT_TRUE(r.ok()) << r.status();
                               if (r.ok()) {
                                 std::lock_guard<std::mutex> lock(mutex);
                                 ++states[r->state];
                               }
                               answered.fetch_add(1);
                             });
  }
  ASSERT_TRUE(testing::WaitFor([&] { return answered.load() == kBurst; }));
  std::lock_guard<std::mutex> lock(mutex);
  EXPECT_EQ(states[IntentState::kAuthorized], 5);
  EXPECT_EQ(states[IntentState::kInReview], kBurst - 5);
  EXPECT_EQ(SandboxAuthorizations(), 5);
}

// A stopped or never started service takes no new authorization: it answers at once, writes
// nothing and calls no PSP, and it can be destroyed right after (no write still calls back).
TEST_F(PaymentsServiceTest, AStoppedServiceRefusesAuthorizationsAndWritesNothing) {
  StartService();
  const std::string token = AddCard("cus_1", sandbox::kCardSuccess);
  service_->Stop();
  auto refused = service_->Authorize(Command("o-stopped", token));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable);
  service_ = std::make_unique<PaymentsService>(*db_, Vault(*VaultKeyring::Parse(vault_entry_)),
                                               *psp_, PaymentsOptions{});  // never started
  refused = service_->Authorize(Command("o-never-started", token));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable);
  service_.reset();
  EXPECT_EQ(Count("SELECT COUNT(*) FROM payment_intents"), 0);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM psp_attempts"), 0);
  EXPECT_EQ(SandboxAuthorizations(), 0);
}

// Another customer's card and an unknown token are refused, and nothing is written or sent.
TEST_F(PaymentsServiceTest, AuthorizeRefusesAnotherCustomersOrUnknownCard) {
  StartService();
  const std::string token = AddCard("cus_1", sandbox::kCardSuccess);
  auto foreign = service_->Authorize(Command("o1", token, 1'000, "cus_2"));
  EXPECT_EQ(foreign.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ErrorParam(foreign.status()), "payment_method");
  auto unknown = service_->Authorize(Command("o2", "pm_unknown"));
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ErrorParam(unknown.status()), "payment_method");
  EXPECT_EQ(psp_->calls.load(), 0);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM payment_intents"), 0);
  auto mine = service_->Authorize(Command("o3", token));
  ASSERT_TRUE(mine.ok()) << mine.status();
  EXPECT_EQ(mine->state, IntentState::kAuthorized);
}

// An intent screened before its insert (empty id) gets its fraud facts from cheaper queries;
// they must equal the general queries' for an id that is not stored, over a history of
// authorized, declined and windowed intents on several cards, customers and IPs.
TEST_F(PaymentsServiceTest, UnstoredIntentFraudHistoryEqualsTheGeneralQueries) {
  PaymentsOptions options;
  options.clock = &manual_clock_;
  options.fraud.card_attempts_max = INT64_MAX;
  options.fraud.customer_attempts_max = INT64_MAX;
  options.fraud.ip_attempts_max = INT64_MAX;
  options.fraud.customer_distinct_cards_max = INT64_MAX;
  StartService(options);
  const std::string card_a = AddCard("cus_1", sandbox::kCardSuccess);
  const std::string card_b = AddCard("cus_1", sandbox::kCardInsufficientFunds);
  const std::string card_c = AddCard("cus_2", sandbox::kCardSuccess);
  for (int i = 0; i < 12; ++i) {
    AuthorizeCommand command =
        Command(fmt::format("o{}", i), i % 3 == 1 ? card_b : card_a, 1'000 + 100 * i);
    command.client_ip = i % 2 == 0 ? "10.0.0.1" : "10.0.0.2";
    ASSERT_TRUE(service_->Authorize(command).ok());
    ASSERT_TRUE(service_->Authorize(Command(fmt::format("p{}", i), card_c, 700, "cus_2")).ok());
    manual_clock_.Advance(absl::Minutes(10));  // the early ones leave the 1 h window
  }
  for (const std::string& customer : {std::string("cus_1"), std::string("cus_2")}) {
    for (const std::string& card : {card_a, card_b, card_c, std::string("pm_new")}) {
      for (const std::string& ip : {std::string(), std::string("10.0.0.1")}) {
        IntentRecord draft;
        draft.customer_id = customer;
        draft.fraud_key = customer;
        draft.payment_method = card;
        draft.client_ip = ip;
        const int64_t window_start_ms = manual_clock_.NowMs() - 3'600'000;
        std::optional<FraudInput> unstored;
        std::optional<FraudInput> general;
        ASSERT_TRUE(db_->Read([&](sql::Transaction& tx) -> absl::Status {
                         auto a = LoadFraudHistory(tx, draft, window_start_ms);
                         if (!a.ok()) return a.status();
                         unstored = *a;
                         IntentRecord named = draft;
                         named.id = "pi_not_stored";
                         auto b = LoadFraudHistory(tx, named, window_start_ms);
                         if (!b.ok()) return b.status();
                         general = *b;
                         return absl::OkStatus();
                       })
                        .ok());
        const std::string where = customer + " " + card + " " + ip;
        EXPECT_EQ(unstored->customer_payment_count, general->customer_payment_count) << where;
        EXPECT_EQ(unstored->customer_average_amount_minor, general->customer_average_amount_minor)
            << where;
        EXPECT_EQ(unstored->card_attempts_in_window, general->card_attempts_in_window) << where;
        EXPECT_EQ(unstored->customer_attempts_in_window, general->customer_attempts_in_window)
            << where;
        EXPECT_EQ(unstored->ip_attempts_in_window, general->ip_attempts_in_window) << where;
        EXPECT_EQ(unstored->customer_distinct_cards, general->customer_distinct_cards) << where;
      }
    }
  }
  // And the facts are not trivially zero: the window holds cus_1's recent intents.
  IntentRecord draft;
  draft.customer_id = "cus_1";
  draft.fraud_key = "cus_1";
  draft.payment_method = card_a;
  ASSERT_TRUE(db_->Read([&](sql::Transaction& tx) -> absl::Status {
                   auto facts = LoadFraudHistory(tx, draft, manual_clock_.NowMs() - 3'600'000);
                   if (!facts.ok()) return facts.status();
                   EXPECT_GT(facts->customer_payment_count, 0);
                   EXPECT_GT(facts->customer_attempts_in_window, 0);
                   EXPECT_EQ(facts->customer_distinct_cards, 2);
                   return absl::OkStatus();
                 })
                  .ok());
}

// Screening runs on the payments writer for every new authorization: a plan that reads a table
// row per counted intent makes each authorization cost more as a customer's history grows.
// SQLite's own plan, read with EXPLAIN QUERY PLAN.
TEST_F(PaymentsServiceTest, ScreeningReadsAreAnsweredFromIndexesAlone) {
  StartService();
  const std::string card = AddCard("cus_1", sandbox::kCardSuccess);
  ASSERT_TRUE(service_->Authorize(Command("o-plan", card)).ok());  // rows, so plans are real
  for (const IndexedQuery& query : QueriesThatMustUseAnIndex()) {
    absl::StatusOr<std::vector<std::string>> plan = sql::QueryPlan(*db_, query.sql, query.params);
    ASSERT_TRUE(plan.ok()) << query.sql << ": " << plan.status();
    bool searched = false;
    for (const std::string& step : *plan) {
      if (step.find("payment_intents") == std::string::npos) continue;  // the subquery's wrapper
      searched = true;
      EXPECT_NE(step.find(query.index), std::string::npos) << query.sql << ": " << step;
      EXPECT_EQ(step.find("TEMP B-TREE"), std::string::npos) << query.sql << ": " << step;
    }
    EXPECT_TRUE(searched) << query.sql;
  }
}

// The payment.* event payload is written without a DOM: the same bytes as the DOM's dump,
// hostile strings included (quotes, controls, non-ASCII, invalid UTF-8).
TEST(IntentEventPayload, EqualsTheDomDump) {
  const std::vector<std::string> texts = {"",
                                          "plain",
                                          "q\"uote\\back",
                                          "ctl\x01\n\t\x7f",
                                          "caf\xc3\xa9 \xe2\x82\xac",
                                          "bad\xff\xfe utf8",
                                          "trunc\xe2\x82"};
  for (const std::string& text : texts) {
    IntentRecord intent;
    intent.id = "pi_" + text;
    intent.order_id = text;
    intent.customer_id = "cus " + text;
    intent.state = IntentState::kPartiallyRefunded;
    intent.amounts.amount_minor = 123'456;
    intent.amounts.authorized_minor = 123'456;
    intent.amounts.captured_minor = -7;
    intent.amounts.refunded_minor = INT64_MAX;
    intent.amounts.currency = text.empty() ? "USD" : text;
    for (const std::string& reason : {std::string(), text, std::string("fraud_rejected")}) {
      Json dom = {{"intent_id", intent.id},
                  {"order_id", intent.order_id},
                  {"customer_id", intent.customer_id},
                  {"state", IntentStateName(intent.state)},
                  {"amount_minor", intent.amounts.amount_minor},
                  {"authorized_minor", intent.amounts.authorized_minor},
                  {"captured_minor", intent.amounts.captured_minor},
                  {"refunded_minor", intent.amounts.refunded_minor},
                  {"currency", intent.amounts.currency}};
      if (!reason.empty()) dom["reason"] = reason;
      EXPECT_EQ(IntentEventPayload(intent, reason), DumpJson(dom)) << text << " / " << reason;
    }
  }
}

TEST_F(PaymentsServiceTest, RedeliveredCommandsActOnce) {
  StartService();
  const std::string token = AddCard("cus_1", sandbox::kCardSuccess);
  auto first = service_->Authorize(Command("o1", token));
  auto again = service_->Authorize(Command("o1", token));
  ASSERT_TRUE(first.ok() && again.ok());
  EXPECT_EQ(first->id, again->id);
  EXPECT_EQ(SandboxAuthorizations(), 1);
  for (int i = 0; i < 3; ++i) {
    auto captured = service_->Execute({"cap-1", first->id, "", PspOperation::kCapture, 4'000});
    ASSERT_TRUE(captured.ok()) << captured.status();
    EXPECT_EQ(captured->amounts.captured_minor, 4'000);
  }
  for (int i = 0; i < 3; ++i) {
    auto refunded = service_->Execute({"ref-1", first->id, "", PspOperation::kRefund, 1'000});
    ASSERT_TRUE(refunded.ok()) << refunded.status();
    EXPECT_EQ(refunded->amounts.refunded_minor, 1'000);
  }
  EXPECT_EQ(SandboxNet(), 3'000);
  EXPECT_EQ(Count("SELECT COUNT(DISTINCT transaction_id) FROM ledger_entries"), 2);
}

TEST_F(PaymentsServiceTest, LostResponseChargesExactlyOnceAndEndsAuthorized) {
  StartService();
  const std::string token = AddCard("cus_1", sandbox::kCardLostResponse);
  auto intent = service_->Authorize(Command("o1", token));
  ASSERT_TRUE(intent.ok()) << intent.status();
  EXPECT_EQ(intent->state, IntentState::kAuthorized);
  EXPECT_EQ(SandboxAuthorizations(), 1);
  EXPECT_GE(psp_->calls.load(), 2);  // the lost call and the same-key retry
  EXPECT_EQ(Count("SELECT COUNT(DISTINCT idempotency_key) FROM psp_attempts"), 1);
}

TEST_F(PaymentsServiceTest, DeclinesCarryTheirReason) {
  StartService();
  auto funds =
      service_->Authorize(Command("o1", AddCard("cus_1", sandbox::kCardInsufficientFunds)));
  ASSERT_TRUE(funds.ok()) << funds.status();
  EXPECT_EQ(funds->state, IntentState::kFailed);
  EXPECT_EQ(funds->decline_reason, "insufficient_funds");
  auto stolen = service_->Authorize(Command("o2", AddCard("cus_1", sandbox::kCardStolen)));
  ASSERT_TRUE(stolen.ok());
  EXPECT_EQ(stolen->decline_reason, "stolen_card");
  EXPECT_EQ(Count("SELECT COUNT(*) FROM outbox WHERE type = 'payment.declined'"), 2);
  // A processing error is retried with the same key, then answered as retryable.
  auto broken = service_->Authorize(Command("o3", AddCard("cus_1", sandbox::kCardProcessingError)));
  EXPECT_EQ(broken.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(service_->GetIntent(stolen->id)->state, IntentState::kFailed);
}

TEST_F(PaymentsServiceTest, BreakerOpensFailsFastAndRecovers) {
  ManualClock clock;
  PaymentsOptions options;
  options.clock = &clock;
  options.breaker.request_volume_min = 4;
  options.breaker.open_duration = absl::Seconds(5);
  options.psp_retry.attempt_count_max = 1;
  StartService(options);
  const std::string token = AddCard("cus_1", sandbox::kCardSuccess);
  psp_->down = true;
  for (int i = 0; i < 4; ++i) {
    auto result = service_->Authorize(Command(fmt::format("down-{}", i), token, 100));
    EXPECT_EQ(result.status().code(), absl::StatusCode::kUnavailable);
  }
  EXPECT_EQ(service_->breaker().state(), resilience::BreakerState::kOpen);
  const int calls_before = psp_->calls.load();
  auto fast = service_->Authorize(Command("fast", token, 100));
  EXPECT_EQ(fast.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ErrorCode(fast.status()), "circuit_open");
  EXPECT_EQ(psp_->calls.load(), calls_before);  // nothing reached the PSP
  EXPECT_EQ(SandboxAuthorizations(), 0);
  psp_->down = false;
  clock.Advance(absl::Seconds(6));
  // The same order retried after recovery authorizes with a new attempt group.
  auto recovered = service_->Authorize(Command("fast", token, 100));
  ASSERT_TRUE(recovered.ok()) << recovered.status();
  EXPECT_EQ(recovered->state, IntentState::kAuthorized);
  EXPECT_EQ(service_->breaker().state(), resilience::BreakerState::kClosed);
  EXPECT_EQ(SandboxAuthorizations(), 1);
}

TEST_F(PaymentsServiceTest, BusCommandsAreRecordedAndDrivenBySweep) {
  StartService();
  const std::string token = AddCard("cus_1", sandbox::kCardSuccess);
  bus::Envelope envelope;
  envelope.id = "msg-1";
  envelope.type = "payments.authorize";
  envelope.source = "ordering";
  envelope.key = "o1";
  envelope.payload = DumpJson({{"order_id", "o1"},
                               {"customer_id", "cus_1"},
                               {"payment_method", token},
                               {"amount_minor", 2'000},
                               {"currency", "USD"}});
  for (int i = 0; i < 2; ++i) {  // redelivered
    ASSERT_TRUE(
        db_->Write([&](sql::Transaction& tx) { return service_->HandleBusCommand(tx, envelope); })
            .ok());
  }
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (Count("SELECT COUNT(*) FROM payment_intents WHERE state = 'authorized'") < 1 &&
         std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(Count("SELECT COUNT(*) FROM payment_intents WHERE state = 'authorized'"), 1);
  EXPECT_EQ(SandboxAuthorizations(), 1);
  // Garbage commands are accepted and dropped, never retried forever.
  envelope.id = "msg-2";
  envelope.payload = "not json";
  EXPECT_TRUE(
      db_->Write([&](sql::Transaction& tx) { return service_->HandleBusCommand(tx, envelope); })
          .ok());
}

TEST_F(PaymentsServiceTest, NotificationsAreVerifiedAndDeduplicated) {
  StartService();
  const std::string body = DumpJson({{"id", "evt_1"},
                                     {"type", "authorization.succeeded"},
                                     {"object_id", "auth_x"},
                                     {"data", {{"id", "auth_x"}, {"reference", "nope"}}}});
  const int64_t now_s = absl::ToUnixSeconds(absl::Now());
  const std::string good = sandbox::SignNotification("whsec_test", now_s, body);
  EXPECT_TRUE(service_->HandleNotification(good, body).ok());
  EXPECT_TRUE(service_->HandleNotification(good, body).ok());  // duplicate
  EXPECT_EQ(Count("SELECT COUNT(*) FROM psp_notifications"), 1);
  EXPECT_EQ(
      service_->HandleNotification(sandbox::SignNotification("wrong", now_s, body), body).code(),
      absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(service_->HandleNotification(good, body + " ").code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(
      service_
          ->HandleNotification(sandbox::SignNotification("whsec_test", now_s - 3600, body), body)
          .code(),
      absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(service_->HandleNotification("garbage", body).code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(service_->HandleNotification("t=1,v1=zz", body).code(),
            absl::StatusCode::kUnauthenticated);
  // A late "authorized" after a capture changes nothing.
  const std::string token = AddCard("cus_1", sandbox::kCardSuccess);
  auto intent = service_->Authorize(Command("o1", token));
  ASSERT_TRUE(service_->Execute({"c1", intent->id, "", PspOperation::kCapture, 0}).ok());
  const std::string late =
      DumpJson({{"id", "evt_2"},
                {"type", "authorization.succeeded"},
                {"object_id", intent->psp_authorization_id},
                {"data", {{"id", intent->psp_authorization_id}, {"reference", "o1"}}}});
  EXPECT_TRUE(
      service_->HandleNotification(sandbox::SignNotification("whsec_test", now_s, late), late)
          .ok());
  EXPECT_EQ(service_->GetIntent(intent->id)->state, IntentState::kCaptured);
}

TEST_F(PaymentsServiceTest, FraudReviewParksAndStaffDecide) {
  PaymentsOptions options;
  options.fraud.customer_distinct_cards_max = 1;  // a second card in the window: +40 -> review
  StartService(options);
  auto first =
      service_->Authorize(Command("o1", AddCard("cus_9", sandbox::kCardSuccess), 1'000, "cus_9"));
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->state, IntentState::kAuthorized);
  auto parked =
      service_->Authorize(Command("o2", AddCard("cus_9", "5555555555554444"), 1'000, "cus_9"));
  ASSERT_TRUE(parked.ok()) << parked.status();
  EXPECT_EQ(parked->state, IntentState::kInReview);
  EXPECT_NE(parked->fraud_reasons.find("many_cards_per_customer"), std::string::npos);
  auto reviews = service_->ListReviews(10);
  ASSERT_EQ(reviews->size(), 1u);
  // Other checkouts are not blocked by the parked one.
  auto other =
      service_->Authorize(Command("o3", AddCard("cus_2", sandbox::kCardSuccess), 1'000, "cus_2"));
  EXPECT_EQ(other->state, IntentState::kAuthorized);
  auto approved = service_->DecideReview(parked->id, ReviewDecision::kApprove);
  ASSERT_TRUE(approved.ok()) << approved.status();
  EXPECT_EQ(approved->state, IntentState::kAuthorized);
  EXPECT_EQ(service_->DecideReview(parked->id, ReviewDecision::kReject).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM outbox WHERE type = 'payment.review_required'"), 1);
}

TEST_F(PaymentsServiceTest, GuestVelocityCountsPerEmailOrCardNotOneGuest) {
  PaymentsOptions options;
  options.fraud.customer_distinct_cards_max = 1;  // a second card for one payer: +40 -> review
  StartService(options);
  auto guest_order = [&](const std::string& order, const std::string& owner,
                         const std::string& email) {
    AuthorizeCommand command = Command(order, AddCard(owner, sandbox::kCardSuccess), 1'000, owner);
    command.payer_email = email;
    return service_->Authorize(command);
  };
  // Two different guests, each with their own card: neither is "the guest's second card".
  auto ada = guest_order("g1", "guest", "ada@example.com");
  ASSERT_TRUE(ada.ok()) << ada.status();
  EXPECT_EQ(ada->state, IntentState::kAuthorized);
  EXPECT_EQ(ada->fraud_key, "guest-email:ada@example.com");
  auto bob = guest_order("g2", "guest", "bob@example.com");
  ASSERT_TRUE(bob.ok()) << bob.status();
  EXPECT_EQ(bob->state, IntentState::kAuthorized);
  // Guests without an e-mail are told apart by their card.
  auto anonymous_one = guest_order("g3", "guest-x1", "");
  auto anonymous_two = guest_order("g4", "guest-x1", "");
  ASSERT_TRUE(anonymous_one.ok() && anonymous_two.ok());
  EXPECT_EQ(anonymous_one->state, IntentState::kAuthorized);
  EXPECT_EQ(anonymous_two->state, IntentState::kAuthorized);
  // The same guest e-mail (however spelled) with a new card is one payer with two cards, even
  // under another guest owner id.
  auto ada_again = guest_order("g5", "guest-other", "  ADA@Example.com ");
  ASSERT_TRUE(ada_again.ok()) << ada_again.status();
  EXPECT_EQ(ada_again->state, IntentState::kInReview);
  EXPECT_NE(ada_again->fraud_reasons.find("many_cards_per_customer"), std::string::npos);
}

TEST(FraudKey, CustomersByIdGuestsByEmailThenCard) {
  EXPECT_EQ(FraudKeyFor("cus_1", "ada@example.com", "pm_1"), "cus_1");
  EXPECT_EQ(FraudKeyFor("guest", " Ada@Example.COM\t", "pm_1"), "guest-email:ada@example.com");
  EXPECT_EQ(FraudKeyFor("guest-abc", "", "pm_1"), "guest-card:pm_1");
  EXPECT_EQ(FraudKeyFor("guest", "   ", "pm_2"), "guest-card:pm_2");
  EXPECT_FALSE(IsGuestPayer("guesthouse"));
}

TEST_F(PaymentsServiceTest, StaleAuthorizationsAreVoidedAtThePspAndExpire) {
  ManualClock& clock = manual_clock_;
  PaymentsOptions options;
  options.clock = &clock;
  options.authorization_ttl = absl::Hours(24 * 7);
  StartService(options);
  const std::string token = AddCard("cus_1", sandbox::kCardSuccess);
  auto stale = service_->Authorize(Command("o-stale", token, 2'000));
  auto captured = service_->Authorize(Command("o-captured", token, 3'000));
  ASSERT_TRUE(stale.ok() && captured.ok());
  ASSERT_TRUE(service_->Execute({"cap", captured->id, "", PspOperation::kCapture, 0}).ok());
  clock.Advance(absl::Hours(24 * 2));
  auto fresh = service_->Authorize(Command("o-fresh", token, 1'000));
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  clock.Advance(absl::Hours(24 * 5) - absl::Seconds(1));
  EXPECT_EQ(*service_->ExpireStaleAuthorizations(), 0);  // nothing is older than 7 days yet
  clock.Advance(absl::Seconds(2));
  // The sweep (every 10 ms here) or this call starts the one expiry; never both.
  ASSERT_TRUE(service_->ExpireStaleAuthorizations().ok());
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (service_->GetIntent(stale->id)->state != IntentState::kExpired &&
         std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(service_->GetIntent(stale->id)->state, IntentState::kExpired);
  EXPECT_EQ(service_->GetIntent(fresh->id)->state, IntentState::kAuthorized);
  EXPECT_EQ(service_->GetIntent(captured->id)->state, IntentState::kCaptured);
  EXPECT_EQ(*service_->ExpireStaleAuthorizations(), 0);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM psp_attempts WHERE operation = 'void' AND "
                  "status = 'succeeded'"),
            1);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM outbox WHERE type = 'payment.expired'"), 1);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM outbox WHERE type = 'payment.voided'"), 0);
  // The PSP settled only the captured money.
  EXPECT_EQ(SandboxNet(), 3'000);

  // With the PSP down the void does not reach it: the intent stays authorized, and the expiry
  // is started again only after expiry_retry_after, not on every sweep round.
  auto later = service_->Authorize(Command("o-later", token, 500));
  ASSERT_TRUE(later.ok()) << later.status();
  psp_->down = true;
  clock.Advance(absl::Hours(24 * 7) + absl::Seconds(1));
  ASSERT_TRUE(service_->ExpireStaleAuthorizations().ok());
  const std::string failed_voids = fmt::format(
      "SELECT COUNT(*) FROM psp_attempts WHERE operation = 'void' AND status = 'failed' AND "
      "intent_id = '{}'",
      later->id);
  const auto give_up_down = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (Count(failed_voids) < 1 && std::chrono::steady_clock::now() < give_up_down) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(Count(failed_voids), 1);
  EXPECT_EQ(service_->GetIntent(later->id)->state, IntentState::kAuthorized);
  psp_->down = false;
  EXPECT_EQ(Count(failed_voids), 1);  // no new attempt within the retry delay
  clock.Advance(PaymentsOptions{}.expiry_retry_after + absl::Seconds(1));
  ASSERT_TRUE(service_->ExpireStaleAuthorizations().ok());
  const auto give_up_up = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (service_->GetIntent(later->id)->state != IntentState::kExpired &&
         std::chrono::steady_clock::now() < give_up_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(service_->GetIntent(later->id)->state, IntentState::kExpired);
}

TEST_F(PaymentsServiceTest, MetricsCountAuthorizeOutcomesAndTheBreakerState) {
  obs::MetricsRegistry& metrics = metrics_;
  PaymentsOptions options;
  options.metrics = &metrics;
  options.breaker.request_volume_min = 4;
  options.psp_retry.attempt_count_max = 1;
  StartService(options);
  auto outcome = [&metrics](std::string_view name) {
    return metrics
        .GetCounter("emporium_payments_authorizations_total", "", {{"outcome", std::string(name)}})
        .value();
  };
  ASSERT_TRUE(service_->Authorize(Command("m1", AddCard("cus_1", sandbox::kCardSuccess))).ok());
  ASSERT_TRUE(service_
                  ->Authorize(Command("m2", AddCard("cus_2", sandbox::kCardInsufficientFunds),
                                      1'000, "cus_2"))
                  .ok());
  EXPECT_EQ(outcome("authorized"), 1);
  EXPECT_EQ(outcome("declined"), 1);
  std::string text = metrics.RenderPrometheus();
  EXPECT_NE(text.find("emporium_payments_psp_breaker_state{upstream=\"psp\"} 0"), std::string::npos)
      << text;
  psp_->down = true;
  const std::string token = AddCard("cus_3", sandbox::kCardSuccess);
  for (int i = 0; i < 4; ++i) {
    EXPECT_FALSE(
        service_->Authorize(Command(fmt::format("down-{}", i), token, 1'000, "cus_3")).ok());
  }
  EXPECT_EQ(service_->breaker().state(), resilience::BreakerState::kOpen);
  EXPECT_EQ(outcome("psp_unavailable"), 4);
  text = metrics.RenderPrometheus();
  EXPECT_NE(text.find("emporium_payments_psp_breaker_state{upstream=\"psp\"} 2"), std::string::npos)
      << text;
}

TEST_F(PaymentsServiceTest, RandomizedRunLedgerBalancesAndAgreesWithThePsp) {
  PaymentsOptions options;
  options.fraud.card_attempts_max = 1'000'000;
  options.fraud.customer_attempts_max = 1'000'000;
  StartService(options);
  const std::string token = AddCard("cus_1", sandbox::kCardSuccess);
  std::mt19937_64 random(11);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 local(static_cast<uint64_t>(t) * 7919);
      for (int i = 0; i < 15; ++i) {
        const std::string order = fmt::format("o-{}-{}", t, i);
        const int64_t amount = static_cast<int64_t>(local() % 5'000) + 100;
        auto intent = service_->Authorize(Command(order, token, amount));
        if (!intent.ok() || intent->state != IntentState::kAuthorized) continue;
        if (local() % 4 == 0) {
          (void)service_->Execute({order + "-v", intent->id, "", PspOperation::kVoid, 0});
          continue;
        }
        const int64_t capture = static_cast<int64_t>(local() % amount) + 1;
        if (!service_->Execute({order + "-c", intent->id, "", PspOperation::kCapture, capture})
                 .ok()) {
          continue;
        }
        for (int r = 0; r < 3; ++r) {
          const int64_t refund = static_cast<int64_t>(local() % capture) + 1;
          // Over-refunds are refused; the rest must add up.
          (void)service_->Execute(
              {fmt::format("{}-r{}", order, r), intent->id, "", PspOperation::kRefund, refund});
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  std::vector<StoredLedgerEntry> ledger;
  ASSERT_TRUE(db_->Read([&](sql::Transaction& tx) -> absl::Status {
                   auto rows = LoadLedger(tx);
                   if (!rows.ok()) return rows.status();
                   ledger = std::move(*rows);
                   return absl::OkStatus();
                 })
                  .ok());
  std::map<std::string, std::vector<LedgerEntry>> by_transaction;
  std::vector<LedgerEntry> all;
  for (const StoredLedgerEntry& row : ledger) {
    by_transaction[row.transaction_id].push_back(row.entry);
    all.push_back(row.entry);
  }
  ASSERT_FALSE(by_transaction.empty());
  for (const auto& [id, entries] : by_transaction) {
    EXPECT_TRUE(ValidateBalanced(entries).ok()) << id;
  }
  EXPECT_EQ(*DebitBalance(all, LedgerAccount::kPspClearing), SandboxNet());
  EXPECT_EQ(Count("SELECT COUNT(*) FROM payment_intents WHERE refunded_minor > captured_minor"), 0);
  EXPECT_EQ(Count("SELECT COALESCE(SUM(captured_minor - refunded_minor), 0) FROM "
                  "payment_intents"),
            SandboxNet());
}

TEST_F(PaymentsServiceTest, NoCardNumberAnywhereButTheVaultCiphertext) {
  StartService();
  const std::vector<std::string> cards = {sandbox::kCardSuccess, sandbox::kCardLostResponse,
                                          sandbox::kCardStolen, "5555555555554444"};
  int order = 0;
  for (const std::string& card : cards) {
    auto intent = service_->Authorize(Command(fmt::format("o{}", order++), AddCard("cus_1", card)));
    ASSERT_TRUE(intent.ok()) << intent.status();
    if (intent->state == IntentState::kAuthorized) {
      ASSERT_TRUE(
          service_->Execute({fmt::format("c{}", order), intent->id, "", PspOperation::kCapture, 0})
              .ok());
    }
  }
  // Hostile input: a bad card's number must not come back in the error.
  auto bad = service_->AddPaymentMethod("cus_1", {"4242424242424241", 12, 2035, "123", "Ada"});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(std::string(bad.status().ToString()).find("424242"), std::string::npos);
  service_->Stop();
  db_->Close();
  for (const char* suffix : {"", "-wal"}) {
    std::ifstream file(dir_.File("payments.db") + suffix, std::ios::binary);
    if (!file) continue;
    std::stringstream bytes;
    bytes << file.rdbuf();
    for (const std::string& card : cards) {
      EXPECT_EQ(bytes.str().find(card), std::string::npos) << card << suffix;
    }
  }
}

// The replay record of an HTTP Idempotency-Key commits in the transaction that makes the change
// it answers: a failure (crash) in either transaction leaves neither half behind, and the
// recovery sweep that settles an interrupted attempt also writes its key's answer.
TEST_F(PaymentsServiceTest, HttpKeyRecordCommitsWithTheChangeItAnswers) {
  // Held by the fixture: the service (and its sweep) is stopped in TearDown, after this body.
  faulty_ = std::make_unique<FaultyDatabase>(*db_);
  FaultyDatabase& faulty = *faulty_;
  StartServiceOn(faulty);
  const std::string token = AddCard("cus_1", sandbox::kCardSuccess);
  const HttpIdempotency http{"key-1", "hash-1", HttpAnswerKind::kAuthorize};

  // Step 1 fails: no intent, no attempt, no record.
  faulty.fail_write = faulty.writes.load() + 1;
  HttpCommandAnswer failed = AuthorizeHttp(Command("o-http", token), http);
  EXPECT_EQ(failed.claim, HttpKeyClaim::kClaimed);
  EXPECT_FALSE(failed.result.ok());
  EXPECT_EQ(Count("SELECT COUNT(*) FROM payment_intents"), 0);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM psp_attempts"), 0);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM http_idempotency"), 0);

  // Step 1 commits (intent, attempt, key in progress); the settling transaction fails after the
  // PSP charged: the caller learns nothing final, and the key stays in progress beside the
  // pending attempt until the sweep settles both at once.
  faulty.fail_write = faulty.writes.load() + 2;
  HttpCommandAnswer interrupted = AuthorizeHttp(Command("o-http", token), http);
  EXPECT_EQ(interrupted.claim, HttpKeyClaim::kClaimed);
  EXPECT_FALSE(interrupted.result.ok());
  bool settled = false;
  EXPECT_TRUE(testing::WaitFor([&] {
    std::optional<std::pair<std::string, int64_t>> row = KeyAndAttempt("key-1");
    if (!row.has_value()) {
      ADD_FAILURE() << "an attempt without its key's record";
      return true;
    }
    // Every snapshot pairs them: pending with in progress, or succeeded with the answer.
    const bool pending = row->first == "pending" && row->second == 0;
    settled = row->first == "succeeded" && row->second == 201;
    EXPECT_TRUE(pending || settled) << row->first << " " << row->second;
    return settled;
  }));
  ASSERT_TRUE(settled);
  EXPECT_EQ(SandboxAuthorizations(), 1);  // the sweep re-sent the same PSP key

  // The same key replays the stored answer: the rendering of the intent as it stands.
  HttpCommandAnswer replay = AuthorizeHttp(Command("o-http", token), http);
  ASSERT_EQ(replay.claim, HttpKeyClaim::kReplay);
  EXPECT_EQ(replay.stored.status, 201);
  absl::StatusOr<IntentRecord> intent =
      service_->GetIntent(ParseJson(replay.stored.body)->value("id", std::string()));
  ASSERT_TRUE(intent.ok()) << intent.status();
  EXPECT_EQ(intent->state, IntentState::kAuthorized);
  EXPECT_EQ(replay.stored.body, AuthorizeAnswer(*intent).body);
  // Another request under the key is refused; nothing ran.
  HttpCommandAnswer other =
      AuthorizeHttp(Command("o-http", token), {"key-1", "hash-2", HttpAnswerKind::kAuthorize});
  EXPECT_EQ(other.claim, HttpKeyClaim::kMismatch);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM psp_attempts"), 1);
}

// An answer that is not final (the PSP unavailable) is forgotten in the transaction that marks
// the attempt failed, so the same key runs again, and then records its answer.
TEST_F(PaymentsServiceTest, HttpKeyOfAnUnavailablePspIsForgottenWithTheFailedAttempt) {
  StartService();
  const std::string token = AddCard("cus_1", sandbox::kCardSuccess);
  const HttpIdempotency http{"key-down", "hash-1", HttpAnswerKind::kAuthorize};
  psp_->down = true;
  HttpCommandAnswer down = AuthorizeHttp(Command("o-http", token), http);
  EXPECT_EQ(down.claim, HttpKeyClaim::kClaimed);
  EXPECT_EQ(down.result.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM psp_attempts WHERE status = 'failed'"), 1);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM http_idempotency"), 0);
  psp_->down = false;
  HttpCommandAnswer retried = AuthorizeHttp(Command("o-http", token), http);
  ASSERT_EQ(retried.claim, HttpKeyClaim::kClaimed);
  ASSERT_TRUE(retried.result.ok()) << retried.result.status();
  EXPECT_EQ(retried.result->state, IntentState::kAuthorized);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM http_idempotency WHERE status = 201"), 1);
  EXPECT_EQ(AuthorizeHttp(Command("o-http", token), http).claim, HttpKeyClaim::kReplay);
}

// A command answered in step 1 (fraud review) stores its answer in that same transaction.
TEST_F(PaymentsServiceTest, HttpKeyOfAReviewIsStoredWithTheReview) {
  PaymentsOptions options;
  options.fraud.first_purchase_amount_minor_max = 1'000;  // a large first purchase: +30
  options.fraud.review_score_min = 30;
  StartService(options);
  const std::string token = AddCard("cus_1", sandbox::kCardSuccess);
  HttpCommandAnswer review = AuthorizeHttp(Command("o-http", token, 50'000),
                                           {"key-review", "hash-1", HttpAnswerKind::kAuthorize});
  ASSERT_TRUE(review.result.ok()) << review.result.status();
  EXPECT_EQ(review.result->state, IntentState::kInReview);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM http_idempotency WHERE status = 202 AND attempt_key IS "
                  "NULL"),
            1);
  EXPECT_EQ(Count("SELECT COUNT(*) FROM psp_attempts"), 0);
  EXPECT_EQ(SandboxAuthorizations(), 0);
}

}  // namespace
}  // namespace emporium::payments
