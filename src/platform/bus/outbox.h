// The transactional outbox: a context publishes a message by inserting it into its own
// database inside the transaction that makes the state change, so the message exists iff the
// change committed. The relay (relay.h) later reads committed rows in seq order, hands them to
// the transport and marks them published.
//
// Retention: published rows are kept for RelayOptions::outbox_retention (audit, debugging,
// re-publishing by hand) and then deleted by the relay; the newest row is never deleted so
// seq keeps increasing (see schema.h).
//
// Thread-safety: functions run inside the caller's transaction, on the caller's thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "platform/bus/envelope.h"
#include "platform/sql/database.h"

namespace emporium::bus {

// Inserts `envelope` into the outbox of the database `tx` belongs to. InvalidArgument for an
// invalid envelope, AlreadyExists if a message with the same id is already in the outbox.
// created_at_ms is the envelope's occurred_at_ms.
absl::Status Publish(sql::Transaction& tx, const Envelope& envelope);

// Inserts every envelope of `envelopes`, in order, as Publish would one by one (consecutive
// seqs, the same rows), but with one seq lookup and multi-row INSERTs: for a single writer
// publishing many events per transaction (the inventory shard engine's batches). The same
// errors as Publish; after an error some of the rows may be inserted, so the caller must fail
// its write job (whose savepoint then rolls them back).
absl::Status PublishAll(sql::Transaction& tx, const std::vector<Envelope>& envelopes);

// ---- Used by the relay (and tests, the admin CLI). ----

struct OutboxRow {
  int64_t seq = 0;
  std::string id;
  std::string type;
  std::string key;
  std::string envelope;  // serialized bytes
};

// Committed, unpublished rows with seq > after_seq in seq order, at most `limit`.
absl::StatusOr<std::vector<OutboxRow>> ReadUnpublished(sql::Transaction& tx, int64_t limit,
                                                       int64_t after_seq = 0);
// Marks unpublished rows with seq in [seq_first, seq_last] published; returns how many.
absl::StatusOr<int64_t> MarkPublished(sql::Transaction& tx, int64_t seq_first, int64_t seq_last,
                                      int64_t now_ms);
// Deletes, among the `examine_max` oldest rows (lowest seq), those published before
// `published_before_ms`, never the newest row; returns how many. The relay publishes in seq
// order, so the old rows are at the front: pruning walks the front in bounded chunks (0
// deleted: nothing old is left there) instead of searching the whole table in one statement.
absl::StatusOr<int64_t> PruneOutbox(sql::Transaction& tx, int64_t published_before_ms,
                                    int64_t examine_max);
absl::StatusOr<int64_t> CountUnpublished(sql::Transaction& tx);
// Deletes inbox rows processed before `processed_before_ms`. The inbox retention must exceed
// the longest time a message can be redelivered (the outbox retention and any transport
// replay window), or a late duplicate would be handled again. At most `limit` rows, oldest
// first; returns how many.
absl::StatusOr<int64_t> PruneInbox(sql::Transaction& tx, int64_t processed_before_ms,
                                   int64_t limit);

}  // namespace emporium::bus
