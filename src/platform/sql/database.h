// The Database port: transactions, prepared statements with bound parameters, typed rows,
// and group commit. Every context's store talks to its database only through this header, so
// the SQLite driver (embedded mode) and the PostgreSQL driver (distributed mode) are
// interchangeable; the contract tests in sql_contract_test.h hold both to the same behaviour.
//
// SQL passed to this port is portable: `?` placeholders (drivers translate), standard types
// (INTEGER/BIGINT, TEXT, BLOB, DOUBLE PRECISION), no driver-specific functions.
//
// Thread-safety: Database is thread-safe. A Transaction is used only by the thread running
// the job it was handed to, and only for the duration of that job.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace emporium::sql {

// Binary data, kept apart from text so drivers bind it as a BLOB / bytea.
struct Blob {
  std::string bytes;
  friend bool operator==(const Blob&, const Blob&) = default;
};

// A bound parameter or a column value. std::monostate is SQL NULL.
using Value = std::variant<std::monostate, int64_t, double, std::string, Blob>;

// One bound parameter of a Query / Execute call. Text and blobs are viewed, not copied: the
// caller's strings (and a braced list's temporaries, which live until the call returns) outlive
// the call. Numbers and NULL are held by value. Implicit on purpose, so callers write
// `{id, name, 3}` as they would a std::vector<Value>. Cheap to copy.
class Param {
 public:
  enum class Kind { kNull, kInt, kDouble, kText, kBlob };

  Param(const Value& value) : value_(&value) {}                         // NOLINT
  Param(const std::string& text) : kind_(Kind::kText), bytes_(text) {}  // NOLINT
  Param(const char* text) : kind_(Kind::kText), bytes_(text) {}         // NOLINT
  Param(const Blob& blob) : kind_(Kind::kBlob), bytes_(blob.bytes) {}   // NOLINT
  Param(std::monostate /*null*/) {}                                     // NOLINT
  // Numbers, converted exactly as Value's own constructor converts them (to int64_t or double;
  // a conversion Value refuses does not compile here either).
  template <typename T>
  requires(std::is_arithmetic_v<std::remove_cvref_t<T>>&& std::is_constructible_v<Value, T>)
      Param(T number) {  // NOLINT
    Value value(number);
    if (const auto* integer = std::get_if<int64_t>(&value)) {
      kind_ = Kind::kInt;
      integer_ = *integer;
    } else {
      kind_ = Kind::kDouble;
      real_ = std::get<double>(value);
    }
  }

  Kind kind() const { return value_ != nullptr ? static_cast<Kind>(value_->index()) : kind_; }
  // Valid for kInt / kDouble / kText / kBlob respectively.
  int64_t integer() const { return value_ != nullptr ? std::get<int64_t>(*value_) : integer_; }
  double real() const { return value_ != nullptr ? std::get<double>(*value_) : real_; }
  std::string_view bytes() const {
    if (value_ == nullptr) return bytes_;
    if (const auto* text = std::get_if<std::string>(value_)) return *text;
    return std::get<Blob>(*value_).bytes;
  }

 private:
  static_assert(std::is_same_v<std::variant_alternative_t<1, Value>, int64_t> &&
                    std::is_same_v<std::variant_alternative_t<2, Value>, double> &&
                    std::is_same_v<std::variant_alternative_t<3, Value>, std::string> &&
                    std::is_same_v<std::variant_alternative_t<4, Value>, Blob>,
                "Param::Kind follows Value's alternatives");

  Kind kind_ = Kind::kNull;  // The rest hold the parameter when value_ is null.
  int64_t integer_ = 0;
  double real_ = 0;
  std::string_view bytes_;
  const Value* value_ = nullptr;  // The caller's Value, viewed.
};

// The parameters of one Query / Execute call: a view of a braced list of Params or of a
// std::vector<Value>, without copying either. Valid only during the call it is passed to: build
// it in the call's argument list, never store it.
class Params {
 public:
  Params() = default;
  Params(std::initializer_list<Param> params)  // NOLINT(google-explicit-constructor)
      : list_(params), size_(params.size()) {}
  Params(const std::vector<Value>& values)  // NOLINT(google-explicit-constructor)
      : values_(values.data()), size_(values.size()) {}

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  // For drivers.
  Param operator[](size_t index) const {
    return values_ == nullptr ? list_.begin()[index] : Param(values_[index]);
  }

 private:
  std::initializer_list<Param> list_;
  const Value* values_ = nullptr;  // Set when viewing a vector.
  size_t size_ = 0;
};

class Row {
 public:
  explicit Row(std::vector<Value> values) : values_(std::move(values)) {}
  size_t size() const { return values_.size(); }
  bool IsNull(size_t column) const;
  // Typed access. Asking for the wrong type is a programmer error and asserts; integers and
  // doubles convert to each other, text and blob to each other.
  int64_t Int(size_t column) const;
  double Double(size_t column) const;
  std::string Text(size_t column) const;
  std::optional<int64_t> OptionalInt(size_t column) const;
  std::optional<std::string> OptionalText(size_t column) const;
  const Value& value(size_t column) const { return values_.at(column); }

 private:
  std::vector<Value> values_;
};

struct ResultSet {
  std::vector<std::string> columns;
  std::vector<Row> rows;
  bool empty() const { return rows.empty(); }
};

// Error mapping shared by all drivers:
//   unique / primary-key violation -> AlreadyExists
//   other constraint violation     -> FailedPrecondition
//   database busy / locked / connection lost -> Unavailable
//   syntax error, anything else    -> Internal
class Transaction {
 public:
  virtual ~Transaction() = default;
  // `params` views the caller's values (see Params): pass a braced list or a vector.
  virtual absl::StatusOr<ResultSet> Query(std::string_view sql, Params params = {}) = 0;
  // Runs a statement that returns no rows; returns the number of rows it changed.
  virtual absl::StatusOr<int64_t> Execute(std::string_view sql, Params params = {}) = 0;
};

// A unit of work run inside a write transaction. Returning a non-OK status rolls back this
// job's changes only (its savepoint); the other jobs in the same batch still commit.
using WriteJob = std::function<absl::Status(Transaction&)>;
using ReadJob = std::function<absl::Status(Transaction&)>;
// Called once per job, after its batch committed and is durable (OK) or failed, in commit
// order, on the writer thread (or on a driver's sync thread, see SqliteOptions::deferred_sync).
// Must be quick and must not call Write() on the same database (it would wait on itself).
using WriteDone = std::function<void(absl::Status)>;

struct WriteStats {
  int64_t batches_committed = 0;
  int64_t jobs_committed = 0;
  int64_t jobs_failed = 0;
  int64_t queue_depth = 0;
  // Database pages the writer wrote (to the WAL for SQLite) in committed batches: with
  // jobs_committed, the pages, and so the bytes and fsync work, one write job costs. 0 where a
  // driver cannot tell.
  int64_t pages_written = 0;
  // Batches whose transaction did not commit (a failed COMMIT, or a savepoint statement). Counted
  // on the writer thread before any later batch runs, so a job can tell whether a batch queued
  // before it was lost (the inventory shards' pipelined batches build on each other).
  int64_t batches_failed = 0;
};

class Database {
 public:
  virtual ~Database() = default;

  // Group commit: queues `job` for the single writer of this database, which runs many
  // queued jobs in one transaction (each inside its own savepoint) and makes them durable
  // with one commit. Blocks until this job's batch is durable. ResourceExhausted if the
  // bounded queue is full, Unavailable once the database is closing.
  virtual absl::Status Write(WriteJob job) = 0;
  // The same without blocking: `done` receives the outcome on the writer thread.
  virtual void SubmitWrite(WriteJob job, WriteDone done) = 0;

  // Runs `job` in a read transaction on a pooled reader connection (a consistent snapshot;
  // concurrent with the writer). Writes through the Transaction are a programmer error.
  virtual absl::Status Read(ReadJob job) = 0;

  // Runs after every committed batch, on the writer thread, before the next batch's jobs (the
  // outbox relay uses this to wake up). With a deferred sync (SqliteOptions::deferred_sync)
  // the batch may not be durable yet; a Read() begun after it waits until it is. Register
  // before the first write.
  virtual void AddCommitListener(std::function<void()> listener) = 0;

  virtual WriteStats stats() const = 0;
  // "sqlite" or "postgres"; for the rare statement that cannot be portable.
  virtual std::string_view dialect() const = 0;
  // Stops accepting writes, finishes the queued ones, closes connections. Idempotent.
  virtual void Close() = 0;
};

}  // namespace emporium::sql
