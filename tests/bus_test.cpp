// The bus over real SQLite databases: outbox atomicity, effectively-once delivery under
// redelivery and restarts, retries and dead letters, per-key order, request/reply.
#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/clock.h"
#include "common/ids.h"
#include "fmt/format.h"
#include "gtest/gtest.h"
#include "platform/bus/bus_runtime.h"
#include "platform/bus/consumer.h"
#include "platform/bus/envelope.h"
#include "platform/bus/in_process_transport.h"
#include "platform/bus/outbox.h"
#include "platform/bus/request_client.h"
#include "platform/bus/schema.h"
#include "platform/obs/metrics.h"
#include "platform/sql/sqlite_database.h"
#include "platform/sql/sqlite_test_util.h"

namespace emporium::bus {
namespace {

constexpr absl::Duration kWaitBound = absl::Seconds(20);

// Polls `condition` until it holds or kWaitBound passes.
bool Eventually(const std::function<bool()>& condition) {
  const absl::Time deadline = absl::Now() + kWaitBound;
  while (absl::Now() < deadline) {
    if (condition()) return true;
    absl::SleepFor(absl::Milliseconds(2));
  }
  return condition();
}

std::unique_ptr<sql::Database> OpenDb(const sql::TempDir& dir, const std::string& name) {
  sql::SqliteOptions options;
  options.path = dir.File(name + ".db");
  options.name = name;
  absl::StatusOr<std::unique_ptr<sql::Database>> db = sql::OpenSqlite(options);
  EXPECT_TRUE(db.ok()) << db.status();
  if (!db.ok()) return nullptr;
  EXPECT_TRUE(InstallBusSchema(**db).ok());
  EXPECT_TRUE((*db)
                  ->Write([](sql::Transaction& tx) {
                    return tx
                        .Execute(
                            "CREATE TABLE IF NOT EXISTS applied (n INTEGER PRIMARY KEY, "
                            "consumer TEXT NOT NULL, message_id TEXT NOT NULL, "
                            "key TEXT NOT NULL, payload TEXT NOT NULL)")
                        .status();
                  })
                  .ok());
  return std::move(*db);
}

int64_t QueryInt(sql::Database& db, const std::string& sql,
                 const std::vector<sql::Value>& params = {}) {
  int64_t value = -1;
  absl::Status status = db.Read([&](sql::Transaction& tx) -> absl::Status {
    absl::StatusOr<sql::ResultSet> result = tx.Query(sql, params);
    if (!result.ok()) return result.status();
    value = result->rows.empty() ? 0 : result->rows[0].Int(0);
    return absl::OkStatus();
  });
  EXPECT_TRUE(status.ok()) << status;
  return value;
}

int64_t Applied(sql::Database& db, const std::string& consumer) {
  return QueryInt(db, "SELECT COUNT(*) FROM applied WHERE consumer = ?", {consumer});
}
int64_t AppliedDistinct(sql::Database& db, const std::string& consumer) {
  return QueryInt(db, "SELECT COUNT(DISTINCT message_id) FROM applied WHERE consumer = ?",
                  {consumer});
}
int64_t Unpublished(sql::Database& db) {
  return QueryInt(db, "SELECT COUNT(*) FROM outbox WHERE published_at_ms IS NULL");
}

// The unpublished messages (bundles unpacked), as the relay reads them.
absl::StatusOr<std::vector<OutboxRow>> UnpublishedMessages(sql::Database& db) {
  absl::StatusOr<std::vector<OutboxRow>> rows = absl::UnknownError("not read");
  absl::Status read = db.Read([&rows](sql::Transaction& tx) -> absl::Status {
    rows = ReadUnpublished(tx, 100);
    return rows.status();
  });
  if (!read.ok()) return read;
  return rows;
}

// A handler that records the message in `applied`, in the consumer's transaction.
MessageHandler Recorder(const std::string& consumer) {
  return [consumer](sql::Transaction& tx, const Envelope& e) -> absl::Status {
    return tx
        .Execute("INSERT INTO applied(consumer, message_id, key, payload) VALUES (?, ?, ?, ?)",
                 {consumer, e.id, e.key, e.payload})
        .status();
  };
}

class BusTest : public ::testing::Test {
 protected:
  Envelope Message(const std::string& type, const std::string& key, const std::string& payload) {
    Envelope e;
    e.id = ids_.Next();
    e.type = type;
    e.source = "test";
    e.key = key;
    e.occurred_at_ms = clock_.NowMs();
    e.payload = payload;
    return e;
  }
  absl::Status PublishAll(sql::Database& db, const std::vector<Envelope>& messages) {
    return db.Write([&](sql::Transaction& tx) -> absl::Status {
      for (const Envelope& e : messages) {
        if (absl::Status s = Publish(tx, e); !s.ok()) return s;
      }
      return absl::OkStatus();
    });
  }
  BusOptions Options() {
    BusOptions options;
    options.retry.attempts_max = 3;
    options.retry.backoff_base = absl::Milliseconds(1);
    options.retry.backoff_max = absl::Milliseconds(4);
    options.metrics = &metrics_;
    return options;
  }

  sql::TempDir dir_;
  ManualClock clock_;
  UuidV7Generator ids_{SystemClock::Instance()};
  obs::MetricsRegistry metrics_;
};

TEST_F(BusTest, RolledBackPublishIsNeverDelivered) {
  auto producer = OpenDb(dir_, "producer");
  auto consumer_db = OpenDb(dir_, "consumer");
  BusRuntime bus(Options());
  ASSERT_TRUE(bus.AddDatabase("producer", *producer).ok());
  ASSERT_TRUE(bus.Subscribe("c", *consumer_db, {"orders."}, Recorder("c")).ok());
  ASSERT_TRUE(bus.Start().ok());

  const Envelope lost = Message("orders.created", "o1", "{}");
  absl::Status rolled_back = producer->Write([&](sql::Transaction& tx) -> absl::Status {
    if (absl::Status s = Publish(tx, lost); !s.ok()) return s;
    return absl::AbortedError("state change failed");
  });
  EXPECT_EQ(rolled_back.code(), absl::StatusCode::kAborted);
  const Envelope kept = Message("orders.created", "o2", "{}");
  ASSERT_TRUE(PublishAll(*producer, {kept}).ok());

  ASSERT_TRUE(Eventually([&] { return Applied(*consumer_db, "c") == 1; }));
  EXPECT_EQ(QueryInt(*consumer_db, "SELECT COUNT(*) FROM applied WHERE message_id = ?", {lost.id}),
            0);
  EXPECT_EQ(QueryInt(*producer, "SELECT COUNT(*) FROM outbox"), 1);
  bus.Stop();
}

TEST_F(BusTest, InvalidEnvelopeIsRejectedByPublish) {
  auto producer = OpenDb(dir_, "producer");
  Envelope bad = Message("Orders Created", "o1", "{}");
  absl::Status status = PublishAll(*producer, {bad});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  Envelope good = Message("orders.created", "o1", "{}");
  ASSERT_TRUE(PublishAll(*producer, {good}).ok());
  EXPECT_EQ(PublishAll(*producer, {good}).code(), absl::StatusCode::kAlreadyExists);
}

TEST_F(BusTest, EachConsumerAppliesEachMessageOnceDespiteRedeliveryAndRestart) {
  auto producer = OpenDb(dir_, "producer");
  auto db_a = OpenDb(dir_, "a");
  auto db_b = OpenDb(dir_, "b");
  constexpr int kMessages = 300;
  std::vector<Envelope> messages;
  for (int i = 0; i < kMessages; ++i) {
    messages.push_back(Message(i % 2 == 0 ? "stock.changed" : "stock.other",
                               "k" + std::to_string(i % 7), std::to_string(i)));
  }
  {
    BusRuntime bus(Options());
    ASSERT_TRUE(bus.AddDatabase("producer", *producer).ok());
    ASSERT_TRUE(bus.Subscribe("a", *db_a, {"stock."}, Recorder("a")).ok());
    ASSERT_TRUE(bus.Subscribe("b", *db_b, {"stock.changed"}, Recorder("b")).ok());
    ASSERT_TRUE(bus.Start().ok());
    for (int i = 0; i < kMessages; i += 50) {
      ASSERT_TRUE(PublishAll(*producer,
                             std::vector<Envelope>(messages.begin() + i, messages.begin() + i + 50))
                      .ok());
    }
    ASSERT_TRUE(Eventually([&] { return Unpublished(*producer) == 0; }));
    EXPECT_EQ(Applied(*db_a, "a"), kMessages);
    EXPECT_EQ(Applied(*db_b, "b"), kMessages / 2);

    // The relay "forgets" it published everything (as after a crash before marking).
    ASSERT_TRUE(producer
                    ->Write([](sql::Transaction& tx) {
                      return tx.Execute("UPDATE outbox SET published_at_ms = NULL").status();
                    })
                    .ok());
    ASSERT_TRUE(Eventually([&] { return Unpublished(*producer) == 0; }));
    EXPECT_EQ(Applied(*db_a, "a"), kMessages);
    EXPECT_EQ(Applied(*db_b, "b"), kMessages / 2);
    bus.Stop();
  }
  // A new runtime on the same databases, with everything unpublished again.
  ASSERT_TRUE(producer
                  ->Write([](sql::Transaction& tx) {
                    return tx.Execute("UPDATE outbox SET published_at_ms = NULL").status();
                  })
                  .ok());
  BusRuntime restarted(Options());
  ASSERT_TRUE(restarted.AddDatabase("producer", *producer).ok());
  ASSERT_TRUE(restarted.Subscribe("a", *db_a, {"stock."}, Recorder("a")).ok());
  ASSERT_TRUE(restarted.Subscribe("b", *db_b, {"stock.changed"}, Recorder("b")).ok());
  ASSERT_TRUE(restarted.Start().ok());
  ASSERT_TRUE(Eventually([&] { return Unpublished(*producer) == 0; }));
  restarted.Stop();
  EXPECT_EQ(Applied(*db_a, "a"), kMessages);
  EXPECT_EQ(AppliedDistinct(*db_a, "a"), kMessages);
  EXPECT_EQ(Applied(*db_b, "b"), kMessages / 2);
  EXPECT_EQ(AppliedDistinct(*db_b, "b"), kMessages / 2);
  const std::string text = metrics_.RenderPrometheus();
  EXPECT_NE(text.find("emporium_bus_messages_total{consumer=\"a\",outcome=\"duplicate\"}"),
            std::string::npos)
      << text;
}

TEST_F(BusTest, FailingHandlerIsRetriedThenDeadLetteredAndReplayable) {
  auto producer = OpenDb(dir_, "producer");
  auto consumer_db = OpenDb(dir_, "consumer");
  std::atomic<bool> failing{true};
  std::atomic<int> calls{0};
  MessageHandler record = Recorder("c");
  MessageHandler flaky = [&](sql::Transaction& tx, const Envelope& e) -> absl::Status {
    ++calls;
    // It writes before failing: the failure must roll that back.
    if (absl::Status s = record(tx, e); !s.ok()) return s;
    if (failing && e.payload == "poison") return absl::InternalError("cannot handle");
    return absl::OkStatus();
  };
  BusRuntime bus(Options());
  ASSERT_TRUE(bus.AddDatabase("producer", *producer).ok());
  ASSERT_TRUE(bus.Subscribe("c", *consumer_db, {"*"}, flaky).ok());
  ASSERT_TRUE(bus.Start().ok());
  const Envelope poison = Message("orders.created", "o1", "poison");
  const Envelope fine = Message("orders.created", "o2", "fine");
  ASSERT_TRUE(PublishAll(*producer, {poison, fine}).ok());

  ASSERT_TRUE(Eventually([&] { return Unpublished(*producer) == 0; }));
  EXPECT_EQ(calls.load(), 3 + 1);  // attempts_max for the poison message, once for the other
  EXPECT_EQ(Applied(*consumer_db, "c"), 1);
  absl::StatusOr<std::vector<DeadLetter>> letters = ListDeadLetters(*consumer_db, {});
  ASSERT_TRUE(letters.ok()) << letters.status();
  ASSERT_EQ(letters->size(), 1u);
  const DeadLetter& letter = (*letters)[0];
  EXPECT_EQ(letter.consumer, "c");
  EXPECT_EQ(letter.message_id, poison.id);
  EXPECT_EQ(letter.attempts, 3);
  EXPECT_NE(letter.error.find("cannot handle"), std::string::npos);
  EXPECT_NE(metrics_.RenderPrometheus().find("emporium_bus_dead_letters{consumer=\"c\"} 1"),
            std::string::npos)
      << metrics_.RenderPrometheus();

  // Replay while still failing: nothing changes.
  EXPECT_EQ(bus.ReplayDeadLetter("c", letter.id).code(), absl::StatusCode::kInternal);
  EXPECT_EQ(Applied(*consumer_db, "c"), 1);
  failing = false;
  ASSERT_TRUE(bus.ReplayDeadLetter("c", letter.id).ok());
  EXPECT_EQ(Applied(*consumer_db, "c"), 2);
  EXPECT_EQ(bus.ReplayDeadLetter("c", letter.id).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(bus.ReplayDeadLetter("c", 999).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(bus.ReplayDeadLetter("nobody", letter.id).code(), absl::StatusCode::kNotFound);
  DeadLetterQuery replayed;
  replayed.state = DeadLetterState::kReplayed;
  letters = ListDeadLetters(*consumer_db, replayed);
  ASSERT_TRUE(letters.ok());
  ASSERT_EQ(letters->size(), 1u);
  EXPECT_TRUE((*letters)[0].replayed_at_ms.has_value());
  bus.Stop();
}

TEST_F(BusTest, MalformedBytesAreDeadLetteredOnce) {
  auto consumer_db = OpenDb(dir_, "consumer");
  ConsumerOptions options;
  options.retry.backoff_base = absl::Milliseconds(1);
  Consumer consumer("c", *consumer_db, Recorder("c"), options);
  const std::string garbage = "{\"id\": \"x\", \"type\": 12, ";
  const std::string valid = Serialize(Message("a.b", "k", "{}"));
  ASSERT_TRUE(consumer.HandleBatch({garbage, valid}).ok());
  ASSERT_TRUE(consumer.HandleBatch({garbage, valid}).ok());  // redelivered
  EXPECT_EQ(Applied(*consumer_db, "c"), 1);
  absl::StatusOr<std::vector<DeadLetter>> letters = ListDeadLetters(*consumer_db, {});
  ASSERT_TRUE(letters.ok());
  ASSERT_EQ(letters->size(), 1u);
  EXPECT_EQ((*letters)[0].message_id.rfind("malformed:", 0), 0u);
  EXPECT_EQ((*letters)[0].envelope, garbage);
  EXPECT_EQ(consumer.ReplayDeadLetter((*letters)[0].id).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(BusTest, PreservesOrderPerKeyEvenAcrossRetries) {
  auto producer = OpenDb(dir_, "producer");
  auto consumer_db = OpenDb(dir_, "consumer");
  // The first message of key k0 fails twice before it succeeds; later k0 messages must wait.
  absl::Mutex mutex;
  std::map<std::string, int> failures_left = {{"k0:0", 2}};
  MessageHandler record = Recorder("c");
  MessageHandler handler = [&](sql::Transaction& tx, const Envelope& e) -> absl::Status {
    {
      absl::MutexLock lock(&mutex);
      auto it = failures_left.find(e.key + ":" + e.payload);
      if (it != failures_left.end() && it->second > 0) {
        --it->second;
        return absl::UnavailableError("try again");
      }
    }
    return record(tx, e);
  };
  BusRuntime bus(Options());
  ASSERT_TRUE(bus.AddDatabase("producer", *producer).ok());
  ASSERT_TRUE(bus.Subscribe("c", *consumer_db, {"seq."}, handler).ok());
  ASSERT_TRUE(bus.Start().ok());
  constexpr int kKeys = 5;
  constexpr int kPerKey = 60;
  int next[kKeys] = {};
  uint32_t state = 12345;
  std::vector<Envelope> pending;
  for (int i = 0; i < kKeys * kPerKey; ++i) {
    state = state * 1103515245u + 12345u;
    int key = static_cast<int>((state >> 16) % kKeys);
    if (next[key] == kPerKey) key = (key + 1) % kKeys;
    while (next[key] == kPerKey) key = (key + 1) % kKeys;
    pending.push_back(Message("seq.step", "k" + std::to_string(key), std::to_string(next[key]++)));
    if (pending.size() == 17) {
      ASSERT_TRUE(PublishAll(*producer, pending).ok());
      pending.clear();
    }
  }
  ASSERT_TRUE(PublishAll(*producer, pending).ok());
  ASSERT_TRUE(Eventually([&] { return Applied(*consumer_db, "c") == kKeys * kPerKey; }));
  bus.Stop();
  absl::Status status = consumer_db->Read([&](sql::Transaction& tx) -> absl::Status {
    absl::StatusOr<sql::ResultSet> rows = tx.Query("SELECT key, payload FROM applied ORDER BY n");
    if (!rows.ok()) return rows.status();
    std::map<std::string, int> last;
    for (const sql::Row& row : rows->rows) {
      const int n = std::stoi(row.Text(1));
      auto [it, inserted] = last.try_emplace(row.Text(0), -1);
      EXPECT_EQ(n, it->second + 1) << "key " << row.Text(0);
      it->second = n;
    }
    return absl::OkStatus();
  });
  EXPECT_TRUE(status.ok()) << status;
}

TEST_F(BusTest, RequestReplyCompletesWithTheReply) {
  auto ordering = OpenDb(dir_, "ordering");
  auto inventory = OpenDb(dir_, "inventory");
  BusRuntime bus(Options());
  ASSERT_TRUE(bus.AddDatabase("ordering", *ordering).ok());
  ASSERT_TRUE(bus.AddDatabase("inventory", *inventory).ok());
  RequestClientOptions client_options;
  client_options.reply_to = "ordering.replies";
  RequestClient client(client_options);
  ASSERT_TRUE(
      bus.Subscribe("ordering.replies", *ordering, {"ordering.replies"}, client.ReplyHandler())
          .ok());
  ASSERT_TRUE(bus.Subscribe("inventory.commands", *inventory, {"inventory.reserve"},
                            [&](sql::Transaction& tx, const Envelope& command) -> absl::Status {
                              absl::StatusOr<Envelope> reply =
                                  MakeReply(command, ids_.Next(), "inventory", clock_.NowMs(),
                                            R"({"reserved":true})");
                              if (!reply.ok()) return reply.status();
                              return Publish(tx, *reply);
                            })
                  .ok());
  ASSERT_TRUE(bus.Start().ok());
  client.Start();
  std::future<absl::StatusOr<Envelope>> reply = client.RequestAsync(
      *ordering, Message("inventory.reserve", "sku-1", R"({"qty":1})"), absl::Seconds(30));
  ASSERT_EQ(reply.wait_for(std::chrono::seconds(20)), std::future_status::ready);
  absl::StatusOr<Envelope> result = reply.get();
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->payload, R"({"reserved":true})");
  EXPECT_EQ(result->type, "ordering.replies");
  EXPECT_EQ(client.pending(), 0u);
  client.Stop();
  bus.Stop();
}

TEST_F(BusTest, RequestWithoutReplyTimesOutAndLateReplyGoesToUnmatched) {
  auto ordering = OpenDb(dir_, "ordering");
  std::atomic<int> unmatched{0};
  RequestClientOptions client_options;
  client_options.reply_to = "ordering.replies";
  client_options.clock = &clock_;
  client_options.tick = absl::Milliseconds(1);
  client_options.unmatched = [&](sql::Transaction&, const Envelope&) {
    ++unmatched;
    return absl::OkStatus();
  };
  RequestClient client(client_options);
  BusRuntime bus(Options());
  ASSERT_TRUE(bus.AddDatabase("ordering", *ordering).ok());
  ASSERT_TRUE(
      bus.Subscribe("ordering.replies", *ordering, {"ordering.replies"}, client.ReplyHandler())
          .ok());
  ASSERT_TRUE(bus.Start().ok());
  client.Start();
  const Envelope command = Message("payments.authorize", "order-1", "{}");
  std::future<absl::StatusOr<Envelope>> reply =
      client.RequestAsync(*ordering, command, absl::Seconds(10));
  EXPECT_EQ(reply.wait_for(std::chrono::milliseconds(0)), std::future_status::timeout);
  clock_.Advance(absl::Seconds(11));  // nobody answers payments.authorize
  ASSERT_EQ(reply.wait_for(std::chrono::seconds(20)), std::future_status::ready);
  EXPECT_EQ(reply.get().status().code(), absl::StatusCode::kDeadlineExceeded);

  // The late reply is not lost: it reaches the unmatched handler.
  Envelope sent = command;
  sent.reply_to = "ordering.replies";
  sent.correlation_id = command.id;
  absl::StatusOr<Envelope> late = MakeReply(sent, ids_.Next(), "payments", clock_.NowMs(), "{}");
  ASSERT_TRUE(late.ok());
  ASSERT_TRUE(PublishAll(*ordering, {*late}).ok());
  ASSERT_TRUE(Eventually([&] { return unmatched.load() == 1; }));

  // A duplicate correlation id is refused while pending; Cancel completes it.
  std::future<absl::StatusOr<Envelope>> first =
      client.RequestAsync(*ordering, Message("x.y", "k", "{}"), absl::Seconds(10));
  Envelope again = Message("x.y", "k", "{}");
  again.correlation_id = "corr-1";
  absl::StatusOr<std::string> id1 =
      client.Request(*ordering, again, absl::Seconds(10), [](absl::StatusOr<Envelope>) {});
  ASSERT_TRUE(id1.ok());
  again.id = ids_.Next();
  EXPECT_EQ(client.Request(*ordering, again, absl::Seconds(10), [](absl::StatusOr<Envelope>) {})
                .status()
                .code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_TRUE(client.Cancel("corr-1").ok());
  EXPECT_EQ(client.Cancel("corr-1").code(), absl::StatusCode::kNotFound);
  client.Stop();
  ASSERT_EQ(first.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  EXPECT_EQ(first.get().status().code(), absl::StatusCode::kCancelled);
  bus.Stop();
}

TEST_F(BusTest, RelayPrunesPublishedOutboxRowsAndOldInboxRows) {
  auto db = OpenDb(dir_, "context");
  BusOptions options = Options();
  options.clock = &clock_;
  BusRuntime bus(options);
  ASSERT_TRUE(bus.AddDatabase("context", *db).ok());
  ASSERT_TRUE(bus.Subscribe("self", *db, {"a."}, Recorder("self")).ok());
  ASSERT_TRUE(bus.Start().ok());
  ASSERT_TRUE(PublishAll(*db, {Message("a.b", "k", "1"), Message("a.b", "k", "2")}).ok());
  ASSERT_TRUE(Eventually([&] { return Unpublished(*db) == 0; }));
  EXPECT_EQ(QueryInt(*db, "SELECT COUNT(*) FROM inbox"), 2);
  clock_.Advance(absl::Hours(24 * 8));  // past both retentions
  ASSERT_TRUE(PublishAll(*db, {Message("a.b", "k", "3")}).ok());
  // The relay may prune between the clock's jump and message 3's commit (keeping row 2 as the
  // newest); moving the clock one prune interval per poll makes a later prune certain, while
  // message 3's outbox and inbox rows stay far younger than their retentions.
  ASSERT_TRUE(Eventually([&] {
    if (QueryInt(*db, "SELECT COUNT(*) FROM outbox") == 1 &&
        QueryInt(*db, "SELECT COUNT(*) FROM inbox") == 1) {
      return true;
    }
    clock_.Advance(absl::Minutes(1) + absl::Seconds(1));
    return false;
  }));
  bus.Stop();
  // The newest row survives, so the next seq continues past it.
  ASSERT_TRUE(PublishAll(*db, {Message("a.b", "k", "4")}).ok());
  EXPECT_EQ(QueryInt(*db, "SELECT MAX(seq) FROM outbox"), 4);
  EXPECT_EQ(Applied(*db, "self"), 3);
}

// Rows straight into the outbox: seq 1..count, published at `published_at_ms` (NULL for 0).
void InsertOutboxRows(sql::Database& db, int64_t first_seq, int64_t count,
                      int64_t published_at_ms) {
  ASSERT_TRUE(db.Write([&](sql::Transaction& tx) -> absl::Status {
                  for (int64_t seq = first_seq; seq < first_seq + count; ++seq) {
                    sql::Value published = published_at_ms == 0 ? sql::Value(std::monostate{})
                                                                : sql::Value(published_at_ms);
                    absl::Status status =
                        tx.Execute(
                              "INSERT INTO outbox (seq, id, type, key, envelope, "
                              "created_at_ms, published_at_ms) VALUES (?, ?, 'a.b', 'k', ?, "
                              "1, ?)",
                              {seq, "m-" + std::to_string(seq), sql::Blob{"{}"}, published})
                            .status();
                    if (!status.ok()) return status;
                  }
                  return absl::OkStatus();
                }).ok());
}

int64_t PruneOutboxOnce(sql::Database& db, int64_t before_ms, int64_t examine_max) {
  int64_t deleted = -1;
  EXPECT_TRUE(db.Write([&](sql::Transaction& tx) -> absl::Status {
                  absl::StatusOr<int64_t> pruned = PruneOutbox(tx, before_ms, examine_max);
                  if (!pruned.ok()) return pruned.status();
                  deleted = *pruned;
                  return absl::OkStatus();
                }).ok());
  return deleted;
}

// A prune examines only the front of the outbox (lowest seq), deletes what is old there, keeps
// the newest row and unpublished ones, and reports 0 once the front holds nothing old.
TEST_F(BusTest, OutboxPruneWorksThroughTheFrontInChunks) {
  auto db = OpenDb(dir_, "context");
  InsertOutboxRows(*db, 1, 5, /*published_at_ms=*/100);   // old
  InsertOutboxRows(*db, 6, 1, /*published_at_ms=*/0);     // stuck, unpublished
  InsertOutboxRows(*db, 7, 4, /*published_at_ms=*/100);   // old
  InsertOutboxRows(*db, 11, 3, /*published_at_ms=*/900);  // young
  EXPECT_EQ(PruneOutboxOnce(*db, 500, 3), 3);             // seq 1-3
  EXPECT_EQ(PruneOutboxOnce(*db, 500, 3), 2);             // seq 4-5; 6 is unpublished
  EXPECT_EQ(PruneOutboxOnce(*db, 500, 3), 2);             // seq 7-8 (6 still counted in the front)
  EXPECT_EQ(PruneOutboxOnce(*db, 500, 3), 2);             // seq 9-10
  EXPECT_EQ(PruneOutboxOnce(*db, 500, 3), 0);  // 6, 11, 12: nothing old left at the front
  EXPECT_EQ(QueryInt(*db, "SELECT COUNT(*) FROM outbox"), 4);
  EXPECT_EQ(QueryInt(*db, "SELECT MIN(seq) FROM outbox"), 6);
  // Everything published is old now; the newest row (13) stays so seq keeps increasing.
  EXPECT_EQ(PruneOutboxOnce(*db, 1000, 100), 2);
  EXPECT_EQ(QueryInt(*db, "SELECT COUNT(*) FROM outbox"), 2);
  EXPECT_EQ(QueryInt(*db, "SELECT MAX(seq) FROM outbox"), 13);
}

// More old rows than one relay turn prunes (8 chunks of 1,000): the relay keeps going in later
// turns without waiting for the next prune interval, and the inbox is pruned the same way.
TEST_F(BusTest, RelayPrunesALargeBacklogInChunksOverSeveralTurns) {
  constexpr int64_t kOldRows = 9500;
  auto db = OpenDb(dir_, "context");
  InsertOutboxRows(*db, 1, kOldRows, absl::ToUnixMillis(clock_.Now()));
  ASSERT_TRUE(db->Write([&](sql::Transaction& tx) -> absl::Status {
                  for (int64_t i = 0; i < kOldRows; ++i) {
                    absl::Status status = tx.Execute(
                                                "INSERT INTO inbox (consumer, message_id, "
                                                "processed_at_ms) VALUES ('c', ?, ?)",
                                                {"m-" + std::to_string(i), clock_.NowMs()})
                                              .status();
                    if (!status.ok()) return status;
                  }
                  return absl::OkStatus();
                }).ok());
  BusOptions options = Options();
  options.clock = &clock_;
  clock_.Advance(absl::Hours(24 * 8));  // past both retentions
  BusRuntime bus(options);
  ASSERT_TRUE(bus.AddDatabase("context", *db).ok());
  ASSERT_TRUE(bus.Start().ok());
  // The clock stands still: only the backlog path can finish the job within one interval.
  ASSERT_TRUE(Eventually([&] {
    return QueryInt(*db, "SELECT COUNT(*) FROM outbox") == 1 &&
           QueryInt(*db, "SELECT COUNT(*) FROM inbox") == 0;
  }));
  EXPECT_EQ(QueryInt(*db, "SELECT MAX(seq) FROM outbox"), kOldRows);
  bus.Stop();
}

TEST_F(BusTest, OutboxDepthGaugeAndRuntimeMisuse) {
  auto producer = OpenDb(dir_, "producer");
  BusRuntime bus(Options());
  ASSERT_TRUE(bus.AddDatabase("producer", *producer).ok());
  EXPECT_EQ(bus.AddDatabase("producer", *producer).code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(bus.Subscribe("c", *producer, {}, Recorder("c")).code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(bus.Subscribe("c", *producer, {"none."}, Recorder("c")).ok());
  EXPECT_EQ(bus.Subscribe("c", *producer, {"x."}, Recorder("c")).code(),
            absl::StatusCode::kAlreadyExists);
  ASSERT_TRUE(PublishAll(*producer, {Message("a.b", "k", "{}"), Message("a.b", "k", "{}")}).ok());
  EXPECT_NE(metrics_.RenderPrometheus().find("emporium_bus_outbox_depth{db=\"producer\"} 2"),
            std::string::npos)
      << metrics_.RenderPrometheus();
  ASSERT_TRUE(bus.Start().ok());
  EXPECT_EQ(bus.Start().code(), absl::StatusCode::kFailedPrecondition);
  // No consumer matches "a.b": the messages are still published (nobody to wait for).
  ASSERT_TRUE(Eventually([&] { return Unpublished(*producer) == 0; }));
  bus.Stop();
  bus.Stop();
}

// PublishAll packs two or more messages into bundle rows of at most kBundleMessagesMax: one
// outbox row (and one index entry) per bundle, unpacked by ReadUnpublished, counted by message
// in the depth gauge, and delivered by the relay as separate messages in publishing order.
TEST_F(BusTest, PublishAllBundlesMessagesAndTheRelayDeliversEachInOrder) {
  auto producer = OpenDb(dir_, "producer");
  auto consumer_db = OpenDb(dir_, "consumer");
  const size_t count = 2 * kBundleMessagesMax + 3;
  std::vector<Envelope> messages;
  for (size_t i = 0; i < count; ++i) {
    messages.push_back(Message("seq.bundled", "k" + std::to_string(i % 3), std::to_string(i)));
  }
  const Envelope single = Message("seq.single", "k0", "alone");
  ASSERT_TRUE(producer
                  ->Write([&](sql::Transaction& tx) -> absl::Status {
                    if (absl::Status s = bus::PublishAll(tx, messages); !s.ok()) return s;
                    return bus::PublishAll(tx, {single});
                  })
                  .ok());
  // Three bundles (64, 64, 3 messages), then the single message as a row of its own.
  EXPECT_EQ(QueryInt(*producer, "SELECT COUNT(*) FROM outbox"), 4);
  EXPECT_EQ(QueryInt(*producer, "SELECT COUNT(*) FROM outbox WHERE type = ? AND messages = ?",
                     {std::string(kBundleType), static_cast<int64_t>(kBundleMessagesMax)}),
            2);
  EXPECT_EQ(QueryInt(*producer, "SELECT messages FROM outbox WHERE seq = 3"), 3);
  EXPECT_EQ(QueryInt(*producer, "SELECT messages FROM outbox WHERE id = ?", {single.id}), 1);

  std::vector<OutboxRow> read;
  ASSERT_TRUE(producer
                  ->Read([&](sql::Transaction& tx) -> absl::Status {
                    absl::StatusOr<std::vector<OutboxRow>> rows = ReadUnpublished(tx, 1000);
                    if (!rows.ok()) return rows.status();
                    read = *std::move(rows);
                    absl::StatusOr<int64_t> depth = CountUnpublished(tx);
                    if (!depth.ok()) return depth.status();
                    EXPECT_EQ(*depth, static_cast<int64_t>(count + 1));
                    // Whole rows while fewer than `limit` messages were read: 2 asks for one
                    // bundle, 65 for two.
                    absl::StatusOr<std::vector<OutboxRow>> two = ReadUnpublished(tx, 2);
                    absl::StatusOr<std::vector<OutboxRow>> more = ReadUnpublished(tx, 65);
                    if (!two.ok() || !more.ok()) return absl::InternalError("limited read");
                    EXPECT_EQ(two->size(), kBundleMessagesMax);
                    EXPECT_EQ(more->size(), 2 * kBundleMessagesMax);
                    absl::StatusOr<std::vector<OutboxRow>> after = ReadUnpublished(tx, 1000, 3);
                    if (!after.ok()) return after.status();
                    EXPECT_EQ(after->size(), 1u);
                    return absl::OkStatus();
                  })
                  .ok());
  ASSERT_EQ(read.size(), count + 1);
  for (size_t i = 0; i < count; ++i) {
    EXPECT_EQ(read[i].seq, static_cast<int64_t>(1 + i / kBundleMessagesMax));
    EXPECT_EQ(read[i].id, messages[i].id);
    EXPECT_EQ(read[i].type, messages[i].type);
    EXPECT_EQ(read[i].key, messages[i].key);
    EXPECT_EQ(read[i].envelope, Serialize(messages[i]));
  }
  EXPECT_EQ(read.back().seq, 4);
  EXPECT_EQ(read.back().envelope, Serialize(single));

  BusRuntime bus(Options());
  ASSERT_TRUE(bus.AddDatabase("producer", *producer).ok());
  EXPECT_NE(metrics_.RenderPrometheus().find(
                fmt::format("emporium_bus_outbox_depth{{db=\"producer\"}} {}", count + 1)),
            std::string::npos)
      << metrics_.RenderPrometheus();
  ASSERT_TRUE(bus.Subscribe("c", *consumer_db, {"seq."}, Recorder("c")).ok());
  ASSERT_TRUE(bus.Start().ok());
  ASSERT_TRUE(
      Eventually([&] { return Applied(*consumer_db, "c") == static_cast<int64_t>(count + 1); }));
  ASSERT_TRUE(Eventually([&] { return Unpublished(*producer) == 0; }));
  bus.Stop();
  EXPECT_EQ(AppliedDistinct(*consumer_db, "c"), static_cast<int64_t>(count + 1));
  // Per key, the consumer applied the messages in the order they were published.
  for (int key = 0; key < 3; ++key) {
    std::vector<std::string> payloads;
    ASSERT_TRUE(consumer_db
                    ->Read([&](sql::Transaction& tx) -> absl::Status {
                      absl::StatusOr<sql::ResultSet> result = tx.Query(
                          "SELECT payload FROM applied WHERE key = ? AND payload <> 'alone' "
                          "ORDER BY rowid",
                          {"k" + std::to_string(key)});
                      if (!result.ok()) return result.status();
                      for (const sql::Row& row : result->rows) payloads.push_back(row.Text(0));
                      return absl::OkStatus();
                    })
                    .ok());
    std::vector<std::string> expected;
    for (size_t i = static_cast<size_t>(key); i < count; i += 3) {
      expected.push_back(std::to_string(i));
    }
    EXPECT_EQ(payloads, expected) << "key k" << key;
  }
}

// A bundle that does not parse, or holds another number of messages than its row says, is
// DataLoss for the reader (the relay retries and counts errors; nothing is skipped silently).
TEST_F(BusTest, CorruptBundleIsDataLoss) {
  auto producer = OpenDb(dir_, "producer");
  std::vector<Envelope> messages = {Message("a.b", "k", "1"), Message("a.b", "k", "2")};
  ASSERT_TRUE(producer
                  ->Write([&](sql::Transaction& tx) -> absl::Status {
                    return bus::PublishAll(tx, messages);
                  })
                  .ok());
  auto read_code = [&] { return UnpublishedMessages(*producer).status().code(); };
  EXPECT_EQ(read_code(), absl::StatusCode::kOk);
  auto set = [&](const std::string& sql, const std::vector<sql::Value>& params) {
    ASSERT_TRUE(producer
                    ->Write([&](sql::Transaction& tx) -> absl::Status {
                      return tx.Execute(sql, params).status();
                    })
                    .ok());
  };
  set("UPDATE outbox SET messages = 3", {});
  EXPECT_EQ(read_code(), absl::StatusCode::kDataLoss);
  set("UPDATE outbox SET messages = 2", {});
  EXPECT_EQ(read_code(), absl::StatusCode::kOk);
  for (const std::string& bad :
       {std::string("emporium.bundle.v1\n"), std::string("emporium.bundle.v1\n1 2 3\nabc"),
        std::string("emporium.bundle.v1\n1 1 1 999\nabc{}"),
        std::string("emporium.bundle.v1\n1 1 1 x\nabc{}"),
        std::string("emporium.bundle.v1\n1 1 1 2 3\nabc{}")}) {
    set("UPDATE outbox SET envelope = ?", {sql::Blob{bad}});
    EXPECT_EQ(read_code(), absl::StatusCode::kDataLoss) << bad;
  }
  // A bundle row without the bundle header is not published as one opaque message either.
  set("UPDATE outbox SET envelope = ?", {sql::Blob{Serialize(messages[0])}});
  EXPECT_EQ(read_code(), absl::StatusCode::kDataLoss);
  // Nobody else can write a row that looks like a bundle.
  Envelope impostor = Message(std::string(kBundleType), "k", "{}");
  for (bool all : {false, true}) {
    absl::Status published = producer->Write([&](sql::Transaction& tx) -> absl::Status {
      return all ? bus::PublishAll(tx, {impostor, Message("a.b", "k", "3")})
                 : Publish(tx, impostor);
    });
    EXPECT_EQ(published.code(), absl::StatusCode::kInvalidArgument) << published;
  }

  // Rows before a damaged bundle are still read (and so published); the read stops at it.
  auto earlier = OpenDb(dir_, "earlier");
  const Envelope plain = Message("a.b", "k", "0");
  ASSERT_TRUE(
      earlier
          ->Write([&](sql::Transaction& tx) -> absl::Status {
            if (absl::Status s = Publish(tx, plain); !s.ok()) return s;
            if (absl::Status s = bus::PublishAll(tx, messages); !s.ok()) return s;
            return bus::PublishAll(tx, {Message("a.b", "k", "4"), Message("a.b", "k", "5")});
          })
          .ok());
  ASSERT_TRUE(earlier
                  ->Write([](sql::Transaction& tx) -> absl::Status {
                    return tx.Execute("UPDATE outbox SET messages = 7 WHERE seq = 2").status();
                  })
                  .ok());
  absl::StatusOr<std::vector<OutboxRow>> rows = UnpublishedMessages(*earlier);
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ(rows->front().id, plain.id);
}

// A message whose serialized form is larger than kEnvelopeBytesMax (a payload at the limit that
// escaping grows) still bundles and unpacks.
TEST_F(BusTest, BundleHoldsAnEnvelopeLargerThanTheEnvelopeBound) {
  auto producer = OpenDb(dir_, "producer");
  const Envelope large = Message("a.b", "k", std::string(kEnvelopeBytesMax - 8, '"'));
  const Envelope small = Message("a.b", "k", "{}");
  ASSERT_GT(Serialize(large).size(), kEnvelopeBytesMax);
  ASSERT_TRUE(producer
                  ->Write([&](sql::Transaction& tx) -> absl::Status {
                    return bus::PublishAll(tx, {large, small});
                  })
                  .ok());
  absl::StatusOr<std::vector<OutboxRow>> rows = UnpublishedMessages(*producer);
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 2u);
  EXPECT_EQ((*rows)[0].envelope, Serialize(large));
  EXPECT_EQ((*rows)[1].envelope, Serialize(small));
}

// A batch matching several consumers is delivered to all of them concurrently, on helper
// threads that are reused from one Publish() to the next (not one new thread per delivery);
// a consumer that fails makes Publish() fail while the others still get the batch.
TEST(InProcessTransportTest, DeliversToSeveralConsumersConcurrentlyOnReusedHelpers) {
  constexpr int kConsumers = 3;
  constexpr int kPublishes = 200;
  InProcessTransport transport;
  std::mutex mutex;
  std::set<std::thread::id> threads;
  std::vector<int> received(kConsumers, 0);
  std::atomic<bool> fail_last{false};
  for (int i = 0; i < kConsumers; ++i) {
    ASSERT_TRUE(transport
                    .Subscribe(Subscription{"c" + std::to_string(i), {"demo."}},
                               [&, i](const std::vector<std::string_view>& messages) {
                                 std::lock_guard<std::mutex> lock(mutex);
                                 threads.insert(std::this_thread::get_id());
                                 received[static_cast<size_t>(i)] +=
                                     static_cast<int>(messages.size());
                                 if (i == kConsumers - 1 && fail_last.load()) {
                                   return absl::UnavailableError("down");
                                 }
                                 return absl::OkStatus();
                               })
                    .ok());
  }
  const std::vector<OutgoingMessage> batch = {{"m1", "demo.a", "k", "x"},
                                              {"m2", "other.b", "k", "y"}};
  for (int i = 0; i < kPublishes; ++i) ASSERT_TRUE(transport.Publish(batch).ok());
  {
    std::lock_guard<std::mutex> lock(mutex);
    for (int count : received) EXPECT_EQ(count, kPublishes);  // only demo.a matches
    // The publishing thread plus at most the kept helpers, not one thread per delivery.
    EXPECT_LE(threads.size(), 1 + kDeliveryHelpersMax);
    EXPECT_GE(threads.size(), 2u);  // the other consumers ran on helpers
  }
  fail_last = true;
  absl::Status failed = transport.Publish(batch);
  EXPECT_EQ(failed.code(), absl::StatusCode::kUnavailable);
  std::lock_guard<std::mutex> lock(mutex);
  for (int count : received) EXPECT_EQ(count, kPublishes + 1);
}

}  // namespace
}  // namespace emporium::bus
