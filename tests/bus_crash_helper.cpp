// Child process of bus_crash_test: runs a producer database with its outbox relay and a
// consumer database, commits `count` messages in small transactions while the relay delivers
// them, and reports each commit on stdout ("committed <total>"). The test SIGKILLs it at a
// random moment. If not killed, it stops after publishing and a bounded linger.
//
// Usage: bus_crash_helper <dir> <count> <seed>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "common/clock.h"
#include "common/ids.h"
#include "platform/bus/bus_runtime.h"
#include "platform/bus/outbox.h"
#include "platform/bus/schema.h"
#include "platform/sql/sqlite_database.h"

namespace {

using emporium::bus::Envelope;
namespace bus = emporium::bus;
namespace sql = emporium::sql;

// How long an unkilled helper keeps delivering after its last commit.
constexpr absl::Duration kLingerMax = absl::Seconds(30);
constexpr int kMessagesPerTransactionMax = 5;

std::unique_ptr<sql::Database> Open(const std::string& path, const std::string& name) {
  sql::SqliteOptions options;
  options.path = path;
  options.name = name;
  absl::StatusOr<std::unique_ptr<sql::Database>> db = sql::OpenSqlite(options);
  if (!db.ok()) {
    std::fprintf(stderr, "open %s: %s\n", path.c_str(), db.status().ToString().c_str());
    std::exit(2);
  }
  if (absl::Status s = bus::InstallBusSchema(**db); !s.ok()) {
    std::fprintf(stderr, "schema: %s\n", s.ToString().c_str());
    std::exit(2);
  }
  return std::move(*db);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: %s <dir> <count> <seed>\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  const int count = std::atoi(argv[2]);
  uint32_t state = static_cast<uint32_t>(std::strtoul(argv[3], nullptr, 10)) | 1u;

  std::unique_ptr<sql::Database> producer = Open(dir + "/producer.db", "producer");
  std::unique_ptr<sql::Database> consumer = Open(dir + "/consumer.db", "consumer");
  absl::Status created = consumer->Write([](sql::Transaction& tx) {
    return tx
        .Execute(
            "CREATE TABLE IF NOT EXISTS applied (n INTEGER PRIMARY KEY, "
            "message_id TEXT NOT NULL)")
        .status();
  });
  if (!created.ok()) return 2;

  bus::BusOptions options;
  options.retry.backoff_base = absl::Milliseconds(1);
  bus::BusRuntime runtime(options);
  if (!runtime.AddDatabase("producer", *producer).ok()) return 2;
  absl::Status subscribed =
      runtime.Subscribe("c", *consumer, {"crash."}, [](sql::Transaction& tx, const Envelope& e) {
        return tx.Execute("INSERT INTO applied(message_id) VALUES (?)", {e.id}).status();
      });
  if (!subscribed.ok() || !runtime.Start().ok()) return 2;

  emporium::UuidV7Generator ids(emporium::SystemClock::Instance());
  int committed = 0;
  while (committed < count) {
    state = state * 1103515245u + 12345u;
    const int in_transaction = 1 + static_cast<int>((state >> 16) % kMessagesPerTransactionMax);
    std::vector<Envelope> batch;
    for (int i = 0; i < in_transaction && committed + i < count; ++i) {
      Envelope e;
      e.id = ids.Next();
      e.type = "crash.step";
      e.source = "crash";
      e.key = "k" + std::to_string((committed + i) % 3);
      e.occurred_at_ms = emporium::SystemClock::Instance().NowMs();
      e.payload = "{}";
      batch.push_back(std::move(e));
    }
    absl::Status written = producer->Write([&batch](sql::Transaction& tx) -> absl::Status {
      for (const Envelope& e : batch) {
        if (absl::Status s = bus::Publish(tx, e); !s.ok()) return s;
      }
      return absl::OkStatus();
    });
    if (!written.ok()) {
      std::fprintf(stderr, "write: %s\n", written.ToString().c_str());
      return 3;
    }
    committed += static_cast<int>(batch.size());
    std::printf("committed %d\n", committed);
    std::fflush(stdout);
  }
  std::printf("done\n");
  std::fflush(stdout);
  absl::SleepFor(kLingerMax);  // waiting to be killed, not for a condition
  runtime.Stop();
  return 0;
}
