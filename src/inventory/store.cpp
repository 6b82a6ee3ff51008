#include "inventory/store.h"

#include <algorithm>
#include <cstddef>
#include <iterator>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "common/status_macros.h"
#include "fmt/format.h"
#include "nlohmann/json.hpp"

namespace emporium::inventory {
namespace {

using sql::Row;
using sql::Transaction;
using sql::Value;

constexpr std::string_view kComponent = "inventory";

constexpr std::string_view kUpsertLocation =
    "INSERT INTO locations (id, region, address) VALUES (?, ?, ?) "
    "ON CONFLICT (id) DO UPDATE SET region = excluded.region, address = excluded.address";
constexpr std::string_view kSelectLocations = "SELECT id, region, address FROM locations";

constexpr std::string_view kSelectLedger =
    "SELECT sku, location_id, seq, kind, quantity, reference, time_ms FROM ledger";

constexpr std::string_view kSelectStock =
    "SELECT sku, location_id, on_hand, reserved, allocated, version FROM stock";
constexpr std::string_view kSelectStockOfSku =
    "SELECT sku, location_id, on_hand, reserved, allocated, version FROM stock WHERE sku = ?";

constexpr std::string_view kDeleteReservationLines =
    "DELETE FROM reservation_lines WHERE reservation_id = ?";
constexpr std::string_view kSelectReservationLines =
    "SELECT reservation_id, line_no, split_no, sku, line_quantity, location_id, quantity, "
    "shipped, returned FROM reservation_lines ORDER BY reservation_id, line_no, split_no";

constexpr std::string_view kSelectReservation =
    "SELECT id, region, created_at_ms, expires_at_ms, state, order_id, shipment_ids, return_ids, "
    "lines FROM reservations WHERE id = ?";
// Every settled reservation an order was allocated to, from the partial index of migration
// 0007 (the query repeats the index's WHERE terms so the planner can use it). Live holders are
// never evicted, so fault-in needs only these.
constexpr std::string_view kSelectReservationsOfOrder =
    "SELECT id, region, created_at_ms, expires_at_ms, state, order_id, shipment_ids, return_ids, "
    "lines FROM reservations WHERE order_id = ? AND order_id <> '' AND state NOT IN ('active', "
    "'allocated')";
constexpr std::string_view kSelectLinesOfReservation =
    "SELECT reservation_id, line_no, split_no, sku, line_quantity, location_id, quantity, "
    "shipped, returned FROM reservation_lines WHERE reservation_id = ? ORDER BY line_no, split_no";

// WriteBatch inserts ledger entries and reservations (lines inline) in multi-row
// statements of these sizes (a fixed set, so every statement text is prepared once and cached):
// one statement per up to 32 rows instead of one per row.
constexpr size_t kChunkRows[] = {32, 8, 1};

// "<head> (?, ..., ?), (?, ..., ?) <tail>" for `rows` rows of `columns` placeholders.
std::string MultiRowSql(std::string_view head, size_t columns, size_t rows, std::string_view tail) {
  std::string row = "(";
  for (size_t c = 0; c < columns; ++c) row += c == 0 ? "?" : ", ?";
  row += ')';
  std::string sql(head);
  for (size_t r = 0; r < rows; ++r) {
    if (r > 0) sql += ", ";
    sql += row;
  }
  if (!tail.empty()) {
    sql += ' ';
    sql += tail;
  }
  return sql;
}

// One multi-row statement family: the texts for every size of kChunkRows.
class ChunkedInsert {
 public:
  ChunkedInsert(std::string_view head, size_t columns, std::string_view tail) : columns_(columns) {
    for (size_t rows : kChunkRows) texts_.push_back(MultiRowSql(head, columns, rows, tail));
  }

  // Runs the statement over `params` (columns_ values per row, row after row) in chunks.
  absl::Status Run(Transaction& transaction, std::vector<Value>& params) const {
    const size_t row_count = params.size() / columns_;
    size_t done = 0;
    std::vector<Value> chunk_params;
    for (size_t i = 0; i < std::size(kChunkRows); ++i) {
      const size_t chunk = kChunkRows[i];
      while (row_count - done >= chunk) {
        chunk_params.assign(
            std::make_move_iterator(params.begin() + static_cast<std::ptrdiff_t>(done * columns_)),
            std::make_move_iterator(params.begin() +
                                    static_cast<std::ptrdiff_t>((done + chunk) * columns_)));
        RETURN_IF_ERROR(transaction.Execute(texts_[i], chunk_params).status());
        done += chunk;
      }
    }
    return absl::OkStatus();
  }

 private:
  size_t columns_;
  std::vector<std::string> texts_;
};

const ChunkedInsert& LedgerInsert() {
  static const auto* insert = new ChunkedInsert(
      "INSERT INTO ledger (sku, location_id, seq, kind, quantity, reference, time_ms) VALUES", 7,
      "");
  return *insert;
}

const ChunkedInsert& StockUpsert() {
  static const auto* upsert = new ChunkedInsert(
      "INSERT INTO stock (sku, location_id, on_hand, reserved, allocated, version) VALUES", 6,
      "ON CONFLICT (sku, location_id) DO UPDATE SET "
      "on_hand = excluded.on_hand, reserved = excluded.reserved, "
      "allocated = excluded.allocated, version = excluded.version");
  return *upsert;
}

const ChunkedInsert& ReservationUpsert() {
  static const auto* upsert = new ChunkedInsert(
      "INSERT INTO reservations (id, region, created_at_ms, expires_at_ms, state, order_id, "
      "shipment_ids, return_ids, lines) VALUES",
      9,
      "ON CONFLICT (id) DO UPDATE SET "
      "region = excluded.region, created_at_ms = excluded.created_at_ms, "
      "expires_at_ms = excluded.expires_at_ms, state = excluded.state, "
      "order_id = excluded.order_id, shipment_ids = excluded.shipment_ids, "
      "return_ids = excluded.return_ids, lines = excluded.lines");
  return *upsert;
}

StockLevel StockFromRow(const Row& row) {
  return StockLevel{.sku = Sku(row.Text(0)),
                    .location = LocationId(row.Text(1)),
                    .on_hand = row.Int(2),
                    .reserved = row.Int(3),
                    .allocated = row.Int(4),
                    .version = row.Int(5)};
}

// One stock row's values for StockUpsert(), appended to `params`.
void AppendStockParams(const StockLevel& level, std::vector<Value>& params) {
  params.emplace_back(level.sku.value());
  params.emplace_back(level.location.value());
  params.emplace_back(level.on_hand);
  params.emplace_back(level.reserved);
  params.emplace_back(level.allocated);
  params.emplace_back(level.version);
}

absl::StatusOr<std::vector<std::string>> IdsFromJson(const std::string& text) {
  nlohmann::json parsed = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!parsed.is_array()) return absl::DataLossError("reservations: id list is not an array");
  std::vector<std::string> ids;
  for (const auto& item : parsed) {
    if (!item.is_string()) return absl::DataLossError("reservations: id is not a string");
    ids.push_back(item.get<std::string>());
  }
  return ids;
}

// An id written into the inline lines JSON without escaping: printable ASCII except the quote
// and the backslash (every identifier the API and the bus accept). Anything else goes through
// nlohmann's escaping.
bool PlainJsonText(std::string_view text) {
  return std::all_of(text.begin(), text.end(),
                     [](char c) { return c >= 0x20 && c < 0x7f && c != '"' && c != '\\'; });
}

// A JSON array of strings (shipment_ids, return_ids); by hand for the usual empty list and
// plain ids (written for every changed reservation on the writer thread), else nlohmann.
std::string IdsToJson(const std::vector<std::string>& ids) {
  if (!std::all_of(ids.begin(), ids.end(),
                   [](const std::string& id) { return PlainJsonText(id); })) {
    return nlohmann::json(ids).dump();
  }
  std::string out = "[";
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i > 0) out += ',';
    out += '"';
    out += ids[i];
    out += '"';
  }
  out += ']';
  return out;
}

// reservations.lines: [{"sku":s,"quantity":n,"splits":[{"location":l,"quantity":n,
// "shipped":n,"returned":n},...]},...]. Written by hand (one per changed reservation on the
// writer thread), read with nlohmann (LinesFromJson, at load only).
std::string LinesToJson(const std::vector<ReservationLine>& lines) {
  bool plain = true;
  for (const ReservationLine& line : lines) {
    plain = plain && PlainJsonText(line.sku.value());
    for (const Split& split : line.splits) plain = plain && PlainJsonText(split.location.value());
  }
  if (!plain) {
    nlohmann::json array = nlohmann::json::array();
    for (const ReservationLine& line : lines) {
      nlohmann::json splits = nlohmann::json::array();
      for (const Split& split : line.splits) {
        splits.push_back({{"location", split.location.value()},
                          {"quantity", split.quantity},
                          {"shipped", split.shipped},
                          {"returned", split.returned}});
      }
      array.push_back(
          {{"sku", line.sku.value()}, {"quantity", line.quantity}, {"splits", std::move(splits)}});
    }
    return array.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
  std::string out = "[";
  auto it = std::back_inserter(out);
  for (size_t i = 0; i < lines.size(); ++i) {
    const ReservationLine& line = lines[i];
    fmt::format_to(it, "{}{{\"sku\":\"{}\",\"quantity\":{},\"splits\":[", i == 0 ? "" : ",",
                   line.sku.value(), line.quantity);
    for (size_t k = 0; k < line.splits.size(); ++k) {
      const Split& split = line.splits[k];
      fmt::format_to(it, "{}{{\"location\":\"{}\",\"quantity\":{},\"shipped\":{},\"returned\":{}}}",
                     k == 0 ? "" : ",", split.location.value(), split.quantity, split.shipped,
                     split.returned);
    }
    out += "]}";
  }
  out += ']';
  return out;
}

absl::StatusOr<std::vector<ReservationLine>> LinesFromJson(const std::string& text) {
  nlohmann::json parsed = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  auto bad = [] { return absl::DataLossError("reservations: malformed inline lines"); };
  if (!parsed.is_array() || parsed.empty()) return bad();
  auto integer = [](const nlohmann::json& object, const char* field) -> std::optional<int64_t> {
    auto found = object.find(field);
    if (found == object.end() || !found->is_number_integer()) return std::nullopt;
    return found->get<int64_t>();
  };
  auto text_of = [](const nlohmann::json& object, const char* field) -> std::optional<std::string> {
    auto found = object.find(field);
    if (found == object.end() || !found->is_string()) return std::nullopt;
    return found->get<std::string>();
  };
  std::vector<ReservationLine> lines;
  for (const nlohmann::json& item : parsed) {
    if (!item.is_object()) return bad();
    std::optional<std::string> sku = text_of(item, "sku");
    std::optional<int64_t> quantity = integer(item, "quantity");
    auto splits = item.find("splits");
    if (!sku || !quantity || splits == item.end() || !splits->is_array() || splits->empty()) {
      return bad();
    }
    ReservationLine line{.sku = Sku(*sku), .quantity = *quantity, .splits = {}};
    for (const nlohmann::json& split : *splits) {
      if (!split.is_object()) return bad();
      std::optional<std::string> location = text_of(split, "location");
      std::optional<int64_t> split_quantity = integer(split, "quantity");
      std::optional<int64_t> shipped = integer(split, "shipped");
      std::optional<int64_t> returned = integer(split, "returned");
      if (!location || !split_quantity || !shipped || !returned) return bad();
      line.splits.push_back(Split{.location = LocationId(*location),
                                  .quantity = *split_quantity,
                                  .shipped = *shipped,
                                  .returned = *returned});
    }
    lines.push_back(std::move(line));
  }
  return lines;
}

absl::StatusOr<std::vector<StockLevel>> QueryStock(Transaction& transaction) {
  ASSIGN_OR_RETURN(sql::ResultSet result, transaction.Query(kSelectStock));
  std::vector<StockLevel> levels;
  levels.reserve(result.rows.size());
  for (const Row& row : result.rows) levels.push_back(StockFromRow(row));
  return levels;
}

absl::StatusOr<std::vector<LedgerEntry>> QueryLedger(Transaction& transaction) {
  ASSIGN_OR_RETURN(sql::ResultSet result, transaction.Query(kSelectLedger));
  std::vector<LedgerEntry> entries;
  entries.reserve(result.rows.size());
  for (const Row& row : result.rows) {
    std::optional<LedgerKind> kind = ParseLedgerKind(row.Text(3));
    if (!kind.has_value()) {
      return absl::DataLossError(fmt::format("ledger: unknown kind '{}'", row.Text(3)));
    }
    entries.push_back(LedgerEntry{.sku = Sku(row.Text(0)),
                                  .location = LocationId(row.Text(1)),
                                  .sequence = row.Int(2),
                                  .kind = *kind,
                                  .quantity = row.Int(4),
                                  .reference = row.Text(5),
                                  .time_ms = row.Int(6)});
  }
  return entries;
}

// Appends one reservation_lines row (pre-0005 storage) to `lines`, in (line_no, split_no)
// order.
absl::Status AppendLineRow(const Row& row, std::vector<ReservationLine>& lines) {
  const size_t line_no = static_cast<size_t>(row.Int(1));
  if (line_no == lines.size()) {
    lines.push_back(ReservationLine{.sku = Sku(row.Text(3)), .quantity = row.Int(4), .splits = {}});
  } else if (line_no + 1 != lines.size()) {
    return absl::DataLossError(fmt::format("reservation {}: line gap", row.Text(0)));
  }
  lines.back().splits.push_back(Split{.location = LocationId(row.Text(5)),
                                      .quantity = row.Int(6),
                                      .shipped = row.Int(7),
                                      .returned = row.Int(8)});
  return absl::OkStatus();
}

// A reservation from a row of kReservationColumns; `legacy_lines` are its lines when the row's
// `lines` column is NULL (stored before migration 0005).
absl::StatusOr<Reservation> ReservationFromRow(const Row& row,
                                               std::vector<ReservationLine> legacy_lines) {
  std::optional<ReservationState> reservation_state = ParseReservationState(row.Text(4));
  if (!reservation_state.has_value()) {
    return absl::DataLossError(fmt::format("reservation {}: bad state", row.Text(0)));
  }
  std::vector<ReservationLine> lines = std::move(legacy_lines);
  if (!row.IsNull(8)) {
    ASSIGN_OR_RETURN(lines, LinesFromJson(row.Text(8)));
  }
  if (lines.empty()) {
    return absl::DataLossError(fmt::format("reservation {} has no lines", row.Text(0)));
  }
  ASSIGN_OR_RETURN(std::vector<std::string> shipment_ids, IdsFromJson(row.Text(6)));
  ASSIGN_OR_RETURN(std::vector<std::string> return_ids, IdsFromJson(row.Text(7)));
  return Reservation{.id = ReservationId(row.Text(0)),
                     .lines = std::move(lines),
                     .region = row.Text(1),
                     .created_at_ms = row.Int(2),
                     .expires_at_ms = row.Int(3),
                     .state = *reservation_state,
                     .order_id = OrderId(row.Text(5)),
                     .shipment_ids = std::move(shipment_ids),
                     .return_ids = std::move(return_ids)};
}

// As ReservationFromRow, reading a pre-0005 row's lines from reservation_lines.
absl::StatusOr<Reservation> ReadReservation(Transaction& transaction, const Row& row) {
  std::vector<ReservationLine> legacy_lines;
  if (row.IsNull(8)) {
    ASSIGN_OR_RETURN(sql::ResultSet lines,
                     transaction.Query(kSelectLinesOfReservation, {row.Text(0)}));
    for (const Row& line : lines.rows) RETURN_IF_ERROR(AppendLineRow(line, legacy_lines));
  }
  return ReservationFromRow(row, std::move(legacy_lines));
}

// Rows of reservations LoadInto reads per query.
constexpr size_t kLoadPageRows = 10'000;

enum class PageColumns {
  kAll,
  // Only id, state and order id of settled rows (the other columns NULL for them).
  kLiveOnly,
};

// One page of reservations after id ?, in id order, as kReservationColumns.
const std::string& ReservationPageSql(PageColumns columns) {
  static const auto* all = new std::string(
      fmt::format("SELECT id, region, created_at_ms, expires_at_ms, state, order_id, shipment_ids, "
                  "return_ids, lines FROM reservations WHERE id > ? ORDER BY id LIMIT {}",
                  kLoadPageRows));
  static const auto* live_only = new std::string(
      fmt::format("SELECT id, region, created_at_ms, expires_at_ms, state, order_id, "
                  "CASE WHEN state IN ('active', 'allocated') THEN shipment_ids END, "
                  "CASE WHEN state IN ('active', 'allocated') THEN return_ids END, "
                  "CASE WHEN state IN ('active', 'allocated') THEN lines END "
                  "FROM reservations WHERE id > ? ORDER BY id LIMIT {}",
                  kLoadPageRows));
  switch (columns) {
    case PageColumns::kAll:
      return *all;
    case PageColumns::kLiveOnly:
      return *live_only;
  }
  return *all;
}

}  // namespace

absl::Status InventoryStore::Migrate(const Clock& clock) {
  return sql::ApplyMigrations(db_, kComponent, InventoryMigrations(), clock);
}

absl::Status InventoryStore::UpsertLocation(const Location& location) {
  if (location.id.empty()) return absl::InvalidArgumentError("location id is empty");
  return db_.Write([&](Transaction& transaction) -> absl::Status {
    return transaction
        .Execute(kUpsertLocation, {location.id.value(), location.region, location.address})
        .status();
  });
}

absl::StatusOr<std::vector<Location>> InventoryStore::LoadLocations() {
  std::vector<Location> locations;
  absl::Status db_status = db_.Read([&](Transaction& transaction) -> absl::Status {
    ASSIGN_OR_RETURN(sql::ResultSet result, transaction.Query(kSelectLocations));
    for (const Row& row : result.rows) {
      locations.push_back(Location{LocationId(row.Text(0)), row.Text(1), row.Text(2)});
    }
    return absl::OkStatus();
  });
  if (!db_status.ok()) return db_status;
  return locations;
}

absl::Status InventoryStore::WriteBatch(Transaction& transaction, const BatchRecord& batch) {
  // Rows of one kind go out in multi-row statements (see ChunkedInsert), in the order a
  // statement per row would have written them.
  std::vector<Value> params;
  params.reserve(batch.entries.size() * 7);
  for (const LedgerEntry& entry : batch.entries) {
    params.emplace_back(entry.sku.value());
    params.emplace_back(entry.location.value());
    params.emplace_back(entry.sequence);
    params.emplace_back(std::string(LedgerKindName(entry.kind)));
    params.emplace_back(entry.quantity);
    params.emplace_back(entry.reference);
    params.emplace_back(entry.time_ms);
  }
  RETURN_IF_ERROR(LedgerInsert().Run(transaction, params));
  // A batch changes each stock row at most once (changes are collected per key), so the
  // multi-row upsert never names one key twice.
  params.clear();
  params.reserve(batch.stock.size() * 6);
  for (const StockLevel& level : batch.stock) AppendStockParams(level, params);
  RETURN_IF_ERROR(StockUpsert().Run(transaction, params));
  params.clear();
  params.reserve(batch.reservations.size() * 9);
  for (const Reservation& reservation : batch.reservations) {
    params.emplace_back(reservation.id.value());
    params.emplace_back(reservation.region);
    params.emplace_back(reservation.created_at_ms);
    params.emplace_back(reservation.expires_at_ms);
    params.emplace_back(std::string(ReservationStateName(reservation.state)));
    params.emplace_back(reservation.order_id.value());
    params.emplace_back(IdsToJson(reservation.shipment_ids));
    params.emplace_back(IdsToJson(reservation.return_ids));
    params.emplace_back(LinesToJson(reservation.lines));
    if (!batch.legacy_lines.has_value() ||
        std::binary_search(batch.legacy_lines->begin(), batch.legacy_lines->end(),
                           reservation.id)) {
      // A reservation stored before migration 0005 has its lines in reservation_lines; from its
      // first rewrite on they live inline only, so the old rows go. Newer reservations have no
      // rows there, and a caller that knows which ids do (the shard engine) skips the others.
      RETURN_IF_ERROR(
          transaction.Execute(kDeleteReservationLines, {reservation.id.value()}).status());
    }
  }
  // A batch changes each reservation at most once (changes are collected per id), so the
  // multi-row upsert never names one id twice.
  return ReservationUpsert().Run(transaction, params);
}

absl::Status InventoryStore::LoadInto(InventoryState& state,
                                      const std::function<bool(const Sku&)>& owns,
                                      std::vector<ReservationId>* legacy_lines,
                                      const SettledSink& settled) {
  return db_.Read([&](Transaction& transaction) -> absl::Status {
    ASSIGN_OR_RETURN(sql::ResultSet locations, transaction.Query(kSelectLocations));
    for (const Row& row : locations.rows) {
      state.UpsertLocation(Location{LocationId(row.Text(0)), row.Text(1), row.Text(2)});
    }
    ASSIGN_OR_RETURN(std::vector<StockLevel> levels, QueryStock(transaction));
    for (const StockLevel& level : levels) {
      if (!owns || owns(level.sku)) state.LoadStock(level);
    }
    // Lines of reservations stored before migration 0005 (newer ones carry theirs inline).
    ASSIGN_OR_RETURN(sql::ResultSet legacy_rows, transaction.Query(kSelectReservationLines));
    std::map<std::string, std::vector<ReservationLine>> lines_by_reservation;
    for (const Row& row : legacy_rows.rows) {
      std::vector<ReservationLine>& reservation_lines = lines_by_reservation[row.Text(0)];
      RETURN_IF_ERROR(AppendLineRow(row, reservation_lines));
    }
    if (legacy_lines != nullptr) {
      legacy_lines->clear();
      for (const auto& [id, lines] : lines_by_reservation) legacy_lines->emplace_back(id);
    }
    // Page by page in id order, so a long history never sits in memory as one result set.
    // Settled rows are only reported to `settled` when it is set; with no owner to tell apart
    // (`owns` empty) their lines and id lists are not even read.
    const std::string& page_sql = settled && !owns ? ReservationPageSql(PageColumns::kLiveOnly)
                                                   : ReservationPageSql(PageColumns::kAll);
    std::string after;
    while (true) {
      ASSIGN_OR_RETURN(sql::ResultSet page, transaction.Query(page_sql, {after}));
      for (const Row& row : page.rows) {
        std::string id = row.Text(0);
        const std::string state_name = row.Text(4);
        const bool live = state_name == ReservationStateName(ReservationState::kActive) ||
                          state_name == ReservationStateName(ReservationState::kAllocated);
        std::vector<ReservationLine> legacy;
        if (auto found = lines_by_reservation.find(id); found != lines_by_reservation.end()) {
          legacy = std::move(found->second);  // stored before migration 0005
        }
        if (!live && settled && !owns) {
          settled(id, row.Text(5));
        } else {
          ASSIGN_OR_RETURN(Reservation reservation, ReservationFromRow(row, std::move(legacy)));
          if (!owns || owns(reservation.lines.front().sku)) {
            if (!live && settled) {
              settled(id, row.Text(5));
            } else {
              state.LoadReservation(std::move(reservation));
            }
          }
        }
        after = std::move(id);
      }
      if (page.rows.size() < kLoadPageRows) break;
    }
    state.TakeChanges();  // loading is not a change to persist
    return absl::OkStatus();
  });
}

absl::StatusOr<std::optional<Reservation>> InventoryStore::LoadReservation(
    const ReservationId& id) {
  std::optional<Reservation> found;
  absl::Status status = db_.Read([&](Transaction& transaction) -> absl::Status {
    ASSIGN_OR_RETURN(sql::ResultSet rows, transaction.Query(kSelectReservation, {id.value()}));
    if (rows.empty()) return absl::OkStatus();
    ASSIGN_OR_RETURN(found, ReadReservation(transaction, rows.rows.front()));
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return found;
}

absl::StatusOr<std::vector<Reservation>> InventoryStore::LoadForFaultIn(
    const std::vector<ReservationId>& ids, const std::vector<OrderId>& order_ids) {
  std::vector<Reservation> found;
  absl::Status status = db_.Read([&](Transaction& transaction) -> absl::Status {
    absl::flat_hash_set<std::string> seen;
    std::vector<std::string> orders;
    for (const OrderId& order_id : order_ids) {
      if (!order_id.empty()) orders.push_back(order_id.value());
    }
    auto take = [&](const Row& row) -> absl::Status {
      if (!seen.insert(row.Text(0)).second) return absl::OkStatus();
      ASSIGN_OR_RETURN(Reservation reservation, ReadReservation(transaction, row));
      if (!reservation.order_id.empty()) orders.push_back(reservation.order_id.value());
      found.push_back(std::move(reservation));
      return absl::OkStatus();
    };
    for (const ReservationId& id : ids) {
      ASSIGN_OR_RETURN(sql::ResultSet rows, transaction.Query(kSelectReservation, {id.value()}));
      for (const Row& row : rows.rows) RETURN_IF_ERROR(take(row));
    }
    // Every holder of each order (an allocation-cancelled one and the one allocated after it),
    // so that the order index can be rebuilt as it was.
    std::sort(orders.begin(), orders.end());
    orders.erase(std::unique(orders.begin(), orders.end()), orders.end());
    const std::vector<std::string> order_list = std::move(orders);  // `take` appends to orders
    for (const std::string& order_id : order_list) {
      ASSIGN_OR_RETURN(sql::ResultSet rows,
                       transaction.Query(kSelectReservationsOfOrder, {order_id}));
      for (const Row& row : rows.rows) RETURN_IF_ERROR(take(row));
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return found;
}

absl::StatusOr<std::vector<StockLevel>> InventoryStore::LoadStock(const std::vector<Sku>& skus) {
  if (skus.size() > kAvailabilitySkusMax) {
    return absl::InvalidArgumentError(
        fmt::format("at most {} SKUs per availability query", kAvailabilitySkusMax));
  }
  std::vector<StockLevel> levels;
  absl::Status db_status = db_.Read([&](Transaction& transaction) -> absl::Status {
    for (const Sku& sku : skus) {
      ASSIGN_OR_RETURN(sql::ResultSet result, transaction.Query(kSelectStockOfSku, {sku.value()}));
      for (const Row& row : result.rows) levels.push_back(StockFromRow(row));
    }
    return absl::OkStatus();
  });
  if (!db_status.ok()) return db_status;
  std::sort(levels.begin(), levels.end(),
            [](const StockLevel& a, const StockLevel& b) { return a.key() < b.key(); });
  return levels;
}

absl::StatusOr<std::vector<StockLevel>> InventoryStore::LoadAllStock() {
  std::vector<StockLevel> levels;
  absl::Status db_status = db_.Read([&](Transaction& transaction) -> absl::Status {
    ASSIGN_OR_RETURN(levels, QueryStock(transaction));
    return absl::OkStatus();
  });
  if (!db_status.ok()) return db_status;
  std::sort(levels.begin(), levels.end(),
            [](const StockLevel& a, const StockLevel& b) { return a.key() < b.key(); });
  return levels;
}

absl::StatusOr<std::vector<LedgerEntry>> InventoryStore::LoadLedger() {
  std::vector<LedgerEntry> entries;
  absl::Status db_status = db_.Read([&](Transaction& transaction) -> absl::Status {
    ASSIGN_OR_RETURN(entries, QueryLedger(transaction));
    return absl::OkStatus();
  });
  if (!db_status.ok()) return db_status;
  return entries;
}

absl::StatusOr<RebuildReport> InventoryStore::Rebuild(RebuildMode mode) {
  RebuildReport report;
  std::vector<StockLevel> repairs;
  absl::Status db_status = db_.Read([&](Transaction& transaction) -> absl::Status {
    ASSIGN_OR_RETURN(std::vector<LedgerEntry> entries, QueryLedger(transaction));
    ASSIGN_OR_RETURN(std::vector<StockLevel> projected, Project(std::move(entries)));
    ASSIGN_OR_RETURN(std::vector<StockLevel> stored, QueryStock(transaction));
    std::map<StockKey, StockLevel> stored_by_key;
    for (StockLevel& level : stored) stored_by_key.emplace(level.key(), std::move(level));
    for (const StockLevel& level : projected) {
      ++report.rows_checked;
      auto found = stored_by_key.find(level.key());
      if (found == stored_by_key.end()) {
        report.mismatches.push_back(
            fmt::format("{}@{}: missing from stock", level.sku.value(), level.location.value()));
        repairs.push_back(level);
        continue;
      }
      if (!(found->second == level)) {
        report.mismatches.push_back(
            fmt::format("{}@{}: stock on_hand={} reserved={} allocated={} version={}, ledger says "
                        "{} / {} / {} / {}",
                        level.sku.value(), level.location.value(), found->second.on_hand,
                        found->second.reserved, found->second.allocated, found->second.version,
                        level.on_hand, level.reserved, level.allocated, level.version));
        repairs.push_back(level);
      }
      stored_by_key.erase(found);
    }
    for (const auto& [key, level] : stored_by_key) {
      // A row with no ledger history should be all zeros; anything else is a mismatch.
      if (level.on_hand != 0 || level.reserved != 0 || level.allocated != 0) {
        report.mismatches.push_back(fmt::format("{}@{}: stock row without ledger entries",
                                                key.sku.value(), key.location.value()));
        repairs.push_back(StockLevel{.sku = key.sku, .location = key.location});
      }
    }
    return absl::OkStatus();
  });
  if (!db_status.ok()) return db_status;
  if (mode == RebuildMode::kRepair && !repairs.empty()) {
    absl::Status write_status = db_.Write([&](Transaction& transaction) -> absl::Status {
      std::vector<Value> params;
      for (const StockLevel& level : repairs) AppendStockParams(level, params);
      return StockUpsert().Run(transaction, params);
    });
    if (!write_status.ok()) return write_status;
    report.repaired = true;
  }
  return report;
}

}  // namespace emporium::inventory
