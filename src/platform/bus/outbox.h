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

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "platform/bus/envelope.h"
#include "platform/sql/database.h"

namespace emporium::bus {

// Inserts `envelope` into the outbox of the database `tx` belongs to. InvalidArgument for an
// invalid envelope (or one of type kBundleType), AlreadyExists if a message with the same id is
// already in the outbox. created_at_ms is the envelope's occurred_at_ms.
absl::Status Publish(sql::Transaction& tx, const Envelope& envelope);

// Inserts every envelope of `envelopes`, in order, for a single writer publishing many messages
// per transaction (the inventory shard engine's and the catalog processor's batches). One
// envelope is one row, as Publish writes it. Two or more go into bundles: rows of up to
// kBundleMessagesMax envelopes each (type kBundleType, the first envelope's id and key, the
// envelopes framed one after another in `envelope`, their count in `messages`). A row and its
// index entries are written once per bundle instead of once per message, and the relay marks
// and prunes one row; it publishes a bundle's messages in order, as separate messages with
// their own ids (ReadUnpublished unpacks them), so consumers see no difference. The same errors
// as Publish, except that AlreadyExists covers ids repeated within the call and a bundle's
// first id (the outbox indexes only that one; callers pass fresh ids); after an error some rows may
// be inserted, so the caller must fail its write job (whose savepoint then rolls them back).
absl::Status PublishAll(sql::Transaction& tx, const std::vector<Envelope>& envelopes);

inline constexpr std::string_view kBundleType = "bus.bundle";
inline constexpr size_t kBundleMessagesMax = 64;

// ---- Used by the relay (and tests, the admin CLI). ----

// One message of the outbox. A bundle's messages share its row's seq.
struct OutboxRow {
  int64_t seq = 0;
  std::string id;
  std::string type;
  std::string key;
  std::string envelope;  // serialized bytes
};

// The messages of committed, unpublished rows with seq > after_seq, in seq order (a bundle's
// in the order they were published). Whole rows only: rows are added while fewer than `limit`
// messages were read, so a bundle can take the answer past `limit` (by less than
// kBundleMessagesMax). A bundle that does not unpack ends the answer before it; DataLoss when
// it is the first row.
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
// Unpublished messages (a bundle counts its messages).
absl::StatusOr<int64_t> CountUnpublished(sql::Transaction& tx);
// Deletes inbox rows processed before `processed_before_ms`. The inbox retention must exceed
// the longest time a message can be redelivered (the outbox retention and any transport
// replay window), or a late duplicate would be handled again. At most `limit` rows, oldest
// first; returns how many.
absl::StatusOr<int64_t> PruneInbox(sql::Transaction& tx, int64_t processed_before_ms,
                                   int64_t limit);

}  // namespace emporium::bus
