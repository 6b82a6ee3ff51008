// The SQLite driver of the Database port (embedded mode): one database file in WAL mode, one
// writer connection fed by a bounded queue and committing in groups, and a pool of reader
// connections that read consistent snapshots concurrently with the writer.
//
// Durability: synchronous=FULL (or a deferred fdatasync of the WAL, see
// SqliteOptions::deferred_sync), so a write acknowledged by Write() / SubmitWrite() survives a
// power loss. Checkpoints run on a background thread (see SqliteOptions::checkpoint_wal_pages);
// they only copy what is already durable in the WAL, so a crash during one loses nothing. Many
// queued writes share one commit (and so one fsync); that is where the throughput comes from (see
// bench/group_commit_bench.cpp).
//
// Thread-safety: the returned Database is thread-safe. Write(), Read() and Close() must not be
// called from inside a write job or a WriteDone callback (they run on the writer thread, or
// with deferred_sync on the sync thread); Write() detects this and returns FailedPrecondition
// instead of deadlocking.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "platform/sql/database.h"

namespace emporium::obs {
class MetricsRegistry;
}  // namespace emporium::obs

namespace emporium::sql {

struct SqliteOptions {
  // Database file; created if missing. ":memory:" is useless here (each connection would get
  // its own database); use a file.
  std::string path;
  // Names the database in metrics (label db=<name>) and logs, e.g. "inventory".
  std::string name = "db";
  // Reader connections; Read() waits for a free one.
  int reader_count = 4;
  // How long a connection waits for a lock held by another process before Unavailable.
  int busy_timeout_ms = 5000;
  // Writes queued and not yet taken by the writer; a full queue rejects with
  // ResourceExhausted.
  size_t write_queue_capacity = 16384;
  // Most jobs committed in one transaction. 1 = one transaction (and one fsync) per write.
  size_t batch_jobs_max = 1024;
  // Prepared statements kept per connection, keyed by SQL text; least recently used evicted.
  size_t statement_cache_capacity = 128;
  // Page cache of the writer connection in KiB (SQLite's default is 2 MiB per connection). The
  // writer of a large database inserts into b-trees all over the file; with a cache smaller
  // than their working set every step re-reads pages from the OS (a pread and a page
  // re-parse each). Memory is taken only as pages are used, up to this bound.
  int64_t writer_cache_kib = 64 * 1024;
  // WAL checkpoints (copying committed pages from the WAL into the database file so the WAL
  // can start over) run on a background thread with its own connection once a commit leaves
  // at least checkpoint_wal_pages pages in the WAL, instead of on the writer after its commit
  // (page copies and two fsyncs the writer used to wait for). SQLite restarts the WAL only
  // when a write begins with it fully copied, which a busy writer never sees; so when a commit
  // leaves wal_pages_max pages the writer checkpoints what is left itself (little: the
  // background copied the rest), and the WAL stays bounded near that size. 0 for
  // checkpoint_wal_pages: no background thread, the writer checkpoints after its commits at
  // wal_pages_max pages (SQLite's own behaviour with wal_autocheckpoint = wal_pages_max).
  size_t checkpoint_wal_pages = 1000;
  size_t wal_pages_max = 10000;
  // Deferred sync: the writer commits without waiting for the disk (synchronous=NORMAL) and
  // goes on with the next batch while a sync thread makes the WAL durable (fdatasync) behind
  // it, so one batch's fsync overlaps the next batch's statements. Nothing is weakened: a
  // job's WriteDone (and Write()'s return) still runs only once its batch is durable, in
  // commit order (on the sync thread), and a Read() never sees a commit that is not durable
  // (it waits for the syncs that cover its snapshot, the one in flight and at most the next).
  // Commit listeners run on the writer right after each commit, as without it: what they wake
  // reads through Read(). Checkpoints still fsync the WAL before copying it and the database
  // file after (SQLite does so at NORMAL). A failed fdatasync aborts the process.
  bool deferred_sync = false;
  // Tests: runs on the sync thread after each fdatasync, before the batches it covered are
  // acknowledged (holding it keeps a committed batch unacknowledged).
  std::function<void()> deferred_sync_test_hook = nullptr;
  // Optional: records emporium_db_batch_jobs (histogram), emporium_db_write_queue_depth (gauge)
  // and emporium_db_pages_written_total (counter), labelled db=<name>. Must outlive the
  // database.
  obs::MetricsRegistry* metrics = nullptr;
};

// Opens (creating if needed) the database at options.path. InvalidArgument for bad options,
// Unavailable if the file cannot be opened or configured.
absl::StatusOr<std::unique_ptr<Database>> OpenSqlite(const SqliteOptions& options);

}  // namespace emporium::sql
