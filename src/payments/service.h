// The payments application service: one ACID transaction per state change in the payments
// database, and PSP calls strictly outside any transaction.
//
// Every command (HTTP or bus) runs in three steps:
//   1. a write transaction records the command (de-duplicated by command id), screens fraud
//      and records a PSP attempt: state `pending` plus the idempotency key for the PSP call,
//      PspIdempotencyKey(intent, operation, attempt group);
//   2. a worker (bounded by a Bulkhead, guarded by a CircuitBreaker) calls the PSP with that
//      key, retrying with the SAME key on Unavailable / outcome-unknown (bounded backoff);
//   3. a second write transaction stores the outcome, the intent's new state, the balanced
//      ledger entries and the outbox event.
// An attempt whose outcome stays unknown keeps status `unknown`; the recovery sweep (on Start
// and periodically) re-drives pending and unknown attempts with the same key, so the PSP
// returns its stored result and nothing is charged twice.
//
// Thread-safety: all public methods are thread-safe. Start/Stop from the owner thread.
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/clock.h"
#include "common/ids.h"
#include "payments/answers.h"
#include "payments/model.h"
#include "payments/psp_client.h"
#include "payments/store.h"
#include "payments/vault.h"
#include "platform/bus/envelope.h"
#include "platform/resilience/bulkhead.h"
#include "platform/resilience/circuit_breaker.h"
#include "platform/resilience/retry.h"
#include "platform/sql/database.h"

namespace emporium::obs {
class Counter;
class MetricsRegistry;
}  // namespace emporium::obs

namespace emporium::payments {

struct PaymentsOptions {
  int worker_count = 16;        // threads calling the PSP (the bulkhead's concurrency)
  int worker_queue_max = 4096;  // attempts waiting for a worker; beyond: ResourceExhausted
  resilience::CircuitBreakerOptions breaker;
  resilience::RetryPolicy psp_retry{.attempt_count_max = 3,
                                    .backoff_initial = absl::Milliseconds(20),
                                    .backoff_max = absl::Milliseconds(500),
                                    .multiplier = 2.0};
  absl::Duration command_timeout = absl::Seconds(20);  // a blocking caller waits this long
  absl::Duration sweep_interval = absl::Milliseconds(50);
  absl::Duration unknown_retry_after = absl::Seconds(1);  // an unknown attempt is re-driven then
  int64_t sweep_batch_max = 256;
  absl::Duration http_claim_stale = absl::Minutes(2);  // > command_timeout
  FraudRules fraud;
  absl::Duration fraud_window = absl::Hours(1);
  // Authorized-but-uncaptured intents older than this are voided at the PSP and marked
  // expired by the sweep (config payments.authorization_ttl). Zero disables expiry.
  absl::Duration authorization_ttl = absl::Hours(24 * 7);
  int64_t expiry_batch_max = 100;  // intents expired per sweep round
  // An expiry whose void did not reach the PSP is started again after this long, not on
  // every sweep round.
  absl::Duration expiry_retry_after = absl::Minutes(1);
  // PSP notifications: HMAC secret and the accepted clock skew.
  std::string notification_secret;
  absl::Duration notification_tolerance = absl::Minutes(5);
  const Clock* clock = &SystemClock::Instance();
  // Where the service reports (null: nowhere; must outlive the service):
  //   emporium_payments_psp_breaker_state  gauge, 0 closed, 1 half-open, 2 open;
  //   emporium_payments_authorizations_total{outcome}  counter, one per settled authorize:
  //     authorized, declined, review, fraud_rejected, outcome_unknown, psp_unavailable.
  obs::MetricsRegistry* metrics = nullptr;
};

// The authorize outcomes counted in emporium_payments_authorizations_total.
enum class AuthorizeOutcome {
  kAuthorized,
  kDeclined,
  kReview,
  kFraudRejected,
  kOutcomeUnknown,
  kPspUnavailable,
};
inline constexpr size_t kAuthorizeOutcomeCount = 6;
std::string_view AuthorizeOutcomeName(AuthorizeOutcome outcome);

struct AuthorizeCommand {
  std::string command_id;  // de-duplication key (bus message id, "http:<Idempotency-Key>")
  std::string order_id;
  std::string customer_id;
  std::string payment_method;  // vault token
  int64_t amount_minor = 0;
  std::string currency;
  std::string billing_country;
  std::string shipping_country;
  std::string client_ip;
  // A guest's e-mail, for fraud velocity (FraudKeyFor); optional, ignored for customers.
  std::string payer_email;
};

struct IntentCommand {
  std::string command_id;
  std::string intent_id;  // or empty with order_id set
  std::string order_id;
  PspOperation operation = PspOperation::kCapture;  // capture, void or refund
  int64_t amount_minor = 0;  // capture: 0 = the full authorization; refund: required
};

enum class ReviewDecision { kApprove, kReject };

// The Idempotency-Key of an HTTP command, checked in the transaction that runs the command.
enum class HttpKeyClaim {
  kClaimed,     // new (or abandoned): the command ran; its result is the answer
  kReplay,      // finished before with the same request: answer `stored`
  kMismatch,    // used before with another request: 422
  kInProgress,  // the same request is running now: 409
};
struct HttpKeyState {
  HttpKeyClaim claim = HttpKeyClaim::kClaimed;
  StoredHttpResponse stored;  // for kReplay
};

// An HTTP command's Idempotency-Key: the key, a hash of what identifies the request, and how
// its answer is rendered (answers.h).
struct HttpIdempotency {
  std::string key;
  std::string request_hash;
  HttpAnswerKind kind = HttpAnswerKind::kAuthorize;
};

// What an HTTP command gets: with kClaimed the command ran and `result` is its outcome (the
// answer to render); otherwise the key's earlier state, and nothing ran.
struct HttpCommandAnswer {
  HttpKeyClaim claim = HttpKeyClaim::kClaimed;
  StoredHttpResponse stored;  // for kReplay
  absl::StatusOr<IntentRecord> result = absl::UnknownError("unset");
};
using HttpCommandCallback = std::function<void(HttpCommandAnswer)>;

using IntentCallback = std::function<void(absl::StatusOr<IntentRecord>)>;

// The payload of the payment.* events: the bytes DumpJson writes for the JSON object
// {intent_id, order_id, customer_id, state, amount_minor, authorized_minor, captured_minor,
// refunded_minor, currency, reason (when not empty)}, written without a DOM.
std::string IntentEventPayload(const IntentRecord& intent, std::string_view reason);

class PaymentsService {
 public:
  // `db` (migrations applied, bus schema installed), `psp` must outlive the service.
  PaymentsService(sql::Database& db, Vault vault, PspClient& psp, PaymentsOptions options);
  ~PaymentsService();  // Stop()s
  PaymentsService(const PaymentsService&) = delete;
  PaymentsService& operator=(const PaymentsService&) = delete;

  // Starts the workers and the recovery sweep (which first re-drives every open attempt).
  void Start();
  void Stop();

  // Stores a validated card in the vault. InvalidParam for a bad card (never echoing it).
  absl::StatusOr<PaymentMethod> AddPaymentMethod(const std::string& customer_id,
                                                 const CardInput& card);

  // The public view of a stored card; NotFound when unknown.
  absl::StatusOr<PaymentMethod> GetPaymentMethod(const std::string& token);

  // Blocking commands: return the intent after the PSP outcome is stored. Errors:
  // InvalidArgument / NotFound / FailedPrecondition (illegal transition, code names it),
  // Unavailable with code "circuit_open" / "psp_unavailable" (retryable, nothing charged) or
  // "outcome_unknown" (the sweep will settle it).
  absl::StatusOr<IntentRecord> Authorize(const AuthorizeCommand& command);
  absl::StatusOr<IntentRecord> Execute(const IntentCommand& command);
  // The same, answering through `done` instead of blocking. `done` runs where the outcome
  // becomes durable: usually on the payments database's writer thread right after the commit
  // (so no thread is woken only to pass the answer on), else on a worker or the caller's
  // thread. It must be quick and must not wait on the payments database (a Write() from the
  // writer thread fails with FailedPrecondition); hand slow work to another thread.
  void AuthorizeAsync(const AuthorizeCommand& command, IntentCallback done);
  void ExecuteAsync(const IntentCommand& command, IntentCallback done);

  // Staff decision on an intent in review: approve sends it to the PSP, reject fails it.
  absl::StatusOr<IntentRecord> DecideReview(const std::string& intent_id, ReviewDecision decision);
  absl::StatusOr<std::vector<IntentRecord>> ListReviews(int64_t limit);
  absl::StatusOr<IntentRecord> GetIntent(const std::string& intent_id);

  // Bus: records a command (payments.authorize / capture / void / refund) in the caller's
  // write transaction (the consumer's, with the inbox row); the sweep picks it up after commit.
  absl::Status HandleBusCommand(sql::Transaction& tx, const bus::Envelope& envelope);

  // A PSP notification: verifies the signature header and timestamp, de-duplicates by event id
  // and settles a pending/unknown authorization it proves. Unauthenticated for a bad signature.
  absl::Status HandleNotification(const std::string& signature_header, const std::string& body);

  // AuthorizeAsync / ExecuteAsync under an HTTP Idempotency-Key (the http_idempotency table).
  // The key is checked, and its record written, in the same transaction as the command's
  // change, so neither can commit without the other:
  //  - a command answered at once (fraud review or rejection, a redelivery, an intent that is
  //    past the step) stores its rendered answer in that transaction;
  //  - a command handed to a PSP attempt stores the key as in progress, linked to the attempt;
  //    the attempt's settling transaction (step 3, also when the sweep settles it after a crash)
  //    stores the rendered answer, or forgets the key when the answer is not replayable (5xx);
  //  - a refused command (bad input, illegal transition) rolls back and records nothing.
  // An in-progress key older than `http_claim_stale` is taken as abandoned and runs again.
  // `done` runs as AuthorizeAsync's does (quick, never waiting on the payments database).
  void AuthorizeHttp(const AuthorizeCommand& command, const HttpIdempotency& http,
                     HttpCommandCallback done);
  void ExecuteHttp(const IntentCommand& command, const HttpIdempotency& http,
                   HttpCommandCallback done);

  // Runs `task` on the service's API executor (HTTP handlers must not block io threads).
  // ResourceExhausted when the executor's queue is full.
  absl::Status RunAsync(std::function<void()> task);

  // One round of the authorization expiry (the sweep runs it every sweep_interval): each
  // authorized intent whose authorization is older than authorization_ttl by the Clock gets an
  // expiry command ("expire:<intent id>") and a void attempt with its own idempotency key, in
  // one transaction; the workers void it at the PSP, and the outcome marks the intent expired
  // (payment.expired) instead of voided. A PSP that refuses the void (the authorization lapsed
  // there already) also ends expired. Returns how many expiries this round started; at most
  // expiry_batch_max. Safe to run concurrently with the sweep (a started expiry is not
  // started twice).
  absl::StatusOr<int64_t> ExpireStaleAuthorizations();

  resilience::CircuitBreaker& breaker() { return breaker_; }
  Vault& vault() { return vault_; }

 private:
  // What step 1 of a new authorization already holds: the attempt and intent as committed and
  // the revealed card, so the attempt is driven without reading them back (the card is zeroed
  // when this is destroyed).
  struct Preloaded;
  struct Job {
    std::string attempt_key;
    std::unique_ptr<Preloaded> preloaded;  // null: read the attempt from the store
  };
  struct Prepared;
  // Attempts recorded by bus commands inside a write job, handed to the workers by a commit
  // listener once their batch is durable (shared: the Database keeps the listener forever).
  struct CommittedAttempts;
  void NoteBusAttempt(const std::optional<std::string>& attempt_key);

  // Screens and records a new authorization (or finds the order's intent) inside `tx`, the
  // writer's transaction: the fraud history it counts includes every authorization committed or
  // earlier in the same batch, so a burst on one card cannot slip past the velocity rules.
  absl::StatusOr<Prepared> PrepareAuthorize(sql::Transaction& tx, const AuthorizeCommand& c);
  absl::StatusOr<Prepared> PrepareIntentCommand(sql::Transaction& tx, const IntentCommand& c);
  // The earlier state of `http`'s key, read in `tx` (kClaimed: the command may run).
  absl::StatusOr<HttpKeyState> CheckHttpKey(sql::Transaction& tx, const HttpIdempotency& http);
  // After the command's step 1 in `tx`: links the key to the attempt, or stores the answer.
  absl::Status RecordHttpKey(sql::Transaction& tx, const HttpIdempotency& http,
                             const Prepared& prepared);
  // In an attempt's settling transaction: answers (or forgets) every key waiting on it.
  absl::Status AnswerHttpKeys(sql::Transaction& tx, const std::string& attempt_key,
                              const absl::StatusOr<IntentRecord>& answer);
  // Step 1 of an authorization (fraud history read first, then the write), optionally under
  // an HTTP key; `key_state` (when given) receives the key's state.
  // Step 1 of an authorization submitted to the writer (the fraud history and card are read
  // on the caller's thread first); `then` gets the key's state and the outcome on the writer
  // thread once the batch is durable (or on the caller's thread when the write is refused).
  // Null `http`: no HTTP key.
  using PreparedCallback = std::function<void(const HttpKeyState&, absl::StatusOr<Prepared>)>;
  void SubmitAuthorize(const AuthorizeCommand& command, const HttpIdempotency* http,
                       PreparedCallback then);
  absl::StatusOr<Prepared> WriteIntentCommand(const IntentCommand& command,
                                              const HttpIdempotency* http, HttpKeyState* key_state);
  void DispatchHttp(const HttpKeyState& key_state, absl::StatusOr<Prepared> prepared,
                    HttpCommandCallback done);
  // `known_group`: the attempt group when the caller knows it (a new intent: 1); nullopt
  // reads the next one from the store.
  absl::StatusOr<AttemptRecord> NewAttempt(sql::Transaction& tx, const IntentRecord& intent,
                                           PspOperation operation, int64_t amount_minor,
                                           std::optional<int64_t> known_group = std::nullopt);
  void Dispatch(absl::StatusOr<Prepared> prepared, IntentCallback done);
  void Enqueue(const std::string& attempt_key, IntentCallback done,
               std::unique_ptr<Preloaded> preloaded = nullptr);
  void WorkerLoop();
  void SweepLoop();
  // Step 2 and 3 of an attempt; `settled` gets the outcome once it is durable: on the worker
  // when nothing was written, else on the writer thread after step 3's commit.
  using SettledCallback = std::function<void(absl::StatusOr<IntentRecord>)>;
  void ProcessAttempt(const std::string& attempt_key, std::unique_ptr<Preloaded> preloaded,
                      SettledCallback settled);
  // Hands an attempt's outcome to everyone waiting on it and releases its claim.
  void FinishAttempt(const std::string& attempt_key, absl::StatusOr<IntentRecord> result);
  // `card_number`: the revealed card for an authorization (empty otherwise).
  absl::StatusOr<PspResult> CallPsp(const AttemptRecord& attempt, const IntentRecord& intent,
                                    const std::string& card_number, bool& outcome_unknown);
  // Step 3, submitted to the writer without waiting for it: the worker is free for the next
  // attempt while the batch commits, and `settled` runs on the writer thread.
  void StoreOutcome(const AttemptRecord& attempt, absl::StatusOr<PspResult> result,
                    bool outcome_unknown, SettledCallback settled);
  // Every SubmitWrite of the service counts itself in `async_writes_` until its WriteDone
  // returns, so Stop() and the destructor can wait for the callbacks that still refer to the
  // service. TryBeginAsyncWrite refuses (false) once the service is not running: a new command
  // is not started then. BeginAsyncWrite always counts (a worker recording a PSP answer
  // while Stop() joins it). AsyncWriteEnd ends the count however its WriteDone leaves.
  bool TryBeginAsyncWrite();
  void BeginAsyncWrite();
  void EndAsyncWrite();
  void AwaitAsyncWrites();
  struct AsyncWriteEnd {
    PaymentsService* service;
    ~AsyncWriteEnd() { service->EndAsyncWrite(); }
  };
  absl::Status PublishEvent(sql::Transaction& tx, std::string_view type, const IntentRecord& intent,
                            const std::string& reason);
  absl::StatusOr<IntentRecord> Wait(std::function<void(IntentCallback)> start);
  void CountAuthorize(AuthorizeOutcome outcome);

  sql::Database& db_;
  Vault vault_;
  PspClient& psp_;
  const PaymentsOptions options_;
  const Clock& clock_;
  UuidV7Generator ids_;
  resilience::CircuitBreaker breaker_;
  resilience::Bulkhead bulkhead_;
  resilience::Retrier retrier_;
  // Per AuthorizeOutcome; null without a metrics registry.
  std::array<obs::Counter*, kAuthorizeOutcomeCount> authorize_counters_{};
  int64_t breaker_gauge_id_ = -1;

  std::mutex mutex_;
  std::condition_variable wake_;        // workers: a job was queued (or stopping)
  std::condition_variable sweep_wake_;  // the sweep: stopping
  std::deque<Job> queue_;
  std::set<std::string> claimed_;
  std::map<std::string, std::vector<IntentCallback>> waiters_;
  std::vector<std::thread> workers_;
  std::thread sweeper_;
  std::atomic<bool> running_{false};
  std::shared_ptr<CommittedAttempts> committed_attempts_;
  int64_t async_writes_ = 0;                   // guarded by mutex_
  std::condition_variable async_writes_done_;  // async_writes_ dropped to 0

  std::mutex api_mutex_;
  std::condition_variable api_wake_;
  std::deque<std::function<void()>> api_queue_;
  std::vector<std::thread> api_threads_;
};

}  // namespace emporium::payments
