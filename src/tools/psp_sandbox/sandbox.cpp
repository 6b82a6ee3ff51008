#include "tools/psp_sandbox/sandbox.h"

#include <sodium.h>
#include <sys/socket.h>

#include <cerrno>
#include <utility>
// <utility> must precede Asio (see the architecture notes).
#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "common/errors.h"
#include "common/format.h"
#include "common/json.h"
#include "common/thread_name.h"
#include "fmt/format.h"
#include "platform/http/client.h"
#include "platform/http/message.h"
#include "platform/http/router.h"
#include "platform/sql/migrations.h"
#include "platform/sql/sqlite_database.h"

namespace emporium::psp_sandbox {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;

// Header a handler sets to make the connection close without writing the response.
constexpr char kDropConnectionHeader[] = "X-Sandbox-Drop-Connection";
constexpr size_t kBodyBytesMax = 64 << 10;
constexpr int kRequestsPerConnectionMax = 100'000;
constexpr int kIdleTimeoutSeconds = 60;
constexpr int kWriteTimeoutSeconds = 10;  // sending an answer's rest: per call and in all
constexpr int64_t kAmountMinorMax = 100'000'000'000;
constexpr size_t kIdempotencyKeyCharsMax = 255;
constexpr size_t kNotificationQueueMax = 100'000;

std::vector<sql::Migration> SandboxMigrations() {
  return {{1, "create_books", R"(
CREATE TABLE idempotency (
  idempotency_key TEXT PRIMARY KEY,
  request_hash TEXT NOT NULL,
  status INTEGER NOT NULL,
  body TEXT NOT NULL,
  created_at_ms BIGINT NOT NULL
);
CREATE TABLE authorizations (
  id TEXT PRIMARY KEY,
  amount_minor BIGINT NOT NULL,
  currency TEXT NOT NULL,
  card_last4 TEXT NOT NULL,
  reference TEXT NOT NULL,
  status TEXT NOT NULL,
  captured_minor BIGINT NOT NULL DEFAULT 0,
  refunded_minor BIGINT NOT NULL DEFAULT 0,
  created_at_ms BIGINT NOT NULL,
  expires_at_ms BIGINT NOT NULL
);
CREATE TABLE refunds (
  id TEXT PRIMARY KEY,
  authorization_id TEXT NOT NULL,
  amount_minor BIGINT NOT NULL,
  currency TEXT NOT NULL,
  created_at_ms BIGINT NOT NULL
);
)"}};
}

std::string RandomHex(size_t bytes) {
  std::string raw(bytes, '\0');
  randombytes_buf(raw.data(), raw.size());
  std::string hex(bytes * 2 + 1, '\0');
  sodium_bin2hex(hex.data(), hex.size(), reinterpret_cast<const unsigned char*>(raw.data()),
                 raw.size());
  hex.resize(bytes * 2);
  return hex;
}

// An object id of the same shape as "<prefix>" + RandomHex(12) (24 hex digits) whose first 12
// digits are the time in ms: ids made later sort later, so the books' primary-key b-tree grows
// at its right edge instead of dirtying a random leaf page per insert in every group commit.
// The 48 random bits that follow keep ids made in the same millisecond apart.
std::string TimeOrderedId(std::string_view prefix, int64_t now_ms) {
  std::string id =
      fmt::format("{}{:012x}", prefix, static_cast<uint64_t>(now_ms) & 0xffffffffffffULL);
  id += RandomHex(6);
  return id;
}

std::string HashRequest(const http::Request& request) {
  const std::string text = fmt::format("{} {}\n{}", request.method, request.path, request.body);
  unsigned char hash[crypto_generichash_BYTES];
  crypto_generichash(hash, sizeof(hash), reinterpret_cast<const unsigned char*>(text.data()),
                     text.size(), nullptr, 0);
  char hex[sizeof(hash) * 2 + 1];
  sodium_bin2hex(hex, sizeof(hex), hash, sizeof(hash));
  return hex;
}

http::Response CardError(std::string_view code, std::string_view message) {
  Json body = {
      {"error",
       {{"type", "card_error"}, {"code", code}, {"message", message}, {"param", nullptr}}}};
  return http::Response::Json(402, body);
}

http::Response Error(int status, std::string_view code, std::string_view message) {
  return http::ErrorResponse(status, http::ErrorTypeFor(status), code, message);
}

struct Notification {
  std::string id;
  std::string body;
  int attempts = 0;
  absl::Time not_before;
};

// An effect's result: the response and the notification it causes (if any).
struct Effect {
  http::Response response;
  std::optional<std::pair<std::string, Json>> notification;  // type, object
  bool drop_connection = false;
};

Json AuthorizationJson(const sql::Row& row) {
  return Json{
      {"id", row.Text(0)},           {"object", "authorization"},    {"amount_minor", row.Int(1)},
      {"currency", row.Text(2)},     {"card_last4", row.Text(3)},    {"reference", row.Text(4)},
      {"status", row.Text(5)},       {"captured_minor", row.Int(6)}, {"refunded_minor", row.Int(7)},
      {"created_at_ms", row.Int(8)}, {"expires_at_ms", row.Int(9)}};
}

constexpr char kSelectAuthorization[] =
    "SELECT id, amount_minor, currency, card_last4, reference, status, captured_minor, "
    "refunded_minor, created_at_ms, expires_at_ms FROM authorizations WHERE id = ?";

}  // namespace

std::string SignNotification(const std::string& secret, int64_t timestamp_s,
                             const std::string& body) {
  if (sodium_init() < 0) std::abort();
  const std::string message = fmt::format("{}.{}", timestamp_s, body);
  unsigned char mac[crypto_auth_hmacsha256_BYTES];
  crypto_auth_hmacsha256_state state;
  crypto_auth_hmacsha256_init(&state, reinterpret_cast<const unsigned char*>(secret.data()),
                              secret.size());
  crypto_auth_hmacsha256_update(&state, reinterpret_cast<const unsigned char*>(message.data()),
                                message.size());
  crypto_auth_hmacsha256_final(&state, mac);
  char hex[sizeof(mac) * 2 + 1];
  sodium_bin2hex(hex, sizeof(hex), mac, sizeof(mac));
  return fmt::format("t={},v1={}", timestamp_s, hex);
}

struct PspSandbox::Impl {
  explicit Impl(SandboxOptions opts) : options(std::move(opts)) {}

  SandboxOptions options;
  std::unique_ptr<sql::Database> db;
  http::Router router;
  asio::io_context io;  // only for socket construction; all I/O is blocking
  std::optional<tcp::acceptor> acceptor;
  std::thread accept_thread;
  std::atomic<bool> stopping{false};
  std::mutex mutex;
  std::condition_variable connections_done;
  std::set<int> open_sockets;  // native handles, shut down on Shutdown
  int connection_count = 0;
  std::mutex random_mutex;
  std::mt19937_64 random{std::random_device{}()};

  // Notifier.
  std::unique_ptr<http::HttpClient> notify_client;
  std::string notify_target;
  std::thread notify_thread;
  std::mutex notify_mutex;
  std::condition_variable notify_wake;
  std::deque<Notification> notify_queue;
  std::atomic<int64_t> notifications_delivered{0};

  double Uniform01() {
    std::lock_guard<std::mutex> lock(random_mutex);
    return std::uniform_real_distribution<double>(0.0, 1.0)(random);
  }

  int64_t NowMs() const { return options.clock->NowMs(); }

  // ---- HTTP handlers -------------------------------------------------------------------

  void AddRoutes() {
    // The POSTs answer from their write job's WriteDone on the books' writer thread, once the
    // effect is durable: no connection thread sleeps on the commit (see ServeConnection).
    router.Add(
        "POST", "/v1/authorizations", [this](http::Request& request, http::Responder respond) {
          // Parsed, validated and answered before the write job, which then only runs SQL: the
          // books' writer is one thread every authorization queues behind.
          auto prepared =
              std::make_shared<absl::StatusOr<PreparedAuthorization>>(PrepareAuthorize(request));
          Idempotent(
              request,
              [this, prepared](sql::Transaction& tx) { return ApplyAuthorize(tx, *prepared); },
              std::move(respond));
        });
    AddRequestEffect("/v1/authorizations/{id}/capture", &Impl::Capture);
    AddRequestEffect("/v1/authorizations/{id}/void", &Impl::Void);
    AddRequestEffect("/v1/refunds", &Impl::Refund);
    router.AddSync("GET", "/v1/authorizations/{id}",
                   [this](const http::Request& r) { return GetAuthorization(r.PathParam("id")); });
    router.AddSync("GET", "/v1/refunds/{id}",
                   [this](const http::Request& r) { return GetRefund(r.PathParam("id")); });
    router.AddSync("GET", "/v1/balance", [this](const http::Request&) { return Balance(); });
  }

  using EffectJob = std::function<absl::StatusOr<Effect>(sql::Transaction&)>;

  // A POST whose effect `apply` reads the request in the write job: the job runs later on the
  // writer, so it keeps its own copy of the request.
  using RequestEffect = absl::StatusOr<Effect> (Impl::*)(sql::Transaction&, const http::Request&);
  void AddRequestEffect(std::string_view path, RequestEffect apply) {
    router.Add("POST", path, [this, apply](http::Request& r, http::Responder respond) {
      auto request = std::make_shared<const http::Request>(r);
      Idempotent(
          r, [this, apply, request](sql::Transaction& tx) { return (this->*apply)(tx, *request); },
          std::move(respond));
    });
  }

  // Runs `effect` inside one write transaction together with the idempotency record, and
  // answers through `respond` once that transaction is durable: from the WriteDone on the
  // books' writer thread (or at once, on the calling thread, for a refused request).
  void Idempotent(const http::Request& request, EffectJob effect, http::Responder respond) {
    if (options.failure_rate > 0 && Uniform01() < options.failure_rate) {
      respond(Error(503, "psp_unavailable", "The processor is temporarily unavailable."));
      return;
    }
    // What the job and its WriteDone share.
    struct Call {
      std::string key;
      std::string hash;
      EffectJob effect;
      std::optional<Effect> result;
    };
    auto call = std::make_shared<Call>();
    if (auto header = request.Header("Idempotency-Key"); header.has_value()) {
      call->key = std::string(*header);
      if (call->key.empty() || call->key.size() > kIdempotencyKeyCharsMax) {
        respond(Error(400, "invalid_idempotency_key", "Idempotency-Key must be 1..255 chars."));
        return;
      }
    }
    call->hash = HashRequest(request);
    call->effect = std::move(effect);
    db->SubmitWrite(
        [this, call](sql::Transaction& tx) -> absl::Status {
          const std::string& key = call->key;
          if (!key.empty()) {
            auto stored = tx.Query(
                "SELECT request_hash, status, body FROM idempotency WHERE idempotency_key = ?",
                {key});
            if (!stored.ok()) return stored.status();
            if (!stored->empty()) {
              const sql::Row& row = stored->rows.front();
              Effect replay;
              if (row.Text(0) != call->hash) {
                replay.response = Error(422, "idempotency_key_reused",
                                        "This Idempotency-Key was used with another request.");
              } else {
                replay.response =
                    http::Response::Json(static_cast<int>(row.Int(1)), *ParseJson(row.Text(2)));
                replay.response.headers.Set("Idempotent-Replayed", "true");
              }
              call->result = std::move(replay);
              return absl::OkStatus();
            }
          }
          absl::StatusOr<Effect> done = call->effect(tx);
          if (!done.ok()) return done.status();
          // A 5xx means nothing happened: not stored, so a retry may succeed.
          if (!key.empty() && done->response.status < 500) {
            auto inserted = tx.Execute(
                "INSERT INTO idempotency (idempotency_key, request_hash, status, body, "
                "created_at_ms) VALUES (?, ?, ?, ?, ?)",
                {key, call->hash, int64_t{done->response.status}, done->response.body, NowMs()});
            if (!inserted.ok()) return inserted.status();
          }
          call->result = std::move(*done);
          return absl::OkStatus();
        },
        [this, call, respond = std::move(respond)](absl::Status status) {
          if (!status.ok() || !call->result.has_value()) {
            if (status.code() == absl::StatusCode::kInvalidArgument ||
                status.code() == absl::StatusCode::kNotFound ||
                status.code() == absl::StatusCode::kFailedPrecondition) {
              respond(http::ErrorResponse(status));
              return;
            }
            respond(Error(503, "psp_unavailable", "The processor could not record the request."));
            return;
          }
          Effect& result = *call->result;
          if (result.notification.has_value()) {
            Notify(result.notification->first, result.notification->second);
          }
          if (result.drop_connection) result.response.headers.Set(kDropConnectionHeader, "1");
          respond(std::move(result.response));
        });
  }

  // An authorization request, checked and answered before its write job: the effect to
  // answer and, for a charged card, the row to insert (`insert` empty for a declined card or a
  // processing error, which write nothing but the idempotency record).
  struct PreparedAuthorization {
    Effect effect;
    std::optional<std::vector<sql::Value>> insert;
  };

  absl::StatusOr<PreparedAuthorization> PrepareAuthorize(const http::Request& request) {
    absl::StatusOr<Json> body = ParseJsonObject(request.body);
    if (!body.ok()) return body.status();
    absl::StatusOr<int64_t> amount = RequireInt(*body, "amount_minor", 1, kAmountMinorMax);
    if (!amount.ok()) return amount.status();
    absl::StatusOr<std::string> currency = RequireString(*body, "currency", 3);
    if (!currency.ok()) return currency.status();
    absl::StatusOr<std::string> card = RequireString(*body, "card_number", 19);
    if (!card.ok()) return card.status();
    absl::StatusOr<std::optional<std::string>> reference = OptionalString(*body, "reference", 128);
    if (!reference.ok()) return reference.status();
    if (card->size() < 12 || card->find_first_not_of("0123456789") != std::string::npos) {
      return InvalidParam("card_number", "card_number must be 12..19 digits");
    }
    PreparedAuthorization prepared;
    if (*card == kCardInsufficientFunds) {
      prepared.effect.response =
          CardError("insufficient_funds", "The card has insufficient funds.");
      return prepared;
    }
    if (*card == kCardStolen) {
      prepared.effect.response = CardError("stolen_card", "The card was reported stolen.");
      return prepared;
    }
    if (*card == kCardProcessingError) {
      prepared.effect.response = Error(500, "processing_error", "The processor failed.");
      return prepared;
    }
    const int64_t now_ms = NowMs();
    std::string id = TimeOrderedId("auth_", now_ms);
    const int64_t expires_ms = now_ms + absl::ToInt64Milliseconds(options.authorization_ttl);
    std::string last4 = card->substr(card->size() - 4);
    std::string reference_text = reference->value_or("");
    // The new row in kSelectAuthorization's column order: the answer is the row as stored.
    const Json object = AuthorizationJson(
        sql::Row({id, *amount, *currency, last4, reference_text, std::string("authorized"),
                  int64_t{0}, int64_t{0}, now_ms, expires_ms}));
    prepared.effect.response = http::Response::Json(201, object);
    // The object is copied for the notifier only when there is one.
    if (notify_client) prepared.effect.notification = {{"authorization.succeeded", object}};
    prepared.effect.drop_connection = *card == kCardLostResponse;
    prepared.insert = std::vector<sql::Value>{
        std::move(id), *amount,   *currency, std::move(last4), std::move(reference_text),
        now_ms,        expires_ms};
    return prepared;
  }

  // The write job's part of an authorization: the row, when the card is charged.
  absl::StatusOr<Effect> ApplyAuthorize(sql::Transaction& tx,
                                        const absl::StatusOr<PreparedAuthorization>& prepared) {
    if (!prepared.ok()) return prepared.status();
    if (prepared->insert.has_value()) {
      auto inserted = tx.Execute(
          "INSERT INTO authorizations (id, amount_minor, currency, card_last4, reference, status, "
          "created_at_ms, expires_at_ms) VALUES (?, ?, ?, ?, ?, 'authorized', ?, ?)",
          *prepared->insert);
      if (!inserted.ok()) return inserted.status();
    }
    return prepared->effect;
  }

  // Loads an authorization, expiring it first when its time has passed.
  absl::StatusOr<Json> LoadAuthorization(sql::Transaction& tx, const std::string& id) {
    auto rows = tx.Query(kSelectAuthorization, {id});
    if (!rows.ok()) return rows.status();
    if (rows->empty()) return absl::NotFoundError("authorization not found");
    Json object = AuthorizationJson(rows->rows.front());
    if (object["status"] == "authorized" && object["expires_at_ms"].get<int64_t>() <= NowMs()) {
      auto updated = tx.Execute("UPDATE authorizations SET status = 'expired' WHERE id = ?", {id});
      if (!updated.ok()) return updated.status();
      object["status"] = "expired";
    }
    return object;
  }

  absl::StatusOr<Effect> Capture(sql::Transaction& tx, const http::Request& request) {
    absl::StatusOr<Json> body = ParseJsonObject(request.body);
    if (!body.ok()) return body.status();
    absl::StatusOr<Json> object = LoadAuthorization(tx, request.PathParam("id"));
    if (!object.ok()) return object.status();
    absl::StatusOr<std::optional<int64_t>> amount =
        OptionalInt(*body, "amount_minor", 1, kAmountMinorMax);
    if (!amount.ok()) return amount.status();
    const int64_t authorized = (*object)["amount_minor"].get<int64_t>();
    const int64_t capture = amount->value_or(authorized);
    Effect effect;
    if ((*object)["status"] != "authorized") {
      effect.response =
          Error(409, "invalid_state",
                fmt::format("The authorization is {}.", (*object)["status"].get<std::string>()));
      return effect;
    }
    if (capture > authorized) {
      effect.response = Error(400, "amount_too_large", "Capture exceeds the authorization.");
      return effect;
    }
    auto updated =
        tx.Execute("UPDATE authorizations SET status = 'captured', captured_minor = ? WHERE id = ?",
                   {capture, (*object)["id"].get<std::string>()});
    if (!updated.ok()) return updated.status();
    (*object)["status"] = "captured";
    (*object)["captured_minor"] = capture;
    effect.response = http::Response::Json(200, *object);
    effect.notification = {{"authorization.captured", *object}};
    return effect;
  }

  absl::StatusOr<Effect> Void(sql::Transaction& tx, const http::Request& request) {
    absl::StatusOr<Json> object = LoadAuthorization(tx, request.PathParam("id"));
    if (!object.ok()) return object.status();
    Effect effect;
    if ((*object)["status"] != "authorized") {
      effect.response =
          Error(409, "invalid_state",
                fmt::format("The authorization is {}.", (*object)["status"].get<std::string>()));
      return effect;
    }
    auto updated = tx.Execute("UPDATE authorizations SET status = 'voided' WHERE id = ?",
                              {(*object)["id"].get<std::string>()});
    if (!updated.ok()) return updated.status();
    (*object)["status"] = "voided";
    effect.response = http::Response::Json(200, *object);
    effect.notification = {{"authorization.voided", *object}};
    return effect;
  }

  absl::StatusOr<Effect> Refund(sql::Transaction& tx, const http::Request& request) {
    absl::StatusOr<Json> body = ParseJsonObject(request.body);
    if (!body.ok()) return body.status();
    absl::StatusOr<std::string> authorization_id = RequireString(*body, "authorization_id", 64);
    if (!authorization_id.ok()) return authorization_id.status();
    absl::StatusOr<int64_t> amount = RequireInt(*body, "amount_minor", 1, kAmountMinorMax);
    if (!amount.ok()) return amount.status();
    absl::StatusOr<Json> object = LoadAuthorization(tx, *authorization_id);
    if (!object.ok()) return object.status();
    Effect effect;
    if ((*object)["status"] != "captured") {
      effect.response = Error(409, "invalid_state", "Only captured authorizations refund.");
      return effect;
    }
    const int64_t refundable =
        (*object)["captured_minor"].get<int64_t>() - (*object)["refunded_minor"].get<int64_t>();
    if (*amount > refundable) {
      effect.response = Error(400, "amount_too_large", "Refund exceeds the captured amount.");
      return effect;
    }
    const std::string id = "re_" + RandomHex(12);
    const std::string currency = (*object)["currency"].get<std::string>();
    auto inserted = tx.Execute(
        "INSERT INTO refunds (id, authorization_id, amount_minor, currency, created_at_ms) "
        "VALUES (?, ?, ?, ?, ?)",
        {id, *authorization_id, *amount, currency, NowMs()});
    if (!inserted.ok()) return inserted.status();
    auto updated =
        tx.Execute("UPDATE authorizations SET refunded_minor = refunded_minor + ? WHERE id = ?",
                   {*amount, *authorization_id});
    if (!updated.ok()) return updated.status();
    const Json refund = {{"id", id},
                         {"object", "refund"},
                         {"authorization_id", *authorization_id},
                         {"amount_minor", *amount},
                         {"currency", currency}};
    effect.response = http::Response::Json(201, refund);
    effect.notification = {{"refund.succeeded", refund}};
    return effect;
  }

  http::Response GetAuthorization(const std::string& id) {
    absl::StatusOr<Json> object;
    // Lazy expiry writes, so reads go through the writer too.
    absl::Status status = db->Write([&](sql::Transaction& tx) -> absl::Status {
      object = LoadAuthorization(tx, id);
      return object.status();
    });
    if (!status.ok()) return http::ErrorResponse(status);
    return http::Response::Json(200, *object);
  }

  http::Response GetRefund(const std::string& id) {
    std::optional<Json> refund;
    absl::Status status = db->Read([&](sql::Transaction& tx) -> absl::Status {
      auto rows = tx.Query(
          "SELECT id, authorization_id, amount_minor, currency FROM refunds WHERE id = ?", {id});
      if (!rows.ok()) return rows.status();
      if (rows->empty()) return absl::NotFoundError("refund not found");
      const sql::Row& row = rows->rows.front();
      refund = Json{{"id", row.Text(0)},
                    {"object", "refund"},
                    {"authorization_id", row.Text(1)},
                    {"amount_minor", row.Int(2)},
                    {"currency", row.Text(3)}};
      return absl::OkStatus();
    });
    if (!status.ok()) return http::ErrorResponse(status);
    return http::Response::Json(200, *refund);
  }

  http::Response Balance() {
    Json balances = Json::array();
    int64_t authorization_count = 0;
    absl::Status status = db->Read([&](sql::Transaction& tx) -> absl::Status {
      auto rows = tx.Query(
          "SELECT currency, SUM(captured_minor), SUM(refunded_minor), COUNT(*), "
          "SUM(CASE WHEN captured_minor > 0 THEN 1 ELSE 0 END) FROM authorizations "
          "GROUP BY currency ORDER BY currency");
      if (!rows.ok()) return rows.status();
      for (const sql::Row& row : rows->rows) {
        authorization_count += row.Int(3);
        balances.push_back({{"currency", row.Text(0)},
                            {"captured_minor", row.Int(1)},
                            {"refunded_minor", row.Int(2)},
                            {"net_minor", row.Int(1) - row.Int(2)},
                            {"authorization_count", row.Int(3)},
                            {"capture_count", row.Int(4)}});
      }
      return absl::OkStatus();
    });
    if (!status.ok()) return http::ErrorResponse(status);
    return http::Response::Json(
        200, {{"balances", balances}, {"authorization_count", authorization_count}});
  }

  // ---- Notifications -------------------------------------------------------------------

  void Notify(const std::string& type, const Json& object) {
    if (!notify_client) return;
    const std::string id = "evt_" + RandomHex(12);
    const Json event = {{"id", id},
                        {"type", type},
                        {"object_id", object.value("id", "")},
                        {"created_at_ms", NowMs()},
                        {"data", object}};
    std::lock_guard<std::mutex> lock(notify_mutex);
    if (notify_queue.size() >= kNotificationQueueMax) return;  // a real PSP drops too
    notify_queue.push_back({id, DumpJson(event), 0, absl::Now()});
    notify_wake.notify_one();
  }

  void NotifyLoop() {
    std::unique_lock<std::mutex> lock(notify_mutex);
    while (!stopping.load()) {
      if (notify_queue.empty()) {
        notify_wake.wait_for(lock, std::chrono::milliseconds(200));
        continue;
      }
      // Pick the next due notification: the first, or a random one when shuffling.
      size_t index = 0;
      if (options.notification_shuffle && notify_queue.size() > 1) {
        index = static_cast<size_t>(Uniform01() * static_cast<double>(notify_queue.size()));
        index = std::min(index, notify_queue.size() - 1);
      }
      if (notify_queue[index].not_before > absl::Now()) {
        notify_wake.wait_for(lock, std::chrono::milliseconds(10));
        continue;
      }
      Notification notification = std::move(notify_queue[index]);
      notify_queue.erase(notify_queue.begin() + static_cast<std::ptrdiff_t>(index));
      lock.unlock();
      const bool duplicate = Uniform01() < options.notification_duplicate_rate;
      bool delivered = false;
      for (int copy = 0; copy < (duplicate ? 2 : 1); ++copy) {
        http::ClientRequest request;
        request.method = "POST";
        request.target = notify_target;
        request.body = notification.body;
        request.headers.Set("Content-Type", "application/json");
        const int64_t timestamp_s = options.clock->NowMs() / 1000;
        request.headers.Set(kSignatureHeader, SignNotification(options.notification_secret,
                                                               timestamp_s, notification.body));
        request.timeout = absl::Seconds(5);
        auto response = notify_client->Send(request);
        if (response.ok() && response->status >= 200 && response->status < 300) {
          delivered = true;
          notifications_delivered.fetch_add(1);
        }
      }
      lock.lock();
      if (!delivered && ++notification.attempts < options.notification_attempts_max) {
        notification.not_before = absl::Now() + options.notification_backoff_initial *
                                                    (1 << std::min(notification.attempts, 10));
        notify_queue.push_back(std::move(notification));
      }
    }
  }

  absl::Status StartNotifier() {
    if (options.notification_url.empty()) return absl::OkStatus();
    constexpr std::string_view kScheme = "http://";
    std::string_view url = options.notification_url;
    if (!url.starts_with(kScheme)) {
      return absl::InvalidArgumentError("notification url must start with http://");
    }
    url.remove_prefix(kScheme.size());
    const size_t slash = url.find('/');
    const std::string_view authority = url.substr(0, slash);
    notify_target = slash == std::string_view::npos ? "/" : std::string(url.substr(slash));
    const size_t colon = authority.rfind(':');
    http::ClientOptions client;
    client.host = std::string(authority.substr(0, colon));
    client.port = 80;
    if (colon != std::string_view::npos) {
      client.port =
          static_cast<uint16_t>(std::atoi(std::string(authority.substr(colon + 1)).c_str()));
    }
    client.connection_count_max = 4;
    notify_client = std::make_unique<http::HttpClient>(client);
    notify_thread = std::thread([this] {
      SetCurrentThreadName("psp-notify");
      NotifyLoop();
    });
    return absl::OkStatus();
  }

  // ---- Transport -----------------------------------------------------------------------

  void AcceptLoop() {
    while (!stopping.load()) {
      tcp::socket socket(io);
      boost::system::error_code ec;
      acceptor->accept(socket, ec);
      if (ec) {
        if (stopping.load()) return;
        continue;
      }
      std::unique_lock<std::mutex> lock(mutex);
      if (connection_count >= options.connections_max) {
        socket.close(ec);
        continue;
      }
      ++connection_count;
      open_sockets.insert(socket.native_handle());
      lock.unlock();
      std::thread([this, s = std::move(socket)]() mutable {
        SetCurrentThreadName("psp-conn");
        const int handle = s.native_handle();
        ServeConnection(s);
        std::lock_guard<std::mutex> guard(mutex);
        open_sockets.erase(handle);
        boost::system::error_code ignored;
        s.close(ignored);
        --connection_count;
        connections_done.notify_all();
      }).detach();
    }
  }

  // One connection's answer in flight. A request's answer is written by whichever thread
  // has it: the connection thread for the GETs, the books' writer thread (WriteDone) for the
  // POSTs, so the connection thread goes straight back to reading instead of sleeping on the
  // commit and being woken to write. The socket stays open until the answer is written.
  struct Connection {
    explicit Connection(int handle) : fd(handle) {}
    const int fd;
    std::mutex mutex;
    std::condition_variable answered_cv;
    bool answering = false;  // a request's answer is not written yet
    bool waiting = false;    // the connection thread waits for it
    bool close = false;      // close once it is written (dropped, Connection: close, unsent)
    std::string unsent;      // what a non-blocking send could not write at once
  };

  // Waits until the answer in flight (if any) is written. False when the connection must close.
  static bool WaitAnswered(Connection& connection) {
    std::unique_lock<std::mutex> lock(connection.mutex);
    connection.waiting = true;
    connection.answered_cv.wait(lock, [&connection] { return !connection.answering; });
    connection.waiting = false;
    return !connection.close;
  }

  static std::string SerializeResponse(const http::Response& response, bool keep_alive) {
    const beast::string_view reason =
        bhttp::obsolete_reason(bhttp::int_to_status(static_cast<unsigned>(response.status)));
    std::string wire = fmt::format("HTTP/1.1 {} {}\r\n", response.status,
                                   std::string_view(reason.data(), reason.size()));
    for (const auto& [name, value] : response.headers.entries()) {
      wire += name;
      wire += ": ";
      wire += value;
      wire += "\r\n";
    }
    wire += fmt::format("Server: psp-sandbox\r\nContent-Length: {}\r\n", response.body.size());
    if (!keep_alive) wire += "Connection: close\r\n";
    wire += "\r\n";
    wire += response.body;
    return wire;
  }

  // Writes an answer without blocking (it runs on the books' writer thread for the POSTs).
  // Whatever the socket does not take at once (a client that pipelines requests and does not
  // read its answers) is left to the connection thread, which writes it with a bounded wait
  // and closes: reading is shut down to wake it.
  static void Answer(Connection& connection, const http::Response& response, bool keep_alive) {
    bool close = !keep_alive;
    std::string unsent;
    if (response.headers.Has(kDropConnectionHeader)) {
      // "Charged, but the response is lost": the effect is committed; close without a word.
      ::shutdown(connection.fd, SHUT_RDWR);
      close = true;
    } else {
      const std::string wire = SerializeResponse(response, keep_alive);
      size_t sent = 0;
      while (sent < wire.size()) {
        const ssize_t n = ::send(connection.fd, wire.data() + sent, wire.size() - sent,
                                 MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
          sent += static_cast<size_t>(n);
        } else if (n < 0 && errno == EINTR) {
          continue;
        } else {
          break;
        }
      }
      if (sent < wire.size()) {
        close = true;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
          unsent = wire.substr(sent);
          ::shutdown(connection.fd, SHUT_RD);
        } else {
          ::shutdown(connection.fd, SHUT_RDWR);  // the peer is gone
        }
      }
    }
    std::lock_guard<std::mutex> lock(connection.mutex);
    connection.answering = false;
    connection.close = connection.close || close;
    connection.unsent = std::move(unsent);
    if (connection.waiting) connection.answered_cv.notify_one();
  }

  void ServeConnection(tcp::socket& socket) {
    boost::system::error_code ec;
    socket.set_option(tcp::no_delay(true), ec);
    timeval timeout{kIdleTimeoutSeconds, 0};
    setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    timeval write_timeout{kWriteTimeoutSeconds, 0};
    setsockopt(socket.native_handle(), SOL_SOCKET, SO_SNDTIMEO, &write_timeout,
               sizeof(write_timeout));
    auto connection = std::make_shared<Connection>(socket.native_handle());
    beast::flat_buffer buffer;
    for (int i = 0; i < kRequestsPerConnectionMax && !stopping.load(); ++i) {
      bhttp::request_parser<bhttp::string_body> parser;
      parser.body_limit(kBodyBytesMax);
      bhttp::read(socket, buffer, parser, ec);
      if (ec) break;
      // A pipelined request waits for the answer before it: answers go out in order.
      if (!WaitAnswered(*connection)) break;
      const auto& message = parser.get();
      http::Request request;
      request.method = std::string(message.method_string());
      request.target = std::string(message.target());
      const size_t question = request.target.find('?');
      request.path =
          http::PercentDecode(request.target.substr(0, question), http::PlusSign::kLiteral)
              .value_or("");
      if (question != std::string::npos) request.query = request.target.substr(question + 1);
      for (const auto& field : message) {
        request.headers.Add(std::string(field.name_string()), std::string(field.value()));
      }
      request.body = message.body();
      const bool keep_alive = message.keep_alive();
      SimulateLatency();
      {
        std::lock_guard<std::mutex> lock(connection->mutex);
        connection->answering = true;
      }
      router.Dispatch(request, [connection, keep_alive](http::Response response) {
        Answer(*connection, response, keep_alive);
      });
      if (!keep_alive) break;
    }
    // The socket is closed after this returns: the answer in flight is written first.
    WaitAnswered(*connection);
    std::string unsent;
    {
      std::lock_guard<std::mutex> lock(connection->mutex);
      unsent.swap(connection->unsent);
    }
    // SO_SNDTIMEO bounds each send; the deadline bounds them together, so a peer that reads a
    // few bytes now and then cannot keep this thread past Shutdown()'s wait.
    const absl::Time deadline = absl::Now() + absl::Seconds(kWriteTimeoutSeconds);
    size_t sent = 0;
    while (sent < unsent.size() && absl::Now() < deadline) {
      const ssize_t n =
          ::send(connection->fd, unsent.data() + sent, unsent.size() - sent, MSG_NOSIGNAL);
      if (n > 0) {
        sent += static_cast<size_t>(n);
      } else if (!(n < 0 && errno == EINTR)) {
        break;
      }
    }
  }

  void SimulateLatency() {
    absl::Duration delay = options.latency_fixed;
    if (options.latency_random > absl::ZeroDuration()) {
      delay += options.latency_random * Uniform01();
    }
    if (delay > absl::ZeroDuration()) absl::SleepFor(delay);
  }
};

PspSandbox::PspSandbox(SandboxOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}

PspSandbox::~PspSandbox() { Shutdown(); }

absl::Status PspSandbox::Start() {
  if (sodium_init() < 0) return absl::InternalError("libsodium failed to initialize");
  if (impl_->options.db_path.empty()) return absl::InvalidArgumentError("db_path is required");
  if (impl_->db != nullptr) return absl::FailedPreconditionError("already started");
  sql::SqliteOptions db_options;
  db_options.path = impl_->options.db_path;
  db_options.name = "psp_sandbox";
  auto db = sql::OpenSqlite(db_options);
  if (!db.ok()) return db.status();
  impl_->db = std::move(*db);
  if (absl::Status status = sql::ApplyMigrations(*impl_->db, "psp_sandbox", SandboxMigrations(),
                                                 *impl_->options.clock);
      !status.ok()) {
    return status;
  }
  impl_->AddRoutes();
  boost::system::error_code ec;
  const auto address = asio::ip::make_address(impl_->options.host, ec);
  if (ec) return absl::InvalidArgumentError(fmt::format("bad host {}", impl_->options.host));
  impl_->acceptor.emplace(impl_->io);
  tcp::endpoint endpoint(address, impl_->options.port);
  impl_->acceptor->open(endpoint.protocol(), ec);
  if (!ec) impl_->acceptor->set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) impl_->acceptor->bind(endpoint, ec);
  if (!ec) impl_->acceptor->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return absl::UnavailableError(fmt::format("psp sandbox cannot listen on {}:{}: {}",
                                              impl_->options.host, impl_->options.port,
                                              ec.message()));
  }
  if (absl::Status status = impl_->StartNotifier(); !status.ok()) return status;
  impl_->accept_thread = std::thread([this] {
    SetCurrentThreadName("psp-accept");
    impl_->AcceptLoop();
  });
  return absl::OkStatus();
}

uint16_t PspSandbox::port() const {
  if (!impl_->acceptor.has_value()) return 0;
  boost::system::error_code ec;
  return impl_->acceptor->local_endpoint(ec).port();
}

void PspSandbox::Shutdown() {
  if (impl_->stopping.exchange(true)) return;
  if (impl_->acceptor.has_value()) {
    // shutdown() wakes the blocked accept(); close() alone does not on Linux.
    ::shutdown(impl_->acceptor->native_handle(), SHUT_RDWR);
  }
  if (impl_->accept_thread.joinable()) impl_->accept_thread.join();
  {
    std::unique_lock<std::mutex> lock(impl_->mutex);
    for (int handle : impl_->open_sockets) ::shutdown(handle, SHUT_RDWR);
    impl_->connections_done.wait_for(lock, std::chrono::seconds(30),
                                     [this] { return impl_->connection_count == 0; });
  }
  impl_->notify_wake.notify_all();
  if (impl_->notify_thread.joinable()) impl_->notify_thread.join();
  if (impl_->acceptor.has_value()) {
    boost::system::error_code ignored;
    impl_->acceptor->close(ignored);
  }
  if (impl_->db) impl_->db->Close();
}

int64_t PspSandbox::notifications_delivered() const {
  return impl_->notifications_delivered.load();
}

}  // namespace emporium::psp_sandbox
