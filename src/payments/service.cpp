#include "payments/service.h"

#include <sodium.h>

#include <future>
#include <utility>

#include "common/errors.h"
#include "common/format.h"
#include "common/json.h"
#include "common/status_macros.h"
#include "common/thread_name.h"
#include "fmt/format.h"
#include "platform/bus/outbox.h"
#include "platform/obs/log.h"
#include "platform/obs/metrics.h"
#include "platform/resilience/deadline.h"

namespace emporium::payments {
namespace {

constexpr int kApiThreadCount = 8;
constexpr size_t kApiQueueMax = 4096;
constexpr size_t kReasonCharsMax = 200;
constexpr size_t kIdCharsMax = 128;

absl::Status Coded(absl::Status status, std::string_view code) {
  return WithErrorCode(std::move(status), code);
}

// Retries only what cannot have double effects under the same key: not sent, or unknown.
bool RetryablePspStatus(const absl::Status& status) {
  if (ErrorCode(status) == "circuit_open") return false;  // fail fast while the PSP is down
  return status.code() == absl::StatusCode::kUnavailable ||
         status.code() == absl::StatusCode::kDeadlineExceeded ||
         status.code() == absl::StatusCode::kUnknown;
}

bool OutcomeUnknown(const absl::Status& status) {
  return status.code() == absl::StatusCode::kDeadlineExceeded ||
         status.code() == absl::StatusCode::kUnknown;
}

std::string Join(const std::vector<std::string>& parts) {
  std::string out;
  for (const std::string& part : parts) {
    if (!out.empty()) out += ",";
    out += part;
  }
  return out;
}

absl::Status IllegalTransition(const IntentRecord& intent, PspOperation operation,
                               TransitionOutcome outcome) {
  return Coded(absl::FailedPreconditionError(fmt::format(
                   "cannot {} a payment intent that is {} ({})", PspOperationName(operation),
                   IntentStateName(intent.state), TransitionOutcomeName(outcome))),
               TransitionOutcomeName(outcome));
}

IntentEventKind EventFor(PspOperation operation) {
  switch (operation) {
    case PspOperation::kAuthorize:
      return IntentEventKind::kAuthorizeSucceeded;
    case PspOperation::kCapture:
      return IntentEventKind::kCapture;
    case PspOperation::kVoid:
      return IntentEventKind::kVoid;
    case PspOperation::kRefund:
      return IntentEventKind::kRefund;
  }
  std::abort();
}

// The command that marks a void as the authorization expiry's.
std::string ExpiryCommandId(const std::string& intent_id) { return "expire:" + intent_id; }

std::string_view EventTypeFor(PspOperation operation) {
  switch (operation) {
    case PspOperation::kAuthorize:
      return "payment.authorized";
    case PspOperation::kCapture:
      return "payment.captured";
    case PspOperation::kVoid:
      return "payment.voided";
    case PspOperation::kRefund:
      return "payment.refunded";
  }
  std::abort();
}

}  // namespace

std::string_view AuthorizeOutcomeName(AuthorizeOutcome outcome) {
  switch (outcome) {
    case AuthorizeOutcome::kAuthorized:
      return "authorized";
    case AuthorizeOutcome::kDeclined:
      return "declined";
    case AuthorizeOutcome::kReview:
      return "review";
    case AuthorizeOutcome::kFraudRejected:
      return "fraud_rejected";
    case AuthorizeOutcome::kOutcomeUnknown:
      return "outcome_unknown";
    case AuthorizeOutcome::kPspUnavailable:
      return "psp_unavailable";
  }
  return "unknown";  // unreachable: the switch is exhaustive
}

struct PaymentsService::Preloaded {
  Preloaded(AttemptRecord a, IntentRecord i) : attempt(std::move(a)), intent(std::move(i)) {}
  Preloaded(const Preloaded&) = delete;
  Preloaded& operator=(const Preloaded&) = delete;
  ~Preloaded() { sodium_memzero(card_number.data(), card_number.size()); }

  AttemptRecord attempt;
  IntentRecord intent;
  std::string card_number;
};

// What step 1 produced: the intent, and the attempt to drive (if any).
struct PaymentsService::Prepared {
  IntentRecord intent;
  std::optional<std::string> attempt_key;
  std::unique_ptr<Preloaded> preloaded;  // a new authorization's attempt, as committed
};

// Attempt keys noted by bus-command jobs of the batch being written; more than this many
// waiting for a commit (commits failing) are left to the recovery sweep.
constexpr size_t kBusAttemptsPendingMax = 65536;

struct PaymentsService::CommittedAttempts {
  std::mutex mutex;
  PaymentsService* service = nullptr;  // null once the service is being destroyed
  std::vector<std::string> touched;
};

PaymentsService::PaymentsService(sql::Database& db, Vault vault, PspClient& psp,
                                 PaymentsOptions options)
    : db_(db),
      vault_(std::move(vault)),
      psp_(psp),
      options_(std::move(options)),
      clock_(*options_.clock),
      ids_(clock_),
      breaker_("psp", options_.breaker, clock_),
      bulkhead_("psp", {.concurrent_count_max = std::max(1, options_.worker_count),
                        .queue_count_max = options_.worker_queue_max}),
      retrier_({.policy = options_.psp_retry, .retryable = RetryablePspStatus},
               resilience::SystemSleeper::Instance()),
      committed_attempts_(std::make_shared<CommittedAttempts>()) {
  committed_attempts_->service = this;
  // A bus command's attempt is driven as soon as the batch that recorded it is durable,
  // instead of waiting for the next sweep round. Keys noted by a job whose batch failed are
  // handed over at the next commit and find no attempt (ProcessAttempt: NotFound, harmless).
  std::weak_ptr<CommittedAttempts> weak = committed_attempts_;
  db_.AddCommitListener([weak] {
    std::shared_ptr<CommittedAttempts> shared = weak.lock();
    if (!shared) return;
    std::lock_guard<std::mutex> lock(shared->mutex);
    if (shared->service == nullptr || shared->touched.empty()) return;
    std::vector<std::string> keys;
    keys.swap(shared->touched);
    for (const std::string& key : keys) shared->service->Enqueue(key, nullptr);
  });
  if (options_.metrics != nullptr) {
    for (size_t i = 0; i < kAuthorizeOutcomeCount; ++i) {
      authorize_counters_[i] = &options_.metrics->GetCounter(
          "emporium_payments_authorizations_total", "Payment authorizations settled, by outcome.",
          {{"outcome", std::string(AuthorizeOutcomeName(static_cast<AuthorizeOutcome>(i)))}});
    }
    breaker_gauge_id_ = options_.metrics->AddCallbackGauge(
        "emporium_payments_psp_breaker_state",
        "The PSP circuit breaker: 0 closed, 1 half-open, 2 open.", {{"upstream", "psp"}},
        [this]() -> int64_t {
          switch (breaker_.state()) {
            case resilience::BreakerState::kClosed:
              return 0;
            case resilience::BreakerState::kHalfOpen:
              return 1;
            case resilience::BreakerState::kOpen:
              return 2;
          }
          return -1;
        });
  }
}

PaymentsService::~PaymentsService() {
  {
    std::lock_guard<std::mutex> lock(committed_attempts_->mutex);
    committed_attempts_->service = nullptr;
  }
  Stop();
  // Stop() returns at once for a service that was never started; a write it submitted may
  // still be about to call back.
  AwaitAsyncWrites();
  if (options_.metrics != nullptr && breaker_gauge_id_ >= 0) {
    options_.metrics->RemoveCallbackGauge(breaker_gauge_id_);
  }
}

void PaymentsService::CountAuthorize(AuthorizeOutcome outcome) {
  obs::Counter* counter = authorize_counters_[static_cast<size_t>(outcome)];
  if (counter != nullptr) counter->Increment();
}

void PaymentsService::Start() {
  if (running_.exchange(true)) return;
  for (int i = 0; i < std::max(1, options_.worker_count); ++i) {
    workers_.emplace_back([this] {
      SetCurrentThreadName("pay-worker");
      WorkerLoop();
    });
  }
  for (int i = 0; i < kApiThreadCount; ++i) {
    api_threads_.emplace_back([this] {
      SetCurrentThreadName("pay-api");
      std::unique_lock<std::mutex> lock(api_mutex_);
      while (true) {
        api_wake_.wait(lock, [this] { return !api_queue_.empty() || !running_.load(); });
        if (api_queue_.empty()) return;
        std::function<void()> task = std::move(api_queue_.front());
        api_queue_.pop_front();
        lock.unlock();
        task();
        lock.lock();
      }
    });
  }
  sweeper_ = std::thread([this] {
    SetCurrentThreadName("pay-sweep");
    SweepLoop();
  });
}

void PaymentsService::Stop() {
  if (!running_.exchange(false)) return;
  // Through each mutex once, so a thread that saw running_ true under it is waiting by now
  // and hears the notification (else it could wait out its whole timeout, or forever).
  { std::lock_guard<std::mutex> lock(mutex_); }
  { std::lock_guard<std::mutex> lock(api_mutex_); }
  wake_.notify_all();
  sweep_wake_.notify_all();
  api_wake_.notify_all();
  if (sweeper_.joinable()) sweeper_.join();
  for (std::thread& thread : workers_) thread.join();
  for (std::thread& thread : api_threads_) thread.join();
  workers_.clear();
  api_threads_.clear();
  // Anyone still waiting learns the service stopped; their attempts stay open for the sweep.
  std::map<std::string, std::vector<IntentCallback>> waiters;
  // Submitted writes still call back into the service.
  AwaitAsyncWrites();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    waiters.swap(waiters_);
    queue_.clear();
    claimed_.clear();
  }
  for (auto& [key, callbacks] : waiters) {
    for (IntentCallback& callback : callbacks) {
      callback(Coded(absl::UnavailableError("payments is stopping"), "outcome_unknown"));
    }
  }
}

absl::Status PaymentsService::RunAsync(std::function<void()> task) {
  {
    std::lock_guard<std::mutex> lock(api_mutex_);
    if (!running_.load()) return absl::UnavailableError("payments is not running");
    if (api_queue_.size() >= kApiQueueMax) {
      return absl::ResourceExhaustedError("payments is overloaded");
    }
    api_queue_.push_back(std::move(task));
  }
  // After unlocking, so the woken API thread does not block on api_mutex_ at once.
  api_wake_.notify_one();
  return absl::OkStatus();
}

absl::StatusOr<HttpKeyState> PaymentsService::CheckHttpKey(sql::Transaction& tx,
                                                           const HttpIdempotency& http) {
  HttpKeyState state;
  absl::StatusOr<std::optional<StoredHttpResponse>> stored = LoadHttpIdempotency(tx, http.key);
  if (!stored.ok()) return stored.status();
  if (!stored->has_value()) return state;
  const StoredHttpResponse& row = **stored;
  if (row.request_hash != http.request_hash) {
    state.claim = HttpKeyClaim::kMismatch;
  } else if (row.status != 0) {
    state.claim = HttpKeyClaim::kReplay;
    state.stored = row;
  } else if (clock_.NowMs() - row.created_at_ms <
             absl::ToInt64Milliseconds(options_.http_claim_stale)) {
    state.claim = HttpKeyClaim::kInProgress;
  }
  return state;
}

absl::Status PaymentsService::RecordHttpKey(sql::Transaction& tx, const HttpIdempotency& http,
                                            const Prepared& prepared) {
  const int64_t now_ms = clock_.NowMs();
  StoredHttpResponse row;
  row.request_hash = http.request_hash;
  row.answer_kind = static_cast<int>(http.kind);
  if (prepared.attempt_key.has_value()) {
    row.attempt_key = *prepared.attempt_key;  // answered when the attempt settles
  } else {
    http::Response answer = RenderAnswer(http.kind, prepared.intent);
    row.status = answer.status;
    row.body = std::move(answer.body);
  }
  return SaveHttpIdempotency(tx, http.key, row, now_ms);
}

absl::Status PaymentsService::AnswerHttpKeys(sql::Transaction& tx, const std::string& attempt_key,
                                             const absl::StatusOr<IntentRecord>& answer) {
  absl::StatusOr<std::vector<WaitingHttpKey>> waiting = ListHttpKeysOfAttempt(tx, attempt_key);
  if (!waiting.ok()) return waiting.status();
  const int64_t now_ms = clock_.NowMs();
  for (const WaitingHttpKey& key : *waiting) {
    const auto kind = static_cast<HttpAnswerKind>(key.answer_kind);
    http::Response rendered = RenderAnswer(kind, answer);
    if (!ReplayableStatus(rendered.status)) {
      // Nothing final to replay (the PSP unavailable, the outcome unknown): a retry with the
      // same key runs the command again, which drives the same attempt or a new group.
      RETURN_IF_ERROR(DeleteHttpIdempotency(tx, key.key));
      continue;
    }
    StoredHttpResponse row;
    row.request_hash = key.request_hash;
    row.status = rendered.status;
    row.body = std::move(rendered.body);
    row.answer_kind = key.answer_kind;
    RETURN_IF_ERROR(SaveHttpIdempotency(tx, key.key, row, now_ms));
  }
  return absl::OkStatus();
}

void PaymentsService::DispatchHttp(const HttpKeyState& key_state, absl::StatusOr<Prepared> prepared,
                                   HttpCommandCallback done) {
  if (prepared.ok() && key_state.claim != HttpKeyClaim::kClaimed) {
    HttpCommandAnswer answer;
    answer.claim = key_state.claim;
    answer.stored = key_state.stored;
    done(std::move(answer));
    return;
  }
  Dispatch(std::move(prepared), [done](absl::StatusOr<IntentRecord> result) {
    HttpCommandAnswer answer;
    answer.result = std::move(result);
    done(std::move(answer));
  });
}

void PaymentsService::AuthorizeHttp(const AuthorizeCommand& command, const HttpIdempotency& http,
                                    HttpCommandCallback done) {
  SubmitAuthorize(command, &http,
                  [this, done = std::move(done)](const HttpKeyState& key_state,
                                                 absl::StatusOr<Prepared> prepared) {
                    DispatchHttp(key_state, std::move(prepared), done);
                  });
}

void PaymentsService::ExecuteHttp(const IntentCommand& command, const HttpIdempotency& http,
                                  HttpCommandCallback done) {
  if (command.operation == PspOperation::kAuthorize) {
    HttpCommandAnswer answer;
    answer.result = absl::InvalidArgumentError("use Authorize for authorizations");
    done(std::move(answer));
    return;
  }
  HttpKeyState key_state;
  absl::StatusOr<Prepared> prepared = WriteIntentCommand(command, &http, &key_state);
  DispatchHttp(key_state, std::move(prepared), std::move(done));
}

absl::StatusOr<PaymentMethod> PaymentsService::AddPaymentMethod(const std::string& customer_id,
                                                                const CardInput& card) {
  if (customer_id.empty() || customer_id.size() > kIdCharsMax) {
    return InvalidParam("customer_id", "customer_id must be 1..128 characters");
  }
  const absl::CivilSecond now = absl::ToCivilSecond(clock_.Now(), absl::UTCTimeZone());
  absl::StatusOr<CardDetails> details =
      ValidateCard(card, static_cast<int>(now.year()), now.month());
  if (!details.ok()) return details.status();
  absl::StatusOr<PaymentMethod> method;
  absl::Status status = db_.Write([&](sql::Transaction& tx) -> absl::Status {
    method = vault_.Store(tx, customer_id, *details, clock_.NowMs());
    return method.status();
  });
  sodium_memzero(details->number.data(), details->number.size());
  if (!status.ok()) return status;
  return method;
}

absl::StatusOr<PaymentMethod> PaymentsService::GetPaymentMethod(const std::string& token) {
  absl::StatusOr<PaymentMethod> method = absl::NotFoundError("payment method not found");
  absl::Status status = db_.Read([&](sql::Transaction& tx) -> absl::Status {
    method = vault_.Find(tx, token);
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return method;
}

// ---- Step 1 ----------------------------------------------------------------------------

absl::StatusOr<AttemptRecord> PaymentsService::NewAttempt(sql::Transaction& tx,
                                                          const IntentRecord& intent,
                                                          PspOperation operation,
                                                          int64_t amount_minor,
                                                          std::optional<int64_t> known_group) {
  absl::StatusOr<int64_t> group = known_group.has_value()
                                      ? absl::StatusOr<int64_t>(*known_group)
                                      : NextAttemptGroup(tx, intent.id, operation);
  if (!group.ok()) return group.status();
  AttemptRecord attempt;
  attempt.idempotency_key = PspIdempotencyKey(intent.id, operation, *group);
  attempt.intent_id = intent.id;
  attempt.operation = operation;
  attempt.attempt_group = *group;
  attempt.amount_minor = amount_minor;
  attempt.status = AttemptStatus::kPending;
  attempt.created_at_ms = clock_.NowMs();
  attempt.updated_at_ms = attempt.created_at_ms;
  RETURN_IF_ERROR(InsertAttempt(tx, attempt));
  return attempt;
}

absl::StatusOr<PaymentsService::Prepared> PaymentsService::PrepareAuthorize(
    sql::Transaction& tx, const AuthorizeCommand& c) {
  if (c.order_id.empty() || c.order_id.size() > kIdCharsMax) {
    return InvalidParam("order_id", "order_id must be 1..128 characters");
  }
  if (c.amount_minor <= 0) return InvalidParam("amount_minor", "amount must be positive");
  if (!FindCurrency(c.currency).ok()) return InvalidParam("currency", "unknown currency");
  absl::StatusOr<std::optional<IntentRecord>> existing = LoadIntentByOrder(tx, c.order_id);
  if (!existing.ok()) return existing.status();
  Prepared prepared;
  if (existing->has_value()) {
    // One intent per order: a repeated authorize (redelivery, retry) drives what is open, or
    // starts a new attempt group when the previous one definitively did not go through.
    IntentRecord& intent = **existing;
    if (intent.amounts.amount_minor != c.amount_minor || intent.amounts.currency != c.currency) {
      return Coded(absl::FailedPreconditionError(
                       "the order already has a payment intent with another amount"),
                   "intent_mismatch");
    }
    absl::StatusOr<bool> recorded = RecordCommand(
        tx, c.command_id, intent.id, PspOperation::kAuthorize, c.amount_minor, clock_.NowMs());
    if (!recorded.ok()) return recorded.status();
    prepared.intent = intent;
    if (intent.state != IntentState::kRequiresAuthorization) return prepared;
    absl::StatusOr<std::vector<AttemptRecord>> open = ListOpenAttemptsOfIntent(tx, intent.id);
    if (!open.ok()) return open.status();
    if (!open->empty()) {
      prepared.attempt_key = open->front().idempotency_key;
      return prepared;
    }
    absl::StatusOr<AttemptRecord> attempt =
        NewAttempt(tx, intent, PspOperation::kAuthorize, intent.amounts.amount_minor);
    if (!attempt.ok()) return attempt.status();
    prepared.attempt_key = attempt->idempotency_key;
    return prepared;
  }
  absl::StatusOr<PaymentMethod> method = vault_.Find(tx, c.payment_method);
  if (!method.ok()) {
    if (method.status().code() == absl::StatusCode::kNotFound) {
      return InvalidParam("payment_method", "unknown payment method");
    }
    return method.status();
  }
  if (method->customer_id != c.customer_id) {
    return InvalidParam("payment_method", "the payment method belongs to another customer");
  }
  IntentRecord intent;
  intent.order_id = c.order_id;
  intent.customer_id = c.customer_id;
  intent.payment_method = c.payment_method;
  intent.amounts.amount_minor = c.amount_minor;
  intent.amounts.currency = c.currency;
  intent.billing_country = c.billing_country;
  intent.shipping_country = c.shipping_country;
  intent.client_ip = c.client_ip;
  intent.fraud_key = FraudKeyFor(c.customer_id, c.payer_email, c.payment_method);
  intent.created_at_ms = clock_.NowMs();
  intent.updated_at_ms = intent.created_at_ms;
  // The intent is screened before it is stored and then inserted once in its screened state,
  // which spares an UPDATE of the row and its indexes; the stored row is the same as inserting
  // and then updating it. Without an id yet it is read as an unstored intent: the history
  // queries need not exclude it, so they count from their indexes alone.
  absl::StatusOr<FraudInput> history = LoadFraudHistory(
      tx, intent, intent.created_at_ms - absl::ToInt64Milliseconds(options_.fraud_window));
  if (!history.ok()) return history.status();
  const FraudAssessment assessment = ScoreFraud(*history, options_.fraud);
  intent.id = "pi_" + ids_.Next();
  intent.fraud_score = assessment.score;
  intent.fraud_reasons = Join(assessment.reasons);
  ++intent.version;  // version 1 was the unscreened intent
  switch (assessment.decision) {
    case FraudDecision::kApprove:
      break;
    case FraudDecision::kReview:
    case FraudDecision::kReject: {
      const bool review = assessment.decision == FraudDecision::kReview;
      const Transition t = ApplyIntentEvent(
          intent.state, intent.amounts,
          {review ? IntentEventKind::kRequireReview : IntentEventKind::kAuthorizeFailed, {}});
      intent.state = t.state;
      if (!review) intent.decline_reason = "fraud_rejected";
      RETURN_IF_ERROR(InsertIntent(tx, intent));
      RETURN_IF_ERROR(RecordCommand(tx, c.command_id, intent.id, PspOperation::kAuthorize,
                                    c.amount_minor, intent.created_at_ms)
                          .status());
      RETURN_IF_ERROR(PublishEvent(tx, review ? "payment.review_required" : "payment.declined",
                                   intent, review ? intent.fraud_reasons : "fraud_rejected"));
      // Counted before the commit: a rolled-back job over-counts by one, never under-counts.
      CountAuthorize(review ? AuthorizeOutcome::kReview : AuthorizeOutcome::kFraudRejected);
      prepared.intent = intent;
      return prepared;
    }
  }
  RETURN_IF_ERROR(InsertIntent(tx, intent));
  RETURN_IF_ERROR(RecordCommand(tx, c.command_id, intent.id, PspOperation::kAuthorize,
                                c.amount_minor, intent.created_at_ms)
                      .status());
  // A new intent has no attempts yet: its first group needs no lookup.
  absl::StatusOr<AttemptRecord> attempt =
      NewAttempt(tx, intent, PspOperation::kAuthorize, intent.amounts.amount_minor, 1);
  if (!attempt.ok()) return attempt.status();
  prepared.intent = intent;
  prepared.attempt_key = attempt->idempotency_key;
  prepared.preloaded = std::make_unique<Preloaded>(std::move(*attempt), intent);
  return prepared;
}

absl::StatusOr<PaymentsService::Prepared> PaymentsService::PrepareIntentCommand(
    sql::Transaction& tx, const IntentCommand& c) {
  absl::StatusOr<std::optional<IntentRecord>> loaded =
      c.intent_id.empty() ? LoadIntentByOrder(tx, c.order_id) : LoadIntent(tx, c.intent_id);
  if (!loaded.ok()) return loaded.status();
  if (!loaded->has_value()) return absl::NotFoundError("payment intent not found");
  const IntentRecord& intent = **loaded;
  Prepared prepared;
  prepared.intent = intent;
  absl::StatusOr<bool> fresh =
      RecordCommand(tx, c.command_id, intent.id, c.operation, c.amount_minor, clock_.NowMs());
  if (!fresh.ok()) return fresh.status();
  absl::StatusOr<std::vector<AttemptRecord>> open = ListOpenAttemptsOfIntent(tx, intent.id);
  if (!open.ok()) return open.status();
  if (!*fresh) {
    // A redelivered command: drive its open attempt (if any) and report the current state.
    for (const AttemptRecord& attempt : *open) {
      if (attempt.operation == c.operation) prepared.attempt_key = attempt.idempotency_key;
    }
    return prepared;
  }
  int64_t amount = c.amount_minor;
  if (c.operation == PspOperation::kCapture && amount == 0) {
    amount = intent.amounts.authorized_minor;
  }
  // Check the transition against the state the open attempts will leave behind, so two
  // concurrent refunds can never add up to more than was captured.
  IntentState state = intent.state;
  IntentAmounts amounts = intent.amounts;
  for (const AttemptRecord& attempt : *open) {
    if (attempt.operation == PspOperation::kAuthorize) {
      return Coded(absl::FailedPreconditionError("the authorization is still in progress"),
                   "authorization_in_progress");
    }
    const Transition t =
        ApplyIntentEvent(state, amounts,
                         {EventFor(attempt.operation),
                          Money::FromMinor(attempt.amount_minor, amounts.currency).value()});
    if (t.outcome == TransitionOutcome::kApplied) {
      state = t.state;
      amounts = t.amounts;
    }
  }
  std::optional<Money> money;
  if (c.operation != PspOperation::kVoid) {
    absl::StatusOr<Money> parsed = Money::FromMinor(amount, intent.amounts.currency);
    if (!parsed.ok()) return parsed.status();
    money = *parsed;
  }
  const Transition t = ApplyIntentEvent(state, amounts, {EventFor(c.operation), money});
  if (t.outcome != TransitionOutcome::kApplied) {
    return IllegalTransition(intent, c.operation, t.outcome);
  }
  absl::StatusOr<AttemptRecord> attempt = NewAttempt(tx, intent, c.operation, amount);
  if (!attempt.ok()) return attempt.status();
  prepared.attempt_key = attempt->idempotency_key;
  return prepared;
}

void PaymentsService::Dispatch(absl::StatusOr<Prepared> prepared, IntentCallback done) {
  if (!prepared.ok()) {
    done(prepared.status());
    return;
  }
  if (!prepared->attempt_key.has_value()) {
    done(std::move(prepared->intent));
    return;
  }
  Enqueue(*prepared->attempt_key, std::move(done), std::move(prepared->preloaded));
}

bool PaymentsService::TryBeginAsyncWrite() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!running_.load()) return false;
  ++async_writes_;
  return true;
}

void PaymentsService::BeginAsyncWrite() {
  std::lock_guard<std::mutex> lock(mutex_);
  ++async_writes_;
}

void PaymentsService::EndAsyncWrite() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (--async_writes_ == 0) async_writes_done_.notify_all();
}

void PaymentsService::AwaitAsyncWrites() {
  // The Database calls every WriteDone exactly once (committed, failed or refused on Close),
  // so this wait ends.
  std::unique_lock<std::mutex> lock(mutex_);
  async_writes_done_.wait(lock, [this] { return async_writes_ == 0; });
}

void PaymentsService::SubmitAuthorize(const AuthorizeCommand& command, const HttpIdempotency* http,
                                      PreparedCallback then) {
  // What the job and its WriteDone share; the job runs later on the writer thread, so it holds
  // its own copy of the command. The revealed card is zeroed when this is destroyed.
  struct Step1 {
    Step1(const AuthorizeCommand& c, const HttpIdempotency* h) : command(c) {
      if (h != nullptr) http = *h;
    }
    Step1(const Step1&) = delete;
    Step1& operator=(const Step1&) = delete;
    ~Step1() { sodium_memzero(card_number.data(), card_number.size()); }

    AuthorizeCommand command;
    std::optional<HttpIdempotency> http;
    std::string card_number;
    HttpKeyState key_state;
    absl::StatusOr<Prepared> prepared = absl::UnknownError("unset");
  };
  auto step = std::make_shared<Step1>(command, http);
  // Screening (fraud history, the card's owner) runs in the write transaction, as for a bus
  // command: velocity counts then see every earlier authorization, and the writer's warm page
  // cache reads the history for less than a reader whose cache every commit invalidates.
  // Submitted, not waited for: the WriteDone hands the attempt to a worker (or answers) on the
  // writer thread, so the caller's thread is not woken only to pass it on. A stopped (or not
  // yet started) service writes nothing and answers here.
  if (!TryBeginAsyncWrite()) {
    then(step->key_state, absl::UnavailableError("payments is not running"));
    return;
  }
  db_.SubmitWrite(
      [this, step](sql::Transaction& tx) -> absl::Status {
        if (step->http.has_value()) {
          absl::StatusOr<HttpKeyState> state = CheckHttpKey(tx, *step->http);
          if (!state.ok()) return state.status();
          step->key_state = *state;
          if (step->key_state.claim != HttpKeyClaim::kClaimed) {
            step->prepared = Prepared{};
            return absl::OkStatus();
          }
        }
        step->prepared = PrepareAuthorize(tx, step->command);
        if (!step->prepared.ok()) return step->prepared.status();
        if (step->prepared->preloaded != nullptr) {
          // The card number for the PSP call, so the attempt needs no read of its own after
          // step 1 (if it cannot be revealed here, the worker reads and settles, as before).
          absl::StatusOr<std::string> number =
              vault_.RevealNumber(tx, step->command.payment_method);
          if (number.ok()) step->card_number = std::move(*number);
        }
        if (step->http.has_value()) return RecordHttpKey(tx, *step->http, *step->prepared);
        return absl::OkStatus();
      },
      [this, step, then = std::move(then)](absl::Status status) {
        AsyncWriteEnd end{this};
        if (!status.ok()) {
          then(step->key_state, status);
        } else {
          if (step->prepared.ok() && step->prepared->preloaded != nullptr) {
            if (step->card_number.empty()) {
              // Not revealed on the reader: the worker reads and settles.
              step->prepared->preloaded.reset();
            } else {
              step->prepared->preloaded->card_number = step->card_number;
            }
          }
          then(step->key_state, std::move(step->prepared));
        }
      });
}

absl::StatusOr<PaymentsService::Prepared> PaymentsService::WriteIntentCommand(
    const IntentCommand& command, const HttpIdempotency* http, HttpKeyState* key_state) {
  absl::StatusOr<Prepared> prepared = absl::UnknownError("unset");
  absl::Status status = db_.Write([&](sql::Transaction& tx) -> absl::Status {
    if (http != nullptr) {
      absl::StatusOr<HttpKeyState> state = CheckHttpKey(tx, *http);
      if (!state.ok()) return state.status();
      *key_state = *state;
      if (key_state->claim != HttpKeyClaim::kClaimed) {
        prepared = Prepared{};
        return absl::OkStatus();
      }
    }
    prepared = PrepareIntentCommand(tx, command);
    if (!prepared.ok()) return prepared.status();
    if (http != nullptr) return RecordHttpKey(tx, *http, *prepared);
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return prepared;
}

void PaymentsService::AuthorizeAsync(const AuthorizeCommand& command, IntentCallback done) {
  SubmitAuthorize(
      command, nullptr,
      [this, done = std::move(done)](const HttpKeyState&, absl::StatusOr<Prepared> prepared) {
        Dispatch(std::move(prepared), done);
      });
}

void PaymentsService::ExecuteAsync(const IntentCommand& command, IntentCallback done) {
  if (command.operation == PspOperation::kAuthorize) {
    done(absl::InvalidArgumentError("use Authorize for authorizations"));
    return;
  }
  Dispatch(WriteIntentCommand(command, nullptr, nullptr), std::move(done));
}

absl::StatusOr<IntentRecord> PaymentsService::Wait(std::function<void(IntentCallback)> start) {
  auto promise = std::make_shared<std::promise<absl::StatusOr<IntentRecord>>>();
  std::future<absl::StatusOr<IntentRecord>> future = promise->get_future();
  start([promise](absl::StatusOr<IntentRecord> result) { promise->set_value(std::move(result)); });
  if (future.wait_for(absl::ToChronoMilliseconds(options_.command_timeout)) !=
      std::future_status::ready) {
    return Coded(absl::DeadlineExceededError("the payment outcome is not known yet"),
                 "outcome_unknown");
  }
  return future.get();
}

// A blocking caller waits on the same worker path the bus and HTTP take, bounded by
// command_timeout, so what it measures (payments_bench) is what production runs.
absl::StatusOr<IntentRecord> PaymentsService::Authorize(const AuthorizeCommand& command) {
  return Wait([&](IntentCallback done) { AuthorizeAsync(command, std::move(done)); });
}

absl::StatusOr<IntentRecord> PaymentsService::Execute(const IntentCommand& command) {
  return Wait([&](IntentCallback done) { ExecuteAsync(command, std::move(done)); });
}

// ---- Step 2 ----------------------------------------------------------------------------

void PaymentsService::Enqueue(const std::string& attempt_key, IntentCallback done,
                              std::unique_ptr<Preloaded> preloaded) {
  std::unique_lock<std::mutex> lock(mutex_);
  if (!running_.load()) {
    lock.unlock();
    if (done) done(Coded(absl::UnavailableError("payments is not running"), "outcome_unknown"));
    return;
  }
  if (done) waiters_[attempt_key].push_back(std::move(done));
  if (claimed_.count(attempt_key) != 0) return;  // already queued or running: wait for it
  if (queue_.size() >= static_cast<size_t>(options_.worker_queue_max)) {
    std::vector<IntentCallback> callbacks = std::move(waiters_[attempt_key]);
    waiters_.erase(attempt_key);
    lock.unlock();
    // The attempt stays pending; the sweep drives it once there is room.
    for (IntentCallback& callback : callbacks) {
      callback(Coded(absl::ResourceExhaustedError("payments is overloaded"), "overloaded"));
    }
    return;
  }
  claimed_.insert(attempt_key);
  queue_.push_back({attempt_key, std::move(preloaded)});
  // One job, one worker: the sweep waits on its own condition variable, so notify_one always
  // reaches a worker (waking all 64 for each job cost more CPU than the job's own work).
  // Notified after unlocking: a worker woken under the lock would block on mutex_ at once and
  // have to be woken a second time (this runs on the database's writer thread).
  lock.unlock();
  wake_.notify_one();
}

void PaymentsService::WorkerLoop() {
  std::unique_lock<std::mutex> lock(mutex_);
  while (true) {
    wake_.wait(lock, [this] { return !queue_.empty() || !running_.load(); });
    if (!running_.load()) return;
    Job job = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    // The worker is free again once the PSP answered: step 3 commits (and its waiters are
    // answered) on the writer thread while this worker takes the next attempt.
    ProcessAttempt(job.attempt_key, std::move(job.preloaded),
                   [this, key = job.attempt_key](absl::StatusOr<IntentRecord> result) {
                     FinishAttempt(key, std::move(result));
                   });
    lock.lock();
  }
}

void PaymentsService::FinishAttempt(const std::string& attempt_key,
                                    absl::StatusOr<IntentRecord> result) {
  std::vector<IntentCallback> callbacks;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (auto it = waiters_.find(attempt_key); it != waiters_.end()) {
      callbacks = std::move(it->second);
      waiters_.erase(it);
    }
    claimed_.erase(attempt_key);
  }
  // Each waiter is answered even if an earlier one's callback throws.
  for (IntentCallback& callback : callbacks) {
    try {
      callback(result);
    } catch (const std::exception& error) {
      obs::Logger("payments").Error("a waiter's callback threw", {{"error", error.what()}});
    }
  }
}

absl::StatusOr<int64_t> PaymentsService::ExpireStaleAuthorizations() {
  if (options_.authorization_ttl <= absl::ZeroDuration()) return 0;
  const int64_t now_ms = clock_.NowMs();
  const int64_t authorized_before_ms =
      now_ms - absl::ToInt64Milliseconds(options_.authorization_ttl);
  std::vector<IntentRecord> stale;
  RETURN_IF_ERROR(db_.Read([&](sql::Transaction& tx) -> absl::Status {
    absl::StatusOr<std::vector<IntentRecord>> rows = ListIntentsInStateBefore(
        tx, IntentState::kAuthorized, authorized_before_ms, options_.expiry_batch_max);
    if (!rows.ok()) return rows.status();
    stale = std::move(*rows);
    return absl::OkStatus();
  }));
  std::vector<std::string> attempt_keys;
  for (const IntentRecord& candidate : stale) {
    absl::Status status = db_.Write([&](sql::Transaction& tx) -> absl::Status {
      absl::StatusOr<std::optional<IntentRecord>> loaded = LoadIntent(tx, candidate.id);
      if (!loaded.ok()) return loaded.status();
      if (!loaded->has_value()) return absl::OkStatus();
      const IntentRecord& intent = **loaded;
      if (intent.state != IntentState::kAuthorized ||
          intent.updated_at_ms >= authorized_before_ms) {
        return absl::OkStatus();  // captured, voided or touched meanwhile
      }
      absl::StatusOr<std::vector<AttemptRecord>> open = ListOpenAttemptsOfIntent(tx, intent.id);
      if (!open.ok()) return open.status();
      if (!open->empty()) return absl::OkStatus();  // a capture or void is in flight
      absl::StatusOr<std::optional<int64_t>> last_void =
          LatestAttemptUpdateMs(tx, intent.id, PspOperation::kVoid);
      if (!last_void.ok()) return last_void.status();
      if (last_void->has_value() &&
          **last_void > now_ms - absl::ToInt64Milliseconds(options_.expiry_retry_after)) {
        return absl::OkStatus();  // a void just failed to reach the PSP: retry later
      }
      RETURN_IF_ERROR(
          RecordCommand(tx, ExpiryCommandId(intent.id), intent.id, PspOperation::kVoid, 0, now_ms)
              .status());
      absl::StatusOr<AttemptRecord> attempt = NewAttempt(tx, intent, PspOperation::kVoid, 0);
      if (!attempt.ok()) return attempt.status();
      attempt_keys.push_back(attempt->idempotency_key);
      return absl::OkStatus();
    });
    if (!status.ok()) return status;
  }
  for (const std::string& key : attempt_keys) Enqueue(key, nullptr);
  return static_cast<int64_t>(attempt_keys.size());
}

void PaymentsService::SweepLoop() {
  while (running_.load()) {
    if (absl::StatusOr<int64_t> expired = ExpireStaleAuthorizations(); !expired.ok()) {
      obs::Logger("payments.sweep")
          .Warn("authorization expiry failed",
                {{"error", std::string(expired.status().message())}});
    }
    const int64_t unknown_before =
        clock_.NowMs() - absl::ToInt64Milliseconds(options_.unknown_retry_after);
    std::vector<AttemptRecord> open;
    absl::Status status = db_.Read([&](sql::Transaction& tx) -> absl::Status {
      absl::StatusOr<std::vector<AttemptRecord>> rows =
          ListOpenAttempts(tx, unknown_before, options_.sweep_batch_max);
      if (!rows.ok()) return rows.status();
      open = std::move(*rows);
      return absl::OkStatus();
    });
    if (status.ok()) {
      for (const AttemptRecord& attempt : open) Enqueue(attempt.idempotency_key, nullptr);
    }
    std::unique_lock<std::mutex> lock(mutex_);
    sweep_wake_.wait_for(lock, absl::ToChronoMilliseconds(options_.sweep_interval),
                         [this] { return !running_.load(); });
  }
}

absl::StatusOr<PspResult> PaymentsService::CallPsp(const AttemptRecord& attempt,
                                                   const IntentRecord& intent,
                                                   const std::string& card_number,
                                                   bool& outcome_unknown) {
  const resilience::Deadline deadline =
      resilience::Deadline::After(clock_, options_.command_timeout);
  absl::StatusOr<resilience::Bulkhead::Permit> permit = bulkhead_.Acquire(deadline);
  if (!permit.ok()) return Coded(absl::UnavailableError("psp bulkhead full"), "psp_unavailable");
  absl::StatusOr<PspResult> result = retrier_.Run(
      resilience::Idempotency::kIdempotent, deadline, [&]() -> absl::StatusOr<PspResult> {
        return breaker_.Call([&]() -> absl::StatusOr<PspResult> {
          absl::StatusOr<PspResult> call = absl::UnknownError("unset");
          switch (attempt.operation) {
            case PspOperation::kAuthorize:
              call = psp_.Authorize(attempt.idempotency_key, attempt.amount_minor,
                                    intent.amounts.currency, card_number, attempt.idempotency_key);
              break;
            case PspOperation::kCapture:
              call = psp_.Capture(attempt.idempotency_key, intent.psp_authorization_id,
                                  attempt.amount_minor);
              break;
            case PspOperation::kVoid:
              call = psp_.Void(attempt.idempotency_key, intent.psp_authorization_id);
              break;
            case PspOperation::kRefund:
              call = psp_.Refund(attempt.idempotency_key, intent.psp_authorization_id,
                                 attempt.amount_minor);
              break;
          }
          if (!call.ok() && OutcomeUnknown(call.status())) outcome_unknown = true;
          return call;
        });
      });
  return result;
}

void PaymentsService::ProcessAttempt(const std::string& attempt_key,
                                     std::unique_ptr<Preloaded> preloaded,
                                     SettledCallback settled) {
  std::optional<AttemptRecord> attempt;
  std::optional<IntentRecord> intent;
  std::string card_number;
  absl::Status reveal;
  if (preloaded != nullptr) {
    // Step 1 of a new authorization just committed these (pending, first try) and revealed
    // the card; reading them back would find the same rows. StoreOutcome re-reads the attempt
    // in its own transaction, so a concurrent settlement still wins there.
    attempt = std::move(preloaded->attempt);
    intent = std::move(preloaded->intent);
    bool outcome_unknown = attempt->status == AttemptStatus::kUnknown;
    absl::StatusOr<PspResult> result =
        CallPsp(*attempt, *intent, preloaded->card_number, outcome_unknown);
    preloaded.reset();  // zeroes the card
    StoreOutcome(*attempt, std::move(result), outcome_unknown, std::move(settled));
    return;
  }
  absl::Status read = db_.Read([&](sql::Transaction& tx) -> absl::Status {
    absl::StatusOr<std::optional<AttemptRecord>> a = LoadAttempt(tx, attempt_key);
    if (!a.ok()) return a.status();
    if (!a->has_value()) return absl::NotFoundError("psp attempt not found");
    attempt = std::move(**a);
    absl::StatusOr<std::optional<IntentRecord>> i = LoadIntent(tx, attempt->intent_id);
    if (!i.ok()) return i.status();
    if (!i->has_value()) return absl::DataLossError("psp attempt without intent");
    intent = std::move(**i);
    // An authorization about to be sent needs the card: revealed in the same read.
    if (attempt->operation == PspOperation::kAuthorize &&
        (attempt->status == AttemptStatus::kPending ||
         attempt->status == AttemptStatus::kUnknown)) {
      absl::StatusOr<std::string> number = vault_.RevealNumber(tx, intent->payment_method);
      if (number.ok()) {
        card_number = std::move(*number);
      } else {
        reveal = number.status();  // settled below as an attempt that was never sent
      }
    }
    return absl::OkStatus();
  });
  if (!read.ok()) {
    sodium_memzero(card_number.data(), card_number.size());
    settled(read);
    return;
  }
  switch (attempt->status) {
    case AttemptStatus::kSucceeded:
      settled(*intent);
      return;
    case AttemptStatus::kFailed:
      if (attempt->operation == PspOperation::kAuthorize && intent->state == IntentState::kFailed) {
        settled(*intent);  // a decline is an answer, not an error
        return;
      }
      settled(Coded(absl::FailedPreconditionError(fmt::format(
                        "the PSP refused the {}", PspOperationName(attempt->operation))),
                    attempt->result_code.empty() ? "psp_rejected" : attempt->result_code));
      return;
    case AttemptStatus::kPending:
    case AttemptStatus::kUnknown:
      break;
  }
  bool outcome_unknown = attempt->status == AttemptStatus::kUnknown;
  if (!reveal.ok()) {
    StoreOutcome(*attempt, reveal, outcome_unknown, std::move(settled));
    return;
  }
  absl::StatusOr<PspResult> result = CallPsp(*attempt, *intent, card_number, outcome_unknown);
  sodium_memzero(card_number.data(), card_number.size());
  StoreOutcome(*attempt, std::move(result), outcome_unknown, std::move(settled));
}

// ---- Step 3 ----------------------------------------------------------------------------

void PaymentsService::StoreOutcome(const AttemptRecord& called_attempt,
                                   absl::StatusOr<PspResult> psp_result, bool outcome_unknown,
                                   SettledCallback done) {
  // What the job (on the writer thread) and its WriteDone share.
  struct Step3 {
    AttemptRecord called;
    absl::StatusOr<PspResult> result;
    absl::StatusOr<IntentRecord> answer = absl::UnknownError("unset");
    std::optional<AuthorizeOutcome> settled;  // counted once the outcome is committed
  };
  auto step = std::make_shared<Step3>(
      Step3{called_attempt, std::move(psp_result), absl::UnknownError("unset"), std::nullopt});
  auto settle = [this, outcome_unknown](Step3& s, sql::Transaction& tx) -> absl::Status {
    const AttemptRecord& called = s.called;
    const absl::StatusOr<PspResult>& result = s.result;
    absl::StatusOr<IntentRecord>& answer = s.answer;
    std::optional<AuthorizeOutcome>& settled = s.settled;
    settled.reset();
    absl::StatusOr<std::optional<AttemptRecord>> loaded = LoadAttempt(tx, called.idempotency_key);
    if (!loaded.ok()) return loaded.status();
    AttemptRecord attempt = **loaded;
    absl::StatusOr<std::optional<IntentRecord>> loaded_intent = LoadIntent(tx, attempt.intent_id);
    if (!loaded_intent.ok()) return loaded_intent.status();
    IntentRecord intent = **loaded_intent;
    const int64_t now_ms = clock_.NowMs();
    attempt.updated_at_ms = now_ms;
    ++attempt.try_count;
    if (attempt.status == AttemptStatus::kSucceeded || attempt.status == AttemptStatus::kFailed) {
      // Settled meanwhile (a notification, another worker): the stored outcome stands.
      answer = intent;
      return absl::OkStatus();
    }
    if (!result.ok()) {
      if (outcome_unknown) {
        attempt.status = AttemptStatus::kUnknown;
        attempt.result_code = "outcome_unknown";
        if (attempt.operation == PspOperation::kAuthorize) {
          settled = AuthorizeOutcome::kOutcomeUnknown;
        }
        RETURN_IF_ERROR(UpdateAttempt(tx, attempt));
        answer = Coded(absl::UnavailableError("the PSP outcome is unknown; it will be settled"),
                       "outcome_unknown");
        return absl::OkStatus();
      }
      // Certainly not sent (or the PSP recorded nothing): the attempt is over, nothing charged.
      const std::string code = ErrorCode(result.status()).value_or("psp_unavailable");
      attempt.status = AttemptStatus::kFailed;
      attempt.result_code = code == "circuit_open" ? code : "psp_unavailable";
      if (attempt.operation == PspOperation::kAuthorize) {
        settled = AuthorizeOutcome::kPspUnavailable;
      }
      RETURN_IF_ERROR(UpdateAttempt(tx, attempt));
      answer =
          Coded(absl::UnavailableError("the PSP is unavailable; retry later"), attempt.result_code);
      return absl::OkStatus();
    }
    attempt.psp_object_id = result->object_id;
    attempt.result_code = result->code;
    // A void started by the authorization expiry ends the intent expired, not voided.
    bool expiry = false;
    if (attempt.operation == PspOperation::kVoid) {
      absl::StatusOr<bool> recorded = CommandRecorded(tx, ExpiryCommandId(intent.id));
      if (!recorded.ok()) return recorded.status();
      expiry = *recorded;
    }
    switch (result->outcome) {
      case PspOutcome::kSucceeded: {
        std::optional<Money> money;
        if (attempt.operation != PspOperation::kVoid) {
          money = Money::FromMinor(attempt.amount_minor, intent.amounts.currency).value();
        }
        const Transition t = ApplyIntentEvent(
            intent.state, intent.amounts,
            {expiry ? IntentEventKind::kExpire : EventFor(attempt.operation), money});
        if (t.outcome != TransitionOutcome::kApplied) {
          // The PSP did it but our state disagrees: keep the PSP's truth visible for audit.
          return Coded(
              absl::DataLossError(fmt::format(
                  "psp {} succeeded but the intent is {} ({})", PspOperationName(attempt.operation),
                  IntentStateName(intent.state), TransitionOutcomeName(t.outcome))),
              "ledger_conflict");
        }
        intent.state = t.state;
        intent.amounts = t.amounts;
        if (attempt.operation == PspOperation::kAuthorize) {
          intent.psp_authorization_id = result->object_id;
          settled = AuthorizeOutcome::kAuthorized;
        }
        attempt.status = AttemptStatus::kSucceeded;
        if (attempt.operation == PspOperation::kCapture ||
            attempt.operation == PspOperation::kRefund) {
          absl::StatusOr<LedgerTransaction> ledger = BuildLedgerTransaction(
              attempt.operation == PspOperation::kCapture ? MoneyMovement::kCapture
                                                          : MoneyMovement::kRefund,
              *money);
          if (!ledger.ok()) return ledger.status();
          RETURN_IF_ERROR(
              InsertLedgerTransaction(tx, attempt.idempotency_key, intent.id, *ledger, now_ms));
        }
        RETURN_IF_ERROR(PublishEvent(tx,
                                     expiry ? "payment.expired" : EventTypeFor(attempt.operation),
                                     intent, expiry ? "authorization_expired" : ""));
        break;
      }
      case PspOutcome::kDeclined:
      case PspOutcome::kRejected:
        attempt.status = AttemptStatus::kFailed;
        if (expiry) {
          // The PSP will not void it (its own authorization lapsed, or it is gone): either way
          // it can no longer be captured, so it ends expired all the same.
          const Transition t =
              ApplyIntentEvent(intent.state, intent.amounts, {IntentEventKind::kExpire, {}});
          if (t.outcome == TransitionOutcome::kApplied) {
            intent.state = t.state;
            intent.amounts = t.amounts;
            RETURN_IF_ERROR(PublishEvent(tx, "payment.expired", intent,
                                         result->code.empty()
                                             ? "authorization_expired"
                                             : result->code.substr(0, kReasonCharsMax)));
          }
        } else if (attempt.operation == PspOperation::kAuthorize) {
          settled = AuthorizeOutcome::kDeclined;
          const Transition t = ApplyIntentEvent(intent.state, intent.amounts,
                                                {IntentEventKind::kAuthorizeFailed, {}});
          if (t.outcome == TransitionOutcome::kApplied) {
            intent.state = t.state;
            intent.decline_reason = result->code.substr(0, kReasonCharsMax);
            RETURN_IF_ERROR(PublishEvent(tx, "payment.declined", intent, intent.decline_reason));
          }
        } else {
          answer = Coded(absl::FailedPreconditionError(fmt::format(
                             "the PSP refused the {}", PspOperationName(attempt.operation))),
                         result->code.empty() ? "psp_rejected" : result->code);
        }
        break;
    }
    RETURN_IF_ERROR(UpdateAttempt(tx, attempt));
    if (attempt.status == AttemptStatus::kSucceeded ||
        attempt.operation == PspOperation::kAuthorize || expiry) {
      intent.updated_at_ms = now_ms;
      ++intent.version;
      RETURN_IF_ERROR(UpdateIntent(tx, intent));
      answer = intent;
    }
    return absl::OkStatus();
  };
  BeginAsyncWrite();
  db_.SubmitWrite(
      [this, step, settle](sql::Transaction& tx) -> absl::Status {
        RETURN_IF_ERROR(settle(*step, tx));
        // The HTTP keys waiting on this attempt get their answer in the same transaction.
        return AnswerHttpKeys(tx, step->called.idempotency_key, step->answer);
      },
      [this, step, done = std::move(done)](absl::Status status) {
        AsyncWriteEnd end{this};
        if (!status.ok()) {
          done(std::move(status));
        } else {
          if (step->settled.has_value()) CountAuthorize(*step->settled);
          done(std::move(step->answer));
        }
      });
}

std::string IntentEventPayload(const IntentRecord& intent, std::string_view reason) {
  // The bytes DumpJson writes for the object {intent_id, order_id, customer_id, state, amounts,
  // currency, reason?}: nlohmann's object keeps its keys sorted, so they are written in that
  // order; strings go through AppendJsonString (the same escaping and UTF-8 repair).
  std::string out;
  out.reserve(320);
  out += "{\"amount_minor\":";
  out += fmt::format_int(intent.amounts.amount_minor).c_str();
  out += ",\"authorized_minor\":";
  out += fmt::format_int(intent.amounts.authorized_minor).c_str();
  out += ",\"captured_minor\":";
  out += fmt::format_int(intent.amounts.captured_minor).c_str();
  out += ",\"currency\":";
  AppendJsonString(out, intent.amounts.currency);
  out += ",\"customer_id\":";
  AppendJsonString(out, intent.customer_id);
  out += ",\"intent_id\":";
  AppendJsonString(out, intent.id);
  out += ",\"order_id\":";
  AppendJsonString(out, intent.order_id);
  if (!reason.empty()) {
    out += ",\"reason\":";
    AppendJsonString(out, reason);
  }
  out += ",\"refunded_minor\":";
  out += fmt::format_int(intent.amounts.refunded_minor).c_str();
  out += ",\"state\":";
  AppendJsonString(out, IntentStateName(intent.state));
  out += '}';
  return out;
}

absl::Status PaymentsService::PublishEvent(sql::Transaction& tx, std::string_view type,
                                           const IntentRecord& intent, const std::string& reason) {
  bus::Envelope envelope;
  envelope.id = ids_.Next();
  envelope.type = std::string(type);
  envelope.source = "payments";
  envelope.key = intent.order_id;
  envelope.correlation_id = intent.order_id;
  envelope.occurred_at_ms = clock_.NowMs();
  envelope.payload = IntentEventPayload(intent, reason);
  return bus::Publish(tx, envelope);
}

// ---- Reviews, reads --------------------------------------------------------------------

absl::StatusOr<IntentRecord> PaymentsService::DecideReview(const std::string& intent_id,
                                                           ReviewDecision decision) {
  absl::StatusOr<Prepared> prepared = absl::UnknownError("unset");
  absl::Status status = db_.Write([&](sql::Transaction& tx) -> absl::Status {
    absl::StatusOr<std::optional<IntentRecord>> loaded = LoadIntent(tx, intent_id);
    if (!loaded.ok()) return loaded.status();
    if (!loaded->has_value()) return absl::NotFoundError("payment intent not found");
    IntentRecord intent = **loaded;
    const bool approve = decision == ReviewDecision::kApprove;
    const Transition t = ApplyIntentEvent(
        intent.state, intent.amounts,
        {approve ? IntentEventKind::kApproveReview : IntentEventKind::kRejectReview, {}});
    if (t.outcome != TransitionOutcome::kApplied) {
      return IllegalTransition(intent, PspOperation::kAuthorize, t.outcome);
    }
    intent.state = t.state;
    if (!approve) intent.decline_reason = "review_rejected";
    intent.updated_at_ms = clock_.NowMs();
    ++intent.version;
    RETURN_IF_ERROR(UpdateIntent(tx, intent));
    Prepared out;
    out.intent = intent;
    if (approve) {
      absl::StatusOr<AttemptRecord> attempt =
          NewAttempt(tx, intent, PspOperation::kAuthorize, intent.amounts.amount_minor);
      if (!attempt.ok()) return attempt.status();
      out.attempt_key = attempt->idempotency_key;
    } else {
      RETURN_IF_ERROR(PublishEvent(tx, "payment.declined", intent, "review_rejected"));
    }
    prepared = std::move(out);
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return Wait([&](IntentCallback done) { Dispatch(std::move(prepared), std::move(done)); });
}

absl::StatusOr<std::vector<IntentRecord>> PaymentsService::ListReviews(int64_t limit) {
  std::vector<IntentRecord> out;
  absl::Status status = db_.Read([&](sql::Transaction& tx) -> absl::Status {
    absl::StatusOr<std::vector<IntentRecord>> rows =
        ListIntentsInState(tx, IntentState::kInReview, limit);
    if (!rows.ok()) return rows.status();
    out = std::move(*rows);
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return out;
}

absl::StatusOr<IntentRecord> PaymentsService::GetIntent(const std::string& intent_id) {
  std::optional<IntentRecord> out;
  absl::Status status = db_.Read([&](sql::Transaction& tx) -> absl::Status {
    absl::StatusOr<std::optional<IntentRecord>> loaded = LoadIntent(tx, intent_id);
    if (!loaded.ok()) return loaded.status();
    out = std::move(*loaded);
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  if (!out.has_value()) return absl::NotFoundError("payment intent not found");
  return *out;
}

// ---- Bus -------------------------------------------------------------------------------

void PaymentsService::NoteBusAttempt(const std::optional<std::string>& attempt_key) {
  if (!attempt_key.has_value()) return;
  std::lock_guard<std::mutex> lock(committed_attempts_->mutex);
  if (committed_attempts_->touched.size() >= kBusAttemptsPendingMax) return;  // the sweep
  committed_attempts_->touched.push_back(*attempt_key);
}

absl::Status PaymentsService::HandleBusCommand(sql::Transaction& tx,
                                               const bus::Envelope& envelope) {
  absl::StatusOr<Json> payload = ParseJsonObject(envelope.payload);
  // A malformed command can never succeed: accept it (so it is not retried forever) and
  // drop it. Dead-lettering would be the alternative; the inbox records it either way.
  if (!payload.ok()) return absl::OkStatus();
  if (envelope.type == "payments.authorize") {
    AuthorizeCommand c;
    c.command_id = envelope.id;
    auto text = [&](const char* field) { return payload->value(field, std::string()); };
    c.order_id = text("order_id");
    c.customer_id = text("customer_id");
    c.payment_method = text("payment_method");
    c.amount_minor = payload->value("amount_minor", int64_t{0});
    c.currency = text("currency");
    c.billing_country = text("billing_country");
    c.shipping_country = text("shipping_country");
    c.client_ip = text("client_ip");
    c.payer_email = text("payer_email").substr(0, kPayerEmailBytesMax);
    absl::StatusOr<Prepared> prepared = PrepareAuthorize(tx, c);
    if (prepared.ok()) {
      NoteBusAttempt(prepared->attempt_key);
      return absl::OkStatus();
    }
    if (prepared.status().code() == absl::StatusCode::kInvalidArgument ||
        prepared.status().code() == absl::StatusCode::kFailedPrecondition) {
      return absl::OkStatus();  // a business refusal; nothing to retry
    }
    return prepared.status();
  }
  std::optional<PspOperation> operation;
  if (envelope.type == "payments.capture") operation = PspOperation::kCapture;
  if (envelope.type == "payments.void") operation = PspOperation::kVoid;
  if (envelope.type == "payments.refund") operation = PspOperation::kRefund;
  if (!operation.has_value()) return absl::OkStatus();
  IntentCommand c;
  c.command_id = envelope.id;
  c.intent_id = payload->value("intent_id", std::string());
  c.order_id = payload->value("order_id", std::string());
  c.operation = *operation;
  c.amount_minor = payload->value("amount_minor", int64_t{0});
  absl::StatusOr<Prepared> prepared = PrepareIntentCommand(tx, c);
  if (prepared.ok()) {
    NoteBusAttempt(prepared->attempt_key);
    return absl::OkStatus();
  }
  if (prepared.status().code() == absl::StatusCode::kInvalidArgument ||
      prepared.status().code() == absl::StatusCode::kFailedPrecondition ||
      prepared.status().code() == absl::StatusCode::kNotFound) {
    return absl::OkStatus();
  }
  return prepared.status();
}

// ---- Notifications ---------------------------------------------------------------------

absl::Status PaymentsService::HandleNotification(const std::string& signature_header,
                                                 const std::string& body) {
  // Psp-Signature: t=<seconds>,v1=<hex>
  const size_t comma = signature_header.find(',');
  if (!signature_header.starts_with("t=") || comma == std::string::npos ||
      signature_header.compare(comma + 1, 3, "v1=") != 0) {
    return absl::UnauthenticatedError("malformed notification signature");
  }
  int64_t timestamp_s = 0;
  for (size_t i = 2; i < comma; ++i) {
    const char c = signature_header[i];
    if (c < '0' || c > '9' || i > 20) {
      return absl::UnauthenticatedError("malformed notification timestamp");
    }
    timestamp_s = timestamp_s * 10 + (c - '0');
  }
  const int64_t skew_s = clock_.NowMs() / 1000 - timestamp_s;
  if (options_.notification_secret.empty() ||
      std::abs(skew_s) > absl::ToInt64Seconds(options_.notification_tolerance)) {
    return absl::UnauthenticatedError("notification timestamp outside the tolerance");
  }
  const std::string message = fmt::format("{}.{}", timestamp_s, body);
  unsigned char mac[crypto_auth_hmacsha256_BYTES];
  crypto_auth_hmacsha256_state state;
  crypto_auth_hmacsha256_init(
      &state, reinterpret_cast<const unsigned char*>(options_.notification_secret.data()),
      options_.notification_secret.size());
  crypto_auth_hmacsha256_update(&state, reinterpret_cast<const unsigned char*>(message.data()),
                                message.size());
  crypto_auth_hmacsha256_final(&state, mac);
  const std::string given_hex = signature_header.substr(comma + 4);
  unsigned char given[crypto_auth_hmacsha256_BYTES];
  size_t given_length = 0;
  if (sodium_hex2bin(given, sizeof(given), given_hex.data(), given_hex.size(), nullptr,
                     &given_length, nullptr) != 0 ||
      given_length != sizeof(given) || sodium_memcmp(given, mac, sizeof(mac)) != 0) {
    return absl::UnauthenticatedError("notification signature mismatch");
  }
  absl::StatusOr<Json> event = ParseJsonObject(body);
  if (!event.ok()) return event.status();
  const std::string id = event->value("id", std::string());
  const std::string type = event->value("type", std::string());
  const Json data = event->value("data", Json::object());
  if (id.empty() || type.empty() || !data.is_object()) {
    return absl::InvalidArgumentError("notification lacks id, type or data");
  }
  std::optional<std::string> settle_key;
  absl::Status status = db_.Write([&](sql::Transaction& tx) -> absl::Status {
    absl::StatusOr<bool> fresh =
        RecordNotification(tx, id, type, event->value("object_id", std::string()), clock_.NowMs());
    if (!fresh.ok()) return fresh.status();
    if (!*fresh) return absl::OkStatus();  // a duplicate
    // Notifications never move state themselves, so their order cannot matter: an
    // "authorization.succeeded" only prompts settling the attempt it names (reference = our
    // idempotency key) if that attempt is still open; a late one after a capture changes
    // nothing.
    if (type == "authorization.succeeded") {
      const std::string reference = data.value("reference", std::string());
      absl::StatusOr<std::optional<AttemptRecord>> attempt = LoadAttempt(tx, reference);
      if (!attempt.ok()) return attempt.status();
      if (attempt->has_value() && ((*attempt)->status == AttemptStatus::kPending ||
                                   (*attempt)->status == AttemptStatus::kUnknown)) {
        settle_key = reference;
      }
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  // Settling re-sends with the same key: the PSP answers with its stored result.
  if (settle_key.has_value()) Enqueue(*settle_key, nullptr);
  return absl::OkStatus();
}

}  // namespace emporium::payments
