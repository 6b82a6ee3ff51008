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
#include <optional>
#include <string>
#include <string_view>
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
  virtual absl::StatusOr<ResultSet> Query(std::string_view sql,
                                          const std::vector<Value>& params = {}) = 0;
  // Runs a statement that returns no rows; returns the number of rows it changed.
  virtual absl::StatusOr<int64_t> Execute(std::string_view sql,
                                          const std::vector<Value>& params = {}) = 0;
};

// A unit of work run inside a write transaction. Returning a non-OK status rolls back this
// job's changes only (its savepoint); the other jobs in the same batch still commit.
using WriteJob = std::function<absl::Status(Transaction&)>;
using ReadJob = std::function<absl::Status(Transaction&)>;
// Called once per job, on the writer thread, after its batch committed (OK) or failed.
// Must be quick and must not call Write() on the same database (it would wait on itself).
using WriteDone = std::function<void(absl::Status)>;

struct WriteStats {
  int64_t batches_committed = 0;
  int64_t jobs_committed = 0;
  int64_t jobs_failed = 0;
  int64_t queue_depth = 0;
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

  // Runs after every committed batch, on the writer thread (the outbox relay uses this to
  // wake up). Register before the first write.
  virtual void AddCommitListener(std::function<void()> listener) = 0;

  virtual WriteStats stats() const = 0;
  // "sqlite" or "postgres"; for the rare statement that cannot be portable.
  virtual std::string_view dialect() const = 0;
  // Stops accepting writes, finishes the queued ones, closes connections. Idempotent.
  virtual void Close() = 0;
};

}  // namespace emporium::sql
