#include "platform/bus/outbox.h"

#include <algorithm>
#include <charconv>
#include <iterator>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "common/status_macros.h"
#include "fmt/format.h"

namespace emporium::bus {
namespace {

// seq = MAX(seq) + 1 inside the single writer's transaction: see schema.h.
constexpr std::string_view kInsertOutbox =
    "INSERT INTO outbox(seq, id, type, key, envelope, created_at_ms, published_at_ms) "
    "SELECT COALESCE(MAX(seq), 0) + 1, ?, ?, ?, ?, ?, NULL FROM outbox";
// PublishAll: the next seq read once, then single rows or bundles with explicit seqs.
constexpr std::string_view kSelectNextSeq = "SELECT COALESCE(MAX(seq), 0) + 1 FROM outbox";
constexpr std::string_view kInsertRow =
    "INSERT INTO outbox(seq, id, type, key, envelope, created_at_ms, published_at_ms, messages) "
    "VALUES (?, ?, ?, ?, ?, ?, NULL, ?)";

// A bundle's `envelope` column: this line, then per message a line of four decimal lengths
// (id, type, key, serialized envelope) and those four byte strings back to back. A serialized
// envelope is a JSON object, so it never starts with the first byte of this line.
constexpr std::string_view kBundleHeader = "emporium.bundle.v1\n";

void AppendBundleMessage(std::string& bundle, const Envelope& envelope) {
  const std::string serialized = Serialize(envelope);
  fmt::format_to(std::back_inserter(bundle), "{} {} {} {}\n", envelope.id.size(),
                 envelope.type.size(), envelope.key.size(), serialized.size());
  bundle += envelope.id;
  bundle += envelope.type;
  bundle += envelope.key;
  bundle += serialized;
}

absl::Status ReservedType() {
  return absl::InvalidArgumentError(
      fmt::format("bus: message type {} is reserved for outbox bundles", kBundleType));
}

// Appends the messages of the bundle in `bytes` (row `seq`) to `out`.
absl::Status UnpackBundle(int64_t seq, std::string_view bytes, std::vector<OutboxRow>& out) {
  auto corrupt = [seq](std::string_view why) {
    return absl::DataLossError(fmt::format("bus: outbox bundle at seq {}: {}", seq, why));
  };
  bytes.remove_prefix(kBundleHeader.size());
  if (bytes.empty()) return corrupt("no messages");
  while (!bytes.empty()) {
    const size_t line_end = bytes.find('\n');
    if (line_end == std::string_view::npos) return corrupt("truncated lengths");
    std::string_view lengths = bytes.substr(0, line_end);
    bytes.remove_prefix(line_end + 1);
    size_t sizes[4] = {0, 0, 0, 0};
    size_t total = 0;
    for (size_t i = 0; i < 4; ++i) {
      if (i > 0) {
        if (!lengths.starts_with(' ')) return corrupt("bad lengths");
        lengths.remove_prefix(1);
      }
      auto [end, error] =
          std::from_chars(lengths.data(), lengths.data() + lengths.size(), sizes[i]);
      // Bounded by the bytes left, so the sum cannot overflow.
      if (error != std::errc() || end == lengths.data() || sizes[i] > bytes.size() - total) {
        return corrupt("bad lengths");
      }
      lengths.remove_prefix(static_cast<size_t>(end - lengths.data()));
      total += sizes[i];
    }
    if (!lengths.empty()) return corrupt("bad lengths");
    OutboxRow row;
    row.seq = seq;
    std::string* parts[] = {&row.id, &row.type, &row.key, &row.envelope};
    for (size_t i = 0; i < 4; ++i) {
      parts[i]->assign(bytes.substr(0, sizes[i]));
      bytes.remove_prefix(sizes[i]);
    }
    out.push_back(std::move(row));
  }
  return absl::OkStatus();
}

constexpr std::string_view kSelectUnpublished =
    "SELECT seq, id, type, key, envelope, messages FROM outbox WHERE published_at_ms IS NULL "
    "AND seq > ? "
    "ORDER BY seq LIMIT ?";
constexpr std::string_view kMarkPublished =
    "UPDATE outbox SET published_at_ms = ? "
    "WHERE seq >= ? AND seq <= ? AND published_at_ms IS NULL";
// The front of the table by seq (a primary-key range), not every row: see PruneOutbox.
constexpr std::string_view kPrune =
    "DELETE FROM outbox WHERE seq <= (SELECT MAX(seq) FROM "
    "(SELECT seq FROM outbox ORDER BY seq LIMIT ?) AS front) "
    "AND seq < (SELECT MAX(seq) FROM outbox) "
    "AND published_at_ms IS NOT NULL AND published_at_ms < ?";
constexpr std::string_view kCountUnpublished =
    "SELECT CAST(COALESCE(SUM(messages), 0) AS BIGINT) FROM outbox WHERE published_at_ms IS NULL";

constexpr std::string_view kPruneInbox =
    "DELETE FROM inbox WHERE (consumer, message_id) IN (SELECT consumer, message_id FROM inbox "
    "WHERE processed_at_ms < ? ORDER BY processed_at_ms LIMIT ?)";

}  // namespace

absl::Status Publish(sql::Transaction& tx, const Envelope& envelope) {
  RETURN_IF_ERROR(Validate(envelope));
  if (envelope.type == kBundleType) return ReservedType();
  ASSIGN_OR_RETURN(
      int64_t inserted,
      tx.Execute(kInsertOutbox, {envelope.id, envelope.type, envelope.key,
                                 sql::Blob{Serialize(envelope)}, envelope.occurred_at_ms}));
  if (inserted != 1) return absl::InternalError("bus: outbox insert changed no row");
  return absl::OkStatus();
}

absl::Status PublishAll(sql::Transaction& tx, const std::vector<Envelope>& envelopes) {
  if (envelopes.empty()) return absl::OkStatus();
  if (envelopes.size() == 1) return Publish(tx, envelopes.front());
  // Only a bundle's first id is in the outbox's unique index: repeats within the call are
  // caught here instead.
  absl::flat_hash_set<std::string_view> ids;
  ids.reserve(envelopes.size());
  for (const Envelope& envelope : envelopes) {
    RETURN_IF_ERROR(Validate(envelope));
    if (envelope.type == kBundleType) return ReservedType();
    if (!ids.insert(envelope.id).second) {
      return absl::AlreadyExistsError(
          fmt::format("bus: message id {} published twice in one batch", envelope.id));
    }
  }
  ASSIGN_OR_RETURN(sql::ResultSet next, tx.Query(kSelectNextSeq));
  if (next.rows.empty()) return absl::InternalError("bus: outbox next seq query returned no row");
  int64_t seq = next.rows.front().Int(0);
  for (size_t first = 0; first < envelopes.size(); first += kBundleMessagesMax) {
    const size_t end = std::min(envelopes.size(), first + kBundleMessagesMax);
    std::string bundle(kBundleHeader);
    for (size_t i = first; i < end; ++i) AppendBundleMessage(bundle, envelopes[i]);
    const Envelope& head = envelopes[first];
    ASSIGN_OR_RETURN(int64_t inserted,
                     tx.Execute(kInsertRow, {seq++, head.id, std::string(kBundleType), head.key,
                                             sql::Blob{std::move(bundle)}, head.occurred_at_ms,
                                             static_cast<int64_t>(end - first)}));
    if (inserted != 1) return absl::InternalError("bus: outbox insert changed no row");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<OutboxRow>> ReadUnpublished(sql::Transaction& tx, int64_t limit,
                                                       int64_t after_seq) {
  ASSIGN_OR_RETURN(sql::ResultSet result, tx.Query(kSelectUnpublished, {after_seq, limit}));
  std::vector<OutboxRow> rows;
  rows.reserve(result.rows.size());
  for (const sql::Row& row : result.rows) {
    if (static_cast<int64_t>(rows.size()) >= limit) break;
    std::string envelope = row.Text(4);
    if (row.Text(2) == kBundleType) {
      // A bundle that does not unpack (only a damaged file makes one: PublishAll writes what
      // it reads) ends the answer there: the messages before it are still answered, and when
      // it is the first row, DataLoss (the relay retries and counts errors until an operator
      // repairs or removes the row). Publishing it as one opaque message instead would lose
      // its messages without a trace.
      const size_t before = rows.size();
      absl::Status unpacked =
          envelope.starts_with(kBundleHeader)
              ? UnpackBundle(row.Int(0), envelope, rows)
              : absl::DataLossError(
                    fmt::format("bus: outbox bundle at seq {}: no bundle header", row.Int(0)));
      if (unpacked.ok() && static_cast<int64_t>(rows.size() - before) != row.Int(5)) {
        unpacked = absl::DataLossError(
            fmt::format("bus: outbox bundle at seq {}: {} messages, its row says {}", row.Int(0),
                        rows.size() - before, row.Int(5)));
      }
      if (!unpacked.ok()) {
        rows.resize(before);
        if (rows.empty()) return unpacked;
        break;
      }
      continue;
    }
    rows.push_back(
        OutboxRow{row.Int(0), row.Text(1), row.Text(2), row.Text(3), std::move(envelope)});
  }
  return rows;
}

absl::StatusOr<int64_t> MarkPublished(sql::Transaction& tx, int64_t seq_first, int64_t seq_last,
                                      int64_t now_ms) {
  return tx.Execute(kMarkPublished, {now_ms, seq_first, seq_last});
}

absl::StatusOr<int64_t> PruneOutbox(sql::Transaction& tx, int64_t published_before_ms,
                                    int64_t examine_max) {
  return tx.Execute(kPrune, {examine_max, published_before_ms});
}

absl::StatusOr<int64_t> PruneInbox(sql::Transaction& tx, int64_t processed_before_ms,
                                   int64_t limit) {
  return tx.Execute(kPruneInbox, {processed_before_ms, limit});
}

absl::StatusOr<int64_t> CountUnpublished(sql::Transaction& tx) {
  ASSIGN_OR_RETURN(sql::ResultSet result, tx.Query(kCountUnpublished));
  if (result.rows.empty()) return 0;
  return result.rows[0].Int(0);
}

}  // namespace emporium::bus
