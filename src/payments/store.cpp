#include "payments/store.h"

#include <cstdlib>

#include "common/format.h"
#include "fmt/format.h"

namespace emporium::payments {
namespace {

// The customer history the fraud rules average over.
constexpr int64_t kFraudHistoryPaymentsMax = 100;

constexpr char kIntentColumns[] =
    "id, order_id, customer_id, payment_method, amount_minor, currency, state, "
    "authorized_minor, captured_minor, refunded_minor, psp_authorization_id, decline_reason, "
    "fraud_score, fraud_reasons, billing_country, shipping_country, client_ip, version, "
    "created_at_ms, updated_at_ms, fraud_key";
constexpr char kAttemptColumns[] =
    "idempotency_key, intent_id, operation, attempt_group, amount_minor, status, psp_object_id, "
    "result_code, try_count, created_at_ms, updated_at_ms";

absl::StatusOr<IntentRecord> IntentFromRow(const sql::Row& row) {
  IntentRecord intent;
  intent.id = row.Text(0);
  intent.order_id = row.Text(1);
  intent.customer_id = row.Text(2);
  intent.payment_method = row.Text(3);
  intent.amounts.amount_minor = row.Int(4);
  intent.amounts.currency = row.Text(5);
  const std::optional<IntentState> state = ParseIntentState(row.Text(6));
  if (!state.has_value()) return absl::DataLossError("payment intent has an unknown state");
  intent.state = *state;
  intent.amounts.authorized_minor = row.Int(7);
  intent.amounts.captured_minor = row.Int(8);
  intent.amounts.refunded_minor = row.Int(9);
  intent.psp_authorization_id = row.OptionalText(10).value_or("");
  intent.decline_reason = row.OptionalText(11).value_or("");
  intent.fraud_score = static_cast<int>(row.Int(12));
  intent.fraud_reasons = row.Text(13);
  intent.billing_country = row.Text(14);
  intent.shipping_country = row.Text(15);
  intent.client_ip = row.Text(16);
  intent.version = row.Int(17);
  intent.created_at_ms = row.Int(18);
  intent.updated_at_ms = row.Int(19);
  intent.fraud_key = row.Text(20);
  return intent;
}

std::optional<AttemptStatus> ParseAttemptStatus(std::string_view name) {
  for (AttemptStatus status : {AttemptStatus::kPending, AttemptStatus::kUnknown,
                               AttemptStatus::kSucceeded, AttemptStatus::kFailed}) {
    if (AttemptStatusName(status) == name) return status;
  }
  return std::nullopt;
}

absl::StatusOr<AttemptRecord> AttemptFromRow(const sql::Row& row) {
  AttemptRecord attempt;
  attempt.idempotency_key = row.Text(0);
  attempt.intent_id = row.Text(1);
  const std::optional<PspOperation> operation = ParsePspOperation(row.Text(2));
  const std::optional<AttemptStatus> status = ParseAttemptStatus(row.Text(5));
  if (!operation.has_value() || !status.has_value()) {
    return absl::DataLossError("psp attempt has an unknown operation or status");
  }
  attempt.operation = *operation;
  attempt.attempt_group = row.Int(3);
  attempt.amount_minor = row.Int(4);
  attempt.status = *status;
  attempt.psp_object_id = row.OptionalText(6).value_or("");
  attempt.result_code = row.OptionalText(7).value_or("");
  attempt.try_count = row.Int(8);
  attempt.created_at_ms = row.Int(9);
  attempt.updated_at_ms = row.Int(10);
  return attempt;
}

template <typename T, typename F>
absl::StatusOr<std::vector<T>> MapRows(const sql::ResultSet& rows, F convert) {
  std::vector<T> out;
  out.reserve(rows.rows.size());
  for (const sql::Row& row : rows.rows) {
    absl::StatusOr<T> value = convert(row);
    if (!value.ok()) return value.status();
    out.push_back(std::move(*value));
  }
  return out;
}

// The statements of the hot path, formatted once (not per call).
const std::string& SelectIntentById() {
  static const std::string sql =
      fmt::format("SELECT {} FROM payment_intents WHERE id = ?", kIntentColumns);
  return sql;
}
const std::string& SelectIntentByOrder() {
  static const std::string sql =
      fmt::format("SELECT {} FROM payment_intents WHERE order_id = ?", kIntentColumns);
  return sql;
}

absl::StatusOr<std::optional<IntentRecord>> LoadIntentWhere(sql::Transaction& tx,
                                                            const std::string& select,
                                                            const std::string& value) {
  absl::StatusOr<sql::ResultSet> rows = tx.Query(select, {value});
  if (!rows.ok()) return rows.status();
  if (rows->empty()) return std::optional<IntentRecord>();
  absl::StatusOr<IntentRecord> intent = IntentFromRow(rows->rows.front());
  if (!intent.ok()) return intent.status();
  return std::optional<IntentRecord>(std::move(*intent));
}

}  // namespace

std::string_view AttemptStatusName(AttemptStatus status) {
  switch (status) {
    case AttemptStatus::kPending:
      return "pending";
    case AttemptStatus::kUnknown:
      return "unknown";
    case AttemptStatus::kSucceeded:
      return "succeeded";
    case AttemptStatus::kFailed:
      return "failed";
  }
  std::abort();
}

absl::StatusOr<std::optional<IntentRecord>> LoadIntent(sql::Transaction& tx,
                                                       const std::string& id) {
  return LoadIntentWhere(tx, SelectIntentById(), id);
}

absl::StatusOr<std::optional<IntentRecord>> LoadIntentByOrder(sql::Transaction& tx,
                                                              const std::string& order_id) {
  return LoadIntentWhere(tx, SelectIntentByOrder(), order_id);
}

absl::Status InsertIntent(sql::Transaction& tx, const IntentRecord& i) {
  static const std::string kInsert = fmt::format(
      "INSERT INTO payment_intents ({}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
      "?, ?, ?, ?, ?, ?, ?, ?)",
      kIntentColumns);
  return tx
      .Execute(kInsert, {i.id,
                         i.order_id,
                         i.customer_id,
                         i.payment_method,
                         i.amounts.amount_minor,
                         i.amounts.currency,
                         std::string(IntentStateName(i.state)),
                         i.amounts.authorized_minor,
                         i.amounts.captured_minor,
                         i.amounts.refunded_minor,
                         i.psp_authorization_id,
                         i.decline_reason,
                         int64_t{i.fraud_score},
                         i.fraud_reasons,
                         i.billing_country,
                         i.shipping_country,
                         i.client_ip,
                         i.version,
                         i.created_at_ms,
                         i.updated_at_ms,
                         i.fraud_key.empty() ? i.customer_id : i.fraud_key})
      .status();
}

absl::Status UpdateIntent(sql::Transaction& tx, const IntentRecord& i) {
  absl::StatusOr<int64_t> changed = tx.Execute(
      "UPDATE payment_intents SET state = ?, authorized_minor = ?, captured_minor = ?, "
      "refunded_minor = ?, psp_authorization_id = ?, decline_reason = ?, fraud_score = ?, "
      "fraud_reasons = ?, version = ?, updated_at_ms = ? WHERE id = ? AND version = ?",
      {std::string(IntentStateName(i.state)), i.amounts.authorized_minor, i.amounts.captured_minor,
       i.amounts.refunded_minor, i.psp_authorization_id, i.decline_reason, int64_t{i.fraud_score},
       i.fraud_reasons, i.version, i.updated_at_ms, i.id, i.version - 1});
  if (!changed.ok()) return changed.status();
  if (*changed != 1) return absl::AbortedError("payment intent changed concurrently");
  return absl::OkStatus();
}

absl::StatusOr<std::vector<IntentRecord>> ListIntentsInState(sql::Transaction& tx,
                                                             IntentState state, int64_t limit) {
  absl::StatusOr<sql::ResultSet> rows = tx.Query(
      fmt::format("SELECT {} FROM payment_intents WHERE state = ? ORDER BY updated_at_ms, id "
                  "LIMIT ?",
                  kIntentColumns),
      {std::string(IntentStateName(state)), limit});
  if (!rows.ok()) return rows.status();
  return MapRows<IntentRecord>(*rows, IntentFromRow);
}

absl::StatusOr<std::vector<IntentRecord>> ListIntentsInStateBefore(sql::Transaction& tx,
                                                                   IntentState state,
                                                                   int64_t before_ms,
                                                                   int64_t limit) {
  absl::StatusOr<sql::ResultSet> rows =
      tx.Query(fmt::format("SELECT {} FROM payment_intents WHERE state = ? AND updated_at_ms < ? "
                           "ORDER BY updated_at_ms, id LIMIT ?",
                           kIntentColumns),
               {std::string(IntentStateName(state)), before_ms, limit});
  if (!rows.ok()) return rows.status();
  return MapRows<IntentRecord>(*rows, IntentFromRow);
}

absl::StatusOr<std::optional<int64_t>> LatestAttemptUpdateMs(sql::Transaction& tx,
                                                             const std::string& intent_id,
                                                             PspOperation operation) {
  absl::StatusOr<sql::ResultSet> rows =
      tx.Query("SELECT MAX(updated_at_ms) FROM psp_attempts WHERE intent_id = ? AND operation = ?",
               {intent_id, std::string(PspOperationName(operation))});
  if (!rows.ok()) return rows.status();
  if (rows->empty()) return std::nullopt;
  return rows->rows.front().OptionalInt(0);
}

absl::StatusOr<bool> CommandRecorded(sql::Transaction& tx, const std::string& command_id) {
  absl::StatusOr<sql::ResultSet> rows =
      tx.Query("SELECT 1 FROM payment_commands WHERE command_id = ?", {command_id});
  if (!rows.ok()) return rows.status();
  return !rows->empty();
}

absl::Status InsertAttempt(sql::Transaction& tx, const AttemptRecord& a) {
  static const std::string kInsert = fmt::format(
      "INSERT INTO psp_attempts ({}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", kAttemptColumns);
  return tx
      .Execute(kInsert,
               {a.idempotency_key, a.intent_id, std::string(PspOperationName(a.operation)),
                a.attempt_group, a.amount_minor, std::string(AttemptStatusName(a.status)),
                a.psp_object_id, a.result_code, a.try_count, a.created_at_ms, a.updated_at_ms})
      .status();
}

absl::Status UpdateAttempt(sql::Transaction& tx, const AttemptRecord& a) {
  return tx
      .Execute(
          "UPDATE psp_attempts SET status = ?, psp_object_id = ?, result_code = ?, try_count = ?, "
          "updated_at_ms = ? WHERE idempotency_key = ?",
          {std::string(AttemptStatusName(a.status)), a.psp_object_id, a.result_code, a.try_count,
           a.updated_at_ms, a.idempotency_key})
      .status();
}

absl::StatusOr<std::optional<AttemptRecord>> LoadAttempt(sql::Transaction& tx,
                                                         const std::string& key) {
  static const std::string kSelect =
      fmt::format("SELECT {} FROM psp_attempts WHERE idempotency_key = ?", kAttemptColumns);
  absl::StatusOr<sql::ResultSet> rows = tx.Query(kSelect, {key});
  if (!rows.ok()) return rows.status();
  if (rows->empty()) return std::optional<AttemptRecord>();
  absl::StatusOr<AttemptRecord> attempt = AttemptFromRow(rows->rows.front());
  if (!attempt.ok()) return attempt.status();
  return std::optional<AttemptRecord>(std::move(*attempt));
}

absl::StatusOr<std::vector<AttemptRecord>> ListOpenAttempts(sql::Transaction& tx,
                                                            int64_t unknown_before_ms,
                                                            int64_t limit) {
  absl::StatusOr<sql::ResultSet> rows = tx.Query(
      fmt::format("SELECT {} FROM psp_attempts WHERE status = 'pending' OR (status = 'unknown' "
                  "AND updated_at_ms < ?) ORDER BY created_at_ms LIMIT ?",
                  kAttemptColumns),
      {unknown_before_ms, limit});
  if (!rows.ok()) return rows.status();
  return MapRows<AttemptRecord>(*rows, AttemptFromRow);
}

absl::StatusOr<std::vector<AttemptRecord>> ListOpenAttemptsOfIntent(sql::Transaction& tx,
                                                                    const std::string& intent_id) {
  absl::StatusOr<sql::ResultSet> rows = tx.Query(
      fmt::format("SELECT {} FROM psp_attempts WHERE intent_id = ? AND status IN ('pending', "
                  "'unknown') ORDER BY created_at_ms",
                  kAttemptColumns),
      {intent_id});
  if (!rows.ok()) return rows.status();
  return MapRows<AttemptRecord>(*rows, AttemptFromRow);
}

absl::StatusOr<int64_t> NextAttemptGroup(sql::Transaction& tx, const std::string& intent_id,
                                         PspOperation operation) {
  absl::StatusOr<sql::ResultSet> rows =
      tx.Query("SELECT MAX(attempt_group) FROM psp_attempts WHERE intent_id = ? AND operation = ?",
               {intent_id, std::string(PspOperationName(operation))});
  if (!rows.ok()) return rows.status();
  const std::optional<int64_t> max = rows->rows.front().OptionalInt(0);
  return max.has_value() ? *max + 1 : 0;
}

absl::Status InsertLedgerTransaction(sql::Transaction& tx, const std::string& transaction_id,
                                     const std::string& intent_id,
                                     const LedgerTransaction& transaction, int64_t now_ms) {
  if (absl::Status balanced = ValidateBalanced(transaction.entries); !balanced.ok()) {
    return balanced;
  }
  int64_t index = 0;
  for (const LedgerEntry& entry : transaction.entries) {
    absl::StatusOr<int64_t> inserted = tx.Execute(
        "INSERT INTO ledger_entries (transaction_id, entry_index, intent_id, movement, account, "
        "direction, amount_minor, currency, created_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        {transaction_id, index++, intent_id, std::string(MoneyMovementName(transaction.movement)),
         std::string(LedgerAccountName(entry.account)),
         std::string(EntryDirectionName(entry.direction)), entry.amount_minor, entry.currency,
         now_ms});
    if (!inserted.ok()) return inserted.status();
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<StoredLedgerEntry>> LoadLedger(sql::Transaction& tx) {
  absl::StatusOr<sql::ResultSet> rows = tx.Query(
      "SELECT transaction_id, account, direction, amount_minor, currency FROM ledger_entries "
      "ORDER BY transaction_id, entry_index");
  if (!rows.ok()) return rows.status();
  std::vector<StoredLedgerEntry> out;
  for (const sql::Row& row : rows->rows) {
    const std::optional<LedgerAccount> account = ParseLedgerAccount(row.Text(1));
    const std::optional<EntryDirection> direction = ParseEntryDirection(row.Text(2));
    if (!account.has_value() || !direction.has_value()) {
      return absl::DataLossError("ledger entry has an unknown account or direction");
    }
    out.push_back({row.Text(0), {*account, *direction, row.Int(3), row.Text(4)}});
  }
  return out;
}

absl::StatusOr<bool> RecordCommand(sql::Transaction& tx, const std::string& command_id,
                                   const std::string& intent_id, PspOperation operation,
                                   int64_t amount_minor, int64_t now_ms) {
  absl::StatusOr<int64_t> inserted = tx.Execute(
      "INSERT INTO payment_commands (command_id, intent_id, operation, amount_minor, "
      "created_at_ms) VALUES (?, ?, ?, ?, ?) ON CONFLICT (command_id) DO NOTHING",
      {command_id, intent_id, std::string(PspOperationName(operation)), amount_minor, now_ms});
  if (!inserted.ok()) return inserted.status();
  return *inserted == 1;
}

absl::StatusOr<bool> RecordNotification(sql::Transaction& tx, const std::string& event_id,
                                        const std::string& type, const std::string& object_id,
                                        int64_t now_ms) {
  absl::StatusOr<int64_t> inserted = tx.Execute(
      "INSERT INTO psp_notifications (event_id, type, object_id, received_at_ms) "
      "VALUES (?, ?, ?, ?) ON CONFLICT (event_id) DO NOTHING",
      {event_id, type, object_id, now_ms});
  if (!inserted.ok()) return inserted.status();
  return *inserted == 1;
}

absl::StatusOr<std::optional<StoredHttpResponse>> LoadHttpIdempotency(sql::Transaction& tx,
                                                                      const std::string& key) {
  absl::StatusOr<sql::ResultSet> rows = tx.Query(
      "SELECT request_hash, status, body, created_at_ms FROM http_idempotency WHERE "
      "idempotency_key = ?",
      {key});
  if (!rows.ok()) return rows.status();
  if (rows->empty()) return std::optional<StoredHttpResponse>();
  const sql::Row& row = rows->rows.front();
  StoredHttpResponse stored;
  stored.request_hash = row.Text(0);
  stored.status = static_cast<int>(row.Int(1));
  stored.body = row.Text(2);
  stored.created_at_ms = row.Int(3);
  return std::optional<StoredHttpResponse>(std::move(stored));
}

absl::Status SaveHttpIdempotency(sql::Transaction& tx, const std::string& key,
                                 const StoredHttpResponse& response, int64_t now_ms) {
  return tx
      .Execute(
          "INSERT INTO http_idempotency (idempotency_key, request_hash, status, body, "
          "created_at_ms, attempt_key, answer_kind) VALUES (?, ?, ?, ?, ?, ?, ?) "
          "ON CONFLICT (idempotency_key) DO UPDATE SET request_hash = excluded.request_hash, "
          "status = excluded.status, body = excluded.body, created_at_ms = "
          "excluded.created_at_ms, attempt_key = excluded.attempt_key, answer_kind = "
          "excluded.answer_kind",
          {key, response.request_hash, int64_t{response.status}, response.body, now_ms,
           response.attempt_key.empty() ? sql::Value() : sql::Value(response.attempt_key),
           int64_t{response.answer_kind}})
      .status();
}

absl::StatusOr<std::vector<WaitingHttpKey>> ListHttpKeysOfAttempt(sql::Transaction& tx,
                                                                  const std::string& attempt_key) {
  absl::StatusOr<sql::ResultSet> rows = tx.Query(
      "SELECT idempotency_key, request_hash, answer_kind FROM http_idempotency WHERE "
      "attempt_key = ? AND status = 0 LIMIT ?",
      {attempt_key, kHttpKeysPerAttemptMax});
  if (!rows.ok()) return rows.status();
  std::vector<WaitingHttpKey> out;
  out.reserve(rows->rows.size());
  for (const sql::Row& row : rows->rows) {
    out.push_back({row.Text(0), row.Text(1), static_cast<int>(row.Int(2))});
  }
  return out;
}

absl::Status DeleteHttpIdempotency(sql::Transaction& tx, const std::string& key) {
  return tx.Execute("DELETE FROM http_idempotency WHERE idempotency_key = ?", {key}).status();
}

namespace {

// The screening reads of a new authorization, on the payments writer for every one: each is
// answered from an index alone (see QueriesThatMustUseAnIndex).
constexpr char kUnstoredCustomerHistory[] =
    "SELECT COUNT(*), COALESCE(SUM(authorized_minor), 0) FROM (SELECT authorized_minor FROM "
    "payment_intents WHERE fraud_key = ? AND authorized_minor > 0 "
    "ORDER BY created_at_ms DESC LIMIT ?) AS recent";
constexpr char kUnstoredCardWindow[] =
    "SELECT COUNT(*) FROM payment_intents WHERE payment_method = ? AND created_at_ms >= ?";
constexpr char kUnstoredCustomerWindow[] =
    "SELECT COUNT(*), COUNT(DISTINCT payment_method), COALESCE(SUM(CASE WHEN payment_method "
    "= ? THEN 1 ELSE 0 END), 0) FROM payment_intents WHERE fraud_key = ? AND created_at_ms >= ?";
constexpr char kUnstoredIpWindow[] =
    "SELECT COUNT(*) FROM payment_intents WHERE client_ip = ? AND created_at_ms >= ?";

// LoadFraudHistory for an intent that is not stored (no id yet: screened before its insert).
// The same facts as the general queries, whose `id <> ?` can then exclude nothing; without it
// the velocity counts are answered from their (key, created_at_ms) indexes alone, with no
// table row read per counted intent, and the customer's count and distinct cards come from one
// scan of the window instead of two.
absl::StatusOr<FraudInput> LoadUnstoredFraudHistory(sql::Transaction& tx,
                                                    const IntentRecord& intent,
                                                    const std::string& fraud_key,
                                                    int64_t window_start_ms, FraudInput input) {
  absl::StatusOr<sql::ResultSet> history =
      tx.Query(kUnstoredCustomerHistory, {fraud_key, kFraudHistoryPaymentsMax});
  if (!history.ok()) return history.status();
  input.customer_payment_count = history->rows.front().Int(0);
  if (input.customer_payment_count > 0) {
    input.customer_average_amount_minor =
        history->rows.front().Int(1) / input.customer_payment_count;
  }
  absl::StatusOr<sql::ResultSet> card =
      tx.Query(kUnstoredCardWindow, {intent.payment_method, window_start_ms});
  if (!card.ok()) return card.status();
  input.card_attempts_in_window = card->rows.front().OptionalInt(0).value_or(0);
  absl::StatusOr<sql::ResultSet> customer =
      tx.Query(kUnstoredCustomerWindow, {intent.payment_method, fraud_key, window_start_ms});
  if (!customer.ok()) return customer.status();
  input.customer_attempts_in_window = customer->rows.front().OptionalInt(0).value_or(0);
  if (!intent.client_ip.empty()) {
    absl::StatusOr<sql::ResultSet> ip =
        tx.Query(kUnstoredIpWindow, {intent.client_ip, window_start_ms});
    if (!ip.ok()) return ip.status();
    input.ip_attempts_in_window = ip->rows.front().OptionalInt(0).value_or(0);
  }
  // Distinct cards in the window, this one included.
  const int64_t distinct = customer->rows.front().Int(1);
  const bool this_card_seen = customer->rows.front().Int(2) > 0;
  input.customer_distinct_cards = std::max<int64_t>(distinct + (this_card_seen ? 0 : 1), 1);
  return input;
}

}  // namespace

absl::StatusOr<FraudInput> LoadFraudHistory(sql::Transaction& tx, const IntentRecord& intent,
                                            int64_t window_start_ms) {
  FraudInput input;
  input.amount_minor = intent.amounts.amount_minor;
  input.billing_country = intent.billing_country;
  input.shipping_country = intent.shipping_country;
  auto count = [&tx](const std::string& sql,
                     const std::vector<sql::Value>& params) -> absl::StatusOr<int64_t> {
    absl::StatusOr<sql::ResultSet> rows = tx.Query(sql, params);
    if (!rows.ok()) return rows.status();
    return rows->rows.front().OptionalInt(0).value_or(0);
  };
  // Customer-level rules count by the fraud key (the customer id, or a guest's e-mail or card:
  // see FraudKeyFor), never by the shared guest owner id.
  const std::string& fraud_key = intent.fraud_key.empty() ? intent.customer_id : intent.fraud_key;
  if (intent.id.empty()) {
    return LoadUnstoredFraudHistory(tx, intent, fraud_key, window_start_ms, std::move(input));
  }
  // The customer's history: the most recent successful authorizations, bounded so the cost
  // does not grow with a loyal customer's lifetime.
  absl::StatusOr<sql::ResultSet> history = tx.Query(
      "SELECT COUNT(*), COALESCE(SUM(authorized_minor), 0) FROM (SELECT authorized_minor FROM "
      "payment_intents WHERE fraud_key = ? AND id <> ? AND authorized_minor > 0 "
      "ORDER BY created_at_ms DESC LIMIT ?) AS recent",
      {fraud_key, intent.id, kFraudHistoryPaymentsMax});
  if (!history.ok()) return history.status();
  input.customer_payment_count = history->rows.front().Int(0);
  if (input.customer_payment_count > 0) {
    input.customer_average_amount_minor =
        history->rows.front().Int(1) / input.customer_payment_count;
  }
  absl::StatusOr<int64_t> card = count(
      "SELECT COUNT(*) FROM payment_intents WHERE payment_method = ? AND created_at_ms >= ? AND "
      "id <> ?",
      {intent.payment_method, window_start_ms, intent.id});
  if (!card.ok()) return card.status();
  input.card_attempts_in_window = *card;
  absl::StatusOr<int64_t> customer = count(
      "SELECT COUNT(*) FROM payment_intents WHERE fraud_key = ? AND created_at_ms >= ? AND "
      "id <> ?",
      {fraud_key, window_start_ms, intent.id});
  if (!customer.ok()) return customer.status();
  input.customer_attempts_in_window = *customer;
  if (!intent.client_ip.empty()) {
    absl::StatusOr<int64_t> ip = count(
        "SELECT COUNT(*) FROM payment_intents WHERE client_ip = ? AND created_at_ms >= ? AND "
        "id <> ?",
        {intent.client_ip, window_start_ms, intent.id});
    if (!ip.ok()) return ip.status();
    input.ip_attempts_in_window = *ip;
  }
  // Distinct cards in the window, this one included whether or not its intent is stored yet.
  absl::StatusOr<sql::ResultSet> cards = tx.Query(
      "SELECT COUNT(DISTINCT payment_method), COALESCE(SUM(CASE WHEN payment_method = ? THEN 1 "
      "ELSE 0 END), 0) FROM payment_intents WHERE fraud_key = ? AND created_at_ms >= ?",
      {intent.payment_method, fraud_key, window_start_ms});
  if (!cards.ok()) return cards.status();
  const int64_t distinct = cards->rows.front().Int(0);
  const bool this_card_seen = cards->rows.front().Int(1) > 0;
  input.customer_distinct_cards = std::max<int64_t>(distinct + (this_card_seen ? 0 : 1), 1);
  return input;
}

std::vector<IndexedQuery> QueriesThatMustUseAnIndex() {
  const std::string key = "cus-1";
  const std::string card = "pm_1";
  return {
      {kUnstoredCustomerHistory,
       {key, kFraudHistoryPaymentsMax},
       "COVERING INDEX payment_intents_fraud_history"},
      {kUnstoredCardWindow, {card, int64_t{0}}, "COVERING INDEX payment_intents_method"},
      {kUnstoredCustomerWindow,
       {card, key, int64_t{0}},
       "COVERING INDEX payment_intents_fraud_history"},
      {kUnstoredIpWindow,
       {std::string("192.0.2.1"), int64_t{0}},
       "COVERING INDEX payment_intents_ip"},
  };
}

}  // namespace emporium::payments
