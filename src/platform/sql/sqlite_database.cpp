#include "platform/sql/sqlite_database.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <exception>
#include <list>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "common/one_shot.h"
#include "common/status_macros.h"
#include "common/thread_name.h"
#include "fmt/format.h"
#include "spdlog/spdlog.h"

#if EMPORIUM_SQL_HAS_OBS
#include "platform/obs/metrics.h"
#endif

namespace emporium::sql {
namespace {

// Savepoint wrapped around each job of a batch, so a failing job rolls back alone.
constexpr std::string_view kJobSavepoint = "SAVEPOINT emporium_job";
constexpr std::string_view kReleaseJobSavepoint = "RELEASE emporium_job";
constexpr std::string_view kRollbackToJobSavepoint = "ROLLBACK TO emporium_job";

// Maps an (extended) SQLite result code to the port's canonical errors; see database.h.
absl::Status MapError(int code, std::string_view what, const char* detail) {
  std::string message = fmt::format("sqlite: {}: {} [{}]", what, detail != nullptr ? detail : "",
                                    sqlite3_errstr(code));
  switch (code & 0xff) {
    case SQLITE_CONSTRAINT:
      if (code == SQLITE_CONSTRAINT_UNIQUE || code == SQLITE_CONSTRAINT_PRIMARYKEY) {
        return absl::AlreadyExistsError(message);
      }
      return absl::FailedPreconditionError(message);
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_PROTOCOL:
    case SQLITE_FULL:
      return absl::UnavailableError(message);
    default:
      return absl::InternalError(message);
  }
}

bool OnlyWhitespace(std::string_view text) {
  return std::all_of(text.begin(), text.end(), [](char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
  });
}

// Process-wide SQLite settings, applied once before the first connection opens. Memory
// statistics off: with them on, every allocation SQLite makes takes a global mutex (the
// writer of a busy database allocates per statement and row, and the mutex showed up as ~6 % of
// its CPU). Nothing here reads sqlite3_memory_used(). If SQLite was already initialized by
// someone else in the process the call is refused (SQLITE_MISUSE) and changes nothing.
void ConfigureSqliteOnce() {
  static std::once_flag once;
  std::call_once(once, [] { (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0); });
}

enum class ConnectionRole { kWriter, kReader, kCheckpointer };

// One SQLite connection and its prepared-statement cache. Used by one thread at a time.
class Connection {
 public:
  static absl::StatusOr<std::unique_ptr<Connection>> Open(const SqliteOptions& options,
                                                          ConnectionRole role) {
    ConfigureSqliteOnce();
    sqlite3* db = nullptr;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    int rc = sqlite3_open_v2(options.path.c_str(), &db, flags, nullptr);
    // The connection owns `db` even when opening failed (sqlite3_open_v2 may still allocate).
    auto connection =
        std::unique_ptr<Connection>(new Connection(db, options.statement_cache_capacity));
    if (rc != SQLITE_OK) {
      return MapError(rc, fmt::format("open {}", options.path),
                      db != nullptr ? sqlite3_errmsg(db) : "out of memory");
    }
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_timeout(db, options.busy_timeout_ms);
    if (role == ConnectionRole::kWriter) {
      ASSIGN_OR_RETURN(std::string mode, connection->QueryText("PRAGMA journal_mode=WAL"));
      if (mode != "wal") {
        return absl::UnavailableError(
            fmt::format("sqlite: {} refused WAL mode (journal_mode={})", options.path, mode));
      }
    }
    // FULL: the WAL is fsynced at every commit, so an acknowledged write survives power loss.
    // With deferred_sync the writer commits at NORMAL (no fsync at commit; checkpoints still
    // sync) and the database's sync thread fdatasyncs the WAL before acknowledging anything.
    RETURN_IF_ERROR(connection->ExecOnce(role == ConnectionRole::kWriter && options.deferred_sync
                                             ? "PRAGMA synchronous=NORMAL"
                                             : "PRAGMA synchronous=FULL"));
    RETURN_IF_ERROR(connection->ExecOnce("PRAGMA foreign_keys=ON"));
    if (role == ConnectionRole::kWriter) {
      // Statement and savepoint journals in memory: each write job runs in a savepoint, so
      // SQLite journals the first change of every page in it; on a temp file that is a pwrite
      // per page (more than the WAL frames themselves). They only serve rollback inside a
      // transaction, never recovery, so memory loses nothing; they are bounded by the pages one
      // batch changes.
      RETURN_IF_ERROR(connection->ExecOnce("PRAGMA temp_store=MEMORY"));
      // Negative: a size in KiB rather than in pages.
      RETURN_IF_ERROR(connection->ExecOnce(
          fmt::format("PRAGMA cache_size=-{}", options.writer_cache_kib).c_str()));
    }
    if (role == ConnectionRole::kReader) {
      // Writes through a read transaction are a bug; make them fail instead of racing the writer.
      RETURN_IF_ERROR(connection->ExecOnce("PRAGMA query_only=ON"));
    }
    if (role == ConnectionRole::kWriter) {
      // No automatic checkpoint after commits: the database decides where checkpoints run
      // (SqliteDatabase::AfterCommit). The hook also reports the WAL's size after each commit.
      sqlite3_wal_hook(db, &Connection::OnWalCommit, connection.get());
    }
    return connection;
  }

  ~Connection() {
    for (auto& [sql, statement] : lru_) sqlite3_finalize(statement);
    sqlite3_close_v2(db_);
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  sqlite3* db() const { return db_; }

  // Pages in the WAL after this connection's last commit (writer only).
  int wal_pages() const { return wal_pages_; }

  // Pages this connection wrote since the last call (SQLITE_DBSTATUS_CACHE_WRITE, reset).
  int64_t TakePagesWritten() {
    int current = 0, highwater = 0;
    if (sqlite3_db_status(db_, SQLITE_DBSTATUS_CACHE_WRITE, &current, &highwater, 1) != SQLITE_OK) {
      return 0;
    }
    return current;
  }

  // A PASSIVE checkpoint: copies what it can without waiting for anyone. OK when another
  // connection's checkpoint is running (SQLITE_BUSY: nothing to do now).
  absl::Status CheckpointPassive() {
    int rc = sqlite3_wal_checkpoint_v2(db_, nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
    if (rc == SQLITE_OK || rc == SQLITE_BUSY) return absl::OkStatus();
    return MapError(rc, "checkpoint", sqlite3_errmsg(db_));
  }

  // Returns a reset statement for `sql` from the cache, preparing it on a miss. nullptr means
  // the text holds no statement (only whitespace or comments).
  absl::StatusOr<sqlite3_stmt*> Prepare(std::string_view sql) {
    // Looked up by the caller's view: a hit (nearly every statement) copies no SQL text.
    if (auto it = index_.find(sql); it != index_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second);
      return it->second->second;
    }
    sqlite3_stmt* statement = nullptr;
    const char* tail = nullptr;
    int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()),
                                SQLITE_PREPARE_PERSISTENT, &statement, &tail);
    if (rc != SQLITE_OK) {
      return MapError(rc, fmt::format("prepare \"{}\"", sql), sqlite3_errmsg(db_));
    }
    if (statement == nullptr) return nullptr;
    std::string_view rest(tail, static_cast<size_t>(sql.data() + sql.size() - tail));
    if (!OnlyWhitespace(rest)) {
      // Only comments may follow; a second statement would be silently ignored by SQLite.
      sqlite3_stmt* second = nullptr;
      int rc2 =
          sqlite3_prepare_v2(db_, rest.data(), static_cast<int>(rest.size()), &second, nullptr);
      sqlite3_finalize(second);
      if (rc2 != SQLITE_OK || second != nullptr) {
        sqlite3_finalize(statement);
        return absl::InternalError(
            fmt::format("sqlite: one statement per call; got more in \"{}\"", sql));
      }
    }
    lru_.emplace_front(std::string(sql), statement);
    index_.emplace(std::string_view(lru_.front().first), lru_.begin());
    if (lru_.size() > cache_capacity_) {
      index_.erase(std::string_view(lru_.back().first));
      sqlite3_finalize(lru_.back().second);
      lru_.pop_back();
    }
    return statement;
  }

  // Runs a cached statement that takes no parameters (transaction control).
  absl::Status Exec(std::string_view sql) {
    ASSIGN_OR_RETURN(sqlite3_stmt * statement, Prepare(sql));
    int rc = sqlite3_step(statement);
    sqlite3_reset(statement);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
      return MapError(rc, fmt::format("\"{}\"", sql), sqlite3_errmsg(db_));
    }
    return absl::OkStatus();
  }

 private:
  Connection(sqlite3* db, size_t cache_capacity)
      : db_(db), cache_capacity_(std::max<size_t>(cache_capacity, 1)) {}

  static int OnWalCommit(void* self, sqlite3* /*db*/, const char* /*schema*/, int pages) {
    static_cast<Connection*>(self)->wal_pages_ = pages;
    return SQLITE_OK;
  }

  // Setup statements run once; no point caching them.
  absl::Status ExecOnce(const char* sql) {
    char* error = nullptr;
    int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &error);
    absl::Status status = absl::OkStatus();
    if (rc != SQLITE_OK) status = MapError(rc, sql, error);
    sqlite3_free(error);
    return status;
  }

  absl::StatusOr<std::string> QueryText(const char* sql) {
    sqlite3_stmt* statement = nullptr;
    int rc = sqlite3_prepare_v2(db_, sql, -1, &statement, nullptr);
    if (rc != SQLITE_OK) return MapError(rc, sql, sqlite3_errmsg(db_));
    rc = sqlite3_step(statement);
    std::string text;
    if (rc == SQLITE_ROW) {
      const auto* bytes = sqlite3_column_text(statement, 0);
      if (bytes != nullptr) text = reinterpret_cast<const char*>(bytes);
    }
    sqlite3_finalize(statement);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) return MapError(rc, sql, sqlite3_errmsg(db_));
    return text;
  }

  sqlite3* db_;
  size_t cache_capacity_;
  int wal_pages_ = 0;
  // Most recently used first. The index's keys view the SQL text owned by the list nodes, which
  // never move; an entry leaves the index before its node is erased.
  std::list<std::pair<std::string, sqlite3_stmt*>> lru_;
  std::unordered_map<std::string_view, std::list<std::pair<std::string, sqlite3_stmt*>>::iterator>
      index_;
};

// Resets a statement and drops its bindings however the caller leaves.
class StatementReset {
 public:
  explicit StatementReset(sqlite3_stmt* statement) : statement_(statement) {}
  ~StatementReset() {
    sqlite3_reset(statement_);
    sqlite3_clear_bindings(statement_);
  }
  StatementReset(const StatementReset&) = delete;
  StatementReset& operator=(const StatementReset&) = delete;

 private:
  sqlite3_stmt* statement_;
};

absl::Status Bind(sqlite3_stmt* statement, Params params, std::string_view sql) {
  int expected = sqlite3_bind_parameter_count(statement);
  if (static_cast<size_t>(expected) != params.size()) {
    return absl::InternalError(
        fmt::format("sqlite: \"{}\" takes {} parameters, got {}", sql, expected, params.size()));
  }
  for (size_t i = 0; i < params.size(); ++i) {
    int index = static_cast<int>(i) + 1;
    const Param param = params[i];
    int rc = SQLITE_OK;
    // The parameters outlive the statement's execution (bindings are cleared before Query
    // returns), so SQLite need not copy text and blobs.
    switch (param.kind()) {
      case Param::Kind::kNull:
        rc = sqlite3_bind_null(statement, index);
        break;
      case Param::Kind::kInt:
        rc = sqlite3_bind_int64(statement, index, param.integer());
        break;
      case Param::Kind::kDouble:
        rc = sqlite3_bind_double(statement, index, param.real());
        break;
      case Param::Kind::kText: {
        std::string_view text = param.bytes();
        // A null pointer would bind NULL, not empty text.
        rc = sqlite3_bind_text64(statement, index, text.data() != nullptr ? text.data() : "",
                                 text.size(), SQLITE_STATIC, SQLITE_UTF8);
        break;
      }
      case Param::Kind::kBlob: {
        std::string_view bytes = param.bytes();
        // A null pointer would bind NULL, so an empty blob is bound as a zero-length blob.
        rc = bytes.empty()
                 ? sqlite3_bind_zeroblob(statement, index, 0)
                 : sqlite3_bind_blob64(statement, index, bytes.data(), bytes.size(), SQLITE_STATIC);
        break;
      }
    }
    if (rc != SQLITE_OK) {
      return MapError(rc, fmt::format("bind parameter {} of \"{}\"", index, sql),
                      sqlite3_errmsg(sqlite3_db_handle(statement)));
    }
  }
  return absl::OkStatus();
}

Value ColumnValue(sqlite3_stmt* statement, int column) {
  switch (sqlite3_column_type(statement, column)) {
    case SQLITE_INTEGER:
      return sqlite3_column_int64(statement, column);
    case SQLITE_FLOAT:
      return sqlite3_column_double(statement, column);
    case SQLITE_TEXT: {
      const auto* bytes = reinterpret_cast<const char*>(sqlite3_column_text(statement, column));
      int size = sqlite3_column_bytes(statement, column);
      return std::string(bytes != nullptr ? bytes : "", static_cast<size_t>(size));
    }
    case SQLITE_BLOB: {
      const auto* bytes = static_cast<const char*>(sqlite3_column_blob(statement, column));
      int size = sqlite3_column_bytes(statement, column);
      return Blob{std::string(bytes != nullptr ? bytes : "", static_cast<size_t>(size))};
    }
    case SQLITE_NULL:
    default:
      return std::monostate{};
  }
}

class SqliteTransaction final : public Transaction {
 public:
  explicit SqliteTransaction(Connection& connection) : connection_(connection) {}

  absl::StatusOr<ResultSet> Query(std::string_view sql, Params params) override {
    ResultSet result;
    RETURN_IF_ERROR(Run(sql, params, &result));
    return result;
  }

  absl::StatusOr<int64_t> Execute(std::string_view sql, Params params) override {
    RETURN_IF_ERROR(Run(sql, params, nullptr));
    return last_changes_;
  }

 private:
  absl::Status Run(std::string_view sql, Params params, ResultSet* result) {
    last_changes_ = 0;
    ASSIGN_OR_RETURN(sqlite3_stmt * statement, connection_.Prepare(sql));
    if (statement == nullptr) return absl::OkStatus();
    StatementReset reset(statement);
    RETURN_IF_ERROR(Bind(statement, params, sql));
    int column_count = sqlite3_column_count(statement);
    if (result != nullptr) {
      result->columns.reserve(static_cast<size_t>(column_count));
      for (int c = 0; c < column_count; ++c) {
        const char* name = sqlite3_column_name(statement, c);
        result->columns.emplace_back(name != nullptr ? name : "");
      }
    }
    while (true) {
      int rc = sqlite3_step(statement);
      if (rc == SQLITE_DONE) break;
      if (rc != SQLITE_ROW) {
        return MapError(rc, fmt::format("\"{}\"", sql), sqlite3_errmsg(connection_.db()));
      }
      if (result == nullptr) continue;
      std::vector<Value> values;
      values.reserve(static_cast<size_t>(column_count));
      for (int c = 0; c < column_count; ++c) values.push_back(ColumnValue(statement, c));
      result->rows.emplace_back(std::move(values));
    }
    last_changes_ = sqlite3_changes64(connection_.db());
    return absl::OkStatus();
  }

  Connection& connection_;
  int64_t last_changes_ = 0;
};

// Runs a job, turning an escaped exception into that job's Internal error: library exceptions
// never cross the port.
absl::Status RunGuarded(const std::function<absl::Status(Transaction&)>& job,
                        Transaction& transaction) {
  try {
    return job(transaction);
  } catch (const std::exception& e) {
    return absl::InternalError(fmt::format("sql job threw: {}", e.what()));
  } catch (...) {
    return absl::InternalError("sql job threw a non-standard exception");
  }
}

struct PendingWrite {
  WriteJob job;
  WriteDone done;
};

class SqliteDatabase final : public Database {
 public:
  explicit SqliteDatabase(SqliteOptions options) : options_(std::move(options)) {}
  ~SqliteDatabase() override { Close(); }

  absl::Status Start() {
    ASSIGN_OR_RETURN(writer_, Connection::Open(options_, ConnectionRole::kWriter));
    if (options_.deferred_sync) {
      // The WAL as SQLite names it (absolute, symbolic links resolved), not a guess from
      // options_.path: syncing another file would acknowledge writes that are not durable.
      const char* wal = sqlite3_filename_wal(sqlite3_db_filename(writer_->db(), "main"));
      if (wal == nullptr || *wal == '\0') {
        return absl::UnavailableError(
            fmt::format("sql: cannot name the WAL file of {}", options_.path));
      }
      wal_path_ = wal;
    }
    for (int i = 0; i < options_.reader_count; ++i) {
      ASSIGN_OR_RETURN(auto reader, Connection::Open(options_, ConnectionRole::kReader));
      free_readers_.push_back(reader.get());
      readers_.push_back(std::move(reader));
    }
#if EMPORIUM_SQL_HAS_OBS
    if (options_.metrics != nullptr) {
      obs::Labels labels = {{"db", options_.name}};
      batch_jobs_metric_ = &options_.metrics->GetHistogram(
          "emporium_db_batch_jobs", "Write jobs committed together in one transaction.", labels,
          obs::SizeBuckets());
      queue_depth_metric_ = &options_.metrics->GetGauge(
          "emporium_db_write_queue_depth", "Write jobs queued for the writer thread.", labels);
      pages_written_metric_ = &options_.metrics->GetCounter(
          "emporium_db_pages_written_total",
          "Database pages the writer wrote in committed batches (WAL frames for SQLite).", labels);
    }
#endif
    if (options_.checkpoint_wal_pages > 0) {
      ASSIGN_OR_RETURN(checkpointer_, Connection::Open(options_, ConnectionRole::kCheckpointer));
      checkpoint_thread_ = std::thread([this] {
        SetCurrentThreadName("db-ckpt:" + options_.name);
        CheckpointLoop();
      });
    }
    if (options_.deferred_sync) {
      sync_thread_ = std::thread([this] {
        SetCurrentThreadName("db-sync:" + options_.name);
        SyncLoop();
      });
      sync_thread_id_ = sync_thread_.get_id();
    }
    writer_thread_ = std::thread([this] {
      SetCurrentThreadName("db-w:" + options_.name);
      WriterLoop();
    });
    writer_thread_id_ = writer_thread_.get_id();
    return absl::OkStatus();
  }

  absl::Status Write(WriteJob job) override {
    if (std::this_thread::get_id() == writer_thread_id_ ||
        (options_.deferred_sync && std::this_thread::get_id() == sync_thread_id_)) {
      return absl::FailedPreconditionError(
          "sql: Write() called from inside a write job or WriteDone; it would wait on itself");
    }
    OneShot<absl::Status> completion;
    SubmitWrite(std::move(job),
                [&completion](absl::Status status) { completion.Post(std::move(status)); });
    return completion.Wait();
  }

  void SubmitWrite(WriteJob job, WriteDone done) override {
    absl::Status rejected;
    {
      std::lock_guard<std::mutex> lock(queue_mu_);
      if (closing_) {
        rejected = absl::UnavailableError(fmt::format("sql: database {} is closed", options_.name));
      } else if (queue_.size() >= options_.write_queue_capacity) {
        rejected = absl::ResourceExhaustedError(
            fmt::format("sql: write queue of {} is full ({} jobs)", options_.name, queue_.size()));
      } else {
        queue_.push_back(PendingWrite{std::move(job), std::move(done)});
        SetQueueDepth(queue_.size());
      }
    }
    if (rejected.ok()) {
      // After unlocking, so a sleeping writer does not wake only to block on queue_mu_.
      queue_cv_.notify_one();
      return;
    }
    // Rejections are reported on the caller's thread, before SubmitWrite returns.
    done(std::move(rejected));
  }

  absl::Status Read(ReadJob job) override {
    Connection* connection = nullptr;
    {
      std::unique_lock<std::mutex> lock(readers_mu_);
      readers_cv_.wait(lock, [this] { return readers_closing_ || !free_readers_.empty(); });
      if (readers_closing_) {
        return absl::UnavailableError(fmt::format("sql: database {} is closed", options_.name));
      }
      connection = free_readers_.back();
      free_readers_.pop_back();
    }
    absl::Status status = RunRead(*connection, job);
    bool closing = false;
    {
      std::lock_guard<std::mutex> lock(readers_mu_);
      free_readers_.push_back(connection);
      closing = readers_closing_;
    }
    // One returned connection serves one waiting reader, so wake one, not all of them to fight
    // over it. Once closing, Close() may be the one waiting (no Read() waits then: they all
    // left with Unavailable), so wake everyone to be sure it hears.
    if (closing) {
      readers_cv_.notify_all();
    } else {
      readers_cv_.notify_one();
    }
    return status;
  }

  void AddCommitListener(std::function<void()> listener) override {
    std::lock_guard<std::mutex> lock(listeners_mu_);
    listeners_.push_back(std::move(listener));
  }

  WriteStats stats() const override {
    WriteStats stats;
    stats.batches_committed = batches_committed_.load(std::memory_order_relaxed);
    stats.jobs_committed = jobs_committed_.load(std::memory_order_relaxed);
    stats.jobs_failed = jobs_failed_.load(std::memory_order_relaxed);
    stats.queue_depth = queue_depth_.load(std::memory_order_relaxed);
    stats.pages_written = pages_written_.load(std::memory_order_relaxed);
    stats.batches_failed = batches_failed_.load(std::memory_order_relaxed);
    return stats;
  }

  std::string_view dialect() const override { return "sqlite"; }

  void Close() override {
    if (std::this_thread::get_id() == writer_thread_id_) {
      std::fprintf(stderr, "emporium::sql: Close() called on the writer thread\n");
      std::abort();
    }
    std::lock_guard<std::mutex> close_lock(close_mu_);
    {
      std::lock_guard<std::mutex> lock(queue_mu_);
      closing_ = true;
    }
    queue_cv_.notify_all();
    if (writer_thread_.joinable()) writer_thread_.join();
    // The writer has handed every batch over: the sync thread makes them durable, answers them
    // and stops.
    {
      std::lock_guard<std::mutex> lock(sync_mu_);
      sync_stopping_ = true;
    }
    sync_cv_.notify_all();
    if (sync_thread_.joinable()) sync_thread_.join();
    if (wal_fd_ >= 0) {
      ::close(wal_fd_);
      wal_fd_ = -1;
    }
    {
      std::lock_guard<std::mutex> lock(checkpoint_mu_);
      checkpoint_stopping_ = true;
    }
    checkpoint_cv_.notify_all();
    if (checkpoint_thread_.joinable()) checkpoint_thread_.join();
    checkpointer_.reset();
    writer_.reset();
    {
      std::unique_lock<std::mutex> lock(readers_mu_);
      readers_closing_ = true;
      readers_cv_.notify_all();
      // In-flight reads finish and hand their connections back before these close.
      readers_cv_.wait(lock, [this] { return free_readers_.size() == readers_.size(); });
      free_readers_.clear();
      readers_.clear();
    }
    readers_cv_.notify_all();
  }

 private:
  void SetQueueDepth(size_t depth) {
    queue_depth_.store(static_cast<int64_t>(depth), std::memory_order_relaxed);
#if EMPORIUM_SQL_HAS_OBS
    if (queue_depth_metric_ != nullptr) queue_depth_metric_->Set(static_cast<int64_t>(depth));
#endif
  }

  absl::Status RunRead(Connection& connection, const ReadJob& job) {
    RETURN_IF_ERROR(connection.Exec("BEGIN"));
    SqliteTransaction transaction(connection);
    if (options_.deferred_sync) {
      // Take the snapshot now, then wait until every commit it may hold is durable: a commit
      // counts itself in commit_gen_ before it becomes visible, so reading the count after the
      // snapshot covers it. On the sync thread itself (a Read() inside a WriteDone, which no
      // caller does today) waiting would wait on itself, so such a read may see a later commit
      // whose sync is still to come.
      absl::Status snapshot = connection.Exec("SELECT 1 FROM sqlite_schema LIMIT 1");
      if (!snapshot.ok()) {
        (void)connection.Exec("ROLLBACK");
        return snapshot;
      }
      const uint64_t visible = commit_gen_.load();
      if (std::this_thread::get_id() != sync_thread_id_ && durable_gen_.load() < visible) {
        std::unique_lock<std::mutex> lock(sync_mu_);
        durable_cv_.wait(lock, [&] { return durable_gen_.load() >= visible; });
      }
    }
    absl::Status status = RunGuarded(job, transaction);
    if (status.ok()) status = connection.Exec("COMMIT");
    if (!sqlite3_get_autocommit(connection.db())) {
      // A failed read still must end its snapshot, or the WAL could never be checkpointed.
      (void)connection.Exec("ROLLBACK");
    }
    return status;
  }

  void WriterLoop() {
    std::vector<PendingWrite> batch;
    batch.reserve(std::min<size_t>(options_.batch_jobs_max, 4096));
    while (true) {
      {
        std::unique_lock<std::mutex> lock(queue_mu_);
        queue_cv_.wait(lock, [this] { return closing_ || !queue_.empty(); });
        // Closing drains the queue first: every accepted job gets a real outcome.
        if (queue_.empty()) return;
        size_t take = std::min(queue_.size(), options_.batch_jobs_max);
        for (size_t i = 0; i < take; ++i) {
          batch.push_back(std::move(queue_.front()));
          queue_.pop_front();
        }
        SetQueueDepth(queue_.size());
      }
      RunBatch(batch);
      batch.clear();
    }
  }

  // One transaction for the whole batch, one savepoint per job.
  void RunBatch(std::vector<PendingWrite>& batch) {
    std::vector<absl::Status> outcomes(batch.size());
    Connection& connection = *writer_;
    absl::Status batch_status = connection.Exec("BEGIN IMMEDIATE");
    if (batch_status.ok()) {
      SqliteTransaction transaction(connection);
      for (size_t i = 0; i < batch.size() && batch_status.ok(); ++i) {
        batch_status = connection.Exec(kJobSavepoint);
        if (!batch_status.ok()) break;
        outcomes[i] = RunGuarded(batch[i].job, transaction);
        if (outcomes[i].ok()) {
          batch_status = connection.Exec(kReleaseJobSavepoint);
        } else {
          batch_status = connection.Exec(kRollbackToJobSavepoint);
          if (batch_status.ok()) batch_status = connection.Exec(kReleaseJobSavepoint);
        }
        if (batch_status.ok() && sqlite3_get_autocommit(connection.db())) {
          // SQLite rolled the whole transaction back (e.g. disk full), or the job ended it.
          batch_status = absl::UnavailableError(
              "sql: the batch transaction ended inside a job; the batch was rolled back");
        }
      }
      // Counted before the commit becomes visible to readers (see RunRead).
      if (options_.deferred_sync) commit_gen_.fetch_add(1);
      if (batch_status.ok()) batch_status = connection.Exec("COMMIT");
      if (!batch_status.ok() && !sqlite3_get_autocommit(connection.db())) {
        (void)connection.Exec("ROLLBACK");
      }
    }
    int64_t committed = 0;
    for (size_t i = 0; i < batch.size(); ++i) {
      // A job's own error says more than the batch's; jobs that succeeded share the batch's.
      if (outcomes[i].ok()) outcomes[i] = batch_status;
      if (outcomes[i].ok()) ++committed;
    }
    if (!batch_status.ok()) {
      batches_failed_.fetch_add(1, std::memory_order_relaxed);
      spdlog::warn("sql: batch of {} jobs on {} failed: {}", batch.size(), options_.name,
                   batch_status.ToString());
    }
    // Counted for committed batches only; a failed batch's pages are dropped with the count.
    const int64_t pages = connection.TakePagesWritten();
    if (batch_status.ok()) {
      pages_written_.fetch_add(pages, std::memory_order_relaxed);
      batches_committed_.fetch_add(1, std::memory_order_relaxed);
#if EMPORIUM_SQL_HAS_OBS
      if (batch_jobs_metric_ != nullptr)
        batch_jobs_metric_->Observe(static_cast<double>(batch.size()));
      if (pages_written_metric_ != nullptr) pages_written_metric_->Increment(pages);
#endif
    }
    jobs_committed_.fetch_add(committed, std::memory_order_relaxed);
    jobs_failed_.fetch_add(static_cast<int64_t>(batch.size()) - committed,
                           std::memory_order_relaxed);
    if (options_.deferred_sync) {
      // Answered by the sync thread once durable (a failed batch too, to keep commit order);
      // the writer goes on with the next batch meanwhile.
      {
        std::lock_guard<std::mutex> lock(sync_mu_);
        sync_queue_.push_back(
            SyncItem{commit_gen_.load(), std::move(batch), std::move(outcomes), batch_status.ok()});
      }
      sync_cv_.notify_one();
      batch.clear();
    } else {
      Answer(batch, outcomes);
    }
    // Listeners run here, between this batch and the next one's jobs, with a deferred sync too
    // (they collect what this batch's jobs noted); what they wake reads through Read(), which
    // waits until the batch is durable.
    if (batch_status.ok()) {
      NotifyCommitListeners();
      AfterCommit();
    }
  }

  // Calls each job's WriteDone with its outcome; a callback that throws is logged.
  void Answer(std::vector<PendingWrite>& batch, std::vector<absl::Status>& outcomes) {
    for (size_t i = 0; i < batch.size(); ++i) {
      if (!batch[i].done) continue;
      try {
        batch[i].done(std::move(outcomes[i]));
      } catch (const std::exception& e) {
        spdlog::error("sql: WriteDone callback on {} threw: {}", options_.name, e.what());
      } catch (...) {
        spdlog::error("sql: WriteDone callback on {} threw", options_.name);
      }
    }
  }

  // Where the checkpoint after a commit runs (SqliteOptions::checkpoint_wal_pages).
  void AfterCommit() {
    const size_t pages = static_cast<size_t>(std::max(writer_->wal_pages(), 0));
    if (pages >= options_.wal_pages_max) {
      // The WAL restarts at the next write only if it is completely copied now.
      if (absl::Status status = writer_->CheckpointPassive(); !status.ok()) {
        spdlog::warn("sql: checkpoint of {} failed: {}", options_.name, status.ToString());
      }
      return;
    }
    // One background checkpoint per checkpoint_wal_pages pages the WAL grew by (not one per
    // commit past the threshold: small commits would keep it copying and fsyncing all the time,
    // its fsyncs competing with the commits' own).
    if (pages < checkpoint_requested_at_pages_) checkpoint_requested_at_pages_ = 0;  // restarted
    if (checkpointer_ == nullptr ||
        pages < checkpoint_requested_at_pages_ + options_.checkpoint_wal_pages) {
      return;
    }
    checkpoint_requested_at_pages_ = pages;
    {
      std::lock_guard<std::mutex> lock(checkpoint_mu_);
      checkpoint_requested_ = true;
    }
    checkpoint_cv_.notify_one();
  }

  // The background checkpointer: one PASSIVE checkpoint per request (requests made while one
  // runs fold into the next).
  void CheckpointLoop() {
    while (true) {
      {
        std::unique_lock<std::mutex> lock(checkpoint_mu_);
        checkpoint_cv_.wait(lock, [this] { return checkpoint_stopping_ || checkpoint_requested_; });
        if (checkpoint_stopping_) return;
        checkpoint_requested_ = false;
      }
      if (absl::Status status = checkpointer_->CheckpointPassive(); !status.ok()) {
        spdlog::warn("sql: background checkpoint of {} failed: {}", options_.name,
                     status.ToString());
      }
    }
  }

  // Deferred sync: makes the WAL durable behind the writer, then answers the batches it covered
  // (every one handed over before the fdatasync began), in commit order.
  void SyncLoop() {
    std::vector<SyncItem> items;
    while (true) {
      {
        std::unique_lock<std::mutex> lock(sync_mu_);
        sync_cv_.wait(lock, [this] { return sync_stopping_ || !sync_queue_.empty(); });
        if (sync_queue_.empty()) return;  // stopping, and everything handed over was answered
        items.assign(std::make_move_iterator(sync_queue_.begin()),
                     std::make_move_iterator(sync_queue_.end()));
        sync_queue_.clear();
      }
      const uint64_t covered = items.back().gen;
      bool any_committed = false;
      for (const SyncItem& item : items) any_committed = any_committed || item.committed;
      if (any_committed) SyncWal();
      if (options_.deferred_sync_test_hook) options_.deferred_sync_test_hook();
      {
        std::lock_guard<std::mutex> lock(sync_mu_);
        durable_gen_.store(covered);
      }
      durable_cv_.notify_all();
      for (SyncItem& item : items) Answer(item.batch, item.outcomes);
      items.clear();
    }
  }

  // fdatasync of the WAL file through a descriptor of its own (the data of the file, whichever
  // descriptor wrote it). A failed sync leaves committed batches of unknown durability: like
  // PostgreSQL (data_sync_retry=off) the process stops rather than acknowledge them, and
  // recovery at the next start keeps what reached the disk.
  void SyncWal() {
    if (wal_fd_ < 0) {
      wal_fd_ = ::open(wal_path_.c_str(), O_WRONLY | O_CLOEXEC);
      if (wal_fd_ < 0) {
        std::fprintf(stderr, "emporium::sql: cannot open %s to sync it\n", wal_path_.c_str());
        std::abort();
      }
    }
    if (::fdatasync(wal_fd_) != 0) {
      std::fprintf(stderr, "emporium::sql: fdatasync of the WAL of %s failed\n",
                   options_.name.c_str());
      std::abort();
    }
  }

  void NotifyCommitListeners() {
    std::lock_guard<std::mutex> lock(listeners_mu_);
    for (auto& listener : listeners_) {
      try {
        listener();
      } catch (const std::exception& e) {
        spdlog::error("sql: commit listener on {} threw: {}", options_.name, e.what());
      } catch (...) {
        spdlog::error("sql: commit listener on {} threw", options_.name);
      }
    }
  }

  const SqliteOptions options_;

  std::mutex close_mu_;  // Serializes Close().

  std::mutex queue_mu_;
  std::condition_variable queue_cv_;
  std::deque<PendingWrite> queue_;
  bool closing_ = false;
  std::unique_ptr<Connection> writer_;  // Used only by the writer thread once it runs.
  std::thread writer_thread_;
  std::thread::id writer_thread_id_;

  // The background checkpointer (null when SqliteOptions::checkpoint_wal_pages is 0).
  std::unique_ptr<Connection> checkpointer_;
  std::thread checkpoint_thread_;
  std::mutex checkpoint_mu_;
  std::condition_variable checkpoint_cv_;
  bool checkpoint_requested_ = false;
  bool checkpoint_stopping_ = false;
  // The WAL's size when the writer last asked for a background checkpoint (writer thread only).
  size_t checkpoint_requested_at_pages_ = 0;

  std::mutex readers_mu_;
  std::condition_variable readers_cv_;
  std::vector<std::unique_ptr<Connection>> readers_;
  std::vector<Connection*> free_readers_;
  bool readers_closing_ = false;

  std::mutex listeners_mu_;
  std::vector<std::function<void()>> listeners_;

  // Deferred sync (SqliteOptions::deferred_sync).
  struct SyncItem {
    uint64_t gen = 0;  // commit_gen_ when the batch was handed over
    std::vector<PendingWrite> batch;
    std::vector<absl::Status> outcomes;
    bool committed = false;
  };
  std::mutex sync_mu_;
  std::condition_variable sync_cv_;       // wakes the sync thread
  std::condition_variable durable_cv_;    // wakes reads waiting for a sync
  std::deque<SyncItem> sync_queue_;       // guarded by sync_mu_
  bool sync_stopping_ = false;            // guarded by sync_mu_
  std::atomic<uint64_t> commit_gen_{0};   // commits begun (counted before they are visible)
  std::atomic<uint64_t> durable_gen_{0};  // commits known durable
  std::string wal_path_;                  // set by Start()
  int wal_fd_ = -1;                       // sync thread only (and Close after it stopped)
  std::thread sync_thread_;
  std::thread::id sync_thread_id_;

  std::atomic<int64_t> batches_committed_{0};
  std::atomic<int64_t> jobs_committed_{0};
  std::atomic<int64_t> jobs_failed_{0};
  std::atomic<int64_t> queue_depth_{0};
  std::atomic<int64_t> pages_written_{0};
  std::atomic<int64_t> batches_failed_{0};
#if EMPORIUM_SQL_HAS_OBS
  obs::Histogram* batch_jobs_metric_ = nullptr;
  obs::Gauge* queue_depth_metric_ = nullptr;
  obs::Counter* pages_written_metric_ = nullptr;
#endif
};

}  // namespace

absl::StatusOr<std::unique_ptr<Database>> OpenSqlite(const SqliteOptions& options) {
  if (options.path.empty() || options.path == ":memory:" ||
      options.path.starts_with("file::memory")) {
    return absl::InvalidArgumentError(
        "sql: SqliteOptions.path must name a file (separate connections cannot share :memory:)");
  }
  if (options.reader_count < 1) {
    return absl::InvalidArgumentError("sql: SqliteOptions.reader_count must be at least 1");
  }
  if (options.writer_cache_kib < 1 || options.writer_cache_kib > int64_t{1} << 30) {
    return absl::InvalidArgumentError("sql: SqliteOptions.writer_cache_kib must be in [1, 2^30]");
  }
  if (options.wal_pages_max < 1 || options.wal_pages_max > 1'000'000'000 ||
      options.checkpoint_wal_pages > options.wal_pages_max) {
    return absl::InvalidArgumentError(
        "sql: SqliteOptions.wal_pages_max must be at least 1 and at least checkpoint_wal_pages");
  }
  if (options.write_queue_capacity < 1 || options.batch_jobs_max < 1) {
    return absl::InvalidArgumentError(
        "sql: SqliteOptions.write_queue_capacity and batch_jobs_max must be at least 1");
  }
  auto database = std::make_unique<SqliteDatabase>(options);
  absl::Status started = database->Start();
  if (!started.ok()) return started;
  return std::unique_ptr<Database>(std::move(database));
}

}  // namespace emporium::sql
