// The load scenarios of `emporium loadgen`:
//  - get: one fixed request target, for raw throughput.
//  - browse: product pages with Zipf-distributed popularity over the products listed by
//    GET /api/v1/products at start, plus list pages and searches (terms from the titles).
//    Prepare fails with FailedPrecondition when the catalog routes are not there.
//  - flash-sale: every request reserves 1 unit of one SKU (POST /api/v1/inventory/reservations,
//    unique Idempotency-Key each; an ops staff route, so it needs --admin-key against Emporium).
//    With an admin key, Prepare first receives `stock` units at location "loadgen" through the
//    staff API. 201 counts as a sale, 409 as sold out (not an
//    error); the verdict fails if more units were sold than were stocked.
//  The shopping scenarios (checkout, cart, mixed) need --admin-key: Prepare sets up one shop
//  (shared code): `products` products (one SKU each, priced in USD) through the catalog staff
//  API, ample stock of each received at location "loadgen", then a wait until ordering's price
//  read model knows every SKU (a probe GBP cart answers price_unavailable instead of unknown).
//  Prepare fails with FailedPrecondition (skip) when the target has no ordering routes.
//  - checkout: Prepare also creates one payment method per connection (the sandbox's success
//    card; a `decline_share` of the connections get the insufficient-funds card). Each
//    connection then loops: create a cart, add 1-3 lines, check out with `Prefer: wait=10` and a
//    unique Idempotency-Key. CONFIRMED counts as an order; a declined (CANCELLED) or REJECTED
//    order is an expected outcome (kRejected), not an error. The checkout call has its own
//    latency histogram (measured window only) and confirmed orders/s is reported.
//  - cart: each connection loops through a cart's life: create (POST /api/v1/carts), add 1-3
//    distinct SKUs, set the first line's quantity to 2 (PUT), remove the last line (DELETE),
//    read the cart (its reservation status is counted) and abandon it (DELETE /carts/{id},
//    which releases the reservation). 409/422 are expected refusals (kRejected), not errors; a
//    failed step abandons the cart and starts a new one. Reports carts/s (abandons answered in
//    the measured window) and a latency summary per step.
//  - mixed: each loop of a connection is one browse request, one cart life or one checkout,
//    picked by weight (`mix`, default browse=90,cart=8,checkout=2; a weight 0 kind is not set
//    up). Reports loops and requests per kind, then each part's own summary.
// After any scenario, the CLI runs the target's invariant audit (see target_audit.h).
//
// Thread-safety: Prepare, Summary and Verdict from the RunLoad caller's thread; the scripts
// from their io thread (counters shared between connections are atomic).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"
#include "tools/loadgen/engine.h"

namespace emporium::loadgen {

struct ScenarioOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 8080;
  std::string path = "/healthz";  // get
  std::string admin_key;          // flash-sale stock set-up; empty skips it
  std::string sku = "LOADGEN-FLASH-1";
  int64_t stock = 100;         // flash-sale units received before the run
  std::string run_id;          // makes Idempotency-Keys unique across runs; empty = random
  double zipf_exponent = 1.0;  // browse popularity skew
  uint64_t seed = 1;
  int connections = 64;      // checkout: one payment method per connection
  int products = 20;         // checkout: products (one SKU each) created by Prepare
  double decline_share = 0;  // checkout: share of connections paying with a declined card
  std::string mix = "browse=90,cart=8,checkout=2";  // mixed: kind=weight,...
  // checkout: the engine's window, so the checkout histogram records the same span.
  absl::Duration warmup = absl::Seconds(2);
  absl::Duration duration = absl::Seconds(10);
};

class LoadScenario : public Scenario {
 public:
  // Set-up against the target before the run (listing products, receiving stock).
  virtual absl::Status Prepare() { return absl::OkStatus(); }
  // Scenario-specific lines for the text report and an object for the JSON report.
  virtual std::vector<std::string> SummaryLines() const { return {}; }
  virtual nlohmann::json SummaryJson() const { return nlohmann::json::object(); }
  // Non-OK when the run broke an invariant the scenario can see (a flash sale that sold more
  // than it stocked).
  virtual absl::Status Verdict() const { return absl::OkStatus(); }
  // True when the run places orders, so the closing audit first waits for them to settle.
  virtual bool CreatesOrders() const { return false; }
};

// The mixed scenario's weights per loop kind (relative, not necessarily percentages).
struct Mix {
  int browse = 90;
  int cart = 8;
  int checkout = 2;
};
inline constexpr int kMixWeightMax = 1'000'000;

// "browse=90,cart=8,checkout=2": kinds browse, cart, checkout, each at most once, integer
// weights 0..kMixWeightMax; an unnamed kind weighs 0; the sum must be > 0. InvalidArgument
// otherwise.
absl::StatusOr<Mix> ParseMix(std::string_view text);

// The scenario names this build knows, for --help.
std::vector<std::string> ScenarioNames();

// InvalidArgument for an unknown name or bad options.
absl::StatusOr<std::unique_ptr<LoadScenario>> MakeScenario(std::string_view name,
                                                           const ScenarioOptions& options);

// Zipf(s) over ranks 0..n-1 by inverse CDF: pure, deterministic given the uniform input.
class ZipfSampler {
 public:
  ZipfSampler(size_t n, double exponent);
  // `uniform` in [0, 1); returns a rank in [0, n).
  size_t Sample(double uniform) const;
  size_t size() const { return cdf_.size(); }

 private:
  std::vector<double> cdf_;
};

}  // namespace emporium::loadgen
