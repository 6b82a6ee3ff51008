// The API gateway: the only public listener's front door. In embedded mode it wraps the app's
// Router in process; every request passes through Gateway::Handle, which
//  1. answers CORS preflights (OPTIONS with Origin + Access-Control-Request-Method) for the
//     configured storefront origin;
//  2. authenticates `Authorization: Bearer <credential>` through the accounts authenticator
//     (customer session, staff key, or the legacy admin key) — a malformed or unknown
//     credential is 401, no header is the anonymous principal;
//  3. applies token-bucket rate limits by route class (read, write, checkout, login), one
//     bucket per principal and one per client address (429 + Retry-After, the one error
//     shape);
//  4. attaches the principal to Request::attributes (platform/context/principal.h) and
//     dispatches to the inner router;
//  5. adds security headers (X-Content-Type-Options, X-Frame-Options, Referrer-Policy,
//     Content-Security-Policy) and CORS response headers to every answer.
// Platform paths (/healthz, /readyz, /metrics) skip authentication and rate limits.
//
// Thread-safety: Handle is safe from any number of io threads; the inner router and the
// authenticator must be too, and must outlive the gateway.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "accounts/model.h"
#include "common/clock.h"
#include "platform/context/principal.h"
#include "platform/http/router.h"

namespace emporium::gateway {

enum class RouteClass { kRead, kWrite, kCheckout, kLogin };
inline constexpr size_t kRouteClassCount = 4;
std::string_view RouteClassName(RouteClass route_class);

// login: POST to /api/v1/accounts/{login,signup,me/password}; checkout: any write whose path
// has a "checkout" segment; read: GET/HEAD/OPTIONS; write: everything else.
RouteClass ClassifyRoute(std::string_view method, std::string_view path);

// The client address without its port: "1.2.3.4:5" -> "1.2.3.4", "[::1]:5" -> "::1".
std::string ClientAddress(std::string_view remote_address);

struct RateLimit {
  accounts::TokenBucketPolicy per_principal;
  accounts::TokenBucketPolicy per_address;
  bool enabled = true;
};

using Authenticator = std::function<absl::StatusOr<Principal>(std::string_view credential)>;

inline constexpr std::string_view kDefaultContentSecurityPolicy =
    "default-src 'self'; img-src 'self' data: https:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'self'; "
    "form-action 'self'";

struct GatewayOptions {
  Authenticator authenticate;  // required
  // Indexed by RouteClass.
  std::array<RateLimit, kRouteClassCount> limits = {
      RateLimit{{600, 100}, {2400, 400}, true},  // read
      RateLimit{{120, 20}, {480, 80}, true},     // write
      RateLimit{{10, 0.5}, {40, 2}, true},       // checkout
      RateLimit{{10, 0.2}, {20, 0.5}, true},     // login, signup, password change
  };
  std::string cors_origin;  // e.g. "https://shop.example.com"; empty: no CORS headers
  std::string content_security_policy = std::string(kDefaultContentSecurityPolicy);
  std::vector<std::string> open_paths = {"/healthz", "/readyz", "/metrics"};
  size_t rate_limit_keys_max = 200'000;
  int64_t cors_max_age_seconds = 600;
  const Clock* clock = &SystemClock::Instance();
};

class Gateway {
 public:
  Gateway(const http::Router& inner, GatewayOptions options);
  ~Gateway();
  Gateway(const Gateway&) = delete;
  Gateway& operator=(const Gateway&) = delete;

  void Handle(http::Request& request, http::Responder respond) const;

  // A router for the HTTP server that sends every method and path through Handle. The
  // gateway must outlive it.
  http::Router ServingRouter() const;

 private:
  struct State;
  const http::Router& inner_;
  GatewayOptions options_;
  std::unique_ptr<State> state_;
};

}  // namespace emporium::gateway
