// kill -9 during concurrent checkouts: the real `emporium serve` binary (all four contexts in
// one process, SQLite files, the in-process bus) against the PSP sandbox, which lives in this
// test process so it survives the crashes and keeps its own books. Client threads race 1,000
// guest checkouts for scarce stock, paying with a mix of cards (success, declined, processing
// error, "charged but the response is lost"), while a killer thread SIGKILLs the server at
// random moments and restarts it on the same data directory. Clients retry a checkout whose
// answer was lost with the same Idempotency-Key; a cart whose set-up was cut off is abandoned.
//
// After the last restart every accepted order must be found and reach CONFIRMED or a terminal
// state with its saga finished; then the server stops and the auditor reads all four
// contexts' databases and the PSP's balance: no oversell, ledger = projection, none confirmed
// without an authorization, no live authorization on a cancelled order, amounts within bounds,
// the money ledger balanced and equal to what the PSP really charged.
//
// EMPORIUM_CHAOS_ORDERS and EMPORIUM_CHAOS_SEED override the order count and the seed (the
// seed is printed so a failing run can be repeated).
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/time.h"
#include "common/json.h"
#include "emporium_process.h"
#include "fmt/format.h"
#include "gtest/gtest.h"
#include "platform/http/client.h"
#include "test_support.h"
#include "tools/audit/audit.h"
#include "tools/psp_sandbox/sandbox.h"

namespace emporium {
namespace {

using testing::EmporiumProcess;
using testing::WaitFor;

constexpr char kAdminKey[] = "chaos-admin-key";
constexpr int kOrdersDefault = 1000;
constexpr int kClients = 32;
constexpr int kKills = 3;
constexpr int kSkus = 4;
constexpr int64_t kStockPerSku = 300;  // 1,200 units for ~2,250 wanted: stock runs out
constexpr int kCheckoutAttemptsMax = 40;
constexpr int kSetUpAttemptsMax = 40;
constexpr auto kStartBound = std::chrono::seconds(60);
constexpr auto kSettleBound = std::chrono::seconds(180);

int EnvInt(const char* name, int fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? std::atoi(value) : fallback;
}

struct Reply {
  int status = 0;  // 0: no answer (connection refused, reset, timed out)
  Json body;
};

class CheckoutChaosTest : public ::testing::Test {
 protected:
  void SetUp() override {
    psp_sandbox::SandboxOptions sandbox_options;
    sandbox_options.db_path = dir_.path() + "/psp.db";
    // Some latency so that kills land while PSP calls are in flight.
    sandbox_options.latency_fixed = absl::Milliseconds(2);
    sandbox_options.latency_random = absl::Milliseconds(8);
    sandbox_ = std::make_unique<psp_sandbox::PspSandbox>(sandbox_options);
    ASSERT_TRUE(sandbox_->Start().ok());
    psp_url_ = fmt::format("http://127.0.0.1:{}", sandbox_->port());
    StartServer();
  }
  void TearDown() override {
    server_.reset();
    if (sandbox_) sandbox_->Shutdown();
  }

  std::string DataDir() const { return dir_.path() + "/data"; }

  void StartServer() {
    ++starts_;
    server_ = std::make_unique<EmporiumProcess>(
        dir_.path(),
        std::vector<std::string>{
            "serve", "--port", "0", "--data-dir", DataDir(), "--port-file", dir_.path() + "/port",
            "--set", fmt::format("admin.api_key={}", kAdminKey), "--set",
            fmt::format("payments.psp_url={}", psp_url_), "--set", "log.level=warn", "--set",
            "server.io_threads=2",
            // One client address drives every buyer here.
            "--set", "gateway.checkout_per_minute=0", "--set", "gateway.write_per_minute=0",
            "--set", "gateway.read_per_minute=0"},
        "emporium.log");
    ASSERT_TRUE(WaitFor([&] { return server_->ReadPort() != 0; }, kStartBound)) << server_->Log();
    port_.store(server_->ReadPort());
  }

  // One request on a fresh connection to the server's current port.
  Reply Call(const std::string& method, const std::string& target, const Json& body = nullptr,
             const std::vector<std::pair<std::string, std::string>>& headers = {}) {
    http::ClientOptions options;
    options.port = port_.load();
    options.request_timeout = absl::Seconds(20);
    http::HttpClient client(options);
    http::ClientRequest request;
    request.method = method;
    request.target = target;
    if (!body.is_null()) {
      request.body = DumpJson(body);
      request.headers.Set("Content-Type", "application/json");
    }
    for (const auto& [name, value] : headers) request.headers.Set(name, value);
    absl::StatusOr<http::ClientResponse> response = client.Send(request);
    if (!response.ok()) return {};
    absl::StatusOr<Json> parsed = ParseJson(response->body);
    return Reply{response->status, parsed.ok() ? *parsed : Json(response->body)};
  }
  Reply Staff(const std::string& method, const std::string& target, const Json& body = nullptr) {
    return Call(method, target, body, {{"Authorization", fmt::format("Bearer {}", kAdminKey)}});
  }

  static std::string Sku(int i) { return fmt::format("CHAOS-{}", i); }

  void Seed() {
    Json variants = Json::array();
    for (int i = 0; i < kSkus; ++i) {
      variants.push_back({{"sku", Sku(i)}, {"prices", {{"USD", "19.99"}}}});
    }
    Reply product = Staff("POST", "/api/v1/admin/products",
                          {{"handle", "chaos-product"},
                           {"title", "Chaos Product"},
                           {"status", "active"},
                           {"variants", variants}});
    ASSERT_LT(product.status, 300) << product.body.dump();
    Reply location = Staff("POST", "/api/v1/admin/inventory/locations",
                           {{"id", "wh-us"}, {"region", "us"}, {"address", "Newark"}});
    ASSERT_LT(location.status, 300) << location.body.dump();
    for (int i = 0; i < kSkus; ++i) {
      Reply received =
          Staff("POST", "/api/v1/admin/inventory/receive",
                {{"sku", Sku(i)}, {"location_id", "wh-us"}, {"quantity", kStockPerSku}});
      ASSERT_LT(received.status, 300) << received.body.dump();
    }
    // Ordering's price read model catches up through the bus: a GBP cart answers
    // price_unavailable for a SKU it knows (and reserves nothing).
    Reply probe = Call("POST", "/api/v1/carts", {{"currency", "GBP"}, {"region", "us"}});
    ASSERT_EQ(probe.status, 201) << probe.body.dump();
    for (int i = 0; i < kSkus; ++i) {
      ASSERT_TRUE(WaitFor(
          [&] {
            Reply add = Call("POST", fmt::format("/api/v1/carts/{}/lines", probe.body["id"]),
                             {{"sku", Sku(i)}, {"quantity", 1}});
            return add.body.contains("error") && add.body["error"]["code"] == "price_unavailable";
          },
          std::chrono::seconds(30)));
    }
  }

  // A guest payment method for `card`; empty when there was no answer.
  std::string PaymentMethod(const std::string& card) {
    Reply method = Call("POST", "/api/v1/payment-methods",
                        {{"customer_id", "guest"},
                         {"number", card},
                         {"exp_month", 12},
                         {"exp_year", 2035},
                         {"cvc", "123"},
                         {"holder", "Chaos Buyer"}});
    if (method.status != 201) return "";
    return method.body.value("token", method.body.value("id", ""));
  }

  // Counts why a checkout did not happen, for the printed summary; returns "".
  std::string Refused(const std::string& step, const Reply& reply) {
    std::string code = reply.body.is_object() && reply.body.contains("error")
                           ? reply.body["error"].value("code", "")
                           : "";
    std::lock_guard lock(refused_mutex_);
    ++refused_[fmt::format("{} {} {}", step, reply.status, code)];
    return "";
  }

  // Cart, lines, checkout (202, no wait). Returns the accepted order id, or empty when the
  // shop refused (4xx: stock gone, card refused). A set-up step that got no answer (the server
  // was down) starts over with a new cart, after a pause; the abandoned cart's reservation
  // simply expires.
  std::string CheckoutOnce(int index, std::mt19937& random) {
    for (int attempt = 0; attempt < kSetUpAttemptsMax; ++attempt) {
      if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(100 + attempt * 50));
      std::optional<std::string> id = TryCheckout(index, random);
      if (id.has_value()) return *id;
    }
    ADD_FAILURE() << "checkout " << index << " never got through its set-up";
    return "";
  }

  // nullopt: a set-up step got no answer (or a 5xx), try again.
  std::optional<std::string> TryCheckout(int index, std::mt19937& random) {
    static const std::vector<const char*> kCards = {
        psp_sandbox::kCardSuccess,         psp_sandbox::kCardSuccess,
        psp_sandbox::kCardSuccess,         psp_sandbox::kCardSuccess,
        psp_sandbox::kCardSuccess,         psp_sandbox::kCardSuccess,
        psp_sandbox::kCardSuccess,         psp_sandbox::kCardInsufficientFunds,
        psp_sandbox::kCardProcessingError, psp_sandbox::kCardLostResponse};
    auto answered = [](const Reply& reply) { return reply.status != 0 && reply.status < 500; };
    Reply cart = Call("POST", "/api/v1/carts",
                      {{"currency", "USD"},
                       {"region", "us"},
                       {"email", fmt::format("chaos-{}@example.com", index)},
                       {"shipping_address", {{"country", "US"}, {"line1", "1 Main St"}}}});
    if (!answered(cart)) return std::nullopt;
    if (cart.status != 201) return Refused("cart", cart);
    const std::string cart_id = cart.body.value("id", "");
    const int lines = 1 + static_cast<int>(random() % 2);
    for (int line = 0; line < lines; ++line) {
      Reply added = Call("POST", fmt::format("/api/v1/carts/{}/lines", cart_id),
                         {{"sku", Sku(static_cast<int>(random() % kSkus))},
                          {"quantity", 1 + static_cast<int>(random() % 2)}});
      if (!answered(added)) return std::nullopt;
      if (added.status != 200) return Refused("line", added);
    }
    const std::string card = kCards[random() % kCards.size()];
    Reply method = Call("POST", "/api/v1/payment-methods",
                        {{"customer_id", "guest"},
                         {"number", card},
                         {"exp_month", 12},
                         {"exp_year", 2035},
                         {"cvc", "123"},
                         {"holder", "Chaos Buyer"}});
    if (!answered(method)) return std::nullopt;
    if (method.status != 201) return Refused("payment-method", method);
    const std::string token = method.body.value("token", method.body.value("id", ""));
    // From here on the order may exist: only the same key again, never a new cart.
    const std::string key = fmt::format("chaos-{}", index);
    for (int attempt = 0; attempt < kCheckoutAttemptsMax; ++attempt) {
      Reply order = Call("POST", fmt::format("/api/v1/carts/{}/checkout", cart_id),
                         {{"payment_method", token}}, {{"Idempotency-Key", key}});
      if (order.status == 200 || order.status == 201 || order.status == 202) {
        return order.body.value("id", "");
      }
      if (answered(order)) return Refused("checkout", order);
      std::this_thread::sleep_for(std::chrono::milliseconds(100 + attempt * 50));
    }
    ADD_FAILURE() << "checkout " << key << " never answered";
    return "";
  }

  testing::TempDir dir_;
  std::unique_ptr<psp_sandbox::PspSandbox> sandbox_;
  std::string psp_url_;
  std::unique_ptr<EmporiumProcess> server_;
  std::atomic<uint16_t> port_{0};
  std::mutex refused_mutex_;
  std::map<std::string, int> refused_;  // "step status code" -> count
  int starts_ = 0;
};

TEST_F(CheckoutChaosTest, KillNineDuringCheckoutsKeepsEveryInvariant) {
  const int orders = EnvInt("EMPORIUM_CHAOS_ORDERS", kOrdersDefault);
  const unsigned seed = static_cast<unsigned>(
      EnvInt("EMPORIUM_CHAOS_SEED", static_cast<int>(std::random_device{}() % 100'000)));
  std::printf("chaos: %d orders, seed %u\n", orders, seed);
  Seed();
  if (HasFatalFailure()) return;
  ASSERT_NE(PaymentMethod(psp_sandbox::kCardSuccess), "") << "payment methods not available";

  std::atomic<int> next{0};
  std::mutex mutex;
  std::vector<std::string> accepted;
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      std::mt19937 random(seed * 31 + static_cast<unsigned>(c));
      for (int index = next++; index < orders; index = next++) {
        std::string id = CheckoutOnce(index, random);
        if (id.empty()) continue;
        std::lock_guard lock(mutex);
        accepted.push_back(std::move(id));
      }
    });
  }
  // The killer: SIGKILL at random moments while checkouts are in flight, then restart.
  std::mt19937 killer_random(seed);
  int kills = 0;
  for (; kills < kKills && !HasFatalFailure(); ++kills) {
    const int progress_at = static_cast<int>((kills + 1) * orders / (kKills + 1) +
                                             static_cast<int>(killer_random() % 50));
    if (!WaitFor([&] { return next.load() >= progress_at; }, std::chrono::seconds(300))) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(killer_random() % 300));
    server_->Kill();
    StartServer();
  }
  for (std::thread& client : clients) client.join();
  ASSERT_FALSE(HasFatalFailure());
  std::printf("chaos: %d kills, %zu orders accepted\n", kills, accepted.size());
  for (const auto& [why, count] : refused_)
    std::printf("chaos: not placed: %s x%d\n", why.c_str(), count);
  EXPECT_EQ(kills, kKills);
  ASSERT_GT(accepted.size(), 0u);

  // Every accepted order exists and settles: CONFIRMED or terminal, its saga finished.
  std::set<std::string> pending(accepted.begin(), accepted.end());
  ASSERT_EQ(pending.size(), accepted.size()) << "two checkouts answered with one order id";
  int confirmed = 0;
  std::map<std::string, int> by_state;
  const auto deadline = std::chrono::steady_clock::now() + kSettleBound;
  while (!pending.empty() && std::chrono::steady_clock::now() < deadline) {
    for (auto it = pending.begin(); it != pending.end();) {
      Reply order = Staff("GET", fmt::format("/api/v1/orders/{}", *it));
      ASSERT_NE(order.status, 404) << "accepted order " << *it << " was lost";
      const std::string state = order.body.value("state", "");
      const bool settled = state == "CONFIRMED" || state == "REJECTED" || state == "CANCELLED";
      if (order.status == 200 && settled && order.body["saga"].value("finished", false)) {
        ++by_state[state];
        if (state == "CONFIRMED") ++confirmed;
        it = pending.erase(it);
      } else {
        ++it;
      }
    }
    if (!pending.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  for (const std::string& id : pending) {
    ADD_FAILURE() << "order " << id << " did not settle: "
                  << Staff("GET", fmt::format("/api/v1/orders/{}", id)).body.dump();
  }
  std::printf("chaos: %d confirmed, %d rejected, %d cancelled\n", by_state["CONFIRMED"],
              by_state["REJECTED"], by_state["CANCELLED"]);
  EXPECT_GT(confirmed, 0);
  EXPECT_LE(confirmed, kSkus * kStockPerSku);

  // Stop cleanly, then audit every context's files and the PSP's books.
  server_->Signal(SIGTERM);
  ASSERT_EQ(server_->WaitExit(std::chrono::seconds(60)), 0) << server_->Log();
  audit::AuditOptions audit_options;
  audit_options.data_dir = DataDir();
  audit_options.psp_url = psp_url_;
  absl::StatusOr<audit::AuditReport> report = audit::RunAudit(audit_options);
  ASSERT_TRUE(report.ok()) << report.status();
  const std::string text = audit::FormatAuditReport(*report);
  std::printf("%s\n", text.c_str());
  EXPECT_TRUE(report->ok()) << text;
  // Every context was there to be read, and the PSP's books were compared.
  for (const char* context : {"inventory/", "ordering/", "payments/", "psp/"}) {
    bool checked = false;
    for (const std::string& check : report->checks) checked |= check.rfind(context, 0) == 0;
    EXPECT_TRUE(checked) << context << " was not checked:\n" << text;
  }
}

}  // namespace
}  // namespace emporium
