#include "tools/loadgen/scenarios.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cmath>
#include <random>
#include <set>

#include "absl/time/clock.h"
#include "common/format.h"
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

class BrowseScript final : public ConnectionScript {
 public:
  BrowseScript(const Catalog& catalog, const ZipfSampler& products, const ZipfSampler& terms,
               uint64_t seed)
      : catalog_(catalog), products_(products), terms_(terms), random_(seed) {}

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

// ---- checkout ----

constexpr int kCheckoutProductsMax = 1000;
constexpr int64_t kCheckoutStockPerSku = 100'000'000;  // ample: carts never run short
constexpr int kCheckoutLinesMax = 3;
constexpr int kCheckoutWaitSeconds = 10;  // Prefer: wait=N, the API's maximum
constexpr absl::Duration kPriceModelWait = absl::Seconds(60);
constexpr absl::Duration kPriceModelPoll = absl::Milliseconds(100);
constexpr char kCheckoutPrice[] = "9.99";

using SteadyClock = std::chrono::steady_clock;

struct CheckoutShared {
  std::vector<std::string> skus;
  std::vector<std::string> payment_methods;  // per connection
  std::vector<bool> declining;               // per connection: pays with a declined card
  std::vector<std::unique_ptr<LatencyHistogram>> checkout_us;  // one per script, merged after
  SteadyClock::time_point measure_start;
  SteadyClock::time_point measure_end;
  std::atomic<int64_t> carts{0};
  std::atomic<int64_t> checkouts{0};  // answered checkout calls, all phases
  std::atomic<int64_t> confirmed{0};
  std::atomic<int64_t> confirmed_measured{0};  // confirmed within the measured window
  std::atomic<int64_t> cancelled{0};           // declined payment -> CANCELLED
  std::atomic<int64_t> rejected{0};            // REJECTED (e.g. short stock)
  std::atomic<int64_t> pending{0};             // 202: not settled within the wait
  std::atomic<int64_t> failed{0};              // other answers to any call
};

class CheckoutScript final : public ConnectionScript {
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

  void Next(RequestSpec& request) override {
    request.headers.clear();
    request.headers.emplace_back("Content-Type", "application/json");
    request.method = "POST";
    switch (step_) {
      case Step::kCreateCart:
        request.target = "/api/v1/carts";
        request.body = Json{{"currency", "USD"},
                            {"region", "us"},
                            {"email", "loadgen@example.com"},
                            {"shipping_address", {{"country", "US"}, {"line1", "1 Main St"}}}}
                           .dump();
        break;
      case Step::kAddLine: {
        request.target = fmt::format("/api/v1/carts/{}/lines", cart_id_);
        std::string sku = "LOADGEN-NO-SKU";  // only without Prepare (tests)
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
        lines_left_ = std::uniform_int_distribution<int>(1, kCheckoutLinesMax)(random_);
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
    const bool measured =
        checkout_sent_ >= shared_.measure_start && finished <= shared_.measure_end;
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
    if (options_.admin_key.empty()) {
      return absl::InvalidArgumentError(
          "checkout: --admin-key is required (products and stock are set up through the staff "
          "APIs)");
    }
    http::ClientOptions client_options;
    client_options.host = options_.host;
    client_options.port = options_.port;
    client_options.connection_count_max = 1;
    client_options.response_body_bytes_max = kResponseBodyBytesMax;
    http::HttpClient client(client_options);
    auto post = [&](const std::string& target, const Json& body,
                    bool staff) -> absl::StatusOr<http::ClientResponse> {
      http::ClientRequest request;
      request.method = "POST";
      request.target = target;
      if (staff) request.headers.Set("Authorization", "Bearer " + options_.admin_key);
      request.headers.Set("Content-Type", "application/json");
      request.body = body.dump();
      return client.Send(request);
    };
    auto fail = [](const std::string& what, const http::ClientResponse& response) {
      return absl::FailedPreconditionError(
          fmt::format("checkout: {} answered {}: {}", what, response.status, response.body));
    };

    // Products, one SKU each. The catalog applies them asynchronously (202).
    std::string run_upper;
    for (char c : run_id_)
      run_upper += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    for (int i = 0; i < options_.products; ++i) {
      const std::string sku = fmt::format("LGCO-{}-{}", run_upper, i);
      absl::StatusOr<http::ClientResponse> product = post(
          "/api/v1/admin/products",
          Json{{"handle", fmt::format("lgco-{}-{}", run_id_, i)},
               {"title", fmt::format("Loadgen checkout product {}", i)},
               {"status", "active"},
               {"variants", Json::array({{{"sku", sku}, {"prices", {{"USD", kCheckoutPrice}}}}})}},
          true);
      if (!product.ok()) return product.status();
      if (product->status >= 300) return fail("creating a product", *product);
      shared_.skus.push_back(sku);
    }

    absl::StatusOr<http::ClientResponse> location = post(
        "/api/v1/admin/inventory/locations", Json{{"id", kFlashLocation}, {"region", "us"}}, true);
    if (!location.ok()) return location.status();
    if (location->status != 201 && location->status != 200 && location->status != 409) {
      return fail("creating the stock location", *location);
    }
    for (const std::string& sku : shared_.skus) {
      absl::StatusOr<http::ClientResponse> received =
          post("/api/v1/admin/inventory/receive",
               Json{{"sku", sku},
                    {"location_id", kFlashLocation},
                    {"quantity", kCheckoutStockPerSku},
                    {"reference", fmt::format("loadgen-{}", run_id_)}},
               true);
      if (!received.ok()) return received.status();
      if (received->status != 200) return fail("receiving stock", *received);
    }

    // Ordering's price read model catches up through the bus. A GBP cart probes it: a SKU it
    // knows has no GBP price and answers price_unavailable (reserving nothing).
    absl::StatusOr<http::ClientResponse> probe =
        post("/api/v1/carts", Json{{"currency", "GBP"}, {"region", "us"}}, false);
    if (!probe.ok()) return probe.status();
    if (probe->status == 404 || probe->status == 405) {
      return absl::FailedPreconditionError(
          "checkout: the ordering routes (POST /api/v1/carts) are not served; skipping");
    }
    Json probe_cart = Json::parse(probe->body, nullptr, /*allow_exceptions=*/false);
    if (probe->status != 201 || !probe_cart.is_object() || !probe_cart.contains("id")) {
      return fail("creating the probe cart", *probe);
    }
    const std::string probe_target =
        fmt::format("/api/v1/carts/{}/lines", probe_cart["id"].get<std::string>());
    const absl::Time deadline = absl::Now() + kPriceModelWait;
    for (const std::string& sku : shared_.skus) {
      while (true) {
        absl::StatusOr<http::ClientResponse> add =
            post(probe_target, Json{{"sku", sku}, {"quantity", 1}}, false);
        if (!add.ok()) return add.status();
        Json answer = Json::parse(add->body, nullptr, /*allow_exceptions=*/false);
        if (answer.is_object() && answer.contains("error") && answer["error"].is_object() &&
            answer["error"].value("code", "") == "price_unavailable") {
          break;
        }
        if (absl::Now() > deadline) {
          return absl::DeadlineExceededError(fmt::format(
              "checkout: ordering did not learn the price of {} within {}: last answer {} {}", sku,
              absl::FormatDuration(kPriceModelWait), add->status, add->body));
        }
        absl::SleepFor(kPriceModelPoll);
      }
    }

    // One payment method per connection; the declining ones spread evenly.
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
               false);
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
    // The engine starts its window right after the last NewConnection.
    shared_.measure_start = SteadyClock::now() + ToChrono(options_.warmup);
    shared_.measure_end = shared_.measure_start + ToChrono(options_.duration);
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

  static SteadyClock::duration ToChrono(absl::Duration duration) {
    return std::chrono::duration_cast<SteadyClock::duration>(absl::ToChronoNanoseconds(duration));
  }
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

std::vector<std::string> ScenarioNames() { return {"get", "browse", "flash-sale", "checkout"}; }

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
    if (options.products < 1 || options.products > kCheckoutProductsMax) {
      return absl::InvalidArgumentError(
          fmt::format("checkout: --products must be 1..{}", kCheckoutProductsMax));
    }
    if (!(options.decline_share >= 0 && options.decline_share <= 1)) {
      return absl::InvalidArgumentError("checkout: --decline-share must be in [0, 1]");
    }
    if (options.connections < 1) {
      return absl::InvalidArgumentError("checkout: needs at least one connection");
    }
    return std::make_unique<CheckoutScenario>(options);
  }
  if (name == "cart" || name == "mixed") {
    return absl::UnimplementedError(
        fmt::format("scenario '{}' needs the ordering context (carts, orders, checkout), which "
                    "does not exist yet",
                    name));
  }
  return absl::InvalidArgumentError(fmt::format("unknown scenario '{}'", name));
}

}  // namespace emporium::loadgen
