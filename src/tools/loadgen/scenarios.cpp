#include "tools/loadgen/scenarios.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cmath>
#include <iterator>
#include <map>
#include <random>
#include <set>

#include "absl/time/clock.h"
#include "common/format.h"
#include "common/status_macros.h"
#include "fmt/format.h"
#include "platform/http/client.h"

namespace emporium::loadgen {
namespace {

using Json = nlohmann::json;

constexpr size_t kBrowseProductsMax = 100;  // one list page (the catalog's list limit)
constexpr size_t kSearchTermsMax = 200;
constexpr size_t kResponseBodyBytesMax = 1 << 20;
constexpr char kFlashLocation[] = "loadgen";

// Percent-encodes a path segment or query value (unreserved characters pass).
std::string Encode(std::string_view text) {
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  return out;
}

std::string RandomRunId() {
  std::random_device device;
  return fmt::format("{:08x}", device());
}

// A connection script made of loops of several requests (a cart's life, a checkout). The mixed
// scenario switches kind only between loops.
class LoopScript : public ConnectionScript {
 public:
  // True when the next request starts a new loop.
  virtual bool AtLoopStart() const = 0;
};

// ---- get ----

class GetScript final : public ConnectionScript {
 public:
  explicit GetScript(const std::string& path) : path_(path) {}
  void Next(RequestSpec& request) override {
    if (request.target != path_) {
      request.method = "GET";
      request.target = path_;
      request.headers.clear();
      request.body.clear();
    }
  }
  ResponseClass OnResponse(int status, std::string_view) override {
    return ClassifyByStatus(status);
  }

 private:
  const std::string& path_;
};

class GetScenario final : public LoadScenario {
 public:
  explicit GetScenario(ScenarioOptions options) : options_(std::move(options)) {}
  std::unique_ptr<ConnectionScript> NewConnection(int) override {
    return std::make_unique<GetScript>(options_.path);
  }

 private:
  ScenarioOptions options_;
};

// ---- browse ----

struct Catalog {
  std::vector<std::string> product_keys;  // handle (or id), by popularity rank
  std::vector<std::string> search_terms;
};

class BrowseScript final : public LoopScript {
 public:
  BrowseScript(const Catalog& catalog, const ZipfSampler& products, const ZipfSampler& terms,
               uint64_t seed)
      : catalog_(catalog), products_(products), terms_(terms), random_(seed) {}

  bool AtLoopStart() const override { return true; }  // a browse loop is one request

  void Next(RequestSpec& request) override {
    request.method = "GET";
    request.headers.clear();
    request.body.clear();
    const double pick = uniform_(random_);
    if (pick < 0.80) {
      const std::string& key = catalog_.product_keys[products_.Sample(uniform_(random_))];
      request.target = "/api/v1/products/" + Encode(key);
    } else if (pick < 0.90 || catalog_.search_terms.empty()) {
      request.target = "/api/v1/products?limit=20";
    } else {
      const std::string& term = catalog_.search_terms[terms_.Sample(uniform_(random_))];
      request.target = "/api/v1/search?q=" + Encode(term) + "&limit=20";
    }
  }
  ResponseClass OnResponse(int status, std::string_view) override {
    return ClassifyByStatus(status);
  }

 private:
  const Catalog& catalog_;
  const ZipfSampler& products_;
  const ZipfSampler& terms_;
  std::mt19937_64 random_;
  std::uniform_real_distribution<double> uniform_{0.0, 1.0};
};

class BrowseScenario final : public LoadScenario {
 public:
  explicit BrowseScenario(ScenarioOptions options) : options_(std::move(options)) {}

  absl::Status Prepare() override {
    http::ClientOptions client_options;
    client_options.host = options_.host;
    client_options.port = options_.port;
    client_options.connection_count_max = 1;
    client_options.response_body_bytes_max = kResponseBodyBytesMax;
    http::HttpClient client(client_options);
    http::ClientRequest request;
    request.target = fmt::format("/api/v1/products?limit={}", kBrowseProductsMax);
    absl::StatusOr<http::ClientResponse> response = client.Send(request);
    if (!response.ok()) {
      return absl::UnavailableError(
          fmt::format("browse: cannot list products: {}", response.status().message()));
    }
    if (response->status == 404 || response->status == 405) {
      return absl::FailedPreconditionError(
          "browse: the catalog routes (GET /api/v1/products) are not served by this target; "
          "skipping");
    }
    if (response->status != 200) {
      return absl::UnavailableError(
          fmt::format("browse: GET /api/v1/products answered {}", response->status));
    }
    Json body = Json::parse(response->body, nullptr, /*allow_exceptions=*/false);
    if (!body.is_object() || !body.contains("items") || !body["items"].is_array()) {
      return absl::FailedPreconditionError("browse: GET /api/v1/products has no items array");
    }
    std::set<std::string> terms;
    for (const Json& item : body["items"]) {
      if (!item.is_object()) continue;
      std::string key;
      if (item.contains("handle") && item["handle"].is_string()) {
        key = item["handle"].get<std::string>();
      } else if (item.contains("id") && item["id"].is_string()) {
        key = item["id"].get<std::string>();
      }
      if (!key.empty()) catalog_.product_keys.push_back(key);
      if (item.contains("title") && item["title"].is_string()) {
        const std::string title = item["title"].get<std::string>();
        size_t begin = 0;
        while (begin < title.size() && terms.size() < kSearchTermsMax) {
          size_t end = title.find(' ', begin);
          if (end == std::string::npos) end = title.size();
          if (end - begin >= 3) terms.insert(title.substr(begin, end - begin));
          begin = end + 1;
        }
      }
    }
    if (catalog_.product_keys.empty()) {
      return absl::FailedPreconditionError(
          "browse: the catalog has no products; seed it first (nothing to browse)");
    }
    catalog_.search_terms.assign(terms.begin(), terms.end());
    products_ = std::make_unique<ZipfSampler>(catalog_.product_keys.size(), options_.zipf_exponent);
    terms_ = std::make_unique<ZipfSampler>(std::max<size_t>(1, catalog_.search_terms.size()),
                                           options_.zipf_exponent);
    return absl::OkStatus();
  }

  std::unique_ptr<ConnectionScript> NewConnection(int index) override {
    return NewLoopScript(index);
  }
  std::unique_ptr<LoopScript> NewLoopScript(int index) {
    return std::make_unique<BrowseScript>(catalog_, *products_, *terms_,
                                          options_.seed * 1000003u + static_cast<uint64_t>(index));
  }

  std::vector<std::string> SummaryLines() const override {
    return {fmt::format("browse: {} products (Zipf s={}), {} search terms",
                        catalog_.product_keys.size(), options_.zipf_exponent,
                        catalog_.search_terms.size())};
  }
  Json SummaryJson() const override {
    return Json{{"products", catalog_.product_keys.size()},
                {"search_terms", catalog_.search_terms.size()},
                {"zipf_exponent", options_.zipf_exponent}};
  }

 private:
  ScenarioOptions options_;
  Catalog catalog_;
  std::unique_ptr<ZipfSampler> products_;
  std::unique_ptr<ZipfSampler> terms_;
};

// ---- flash-sale ----

struct FlashCounters {
  std::atomic<int64_t> sold{0};
  std::atomic<int64_t> sold_out{0};
  std::atomic<int64_t> other{0};
};

class FlashScript final : public ConnectionScript {
 public:
  FlashScript(const ScenarioOptions& options, const std::string& run_id, int index,
              FlashCounters& counters)
      : options_(options), run_id_(run_id), index_(index), counters_(counters) {}

  void Next(RequestSpec& request) override {
    request.method = "POST";
    request.target = "/api/v1/inventory/reservations";
    request.headers.clear();
    request.headers.emplace_back("Content-Type", "application/json");
    request.headers.emplace_back("Idempotency-Key",
                                 fmt::format("lg-{}-{}-{}", run_id_, index_, sequence_++));
    // The direct reservation API is an ops staff route (shoppers reserve through carts).
    if (!options_.admin_key.empty()) {
      request.headers.emplace_back("Authorization", "Bearer " + options_.admin_key);
    }
    request.body = Json{{"lines", Json::array({{{"sku", options_.sku}, {"quantity", 1}}})}}.dump();
  }

  ResponseClass OnResponse(int status, std::string_view) override {
    if (status == 201) {
      counters_.sold.fetch_add(1, std::memory_order_relaxed);
      return ResponseClass::kOk;
    }
    if (status == 409) {
      counters_.sold_out.fetch_add(1, std::memory_order_relaxed);
      return ResponseClass::kRejected;
    }
    counters_.other.fetch_add(1, std::memory_order_relaxed);
    return ResponseClass::kError;
  }

 private:
  const ScenarioOptions& options_;
  const std::string& run_id_;
  const int index_;
  FlashCounters& counters_;
  int64_t sequence_ = 0;
};

class FlashSaleScenario final : public LoadScenario {
 public:
  explicit FlashSaleScenario(ScenarioOptions options)
      : options_(std::move(options)),
        run_id_(options_.run_id.empty() ? RandomRunId() : options_.run_id) {}

  absl::Status Prepare() override {
    if (options_.admin_key.empty()) {
      stocked_ = -1;  // unknown: whatever the SKU already had
      return absl::OkStatus();
    }
    http::ClientOptions client_options;
    client_options.host = options_.host;
    client_options.port = options_.port;
    client_options.connection_count_max = 1;
    http::HttpClient client(client_options);
    auto staff_post = [&](const std::string& target,
                          const Json& body) -> absl::StatusOr<http::ClientResponse> {
      http::ClientRequest request;
      request.method = "POST";
      request.target = target;
      request.headers.Set("Authorization", "Bearer " + options_.admin_key);
      request.headers.Set("Content-Type", "application/json");
      request.body = body.dump();
      return client.Send(request);
    };
    absl::StatusOr<http::ClientResponse> location = staff_post(
        "/api/v1/admin/inventory/locations", Json{{"id", kFlashLocation}, {"region", "loadgen"}});
    if (!location.ok()) return location.status();
    // 409 means the location is already there, from an earlier run.
    if (location->status != 201 && location->status != 200 && location->status != 409) {
      return absl::FailedPreconditionError(
          fmt::format("flash-sale: creating location '{}' answered {}: {}", kFlashLocation,
                      location->status, location->body));
    }
    absl::StatusOr<http::ClientResponse> received = staff_post(
        "/api/v1/admin/inventory/receive", Json{{"sku", options_.sku},
                                                {"location_id", kFlashLocation},
                                                {"quantity", options_.stock},
                                                {"reference", fmt::format("loadgen-{}", run_id_)}});
    if (!received.ok()) return received.status();
    if (received->status != 200) {
      return absl::FailedPreconditionError(fmt::format(
          "flash-sale: receiving stock answered {}: {}", received->status, received->body));
    }
    stocked_ = options_.stock;
    return absl::OkStatus();
  }

  std::unique_ptr<ConnectionScript> NewConnection(int index) override {
    return std::make_unique<FlashScript>(options_, run_id_, index, counters_);
  }

  std::vector<std::string> SummaryLines() const override {
    std::vector<std::string> lines;
    lines.push_back(fmt::format("flash-sale: SKU {}: {} sold, {} sold out (409), {} other answers",
                                options_.sku, counters_.sold.load(), counters_.sold_out.load(),
                                counters_.other.load()));
    if (stocked_ >= 0) {
      lines.push_back(fmt::format("flash-sale: stock received {} -> {}", stocked_,
                                  counters_.sold.load() <= stocked_ ? "no oversell" : "OVERSOLD"));
    } else {
      lines.push_back("flash-sale: no --admin-key, stock not set up; sold vs stock not checked");
    }
    return lines;
  }
  Json SummaryJson() const override {
    return Json{{"sku", options_.sku},
                {"stock_received", stocked_ >= 0 ? Json(stocked_) : Json(nullptr)},
                {"sold", counters_.sold.load()},
                {"sold_out", counters_.sold_out.load()},
                {"other", counters_.other.load()}};
  }
  absl::Status Verdict() const override {
    // The counters see every answer, warm-up included, which is what comparing with the stock
    // needs.
    if (stocked_ >= 0 && counters_.sold.load() > stocked_) {
      return absl::InternalError(
          fmt::format("flash-sale oversold: {} sold, {} stocked", counters_.sold.load(), stocked_));
    }
    return absl::OkStatus();
  }

 private:
  ScenarioOptions options_;
  std::string run_id_;
  int64_t stocked_ = -1;
  FlashCounters counters_;
};

// ---- shared by the shopping scenarios (checkout, cart, mixed) ----

constexpr int kShopProductsMax = 1000;
constexpr int64_t kShopStockPerSku = 100'000'000;  // ample: carts never run short
constexpr int kCartLinesMax = 3;                   // lines per cart, 1..kCartLinesMax
constexpr int kCheckoutWaitSeconds = 10;           // Prefer: wait=N, the API's maximum
constexpr absl::Duration kPriceModelWait = absl::Seconds(60);
constexpr absl::Duration kPriceModelPoll = absl::Milliseconds(100);
constexpr char kShopPrice[] = "9.99";
constexpr char kNoSku[] = "LOADGEN-NO-SKU";  // only without Prepare (unit tests)

using SteadyClock = std::chrono::steady_clock;

SteadyClock::duration ToChrono(absl::Duration duration) {
  return std::chrono::duration_cast<SteadyClock::duration>(absl::ToChronoNanoseconds(duration));
}

// The engine's measured window as the scripts see it, so a per-step histogram records the same
// span as the engine's own.
struct MeasureWindow {
  SteadyClock::time_point start;
  SteadyClock::time_point end;
  // The engine starts its window right after the last NewConnection, so each NewConnection
  // moves it; the last call wins.
  void StartNow(const ScenarioOptions& options) {
    start = SteadyClock::now() + ToChrono(options.warmup);
    end = start + ToChrono(options.duration);
  }
  bool Contains(SteadyClock::time_point sent, SteadyClock::time_point finished) const {
    return sent >= start && finished <= end;
  }
};

// The body of POST /api/v1/carts for a guest shopper in the US.
std::string NewCartBody(const std::string& email = "loadgen@example.com") {
  return Json{{"currency", "USD"},
              {"region", "us"},
              {"email", email},
              {"shipping_address", {{"country", "US"}, {"line1", "1 Main St"}}}}
      .dump();
}

// A one-connection client for the set-up calls before the run.
std::unique_ptr<http::HttpClient> SetupClient(const ScenarioOptions& options) {
  http::ClientOptions client_options;
  client_options.host = options.host;
  client_options.port = options.port;
  client_options.connection_count_max = 1;
  client_options.response_body_bytes_max = kResponseBodyBytesMax;
  return std::make_unique<http::HttpClient>(client_options);
}

enum class Caller { kAnonymous, kStaff };

absl::StatusOr<http::ClientResponse> PostJson(http::HttpClient& client,
                                              const ScenarioOptions& options,
                                              const std::string& target, const Json& body,
                                              Caller caller) {
  http::ClientRequest request;
  request.method = "POST";
  request.target = target;
  if (caller == Caller::kStaff) {
    request.headers.Set("Authorization", "Bearer " + options.admin_key);
  }
  request.headers.Set("Content-Type", "application/json");
  request.body = body.dump();
  return client.Send(request);
}

absl::Status SetupFailed(std::string_view scenario, std::string_view what,
                         const http::ClientResponse& response) {
  return absl::FailedPreconditionError(
      fmt::format("{}: {} answered {}: {}", scenario, what, response.status, response.body));
}

// The shop every shopping scenario sells from: `options.products` products (one SKU each,
// priced in USD) created through the catalog staff API, ample stock of each received at
// location "loadgen", and a wait (bounded by kPriceModelWait) until ordering's price read model
// knows every SKU. Needs options.admin_key. FailedPrecondition when the target does not serve
// the ordering routes (the scenario is then skipped). Returns the SKUs.
absl::StatusOr<std::vector<std::string>> PrepareShop(const ScenarioOptions& options,
                                                     const std::string& run_id,
                                                     std::string_view scenario) {
  if (options.admin_key.empty()) {
    return absl::InvalidArgumentError(
        fmt::format("{}: --admin-key is required (products and stock are set up through the "
                    "staff APIs)",
                    scenario));
  }
  std::unique_ptr<http::HttpClient> client = SetupClient(options);
  auto post = [&](const std::string& target, const Json& body, Caller caller) {
    return PostJson(*client, options, target, body, caller);
  };
  std::vector<std::string> skus;

  // Products, one SKU each. The catalog applies them asynchronously (202).
  std::string run_upper;
  for (char c : run_id) run_upper += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  for (int i = 0; i < options.products; ++i) {
    const std::string sku = fmt::format("LGCO-{}-{}", run_upper, i);
    absl::StatusOr<http::ClientResponse> product =
        post("/api/v1/admin/products",
             Json{{"handle", fmt::format("lgco-{}-{}", run_id, i)},
                  {"title", fmt::format("Loadgen checkout product {}", i)},
                  {"status", "active"},
                  {"variants", Json::array({{{"sku", sku}, {"prices", {{"USD", kShopPrice}}}}})}},
             Caller::kStaff);
    if (!product.ok()) return product.status();
    if (product->status >= 300) return SetupFailed(scenario, "creating a product", *product);
    skus.push_back(sku);
  }

  absl::StatusOr<http::ClientResponse> location =
      post("/api/v1/admin/inventory/locations", Json{{"id", kFlashLocation}, {"region", "us"}},
           Caller::kStaff);
  if (!location.ok()) return location.status();
  if (location->status != 201 && location->status != 200 && location->status != 409) {
    return SetupFailed(scenario, "creating the stock location", *location);
  }
  for (const std::string& sku : skus) {
    absl::StatusOr<http::ClientResponse> received =
        post("/api/v1/admin/inventory/receive",
             Json{{"sku", sku},
                  {"location_id", kFlashLocation},
                  {"quantity", kShopStockPerSku},
                  {"reference", fmt::format("loadgen-{}", run_id)}},
             Caller::kStaff);
    if (!received.ok()) return received.status();
    if (received->status != 200) return SetupFailed(scenario, "receiving stock", *received);
  }

  // Ordering's price read model catches up through the bus. A GBP cart probes it: a SKU it
  // knows has no GBP price and answers price_unavailable (reserving nothing).
  absl::StatusOr<http::ClientResponse> probe =
      post("/api/v1/carts", Json{{"currency", "GBP"}, {"region", "us"}}, Caller::kAnonymous);
  if (!probe.ok()) return probe.status();
  if (probe->status == 404 || probe->status == 405) {
    return absl::FailedPreconditionError(fmt::format(
        "{}: the ordering routes (POST /api/v1/carts) are not served; skipping", scenario));
  }
  Json probe_cart = Json::parse(probe->body, nullptr, /*allow_exceptions=*/false);
  if (probe->status != 201 || !probe_cart.is_object() || !probe_cart.contains("id") ||
      !probe_cart["id"].is_string()) {
    return SetupFailed(scenario, "creating the probe cart", *probe);
  }
  const std::string probe_id = probe_cart["id"].get<std::string>();
  const std::string probe_target = fmt::format("/api/v1/carts/{}/lines", probe_id);
  const absl::Time deadline = absl::Now() + kPriceModelWait;
  for (const std::string& sku : skus) {
    while (true) {
      absl::StatusOr<http::ClientResponse> add =
          post(probe_target, Json{{"sku", sku}, {"quantity", 1}}, Caller::kAnonymous);
      if (!add.ok()) return add.status();
      Json answer = Json::parse(add->body, nullptr, /*allow_exceptions=*/false);
      if (answer.is_object() && answer.contains("error") && answer["error"].is_object() &&
          answer["error"].value("code", "") == "price_unavailable") {
        break;
      }
      if (absl::Now() > deadline) {
        return absl::DeadlineExceededError(fmt::format(
            "{}: ordering did not learn the price of {} within {}: last answer {} {}", scenario,
            sku, absl::FormatDuration(kPriceModelWait), add->status, add->body));
      }
      absl::SleepFor(kPriceModelPoll);
    }
  }
  // The probe reserved nothing; abandon it anyway so no open cart is left behind.
  http::ClientRequest abandon;
  abandon.method = "DELETE";
  abandon.target = fmt::format("/api/v1/carts/{}", probe_id);
  (void)client->Send(abandon);
  return skus;
}

// `count` distinct SKUs (fewer when the shop has fewer), picked uniformly.
std::vector<std::string> PickSkus(const std::vector<std::string>& skus, int count,
                                  std::mt19937_64& random) {
  if (skus.empty()) return {kNoSku};
  std::vector<std::string> picked;
  std::sample(skus.begin(), skus.end(), std::back_inserter(picked), count, random);
  return picked;
}

// ---- checkout ----

struct CheckoutShared {
  std::vector<std::string> skus;
  std::vector<std::string> payment_methods;  // per connection
  std::vector<bool> declining;               // per connection: pays with a declined card
  std::vector<std::unique_ptr<LatencyHistogram>> checkout_us;  // one per script, merged after
  MeasureWindow window;
  std::atomic<int64_t> carts{0};
  std::atomic<int64_t> checkouts{0};  // answered checkout calls, all phases
  std::atomic<int64_t> confirmed{0};
  std::atomic<int64_t> confirmed_measured{0};  // confirmed within the measured window
  std::atomic<int64_t> cancelled{0};           // declined payment -> CANCELLED
  std::atomic<int64_t> rejected{0};            // REJECTED (e.g. short stock)
  std::atomic<int64_t> pending{0};             // 202: not settled within the wait
  std::atomic<int64_t> failed{0};              // other answers to any call
};

class CheckoutScript final : public LoopScript {
 public:
  CheckoutScript(CheckoutShared& shared, const std::string& run_id, int index,
                 const std::string& payment_method, bool declining, LatencyHistogram& checkout_us,
                 uint64_t seed)
      : shared_(shared),
        run_id_(run_id),
        index_(index),
        payment_method_(payment_method),
        declining_(declining),
        checkout_us_(checkout_us),
        random_(seed) {}

  bool AtLoopStart() const override { return step_ == Step::kCreateCart; }

  void Next(RequestSpec& request) override {
    request.headers.clear();
    request.headers.emplace_back("Content-Type", "application/json");
    request.method = "POST";
    switch (step_) {
      case Step::kCreateCart:
        request.target = "/api/v1/carts";
        // A fresh e-mail per order too: payments counts a guest's fraud velocity per e-mail.
        request.body =
            NewCartBody(fmt::format("lg-{}-{}-{}@example.com", run_id_, index_, sequence_));
        break;
      case Step::kAddLine: {
        request.target = fmt::format("/api/v1/carts/{}/lines", cart_id_);
        std::string sku = kNoSku;
        if (!shared_.skus.empty()) {
          std::uniform_int_distribution<size_t> pick(0, shared_.skus.size() - 1);
          sku = shared_.skus[pick(random_)];
        }
        request.body = Json{{"sku", sku}, {"quantity", 1}}.dump();
        break;
      }
      case Step::kPaymentMethod:
        // A new shopper per order: the fraud velocity rules (attempts per card and per customer
        // per hour) would park a reused card or customer in review after a handful of orders.
        // The sandbox approves any valid card number but its declining test cards.
        request.target = "/api/v1/payment-methods";
        // Guest shoppers: payments lets an anonymous caller vault cards only for "guest-..."
        // owners, and ordering's guest checkout must name that same owner as the payer.
        shopper_ = fmt::format("guest-lg-{}-{}-{}", run_id_, index_, sequence_);
        request.body = Json{{"customer_id", shopper_},
                            {"number", RandomCardNumber()},
                            {"exp_month", 12},
                            {"exp_year", 2035},
                            {"cvc", "123"},
                            {"holder", "Loadgen Buyer"}}
                           .dump();
        break;
      case Step::kCheckout:
        request.target = fmt::format("/api/v1/carts/{}/checkout", cart_id_);
        // The key stays the same when a transport error makes this checkout go out again.
        request.headers.emplace_back("Idempotency-Key",
                                     fmt::format("lg-co-{}-{}-{}", run_id_, index_, sequence_));
        request.headers.emplace_back("Prefer", fmt::format("wait={}", kCheckoutWaitSeconds));
        request.body = (fresh_method_.empty()
                            ? Json{{"payment_method", payment_method_}}
                            : Json{{"payment_method", fresh_method_}, {"customer_id", shopper_}})
                           .dump();
        checkout_sent_ = SteadyClock::now();
        break;
    }
  }

  ResponseClass OnResponse(int status, std::string_view body) override {
    switch (step_) {
      case Step::kCreateCart: {
        Json parsed = Json::parse(body, nullptr, /*allow_exceptions=*/false);
        if (status != 201 || !parsed.is_object() || !parsed.contains("id") ||
            !parsed["id"].is_string()) {
          return Failed();
        }
        cart_id_ = parsed["id"].get<std::string>();
        shared_.carts.fetch_add(1, std::memory_order_relaxed);
        lines_left_ = std::uniform_int_distribution<int>(1, kCartLinesMax)(random_);
        step_ = Step::kAddLine;
        return ResponseClass::kOk;
      }
      case Step::kAddLine:
        if (status != 200) {
          step_ = Step::kCreateCart;
          return Failed();
        }
        if (--lines_left_ == 0) step_ = declining_ ? Step::kCheckout : Step::kPaymentMethod;
        return ResponseClass::kOk;
      case Step::kPaymentMethod: {
        Json parsed = Json::parse(body, nullptr, /*allow_exceptions=*/false);
        if (status != 201 || !parsed.is_object() || !parsed.contains("token") ||
            !parsed["token"].is_string()) {
          return Failed();  // retried
        }
        fresh_method_ = parsed["token"].get<std::string>();
        step_ = Step::kCheckout;
        return ResponseClass::kOk;
      }
      case Step::kCheckout:
        return OnCheckout(status, body);
    }
    return ResponseClass::kError;
  }

 private:
  enum class Step { kCreateCart, kAddLine, kPaymentMethod, kCheckout };

  // 16 digits starting 4242 with a valid Luhn check digit.
  std::string RandomCardNumber() {
    std::string number = "4242";
    std::uniform_int_distribution<int> digit(0, 9);
    while (number.size() < 15) number += static_cast<char>('0' + digit(random_));
    int sum = 0;
    for (size_t i = 0; i < number.size(); ++i) {
      int value = number[number.size() - 1 - i] - '0';
      if (i % 2 == 0) value = value * 2 > 9 ? value * 2 - 9 : value * 2;
      sum += value;
    }
    number += static_cast<char>('0' + (10 - sum % 10) % 10);
    return number;
  }

  ResponseClass Failed() {
    shared_.failed.fetch_add(1, std::memory_order_relaxed);
    return ResponseClass::kError;
  }

  ResponseClass OnCheckout(int status, std::string_view body) {
    const SteadyClock::time_point finished = SteadyClock::now();
    const bool measured = shared_.window.Contains(checkout_sent_, finished);
    if (measured) {
      checkout_us_.Record(
          std::chrono::duration_cast<std::chrono::microseconds>(finished - checkout_sent_).count());
    }
    shared_.checkouts.fetch_add(1, std::memory_order_relaxed);
    step_ = Step::kCreateCart;
    ++sequence_;
    if (status == 202) {
      shared_.pending.fetch_add(1, std::memory_order_relaxed);
      return ResponseClass::kRejected;
    }
    Json parsed = Json::parse(body, nullptr, /*allow_exceptions=*/false);
    if (status != 200 || !parsed.is_object() || !parsed.contains("state") ||
        !parsed["state"].is_string()) {
      return Failed();
    }
    const std::string state = parsed["state"].get<std::string>();
    if (state == "CONFIRMED") {
      shared_.confirmed.fetch_add(1, std::memory_order_relaxed);
      if (measured) shared_.confirmed_measured.fetch_add(1, std::memory_order_relaxed);
      return ResponseClass::kOk;
    }
    if (state == "CANCELLED") {
      shared_.cancelled.fetch_add(1, std::memory_order_relaxed);
      return ResponseClass::kRejected;
    }
    if (state == "REJECTED") {
      shared_.rejected.fetch_add(1, std::memory_order_relaxed);
      return ResponseClass::kRejected;
    }
    // 200 with a non-terminal state should not happen with Prefer: wait; count it as pending.
    shared_.pending.fetch_add(1, std::memory_order_relaxed);
    return ResponseClass::kRejected;
  }

  CheckoutShared& shared_;
  const std::string& run_id_;
  const int index_;
  const std::string& payment_method_;  // from Prepare; declining connections use it
  const bool declining_;
  std::string fresh_method_;
  std::string shopper_;  // the guest owner of fresh_method_
  LatencyHistogram& checkout_us_;
  std::mt19937_64 random_;
  Step step_ = Step::kCreateCart;
  std::string cart_id_;
  int lines_left_ = 0;
  int64_t sequence_ = 0;
  SteadyClock::time_point checkout_sent_;
};

class CheckoutScenario final : public LoadScenario {
 public:
  explicit CheckoutScenario(ScenarioOptions options)
      : options_(std::move(options)),
        run_id_(options_.run_id.empty() ? RandomRunId() : options_.run_id) {}

  absl::Status Prepare() override {
    absl::StatusOr<std::vector<std::string>> skus = PrepareShop(options_, run_id_, "checkout");
    if (!skus.ok()) return skus.status();
    UseSkus(*std::move(skus));
    return PreparePayments();
  }

  // For the mixed scenario, which sets the shop up once for both cart and checkout.
  void UseSkus(std::vector<std::string> skus) { shared_.skus = std::move(skus); }

  bool CreatesOrders() const override { return true; }

  // One payment method per connection (the declining ones spread evenly), vaulted for the
  // guest owner "guest".
  absl::Status PreparePayments() {
    std::unique_ptr<http::HttpClient> client = SetupClient(options_);
    auto post = [&](const std::string& target, const Json& body, Caller caller) {
      return PostJson(*client, options_, target, body, caller);
    };
    auto fail = [](const std::string& what, const http::ClientResponse& response) {
      return SetupFailed("checkout", what, response);
    };
    for (int i = 0; i < options_.connections; ++i) {
      const bool declining =
          std::floor((i + 1) * options_.decline_share) > std::floor(i * options_.decline_share);
      absl::StatusOr<http::ClientResponse> method =
          post("/api/v1/payment-methods",
               Json{{"customer_id", "guest"},
                    {"number", declining ? kCardDeclined : kCardApproved},
                    {"exp_month", 12},
                    {"exp_year", 2035},
                    {"cvc", "123"},
                    {"holder", "Loadgen Buyer"}},
               Caller::kAnonymous);
      if (!method.ok()) return method.status();
      Json answer = Json::parse(method->body, nullptr, /*allow_exceptions=*/false);
      if (method->status != 201 || !answer.is_object() || !answer.contains("token") ||
          !answer["token"].is_string()) {
        return fail("creating a payment method", *method);
      }
      shared_.payment_methods.push_back(answer["token"].get<std::string>());
      shared_.declining.push_back(declining);
    }
    return absl::OkStatus();
  }

  std::unique_ptr<ConnectionScript> NewConnection(int index) override {
    return NewLoopScript(index);
  }
  std::unique_ptr<LoopScript> NewLoopScript(int index) {
    shared_.window.StartNow(options_);
    // Prepare made one payment method per connection; more connections reuse them.
    static const std::string kNoMethod;
    const std::string& method =
        shared_.payment_methods.empty()
            ? kNoMethod
            : shared_.payment_methods[static_cast<size_t>(index) % shared_.payment_methods.size()];
    shared_.checkout_us.push_back(std::make_unique<LatencyHistogram>());
    const bool declining = !shared_.declining.empty() &&
                           shared_.declining[static_cast<size_t>(index) % shared_.declining.size()];
    return std::make_unique<CheckoutScript>(
        shared_, run_id_, index, method, declining, *shared_.checkout_us.back(),
        options_.seed * 1000003u + static_cast<uint64_t>(index));
  }

  std::vector<std::string> SummaryLines() const override {
    const LatencyHistogram latency = CheckoutLatency();
    return {
        fmt::format("checkout: {} products, {} connections ({} with a declined card)",
                    shared_.skus.size(), shared_.payment_methods.size(), DecliningCount()),
        fmt::format("checkout: {:.1f} confirmed orders/s in the measured window ({} there, {} "
                    "in all)",
                    ConfirmedPerSecond(), shared_.confirmed_measured.load(),
                    shared_.confirmed.load()),
        fmt::format("checkout: outcomes: {} confirmed, {} cancelled (declined), {} rejected, {} "
                    "not settled in {} s, {} errors on any call; {} carts created",
                    shared_.confirmed.load(), shared_.cancelled.load(), shared_.rejected.load(),
                    shared_.pending.load(), kCheckoutWaitSeconds, shared_.failed.load(),
                    shared_.carts.load()),
        fmt::format("checkout call latency: p50 {:.1f} ms, p99 {:.1f} ms, max {:.1f} ms ({} calls "
                    "measured)",
                    latency.Percentile(50) / 1000.0, latency.Percentile(99) / 1000.0,
                    latency.max() / 1000.0, latency.count())};
  }
  Json SummaryJson() const override {
    const LatencyHistogram latency = CheckoutLatency();
    return Json{{"products", shared_.skus.size()},
                {"payment_methods", shared_.payment_methods.size()},
                {"declining_connections", DecliningCount()},
                {"confirmed_per_second", ConfirmedPerSecond()},
                {"confirmed_measured", shared_.confirmed_measured.load()},
                {"confirmed", shared_.confirmed.load()},
                {"cancelled", shared_.cancelled.load()},
                {"rejected", shared_.rejected.load()},
                {"pending", shared_.pending.load()},
                {"errors", shared_.failed.load()},
                {"carts", shared_.carts.load()},
                {"checkout_calls_measured", latency.count()},
                {"checkout_p50_us", latency.Percentile(50)},
                {"checkout_p99_us", latency.Percentile(99)},
                {"checkout_max_us", latency.max()}};
  }

 private:
  static constexpr const char* kCardApproved = "4242424242424242";  // sandbox: succeeds
  static constexpr const char* kCardDeclined = "4000000000009995";  // insufficient_funds

  LatencyHistogram CheckoutLatency() const {
    LatencyHistogram merged;
    for (const auto& histogram : shared_.checkout_us) merged.Merge(*histogram);
    return merged;
  }
  double ConfirmedPerSecond() const {
    const double seconds = absl::ToDoubleSeconds(options_.duration);
    return seconds > 0 ? static_cast<double>(shared_.confirmed_measured.load()) / seconds : 0;
  }
  int64_t DecliningCount() const {
    return std::count(shared_.declining.begin(), shared_.declining.end(), true);
  }

  ScenarioOptions options_;
  std::string run_id_;
  CheckoutShared shared_;
};

// Checks the options the shopping scenarios share.
absl::Status CheckShopOptions(std::string_view scenario, const ScenarioOptions& options) {
  if (options.products < 1 || options.products > kShopProductsMax) {
    return absl::InvalidArgumentError(
        fmt::format("{}: --products must be 1..{}", scenario, kShopProductsMax));
  }
  if (!(options.decline_share >= 0 && options.decline_share <= 1)) {
    return absl::InvalidArgumentError(
        fmt::format("{}: --decline-share must be in [0, 1]", scenario));
  }
  if (options.connections < 1) {
    return absl::InvalidArgumentError(fmt::format("{}: needs at least one connection", scenario));
  }
  return absl::OkStatus();
}

// ---- cart ----

constexpr int kCartUpdatedQuantity = 2;

// The steps of one cart's life, in order.
enum class CartStep { kCreate, kAddLine, kUpdate, kRemove, kRead, kAbandon };
constexpr size_t kCartStepCount = 6;

const char* CartStepName(CartStep step) {
  switch (step) {
    case CartStep::kCreate:
      return "create";
    case CartStep::kAddLine:
      return "add-line";
    case CartStep::kUpdate:
      return "update";
    case CartStep::kRemove:
      return "remove";
    case CartStep::kRead:
      return "read";
    case CartStep::kAbandon:
      return "abandon";
  }
  return "?";
}

// One connection's cart figures; owned by the scenario (scripts end with the run), merged after.
struct CartStats {
  std::array<LatencyHistogram, kCartStepCount> step_us;  // measured window only
  int64_t created = 0;
  int64_t abandoned = 0;           // loops completed (the cart given up), all phases
  int64_t abandoned_measured = 0;  // ... whose abandon answered within the measured window
  int64_t rejected = 0;            // expected 4xx (409 conflict, 422 unprocessable)
  int64_t errors = 0;
  std::map<std::string, int64_t> reservations;  // reservation.status seen by the read step
};

// An expected business "no" on a cart call: the cart or its stock is not in the state the step
// assumed (short stock, a line already gone).
bool IsExpectedCartRefusal(int status) { return status == 409 || status == 422; }

class CartScript final : public LoopScript {
 public:
  CartScript(const std::vector<std::string>& skus, const MeasureWindow& window, CartStats& stats,
             uint64_t seed)
      : skus_(skus), window_(window), stats_(stats), random_(seed) {}

  bool AtLoopStart() const override { return step_ == CartStep::kCreate; }

  void Next(RequestSpec& request) override {
    request.headers.clear();
    request.body.clear();
    switch (step_) {
      case CartStep::kCreate:
        request.method = "POST";
        request.target = "/api/v1/carts";
        request.body = NewCartBody();
        break;
      case CartStep::kAddLine:
        request.method = "POST";
        request.target = fmt::format("/api/v1/carts/{}/lines", cart_id_);
        request.body = Json{{"sku", planned_[added_ + refused_]}, {"quantity", 1}}.dump();
        break;
      case CartStep::kUpdate:
        request.method = "PUT";
        request.target = fmt::format("/api/v1/carts/{}/lines/{}", cart_id_, Encode(lines_.front()));
        request.body = Json{{"quantity", kCartUpdatedQuantity}}.dump();
        break;
      case CartStep::kRemove:
        request.method = "DELETE";
        request.target = fmt::format("/api/v1/carts/{}/lines/{}", cart_id_, Encode(lines_.back()));
        break;
      case CartStep::kRead:
        request.method = "GET";
        request.target = fmt::format("/api/v1/carts/{}", cart_id_);
        break;
      case CartStep::kAbandon:
        request.method = "DELETE";
        request.target = fmt::format("/api/v1/carts/{}", cart_id_);
        break;
    }
    if (!request.body.empty()) request.headers.emplace_back("Content-Type", "application/json");
    sent_ = SteadyClock::now();
  }

  ResponseClass OnResponse(int status, std::string_view body) override {
    const SteadyClock::time_point finished = SteadyClock::now();
    const CartStep step = step_;
    if (window_.Contains(sent_, finished)) {
      stats_.step_us[static_cast<size_t>(step)].Record(
          std::chrono::duration_cast<std::chrono::microseconds>(finished - sent_).count());
    }
    const bool refused = IsExpectedCartRefusal(status);
    if (status != 200 && status != 201 && !refused) {
      ++stats_.errors;
      // Give the cart up so its reservation is released; a failed abandon or create starts over.
      step_ = (step == CartStep::kCreate || step == CartStep::kAbandon || cart_id_.empty())
                  ? CartStep::kCreate
                  : CartStep::kAbandon;
      return ResponseClass::kError;
    }
    if (refused) ++stats_.rejected;
    const ResponseClass judged = refused ? ResponseClass::kRejected : ResponseClass::kOk;
    switch (step) {
      case CartStep::kCreate: {
        Json parsed = Json::parse(body, nullptr, /*allow_exceptions=*/false);
        if (refused || !parsed.is_object() || !parsed.contains("id") || !parsed["id"].is_string()) {
          if (!refused) ++stats_.errors;
          return refused ? judged : ResponseClass::kError;  // stays on create
        }
        cart_id_ = parsed["id"].get<std::string>();
        ++stats_.created;
        planned_ =
            PickSkus(skus_, std::uniform_int_distribution<int>(1, kCartLinesMax)(random_), random_);
        lines_.clear();
        added_ = 0;
        refused_ = 0;
        step_ = CartStep::kAddLine;
        return judged;
      }
      case CartStep::kAddLine:
        if (refused) {
          ++refused_;
        } else {
          lines_.push_back(planned_[added_ + refused_]);
          ++added_;
        }
        if (added_ + refused_ == planned_.size()) {
          // Update and remove need a line; a cart whose every add was refused is only read.
          step_ = lines_.empty() ? CartStep::kRead : CartStep::kUpdate;
        }
        return judged;
      case CartStep::kUpdate:
        step_ = CartStep::kRemove;
        return judged;
      case CartStep::kRemove:
        step_ = CartStep::kRead;
        return judged;
      case CartStep::kRead: {
        Json parsed = Json::parse(body, nullptr, /*allow_exceptions=*/false);
        std::string reservation = "unreadable";
        if (parsed.is_object() && parsed.contains("reservation") &&
            parsed["reservation"].is_object()) {
          reservation = parsed["reservation"].value("status", "missing");
        }
        ++stats_.reservations[reservation];
        step_ = CartStep::kAbandon;
        return judged;
      }
      case CartStep::kAbandon:
        ++stats_.abandoned;
        if (finished >= window_.start && finished <= window_.end) ++stats_.abandoned_measured;
        cart_id_.clear();
        step_ = CartStep::kCreate;
        return judged;
    }
    return ResponseClass::kError;
  }

 private:
  const std::vector<std::string>& skus_;
  const MeasureWindow& window_;
  CartStats& stats_;
  std::mt19937_64 random_;
  CartStep step_ = CartStep::kCreate;
  std::string cart_id_;
  std::vector<std::string> planned_;  // the SKUs this cart adds, distinct
  std::vector<std::string> lines_;    // the SKUs whose add was accepted
  size_t added_ = 0;
  size_t refused_ = 0;
  SteadyClock::time_point sent_;
};

class CartScenario final : public LoadScenario {
 public:
  explicit CartScenario(ScenarioOptions options)
      : options_(std::move(options)),
        run_id_(options_.run_id.empty() ? RandomRunId() : options_.run_id) {}

  absl::Status Prepare() override {
    absl::StatusOr<std::vector<std::string>> skus = PrepareShop(options_, run_id_, "cart");
    if (!skus.ok()) return skus.status();
    UseSkus(*std::move(skus));
    return absl::OkStatus();
  }

  // For the mixed scenario, which sets the shop up once for both cart and checkout.
  void UseSkus(std::vector<std::string> skus) { skus_ = std::move(skus); }

  std::unique_ptr<ConnectionScript> NewConnection(int index) override {
    return NewLoopScript(index);
  }
  std::unique_ptr<LoopScript> NewLoopScript(int index) {
    window_.StartNow(options_);
    stats_.push_back(std::make_unique<CartStats>());
    return std::make_unique<CartScript>(
        skus_, window_, *stats_.back(),
        options_.seed * 1000003u + 7919u + static_cast<uint64_t>(index));
  }

  std::vector<std::string> SummaryLines() const override {
    const CartStats total = Total();
    std::vector<std::string> lines;
    lines.push_back(fmt::format(
        "cart: {:.1f} carts/s in the measured window ({} there, {} abandoned in all, {} created), "
        "{} products",
        CartsPerSecond(total), total.abandoned_measured, total.abandoned, total.created,
        skus_.size()));
    std::string reservations;
    for (const auto& [status, count] : total.reservations) {
      reservations += fmt::format(" {} {},", status, count);
    }
    if (!reservations.empty()) reservations.pop_back();
    lines.push_back(fmt::format(
        "cart: {} expected refusals (409/422), {} errors; reservation at the read step:{}",
        total.rejected, total.errors, reservations.empty() ? " none read" : reservations));
    std::string steps = "cart step latency (measured):";
    for (size_t i = 0; i < kCartStepCount; ++i) {
      const LatencyHistogram& latency = total.step_us[i];
      steps += fmt::format(" {} p50 {:.1f} p99 {:.1f} ms ({});",
                           CartStepName(static_cast<CartStep>(i)), latency.Percentile(50) / 1000.0,
                           latency.Percentile(99) / 1000.0, latency.count());
    }
    steps.pop_back();
    lines.push_back(steps);
    return lines;
  }

  Json SummaryJson() const override {
    const CartStats total = Total();
    Json steps = Json::object();
    for (size_t i = 0; i < kCartStepCount; ++i) {
      const LatencyHistogram& latency = total.step_us[i];
      steps[CartStepName(static_cast<CartStep>(i))] = Json{{"count", latency.count()},
                                                           {"p50_us", latency.Percentile(50)},
                                                           {"p99_us", latency.Percentile(99)},
                                                           {"max_us", latency.max()}};
    }
    Json reservations = Json::object();
    for (const auto& [status, count] : total.reservations) reservations[status] = count;
    return Json{{"products", skus_.size()},
                {"carts_per_second", CartsPerSecond(total)},
                {"carts_measured", total.abandoned_measured},
                {"carts_abandoned", total.abandoned},
                {"carts_created", total.created},
                {"rejected", total.rejected},
                {"errors", total.errors},
                {"reservations_read", reservations},
                {"steps", steps}};
  }

 private:
  CartStats Total() const {
    CartStats total;
    for (const auto& stats : stats_) {
      for (size_t i = 0; i < kCartStepCount; ++i) total.step_us[i].Merge(stats->step_us[i]);
      total.created += stats->created;
      total.abandoned += stats->abandoned;
      total.abandoned_measured += stats->abandoned_measured;
      total.rejected += stats->rejected;
      total.errors += stats->errors;
      for (const auto& [status, count] : stats->reservations) total.reservations[status] += count;
    }
    return total;
  }
  double CartsPerSecond(const CartStats& total) const {
    const double seconds = absl::ToDoubleSeconds(options_.duration);
    return seconds > 0 ? static_cast<double>(total.abandoned_measured) / seconds : 0;
  }

  ScenarioOptions options_;
  std::string run_id_;
  std::vector<std::string> skus_;
  MeasureWindow window_;
  std::vector<std::unique_ptr<CartStats>> stats_;  // one per connection
};

// ---- mixed ----

enum class MixKind { kBrowse, kCart, kCheckout };
constexpr size_t kMixKindCount = 3;

const char* MixKindName(MixKind kind) {
  switch (kind) {
    case MixKind::kBrowse:
      return "browse";
    case MixKind::kCart:
      return "cart";
    case MixKind::kCheckout:
      return "checkout";
  }
  return "?";
}

// One connection's counts per kind; owned by the scenario, merged after the run.
struct MixStats {
  struct Kind {
    int64_t loops = 0;  // loops started (a browse loop is one request)
    int64_t requests = 0;
    int64_t ok = 0;
    int64_t rejected = 0;
    int64_t errors = 0;
  };
  std::array<Kind, kMixKindCount> kinds;
};

// Runs one of the other scenarios' scripts per loop, picked by weight when a loop starts.
class MixedScript final : public ConnectionScript {
 public:
  MixedScript(std::array<std::unique_ptr<LoopScript>, kMixKindCount> scripts, const Mix& mix,
              MixStats& stats, uint64_t seed)
      : scripts_(std::move(scripts)),
        pick_({static_cast<double>(mix.browse), static_cast<double>(mix.cart),
               static_cast<double>(mix.checkout)}),
        stats_(stats),
        random_(seed) {}

  void Next(RequestSpec& request) override {
    // A transport error makes the engine ask again without an answer: the same script repeats
    // its request rather than a new loop being picked.
    if (!awaiting_ && (!started_ || scripts_[current_]->AtLoopStart())) {
      started_ = true;
      current_ = static_cast<size_t>(pick_(random_));
      ++stats_.kinds[current_].loops;
    }
    awaiting_ = true;
    scripts_[current_]->Next(request);
  }

  ResponseClass OnResponse(int status, std::string_view body) override {
    awaiting_ = false;
    const ResponseClass judged = scripts_[current_]->OnResponse(status, body);
    MixStats::Kind& kind = stats_.kinds[current_];
    ++kind.requests;
    switch (judged) {
      case ResponseClass::kOk:
        ++kind.ok;
        break;
      case ResponseClass::kRejected:
        ++kind.rejected;
        break;
      case ResponseClass::kError:
        ++kind.errors;
        break;
    }
    return judged;
  }

 private:
  // A kind with weight 0 has no script and is never picked.
  std::array<std::unique_ptr<LoopScript>, kMixKindCount> scripts_;
  std::discrete_distribution<int> pick_;
  MixStats& stats_;
  std::mt19937_64 random_;
  size_t current_ = 0;
  bool started_ = false;   // a loop has been picked
  bool awaiting_ = false;  // a request is out
};

class MixedScenario final : public LoadScenario {
 public:
  MixedScenario(ScenarioOptions options, Mix mix) : options_(std::move(options)), mix_(mix) {
    // One run id for every part, so the parts' Idempotency-Keys and products do not collide
    // with another run's.
    if (options_.run_id.empty()) options_.run_id = RandomRunId();
    if (mix_.browse > 0) browse_ = std::make_unique<BrowseScenario>(options_);
    if (mix_.cart > 0) cart_ = std::make_unique<CartScenario>(options_);
    if (mix_.checkout > 0) checkout_ = std::make_unique<CheckoutScenario>(options_);
  }

  absl::Status Prepare() override {
    // The shop first, so browsing finds its products in the catalog.
    if (cart_ || checkout_) {
      absl::StatusOr<std::vector<std::string>> skus =
          PrepareShop(options_, options_.run_id, "mixed");
      if (!skus.ok()) return skus.status();
      if (cart_) cart_->UseSkus(*skus);
      if (checkout_) {
        checkout_->UseSkus(*skus);
        RETURN_IF_ERROR(checkout_->PreparePayments());
      }
    }
    if (browse_) RETURN_IF_ERROR(browse_->Prepare());
    return absl::OkStatus();
  }

  bool CreatesOrders() const override { return checkout_ != nullptr; }

  std::unique_ptr<ConnectionScript> NewConnection(int index) override {
    std::array<std::unique_ptr<LoopScript>, kMixKindCount> scripts;
    if (browse_) scripts[static_cast<size_t>(MixKind::kBrowse)] = browse_->NewLoopScript(index);
    if (cart_) scripts[static_cast<size_t>(MixKind::kCart)] = cart_->NewLoopScript(index);
    if (checkout_) {
      scripts[static_cast<size_t>(MixKind::kCheckout)] = checkout_->NewLoopScript(index);
    }
    stats_.push_back(std::make_unique<MixStats>());
    return std::make_unique<MixedScript>(
        std::move(scripts), mix_, *stats_.back(),
        options_.seed * 1000003u + 104729u + static_cast<uint64_t>(index));
  }

  std::vector<std::string> SummaryLines() const override {
    const MixStats total = Total();
    std::vector<std::string> lines;
    lines.push_back(fmt::format("mixed: weights browse={} cart={} checkout={}", mix_.browse,
                                mix_.cart, mix_.checkout));
    for (size_t i = 0; i < kMixKindCount; ++i) {
      const MixStats::Kind& kind = total.kinds[i];
      lines.push_back(fmt::format(
          "mixed: {}: {} loops, {} requests ({} ok, {} rejected, {} errors), all phases",
          MixKindName(static_cast<MixKind>(i)), kind.loops, kind.requests, kind.ok, kind.rejected,
          kind.errors));
    }
    for (const LoadScenario* part : {static_cast<const LoadScenario*>(browse_.get()),
                                     static_cast<const LoadScenario*>(cart_.get()),
                                     static_cast<const LoadScenario*>(checkout_.get())}) {
      if (part == nullptr) continue;
      for (std::string& line : part->SummaryLines()) lines.push_back(std::move(line));
    }
    return lines;
  }

  Json SummaryJson() const override {
    const MixStats total = Total();
    Json kinds = Json::object();
    for (size_t i = 0; i < kMixKindCount; ++i) {
      const MixStats::Kind& kind = total.kinds[i];
      kinds[MixKindName(static_cast<MixKind>(i))] = Json{{"loops", kind.loops},
                                                         {"requests", kind.requests},
                                                         {"ok", kind.ok},
                                                         {"rejected", kind.rejected},
                                                         {"errors", kind.errors}};
    }
    return Json{
        {"weights", {{"browse", mix_.browse}, {"cart", mix_.cart}, {"checkout", mix_.checkout}}},
        {"kinds", kinds},
        {"browse", browse_ ? browse_->SummaryJson() : Json(nullptr)},
        {"cart", cart_ ? cart_->SummaryJson() : Json(nullptr)},
        {"checkout", checkout_ ? checkout_->SummaryJson() : Json(nullptr)}};
  }

 private:
  MixStats Total() const {
    MixStats total;
    for (const auto& stats : stats_) {
      for (size_t i = 0; i < kMixKindCount; ++i) {
        total.kinds[i].loops += stats->kinds[i].loops;
        total.kinds[i].requests += stats->kinds[i].requests;
        total.kinds[i].ok += stats->kinds[i].ok;
        total.kinds[i].rejected += stats->kinds[i].rejected;
        total.kinds[i].errors += stats->kinds[i].errors;
      }
    }
    return total;
  }

  ScenarioOptions options_;
  Mix mix_;
  std::unique_ptr<BrowseScenario> browse_;
  std::unique_ptr<CartScenario> cart_;
  std::unique_ptr<CheckoutScenario> checkout_;
  std::vector<std::unique_ptr<MixStats>> stats_;  // one per connection
};

}  // namespace

ZipfSampler::ZipfSampler(size_t n, double exponent) {
  n = std::max<size_t>(1, n);
  cdf_.reserve(n);
  double total = 0;
  for (size_t rank = 1; rank <= n; ++rank) {
    total += 1.0 / std::pow(static_cast<double>(rank), exponent);
    cdf_.push_back(total);
  }
  for (double& value : cdf_) value /= total;
}

size_t ZipfSampler::Sample(double uniform) const {
  auto found = std::upper_bound(cdf_.begin(), cdf_.end(), uniform);
  if (found == cdf_.end()) return cdf_.size() - 1;
  return static_cast<size_t>(found - cdf_.begin());
}

std::vector<std::string> ScenarioNames() {
  return {"get", "browse", "flash-sale", "checkout", "cart", "mixed"};
}

absl::StatusOr<Mix> ParseMix(std::string_view text) {
  Mix mix{0, 0, 0};
  std::set<std::string> seen;
  size_t begin = 0;
  while (begin <= text.size()) {
    size_t end = text.find(',', begin);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view item = text.substr(begin, end - begin);
    begin = end + 1;
    const size_t equals = item.find('=');
    if (equals == std::string_view::npos) {
      return absl::InvalidArgumentError(
          fmt::format("mixed: --mix item '{}' is not kind=weight", item));
    }
    const std::string kind(item.substr(0, equals));
    const std::string_view number = item.substr(equals + 1);
    if (number.empty() || number.size() > 7 ||
        !std::all_of(number.begin(), number.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return absl::InvalidArgumentError(fmt::format(
          "mixed: --mix weight '{}' of '{}' is not an integer 0..{}", number, kind, kMixWeightMax));
    }
    const int weight = std::stoi(std::string(number));
    if (weight > kMixWeightMax) {
      return absl::InvalidArgumentError(
          fmt::format("mixed: --mix weight of '{}' is above {}", kind, kMixWeightMax));
    }
    if (!seen.insert(kind).second) {
      return absl::InvalidArgumentError(fmt::format("mixed: --mix names '{}' twice", kind));
    }
    if (kind == "browse") {
      mix.browse = weight;
    } else if (kind == "cart") {
      mix.cart = weight;
    } else if (kind == "checkout") {
      mix.checkout = weight;
    } else {
      return absl::InvalidArgumentError(
          fmt::format("mixed: --mix kind '{}' is not one of browse, cart, checkout", kind));
    }
  }
  if (mix.browse + mix.cart + mix.checkout == 0) {
    return absl::InvalidArgumentError("mixed: --mix weights add up to 0");
  }
  return mix;
}

absl::StatusOr<std::unique_ptr<LoadScenario>> MakeScenario(std::string_view name,
                                                           const ScenarioOptions& options) {
  if (name == "get") {
    if (options.path.empty() || options.path[0] != '/') {
      return absl::InvalidArgumentError("get: --path must start with '/'");
    }
    return std::make_unique<GetScenario>(options);
  }
  if (name == "browse") return std::make_unique<BrowseScenario>(options);
  if (name == "flash-sale") {
    if (options.stock < 1) return absl::InvalidArgumentError("flash-sale: --stock must be >= 1");
    if (options.sku.empty()) return absl::InvalidArgumentError("flash-sale: --sku is empty");
    return std::make_unique<FlashSaleScenario>(options);
  }
  if (name == "checkout") {
    RETURN_IF_ERROR(CheckShopOptions("checkout", options));
    return std::make_unique<CheckoutScenario>(options);
  }
  if (name == "cart") {
    RETURN_IF_ERROR(CheckShopOptions("cart", options));
    return std::make_unique<CartScenario>(options);
  }
  if (name == "mixed") {
    RETURN_IF_ERROR(CheckShopOptions("mixed", options));
    absl::StatusOr<Mix> mix = ParseMix(options.mix);
    if (!mix.ok()) return mix.status();
    return std::make_unique<MixedScenario>(options, *mix);
  }
  return absl::InvalidArgumentError(fmt::format("unknown scenario '{}'", name));
}

}  // namespace emporium::loadgen
