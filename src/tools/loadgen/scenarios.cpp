#include "tools/loadgen/scenarios.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <random>
#include <set>

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

std::vector<std::string> ScenarioNames() { return {"get", "browse", "flash-sale"}; }

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
  if (name == "cart" || name == "checkout" || name == "mixed") {
    return absl::UnimplementedError(
        fmt::format("scenario '{}' needs the ordering context (carts, orders, checkout), which "
                    "does not exist yet",
                    name));
  }
  return absl::InvalidArgumentError(fmt::format("unknown scenario '{}'", name));
}

}  // namespace emporium::loadgen
