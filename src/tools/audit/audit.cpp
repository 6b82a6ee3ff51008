#include "tools/audit/audit.h"

#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <utility>

#include "common/clock.h"
#include "common/format.h"
#include "common/status_macros.h"
#include "fmt/format.h"
#include "inventory/store.h"
#include "ordering/model.h"
#include "payments/cli.h"
#include "payments/model.h"
#include "payments/store.h"
#include "platform/sql/sqlite_database.h"

namespace emporium::audit {
namespace {

using sql::Value;

constexpr char kCountTables[] =
    "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN (?, ?, ?)";

// ---- inventory ----
constexpr char kCountStock[] = "SELECT COUNT(*) FROM stock";
constexpr char kOversoldStock[] =
    "SELECT sku, location_id, on_hand, reserved, allocated FROM stock "
    "WHERE on_hand < 0 OR reserved < 0 OR allocated < 0 OR reserved + allocated > on_hand "
    "ORDER BY sku, location_id";

// ---- ordering: the columns the invariants need, a page at a time in one read snapshot ----
constexpr char kSelectOrdersPage[] =
    "SELECT id, state, saga_step, saga_deadline_ms, total_minor, currency FROM orders "
    "WHERE id > ? ORDER BY id LIMIT ?";

// ---- payments ----
constexpr char kSelectIntentsPage[] =
    "SELECT id, order_id, state, amount_minor, authorized_minor, captured_minor, "
    "refunded_minor, currency, updated_at_ms FROM payment_intents WHERE id > ? ORDER BY id "
    "LIMIT ?";
// Successful PSP calls per intent and operation (at most four rows per intent).
constexpr char kSucceededAttempts[] =
    "SELECT intent_id, operation, COUNT(*), SUM(amount_minor) FROM psp_attempts "
    "WHERE status = ? GROUP BY intent_id, operation";
// The PSP clearing account per intent: debits are captures, credits refunds.
constexpr char kClearingPerIntent[] =
    "SELECT intent_id, direction, SUM(amount_minor) FROM ledger_entries WHERE account = ? "
    "GROUP BY intent_id, direction";

constexpr int64_t kPageRows = 1000;

// Records one check's violations, listing at most kViolationsPerCheckMax of them.
class ViolationSink {
 public:
  ViolationSink(AuditReport& report, std::string context, std::string invariant)
      : report_(report), context_(std::move(context)), invariant_(std::move(invariant)) {}

  void Add(std::string detail) {
    ++count_;
    if (listed_ >= kViolationsPerCheckMax) {
      ++report_.violations_unlisted;
      return;
    }
    ++listed_;
    report_.violations.push_back(Violation{context_, invariant_, std::move(detail)});
  }
  int64_t count() const { return count_; }

 private:
  AuditReport& report_;
  const std::string context_;
  const std::string invariant_;
  size_t listed_ = 0;
  int64_t count_ = 0;
};

struct CloseDatabase {
  void operator()(sql::Database* database) const {
    database->Close();
    delete database;
  }
};
// A context's database, closed when it goes out of scope; null when the context was skipped.
using ContextDatabase = std::unique_ptr<sql::Database, CloseDatabase>;

// Opens `data_dir`/`name`.db when it exists and has every table of `tables` (at most three);
// null with a note otherwise. Never creates the file.
absl::StatusOr<ContextDatabase> OpenContext(const std::string& data_dir, const std::string& name,
                                            const std::vector<std::string>& tables,
                                            AuditReport& report) {
  const std::string path = fmt::format("{}/{}.db", data_dir, name);
  if (!std::filesystem::exists(path)) {
    report.notes.push_back(fmt::format("{}: no database at {}; skipped", name, path));
    return ContextDatabase();
  }
  sql::SqliteOptions options;
  options.path = path;
  options.name = name + "-audit";
  options.reader_count = 1;
  absl::StatusOr<std::unique_ptr<sql::Database>> opened = sql::OpenSqlite(options);
  if (!opened.ok()) {
    return absl::Status(opened.status().code(),
                        fmt::format("{}: {}", name, opened.status().message()));
  }
  ContextDatabase database(opened->release());
  std::vector<Value> params;
  for (size_t i = 0; i < 3; ++i) params.emplace_back(i < tables.size() ? tables[i] : tables[0]);
  int64_t found = 0;
  absl::Status read = database->Read([&](sql::Transaction& tx) -> absl::Status {
    ASSIGN_OR_RETURN(sql::ResultSet count, tx.Query(kCountTables, params));
    found = count.rows.at(0).Int(0);
    return absl::OkStatus();
  });
  if (!read.ok()) return absl::Status(read.code(), fmt::format("{}: {}", name, read.message()));
  if (found != static_cast<int64_t>(tables.size())) {
    report.notes.push_back(
        fmt::format("{}: {} has no {} schema (never migrated); skipped", name, path, name));
    return ContextDatabase();
  }
  return database;
}

// ---- inventory -----------------------------------------------------------------------------

absl::Status AuditInventory(const std::string& data_dir, AuditReport& report) {
  ASSIGN_OR_RETURN(ContextDatabase database,
                   OpenContext(data_dir, "inventory", {"stock", "ledger"}, report));
  if (database == nullptr) return absl::OkStatus();

  int64_t stock_rows = 0;
  ViolationSink oversell(report, "inventory", "no-oversell");
  absl::Status read = database->Read([&](sql::Transaction& transaction) -> absl::Status {
    ASSIGN_OR_RETURN(sql::ResultSet count, transaction.Query(kCountStock));
    stock_rows = count.rows.at(0).Int(0);
    ASSIGN_OR_RETURN(sql::ResultSet bad, transaction.Query(kOversoldStock));
    for (const sql::Row& row : bad.rows) {
      const int64_t on_hand = row.Int(2);
      const int64_t reserved = row.Int(3);
      const int64_t allocated = row.Int(4);
      std::string problem;
      if (on_hand < 0 || reserved < 0 || allocated < 0) problem = "negative quantity";
      if (reserved + allocated > on_hand) {
        problem += problem.empty() ? "" : "; ";
        problem += fmt::format("oversold by {}", reserved + allocated - on_hand);
      }
      oversell.Add(fmt::format("{}@{}: on_hand={} reserved={} allocated={}: {}", row.Text(0),
                               row.Text(1), on_hand, reserved, allocated, problem));
    }
    return absl::OkStatus();
  });
  if (!read.ok()) {
    return absl::Status(read.code(), fmt::format("inventory: {}", read.message()));
  }
  report.checks.push_back(
      fmt::format("inventory/no-oversell: {} stock rows, reserved + allocated <= on_hand, none "
                  "negative",
                  stock_rows));

  inventory::InventoryStore store(*database);
  absl::StatusOr<inventory::RebuildReport> rebuilt =
      store.Rebuild(inventory::InventoryStore::RebuildMode::kCheckOnly);
  if (!rebuilt.ok() && rebuilt.status().code() == absl::StatusCode::kFailedPrecondition) {
    // The ledger itself cannot be replayed (a sequence gap, or history that breaks the
    // invariant): a violation, not a failure of the audit.
    ViolationSink(report, "inventory", "ledger-consistency")
        .Add(std::string(rebuilt.status().message()));
    report.checks.push_back("inventory/ledger-projection: the ledger could not be replayed");
    return absl::OkStatus();
  }
  if (!rebuilt.ok()) {
    return absl::Status(rebuilt.status().code(),
                        fmt::format("inventory rebuild check: {}", rebuilt.status().message()));
  }
  ViolationSink projection(report, "inventory", "ledger-projection");
  for (const std::string& mismatch : rebuilt->mismatches) projection.Add(mismatch);
  report.checks.push_back(
      fmt::format("inventory/ledger-projection: {} projected rows compared with the stock table",
                  rebuilt->rows_checked));
  return absl::OkStatus();
}

// ---- ordering ------------------------------------------------------------------------------

struct OrderFacts {
  ordering::OrderState state = ordering::OrderState::kPending;
  ordering::SagaStep step = ordering::SagaStep::kDone;
  int64_t deadline_ms = 0;
  int64_t total_minor = 0;
  std::string currency;
};

// CONFIRMED or any later forward state: settled without being REJECTED / CANCELLED.
bool ConfirmedOrLater(ordering::OrderState state) {
  return ordering::IsSettled(state) && !ordering::IsTerminal(state);
}

struct OrderingSnapshot {
  std::map<std::string, OrderFacts> orders;  // by order id
  std::vector<std::string> unreadable;       // rows with an unknown state or step, described
};

absl::StatusOr<std::optional<OrderingSnapshot>> ReadOrdering(const std::string& data_dir,
                                                             AuditReport& report) {
  ASSIGN_OR_RETURN(ContextDatabase database, OpenContext(data_dir, "ordering", {"orders"}, report));
  if (database == nullptr) return std::optional<OrderingSnapshot>();
  OrderingSnapshot snapshot;
  bool partial = false;
  absl::Status read = database->Read([&](sql::Transaction& tx) -> absl::Status {
    std::string after;
    for (int64_t page = 0; page * kPageRows < kRowsPerContextMax; ++page) {
      ASSIGN_OR_RETURN(sql::ResultSet rows, tx.Query(kSelectOrdersPage, {after, kPageRows}));
      for (const sql::Row& row : rows.rows) {
        const std::string id = row.Text(0);
        const std::optional<ordering::OrderState> state = ordering::ParseOrderState(row.Text(1));
        const std::optional<ordering::SagaStep> step = ordering::ParseSagaStep(row.Text(2));
        if (!state.has_value() || !step.has_value()) {
          snapshot.unreadable.push_back(
              fmt::format("order {} has an unknown state '{}' or saga "
                          "step '{}'",
                          id, row.Text(1), row.Text(2)));
          continue;
        }
        snapshot.orders[id] = OrderFacts{*state, *step, row.Int(3), row.Int(4), row.Text(5)};
      }
      if (static_cast<int64_t>(rows.rows.size()) < kPageRows) return absl::OkStatus();
      after = rows.rows.back().Text(0);
    }
    partial = true;
    return absl::OkStatus();
  });
  if (!read.ok()) return absl::Status(read.code(), fmt::format("ordering: {}", read.message()));
  if (partial) {
    report.notes.push_back(
        fmt::format("ordering: only the first {} orders were read; the rest were not audited",
                    kRowsPerContextMax));
  }
  return std::optional<OrderingSnapshot>(std::move(snapshot));
}

void CheckSettled(const OrderingSnapshot& order_book, int64_t now_ms, int64_t grace_ms,
                  AuditReport& report) {
  ViolationSink stuck(report, "ordering", "settled");
  for (const std::string& unreadable : order_book.unreadable) stuck.Add(unreadable);
  int64_t confirmed = 0;
  int64_t closed = 0;
  int64_t progressing = 0;
  for (const auto& [id, order] : order_book.orders) {
    if (ConfirmedOrLater(order.state)) {
      ++confirmed;
    } else if (ordering::IsTerminal(order.state)) {
      ++closed;
    } else if (order.step == ordering::SagaStep::kDone) {
      stuck.Add(fmt::format("order {} is stuck: {} with nothing outstanding in its saga", id,
                            ordering::OrderStateName(order.state)));
    } else if (now_ms - order.deadline_ms > grace_ms) {
      stuck.Add(fmt::format(
          "order {} is stuck: {} with saga step {} past its deadline by {} ms (grace {} ms)", id,
          ordering::OrderStateName(order.state), ordering::SagaStepName(order.step),
          now_ms - order.deadline_ms, grace_ms));
    } else {
      ++progressing;
    }
  }
  report.checks.push_back(
      fmt::format("ordering/settled: {} orders ({} confirmed, {} rejected or cancelled, {} "
                  "progressing within their saga deadline + {} ms)",
                  order_book.orders.size() + order_book.unreadable.size(), confirmed, closed,
                  progressing, grace_ms));
}

// ---- payments ------------------------------------------------------------------------------

struct IntentFacts {
  std::string order_id;
  std::string state_name;
  std::optional<payments::IntentState> state;  // nullopt: unknown state name
  payments::IntentAmounts amounts;
  int64_t updated_at_ms = 0;
};

struct SucceededCalls {
  int64_t count = 0;
  int64_t amount_minor = 0;
};

struct ClearingPostings {
  int64_t debit_minor = 0;   // captures
  int64_t credit_minor = 0;  // refunds
};

struct PaymentsSnapshot {
  std::map<std::string, IntentFacts> intents;          // by intent id
  std::map<std::string, std::string> intent_by_order;  // order id -> intent id
  // intent id -> operation name -> successful PSP calls.
  std::map<std::string, std::map<std::string, SucceededCalls>> succeeded;
  std::map<std::string, ClearingPostings> clearing;  // by intent id
  std::vector<payments::StoredLedgerEntry> ledger;
};

absl::Status ReadIntents(sql::Transaction& tx, PaymentsSnapshot& snapshot, bool& partial) {
  std::string after;
  for (int64_t page = 0; page * kPageRows < kRowsPerContextMax; ++page) {
    ASSIGN_OR_RETURN(sql::ResultSet rows, tx.Query(kSelectIntentsPage, {after, kPageRows}));
    for (const sql::Row& row : rows.rows) {
      IntentFacts intent;
      intent.order_id = row.Text(1);
      intent.state_name = row.Text(2);
      intent.state = payments::ParseIntentState(intent.state_name);
      intent.amounts.amount_minor = row.Int(3);
      intent.amounts.authorized_minor = row.Int(4);
      intent.amounts.captured_minor = row.Int(5);
      intent.amounts.refunded_minor = row.Int(6);
      intent.amounts.currency = row.Text(7);
      intent.updated_at_ms = row.Int(8);
      snapshot.intent_by_order[intent.order_id] = row.Text(0);
      snapshot.intents[row.Text(0)] = std::move(intent);
    }
    if (static_cast<int64_t>(rows.rows.size()) < kPageRows) return absl::OkStatus();
    after = rows.rows.back().Text(0);
  }
  partial = true;
  return absl::OkStatus();
}

absl::StatusOr<std::optional<PaymentsSnapshot>> ReadPayments(const std::string& data_dir,
                                                             AuditReport& report) {
  ASSIGN_OR_RETURN(ContextDatabase database,
                   OpenContext(data_dir, "payments",
                               {"payment_intents", "psp_attempts", "ledger_entries"}, report));
  if (database == nullptr) return std::optional<PaymentsSnapshot>();
  PaymentsSnapshot snapshot;
  bool partial = false;
  absl::Status read = database->Read([&](sql::Transaction& tx) -> absl::Status {
    RETURN_IF_ERROR(ReadIntents(tx, snapshot, partial));
    ASSIGN_OR_RETURN(
        sql::ResultSet attempts,
        tx.Query(kSucceededAttempts,
                 {std::string(payments::AttemptStatusName(payments::AttemptStatus::kSucceeded))}));
    for (const sql::Row& row : attempts.rows) {
      snapshot.succeeded[row.Text(0)][row.Text(1)] = SucceededCalls{row.Int(2), row.Int(3)};
    }
    ASSIGN_OR_RETURN(sql::ResultSet clearing,
                     tx.Query(kClearingPerIntent, {std::string(payments::LedgerAccountName(
                                                      payments::LedgerAccount::kPspClearing))}));
    const std::string debit(payments::EntryDirectionName(payments::EntryDirection::kDebit));
    for (const sql::Row& row : clearing.rows) {
      ClearingPostings& postings = snapshot.clearing[row.Text(0)];
      (row.Text(1) == debit ? postings.debit_minor : postings.credit_minor) += row.Int(2);
    }
    ASSIGN_OR_RETURN(snapshot.ledger, payments::LoadLedger(tx));
    return absl::OkStatus();
  });
  if (!read.ok()) return absl::Status(read.code(), fmt::format("payments: {}", read.message()));
  if (partial) {
    report.notes.push_back(
        fmt::format("payments: only the first {} intents were read; the rest were not audited",
                    kRowsPerContextMax));
  }
  return std::optional<PaymentsSnapshot>(std::move(snapshot));
}

bool WasAuthorized(const IntentFacts& intent) {
  if (!intent.state.has_value() || intent.amounts.authorized_minor <= 0) return false;
  switch (*intent.state) {
    case payments::IntentState::kAuthorized:
    case payments::IntentState::kCaptured:
    case payments::IntentState::kPartiallyRefunded:
    case payments::IntentState::kRefunded:
      return true;
    case payments::IntentState::kRequiresAuthorization:
    case payments::IntentState::kInReview:
    case payments::IntentState::kVoided:
    case payments::IntentState::kFailed:
    case payments::IntentState::kExpired:
      return false;
  }
  return false;
}

void CheckConfirmedHasAuthorization(const OrderingSnapshot& order_book,
                                    const PaymentsSnapshot& payment_book, AuditReport& report) {
  ViolationSink sink(report, "ordering", "confirmed-has-authorization");
  int64_t confirmed = 0;
  for (const auto& [id, order] : order_book.orders) {
    if (!ConfirmedOrLater(order.state)) continue;
    ++confirmed;
    auto found = payment_book.intent_by_order.find(id);
    if (found == payment_book.intent_by_order.end()) {
      sink.Add(fmt::format("order {} is {} but has no payment intent", id,
                           ordering::OrderStateName(order.state)));
      continue;
    }
    const IntentFacts& intent = payment_book.intents.at(found->second);
    if (!WasAuthorized(intent)) {
      sink.Add(fmt::format("order {} is {} but its payment intent {} is {} (authorized {} {})", id,
                           ordering::OrderStateName(order.state), found->second, intent.state_name,
                           intent.amounts.authorized_minor, intent.amounts.currency));
    }
  }
  report.checks.push_back(fmt::format(
      "ordering/confirmed-has-authorization: {} confirmed orders joined to their payment intents",
      confirmed));
}

void CheckNoLiveAuthorizationOnClosedOrders(const OrderingSnapshot& order_book,
                                            const PaymentsSnapshot& payment_book, int64_t now_ms,
                                            int64_t grace_ms, AuditReport& report) {
  ViolationSink sink(report, "ordering", "no-live-auth-on-cancelled");
  int64_t closed = 0;
  int64_t releasing = 0;
  for (const auto& [id, order] : order_book.orders) {
    if (!ordering::IsTerminal(order.state)) continue;
    ++closed;
    auto found = payment_book.intent_by_order.find(id);
    if (found == payment_book.intent_by_order.end()) continue;
    const IntentFacts& intent = payment_book.intents.at(found->second);
    if (intent.state != payments::IntentState::kAuthorized) continue;
    // The saga cancels first and voids after; a late authorization is voided once ordering
    // hears of it. Either is in flight for at most a deadline (plus the grace).
    const bool saga_releasing =
        order.step != ordering::SagaStep::kDone && now_ms - order.deadline_ms <= grace_ms;
    const bool recently_authorized = now_ms - intent.updated_at_ms <= grace_ms;
    if (saga_releasing || recently_authorized) {
      ++releasing;
      continue;
    }
    sink.Add(fmt::format(
        "order {} is {} but its payment intent {} still holds an authorization of {} {} "
        "(saga step {}, intent unchanged for {} ms)",
        id, ordering::OrderStateName(order.state), found->second, intent.amounts.authorized_minor,
        intent.amounts.currency, ordering::SagaStepName(order.step),
        now_ms - intent.updated_at_ms));
  }
  report.checks.push_back(
      fmt::format("ordering/no-live-auth-on-cancelled: {} rejected or cancelled orders, {} with "
                  "a void still in flight",
                  closed, releasing));
}

void CheckAmounts(const PaymentsSnapshot& payment_book, const OrderingSnapshot* order_book,
                  AuditReport& report) {
  ViolationSink sink(report, "payments", "amounts");
  int64_t joined = 0;
  int64_t unjoined = 0;
  for (const auto& [id, intent] : payment_book.intents) {
    const payments::IntentAmounts& a = intent.amounts;
    std::vector<std::string> problems;
    if (!intent.state.has_value()) {
      problems.push_back(fmt::format("unknown state '{}'", intent.state_name));
    }
    if (a.authorized_minor < 0 || a.captured_minor < 0 || a.refunded_minor < 0) {
      problems.push_back("negative amount");
    }
    if (a.refunded_minor > a.captured_minor) {
      problems.push_back(
          fmt::format("refunded {} > captured {}", a.refunded_minor, a.captured_minor));
    }
    if (a.captured_minor > a.authorized_minor) {
      problems.push_back(
          fmt::format("captured {} > authorized {}", a.captured_minor, a.authorized_minor));
    }
    if (a.authorized_minor > a.amount_minor) {
      problems.push_back(fmt::format("authorized {} > the intent's amount {}", a.authorized_minor,
                                     a.amount_minor));
    }
    if (order_book != nullptr) {
      auto order = order_book->orders.find(intent.order_id);
      if (order == order_book->orders.end()) {
        ++unjoined;
      } else {
        ++joined;
        if (order->second.currency != a.currency) {
          problems.push_back(fmt::format("currency {} but order {} is in {}", a.currency,
                                         intent.order_id, order->second.currency));
        } else if (a.authorized_minor > order->second.total_minor) {
          problems.push_back(fmt::format("authorized {} > order {} total {}", a.authorized_minor,
                                         intent.order_id, order->second.total_minor));
        }
      }
    }
    if (problems.empty()) continue;
    std::string detail = fmt::format("intent {} (order {}, {}):", id, intent.order_id, a.currency);
    for (size_t i = 0; i < problems.size(); ++i) {
      detail += (i == 0 ? " " : "; ") + problems[i];
    }
    sink.Add(std::move(detail));
  }
  report.checks.push_back(
      fmt::format("payments/amounts: {} intents, refunded <= captured <= authorized <= amount; {} "
                  "joined to their order's total",
                  payment_book.intents.size(), joined));
  if (order_book == nullptr) {
    report.notes.push_back(
        "payments/amounts: no ordering database; authorizations not compared with order totals");
  } else if (unjoined > 0) {
    report.notes.push_back(fmt::format(
        "payments/amounts: {} intents name an order the ordering database does not have "
        "(created over the payments API); checked against their own amount only",
        unjoined));
  }
}

void CheckLedgerAndPsp(const AuditOptions& options, const PaymentsSnapshot& payment_book,
                       AuditReport& report) {
  // AuditLedger compares the clearing account with the PSP's figures; comparing it with its own
  // clearing balance leaves only the balance violations.
  const payments::LedgerAudit own = payments::AuditLedger(payment_book.ledger, {});
  const payments::LedgerAudit balanced =
      payments::AuditLedger(payment_book.ledger, own.ledger_clearing_minor);
  ViolationSink unbalanced(report, "payments", "ledger-balanced");
  for (const std::string& violation : balanced.violations) unbalanced.Add(violation);
  report.checks.push_back(
      fmt::format("payments/ledger-balanced: {} ledger transactions, {} entries",
                  balanced.transaction_count, balanced.entry_count));

  if (options.psp_url.empty()) {
    report.notes.push_back("psp/balance-matches: skipped (no PSP URL given)");
    return;
  }
  absl::StatusOr<payments::LedgerAudit> psp =
      payments::AuditDataDir(options.data_dir, options.psp_url);
  if (!psp.ok()) {
    report.notes.push_back(
        fmt::format("psp/balance-matches: NOT checked: {}", psp.status().message()));
    return;
  }
  const std::set<std::string> known(balanced.violations.begin(), balanced.violations.end());
  ViolationSink mismatch(report, "psp", "balance-matches");
  for (const std::string& violation : psp->violations) {
    if (known.count(violation) == 0) mismatch.Add(violation);
  }
  std::set<std::string> currencies;
  for (const auto& [currency, amount] : psp->ledger_clearing_minor) currencies.insert(currency);
  for (const auto& [currency, amount] : psp->psp_net_minor) currencies.insert(currency);
  report.checks.push_back(
      fmt::format("psp/balance-matches: psp_clearing in {} currencies compared with the PSP at {}",
                  currencies.size(), options.psp_url));
}

void CheckNoDoubleCharge(const PaymentsSnapshot& payment_book, AuditReport& report) {
  ViolationSink sink(report, "payments", "no-double-charge");
  const std::string authorize(payments::PspOperationName(payments::PspOperation::kAuthorize));
  const std::string capture(payments::PspOperationName(payments::PspOperation::kCapture));
  const std::string refund(payments::PspOperationName(payments::PspOperation::kRefund));
  int64_t captures = 0;
  for (const auto& [id, intent] : payment_book.intents) {
    SucceededCalls authorized;
    SucceededCalls captured;
    SucceededCalls refunded;
    if (auto calls = payment_book.succeeded.find(id); calls != payment_book.succeeded.end()) {
      auto get = [&calls](const std::string& operation) {
        auto found = calls->second.find(operation);
        return found == calls->second.end() ? SucceededCalls{} : found->second;
      };
      authorized = get(authorize);
      captured = get(capture);
      refunded = get(refund);
    }
    ClearingPostings clearing;
    if (auto found = payment_book.clearing.find(id); found != payment_book.clearing.end()) {
      clearing = found->second;
    }
    captures += captured.count;
    const payments::IntentAmounts& a = intent.amounts;
    std::vector<std::string> problems;
    if (authorized.count > 1) {
      problems.push_back(fmt::format("{} successful PSP authorizations", authorized.count));
    }
    if (captured.count > 1) {
      problems.push_back(fmt::format("{} successful PSP captures (one allowed)", captured.count));
    }
    if (captured.amount_minor > a.authorized_minor) {
      problems.push_back(fmt::format("the PSP captured {} of an authorization of {}",
                                     captured.amount_minor, a.authorized_minor));
    }
    if (captured.amount_minor != a.captured_minor) {
      problems.push_back(fmt::format("successful PSP captures total {} but the intent records {}",
                                     captured.amount_minor, a.captured_minor));
    }
    if (refunded.amount_minor != a.refunded_minor) {
      problems.push_back(fmt::format("successful PSP refunds total {} but the intent records {}",
                                     refunded.amount_minor, a.refunded_minor));
    }
    if (clearing.debit_minor != a.captured_minor) {
      problems.push_back(fmt::format("the ledger posts {} captured to psp_clearing, the intent {}",
                                     clearing.debit_minor, a.captured_minor));
    }
    if (clearing.credit_minor != a.refunded_minor) {
      problems.push_back(
          fmt::format("the ledger posts {} refunded from psp_clearing, the intent {}",
                      clearing.credit_minor, a.refunded_minor));
    }
    if (problems.empty()) continue;
    std::string detail = fmt::format("intent {} (order {}, {}):", id, intent.order_id, a.currency);
    for (size_t i = 0; i < problems.size(); ++i) {
      detail += (i == 0 ? " " : "; ") + problems[i];
    }
    sink.Add(std::move(detail));
  }
  // Money the PSP moved, or the ledger posted, for an intent that does not exist.
  for (const auto& [id, calls] : payment_book.succeeded) {
    if (payment_book.intents.count(id) == 0) {
      sink.Add(fmt::format("successful PSP calls for intent {}, which does not exist", id));
    }
  }
  for (const auto& [id, postings] : payment_book.clearing) {
    if (payment_book.intents.count(id) == 0) {
      sink.Add(fmt::format("ledger postings for intent {}, which does not exist", id));
    }
  }
  report.checks.push_back(
      fmt::format("payments/no-double-charge: {} intents, {} successful PSP captures, one "
                  "authorization and one capture each, PSP calls and ledger = intent amounts",
                  payment_book.intents.size(), captures));
}

}  // namespace

absl::StatusOr<AuditReport> RunAudit(const AuditOptions& options) {
  std::error_code error;
  if (!std::filesystem::is_directory(options.data_dir, error)) {
    return absl::NotFoundError(fmt::format("no data directory at {}", options.data_dir));
  }
  const int64_t now_ms = options.now_ms.value_or(SystemClock::Instance().NowMs());
  AuditReport report;
  RETURN_IF_ERROR(AuditInventory(options.data_dir, report));
  // Orders first: see the header on why that order makes the cross-database join sound.
  ASSIGN_OR_RETURN(std::optional<OrderingSnapshot> order_book,
                   ReadOrdering(options.data_dir, report));
  ASSIGN_OR_RETURN(std::optional<PaymentsSnapshot> payment_book,
                   ReadPayments(options.data_dir, report));
  if (order_book.has_value()) CheckSettled(*order_book, now_ms, options.stuck_grace_ms, report);
  if (order_book.has_value() && payment_book.has_value()) {
    CheckConfirmedHasAuthorization(*order_book, *payment_book, report);
    CheckNoLiveAuthorizationOnClosedOrders(*order_book, *payment_book, now_ms,
                                           options.stuck_grace_ms, report);
  } else if (order_book.has_value()) {
    report.notes.push_back(
        "ordering/confirmed-has-authorization, no-live-auth-on-cancelled: skipped (no payments "
        "database)");
  }
  if (payment_book.has_value()) {
    CheckAmounts(*payment_book, order_book.has_value() ? &*order_book : nullptr, report);
    CheckLedgerAndPsp(options, *payment_book, report);
    CheckNoDoubleCharge(*payment_book, report);
  }
  return report;
}

absl::StatusOr<AuditReport> RunAudit(const std::string& data_dir) {
  AuditOptions options;
  options.data_dir = data_dir;
  return RunAudit(options);
}

std::string FormatAuditReport(const AuditReport& report) {
  std::string out;
  for (const Violation& violation : report.violations) {
    out += fmt::format("VIOLATION {}/{}: {}\n", violation.context, violation.invariant,
                       violation.detail);
  }
  if (report.violations_unlisted > 0) {
    out += fmt::format("... and {} more violations not listed\n", report.violations_unlisted);
  }
  for (const std::string& check : report.checks) out += fmt::format("checked {}\n", check);
  for (const std::string& note : report.notes) out += fmt::format("note: {}\n", note);
  out += report.ok() ? "audit: OK, no invariant violated\n"
                     : fmt::format("audit: FAILED, {} violations\n",
                                   static_cast<int64_t>(report.violations.size()) +
                                       report.violations_unlisted);
  return out;
}

Json AuditReportJson(const AuditReport& report) {
  Json violations = Json::array();
  for (const Violation& violation : report.violations) {
    violations.push_back({{"context", violation.context},
                          {"invariant", violation.invariant},
                          {"detail", violation.detail}});
  }
  return Json{{"ok", report.ok()},
              {"violations", std::move(violations)},
              {"violations_unlisted", report.violations_unlisted},
              {"checks", report.checks},
              {"notes", report.notes}};
}

int RunAuditCommand(const AuditOptions& options) {
  absl::StatusOr<AuditReport> report = RunAudit(options);
  if (!report.ok()) {
    std::fprintf(stderr, "emporium audit: %s\n", report.status().ToString().c_str());
    return 2;
  }
  const std::string text = FormatAuditReport(*report);
  std::fputs(text.c_str(), stdout);
  return report->ok() ? 0 : 1;
}

int RunAuditCommand(const std::string& data_dir) {
  AuditOptions options;
  options.data_dir = data_dir;
  return RunAuditCommand(options);
}

}  // namespace emporium::audit
