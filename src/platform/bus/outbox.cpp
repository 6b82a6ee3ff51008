#include "platform/bus/outbox.h"

#include <cstdlib>
#include <iterator>
#include <utility>

#include "common/status_macros.h"

namespace emporium::bus {
namespace {

// seq = MAX(seq) + 1 inside the single writer's transaction: see schema.h.
constexpr std::string_view kInsertOutbox =
    "INSERT INTO outbox(seq, id, type, key, envelope, created_at_ms, published_at_ms) "
    "SELECT COALESCE(MAX(seq), 0) + 1, ?, ?, ?, ?, ?, NULL FROM outbox";
// PublishAll: the next seq read once, then rows with explicit seqs in multi-row INSERTs of
// these sizes (a fixed set, so each statement text is prepared once and cached).
constexpr std::string_view kSelectNextSeq = "SELECT COALESCE(MAX(seq), 0) + 1 FROM outbox";
constexpr size_t kPublishChunkRows[] = {32, 8, 1};
constexpr size_t kOutboxColumns = 6;

const std::string& MultiRowInsert(size_t rows) {
  static const std::string* statements = [] {
    auto* built = new std::string[std::size(kPublishChunkRows)];
    for (size_t i = 0; i < std::size(kPublishChunkRows); ++i) {
      std::string sql =
          "INSERT INTO outbox(seq, id, type, key, envelope, created_at_ms, published_at_ms) "
          "VALUES ";
      for (size_t row = 0; row < kPublishChunkRows[i]; ++row) {
        sql += row == 0 ? "(?, ?, ?, ?, ?, ?, NULL)" : ", (?, ?, ?, ?, ?, ?, NULL)";
      }
      built[i] = std::move(sql);
    }
    return built;
  }();
  for (size_t i = 0; i < std::size(kPublishChunkRows); ++i) {
    if (kPublishChunkRows[i] == rows) return statements[i];
  }
  std::abort();  // only the sizes of kPublishChunkRows are asked for
}

constexpr std::string_view kSelectUnpublished =
    "SELECT seq, id, type, key, envelope FROM outbox WHERE published_at_ms IS NULL AND seq > ? "
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
    "SELECT COUNT(*) FROM outbox WHERE published_at_ms IS NULL";

constexpr std::string_view kPruneInbox =
    "DELETE FROM inbox WHERE (consumer, message_id) IN (SELECT consumer, message_id FROM inbox "
    "WHERE processed_at_ms < ? ORDER BY processed_at_ms LIMIT ?)";

}  // namespace

absl::Status Publish(sql::Transaction& tx, const Envelope& envelope) {
  RETURN_IF_ERROR(Validate(envelope));
  ASSIGN_OR_RETURN(
      int64_t inserted,
      tx.Execute(kInsertOutbox, {envelope.id, envelope.type, envelope.key,
                                 sql::Blob{Serialize(envelope)}, envelope.occurred_at_ms}));
  if (inserted != 1) return absl::InternalError("bus: outbox insert changed no row");
  return absl::OkStatus();
}

absl::Status PublishAll(sql::Transaction& tx, const std::vector<Envelope>& envelopes) {
  if (envelopes.empty()) return absl::OkStatus();
  for (const Envelope& envelope : envelopes) RETURN_IF_ERROR(Validate(envelope));
  ASSIGN_OR_RETURN(sql::ResultSet next, tx.Query(kSelectNextSeq));
  if (next.rows.empty()) return absl::InternalError("bus: outbox next seq query returned no row");
  int64_t seq = next.rows.front().Int(0);
  std::vector<sql::Value> params;
  size_t done = 0;
  for (size_t chunk : kPublishChunkRows) {
    while (envelopes.size() - done >= chunk) {
      params.clear();
      params.reserve(chunk * kOutboxColumns);
      for (size_t i = done; i < done + chunk; ++i) {
        const Envelope& envelope = envelopes[i];
        params.emplace_back(seq++);
        params.emplace_back(envelope.id);
        params.emplace_back(envelope.type);
        params.emplace_back(envelope.key);
        params.emplace_back(sql::Blob{Serialize(envelope)});
        params.emplace_back(envelope.occurred_at_ms);
      }
      ASSIGN_OR_RETURN(int64_t inserted, tx.Execute(MultiRowInsert(chunk), params));
      if (inserted != static_cast<int64_t>(chunk)) {
        return absl::InternalError("bus: outbox insert changed fewer rows than it inserted");
      }
      done += chunk;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<OutboxRow>> ReadUnpublished(sql::Transaction& tx, int64_t limit,
                                                       int64_t after_seq) {
  ASSIGN_OR_RETURN(sql::ResultSet result, tx.Query(kSelectUnpublished, {after_seq, limit}));
  std::vector<OutboxRow> rows;
  rows.reserve(result.rows.size());
  for (const sql::Row& row : result.rows) {
    rows.push_back(OutboxRow{row.Int(0), row.Text(1), row.Text(2), row.Text(3), row.Text(4)});
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
