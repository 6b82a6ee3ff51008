// The payments store: every SQL statement of the payments database (except the vault's),
// as functions that run inside the caller's transaction.
//
// Thread-safety: functions run on the caller's thread, inside its transaction.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "payments/model.h"
#include "platform/sql/database.h"

namespace emporium::payments {

struct IntentRecord {
  std::string id;
  std::string order_id;
  std::string customer_id;
  std::string payment_method;
  IntentState state = IntentState::kRequiresAuthorization;
  IntentAmounts amounts;
  std::string psp_authorization_id;
  std::string decline_reason;
  int fraud_score = 0;
  std::string fraud_reasons;  // comma-separated rule names
  std::string billing_country;
  std::string shipping_country;
  std::string client_ip;
  int64_t version = 1;
  int64_t created_at_ms = 0;
  int64_t updated_at_ms = 0;
  // Who the customer-level fraud velocity rules count this intent against (FraudKeyFor);
  // empty means customer_id.
  std::string fraud_key;
};

enum class AttemptStatus { kPending, kUnknown, kSucceeded, kFailed };
std::string_view AttemptStatusName(AttemptStatus status);

struct AttemptRecord {
  std::string idempotency_key;
  std::string intent_id;
  PspOperation operation = PspOperation::kAuthorize;
  int64_t attempt_group = 0;
  int64_t amount_minor = 0;
  AttemptStatus status = AttemptStatus::kPending;
  std::string psp_object_id;
  std::string result_code;
  int64_t try_count = 0;
  int64_t created_at_ms = 0;
  int64_t updated_at_ms = 0;
};

absl::StatusOr<std::optional<IntentRecord>> LoadIntent(sql::Transaction& tx, const std::string& id);
absl::StatusOr<std::optional<IntentRecord>> LoadIntentByOrder(sql::Transaction& tx,
                                                              const std::string& order_id);
absl::Status InsertIntent(sql::Transaction& tx, const IntentRecord& intent);
// Writes `intent` if its stored version is `intent.version - 1`; Aborted on a lost race.
absl::Status UpdateIntent(sql::Transaction& tx, const IntentRecord& intent);
absl::StatusOr<std::vector<IntentRecord>> ListIntentsInState(sql::Transaction& tx,
                                                             IntentState state, int64_t limit);
// Intents in `state` last changed before `before_ms` (for authorized intents: authorized
// then), oldest first.
absl::StatusOr<std::vector<IntentRecord>> ListIntentsInStateBefore(sql::Transaction& tx,
                                                                   IntentState state,
                                                                   int64_t before_ms,
                                                                   int64_t limit);
// When the latest attempt of `operation` on the intent was last touched; nullopt for none.
absl::StatusOr<std::optional<int64_t>> LatestAttemptUpdateMs(sql::Transaction& tx,
                                                             const std::string& intent_id,
                                                             PspOperation operation);
// True when `command_id` was recorded by RecordCommand.
absl::StatusOr<bool> CommandRecorded(sql::Transaction& tx, const std::string& command_id);

absl::Status InsertAttempt(sql::Transaction& tx, const AttemptRecord& attempt);
absl::Status UpdateAttempt(sql::Transaction& tx, const AttemptRecord& attempt);
absl::StatusOr<std::optional<AttemptRecord>> LoadAttempt(sql::Transaction& tx,
                                                         const std::string& key);
// Attempts that still need a PSP call (pending, or unknown and last touched before
// `unknown_before_ms`), oldest first.
absl::StatusOr<std::vector<AttemptRecord>> ListOpenAttempts(sql::Transaction& tx,
                                                            int64_t unknown_before_ms,
                                                            int64_t limit);
// Attempts of an intent still open (pending or unknown).
absl::StatusOr<std::vector<AttemptRecord>> ListOpenAttemptsOfIntent(sql::Transaction& tx,
                                                                    const std::string& intent_id);
// The next attempt group for (intent, operation): one more than the highest used.
absl::StatusOr<int64_t> NextAttemptGroup(sql::Transaction& tx, const std::string& intent_id,
                                         PspOperation operation);

absl::Status InsertLedgerTransaction(sql::Transaction& tx, const std::string& transaction_id,
                                     const std::string& intent_id,
                                     const LedgerTransaction& transaction, int64_t now_ms);

struct StoredLedgerEntry {
  std::string transaction_id;
  LedgerEntry entry;
};
absl::StatusOr<std::vector<StoredLedgerEntry>> LoadLedger(sql::Transaction& tx);

// Records a command id; false when it was already recorded (a redelivery).
absl::StatusOr<bool> RecordCommand(sql::Transaction& tx, const std::string& command_id,
                                   const std::string& intent_id, PspOperation operation,
                                   int64_t amount_minor, int64_t now_ms);

// Records a PSP notification id; false when already seen.
absl::StatusOr<bool> RecordNotification(sql::Transaction& tx, const std::string& event_id,
                                        const std::string& type, const std::string& object_id,
                                        int64_t now_ms);

struct StoredHttpResponse {
  std::string request_hash;
  int status = 0;  // 0 while the request is in progress
  std::string body;
  int64_t created_at_ms = 0;  // when the row was last written
  // While in progress: the PSP attempt whose settling transaction answers this key (empty for
  // none), and how to render that answer (HttpAnswerKind as an integer).
  std::string attempt_key;
  int answer_kind = 0;
};
// An in-progress key waiting on a PSP attempt.
struct WaitingHttpKey {
  std::string key;
  std::string request_hash;
  int answer_kind = 0;
};
// At most this many keys are answered by one attempt's settling transaction; more (the same
// order authorized under that many keys at once) stay in progress until they go stale.
inline constexpr int64_t kHttpKeysPerAttemptMax = 64;
absl::StatusOr<std::optional<StoredHttpResponse>> LoadHttpIdempotency(sql::Transaction& tx,
                                                                      const std::string& key);
absl::Status SaveHttpIdempotency(sql::Transaction& tx, const std::string& key,
                                 const StoredHttpResponse& response, int64_t now_ms);
// The in-progress keys linked to `attempt_key`, at most kHttpKeysPerAttemptMax.
absl::StatusOr<std::vector<WaitingHttpKey>> ListHttpKeysOfAttempt(sql::Transaction& tx,
                                                                  const std::string& attempt_key);
// Forgets `key` (a request that ended without an answer worth replaying).
absl::Status DeleteHttpIdempotency(sql::Transaction& tx, const std::string& key);

// Facts the fraud rules need, from this database only. An intent with an empty id is one not
// stored yet (screened before its insert); its facts are read with cheaper queries.
absl::StatusOr<FraudInput> LoadFraudHistory(sql::Transaction& tx, const IntentRecord& intent,
                                            int64_t window_start_ms);

// The screening reads every new authorization runs on the writer, with example parameters and
// the index that must answer each alone (no table row per counted intent), so a test can check
// SQLite's plan.
struct IndexedQuery {
  std::string_view sql;
  std::vector<sql::Value> params;
  std::string_view index;
};
std::vector<IndexedQuery> QueriesThatMustUseAnIndex();

}  // namespace emporium::payments
