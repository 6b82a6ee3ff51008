#include "gateway/gateway.h"

#include <algorithm>
#include <array>
#include <functional>
#include <initializer_list>

#include "common/errors.h"
#include "common/format.h"
#include "fmt/format.h"

namespace emporium::gateway {
namespace {

using http::Request;
using http::Responder;
using http::Response;

constexpr size_t kCredentialBytesMax = 256;
constexpr std::string_view kAllowedMethods = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS";
constexpr std::string_view kAllowedHeaders =
    "Authorization, Content-Type, Idempotency-Key, If-Match, If-None-Match, X-Request-Id, "
    "traceparent";
constexpr std::string_view kExposedHeaders = "ETag, Retry-After, X-Request-Id, Location";

Response Unauthenticated(std::string_view code, std::string_view message) {
  Response response = http::ErrorResponse(401, "authentication_error", code, message);
  response.headers.Set("WWW-Authenticate", "Bearer");
  return response;
}

std::string_view RawPath(const Request& request) {
  if (request.target.empty()) return request.path;
  std::string_view target(request.target);
  return target.substr(0, target.find('?'));
}

// Token buckets split over shards by key hash, so concurrent requests from different callers
// rarely meet on one limiter lock. Each shard holds its share of the key bound.
class ShardedLimiter {
 public:
  static constexpr size_t kShardCount = 16;

  explicit ShardedLimiter(size_t keys_max) {
    const size_t per_shard = std::max<size_t>(1, keys_max / kShardCount);
    for (auto& shard : shards_) shard = std::make_unique<accounts::RateLimiter>(per_shard);
  }
  accounts::TakeResult Take(const std::string& key, const accounts::TokenBucketPolicy& policy,
                            int64_t now_ms) {
    return shards_[std::hash<std::string>{}(key) % kShardCount]->Take(key, policy, now_ms);
  }

 private:
  std::array<std::unique_ptr<accounts::RateLimiter>, kShardCount> shards_;
};

// "<class>|<rest...>" without going through a format string.
std::string LimiterKey(std::string_view class_name, std::initializer_list<std::string_view> rest) {
  std::string key(class_name);
  for (std::string_view part : rest) {
    key.push_back('|');
    key.append(part);
  }
  return key;
}

}  // namespace

struct Gateway::State {
  explicit State(size_t keys_max) : principals(keys_max), addresses(keys_max) {}
  ShardedLimiter principals;
  ShardedLimiter addresses;
};

std::string_view RouteClassName(RouteClass route_class) {
  switch (route_class) {
    case RouteClass::kRead:
      return "read";
    case RouteClass::kWrite:
      return "write";
    case RouteClass::kCheckout:
      return "checkout";
    case RouteClass::kLogin:
      return "login";
  }
  return "write";  // unreachable: the switch is exhaustive
}

RouteClass ClassifyRoute(std::string_view method, std::string_view path) {
  if (method == "GET" || method == "HEAD" || method == "OPTIONS") return RouteClass::kRead;
  if (method == "POST" && (path == "/api/v1/accounts/login" || path == "/api/v1/accounts/signup" ||
                           path == "/api/v1/accounts/me/password")) {
    return RouteClass::kLogin;
  }
  // A "checkout" segment anywhere: /api/v1/checkout, /api/v1/carts/{id}/checkout, ...
  size_t at = 0;
  while ((at = path.find("/checkout", at)) != std::string_view::npos) {
    const size_t end = at + std::string_view("/checkout").size();
    if (end == path.size() || path[end] == '/') return RouteClass::kCheckout;
    at = end;
  }
  return RouteClass::kWrite;
}

std::string ClientAddress(std::string_view remote_address) {
  if (!remote_address.empty() && remote_address.front() == '[') {
    const size_t close = remote_address.find(']');
    if (close != std::string_view::npos) return std::string(remote_address.substr(1, close - 1));
    return std::string(remote_address);
  }
  const size_t colon = remote_address.rfind(':');
  if (colon != std::string_view::npos && remote_address.find(':') == colon) {
    return std::string(remote_address.substr(0, colon));
  }
  return std::string(remote_address);
}

Gateway::Gateway(const http::Router& inner, GatewayOptions options)
    : inner_(inner),
      options_(std::move(options)),
      state_(std::make_unique<State>(options_.rate_limit_keys_max)) {}

Gateway::~Gateway() = default;

void Gateway::Handle(Request& request, Responder respond) const {
  // CORS: decided once from the Origin header; echoed only for the configured origin.
  std::optional<std::string_view> origin = request.Header("Origin");
  const bool cors_allowed =
      !options_.cors_origin.empty() && origin.has_value() && *origin == options_.cors_origin;
  Responder decorated = [this, cors_allowed, respond = std::move(respond)](Response response) {
    http::Headers& headers = response.headers;
    // One pass over what the handler set; a security header it chose is kept as is.
    bool has_type_options = false, has_frame_options = false, has_referrer = false, has_csp = false;
    for (const http::Headers::Entry& entry : headers.entries()) {
      const std::string& name = entry.first;
      has_type_options = has_type_options || http::EqualsIgnoreCase(name, "X-Content-Type-Options");
      has_frame_options = has_frame_options || http::EqualsIgnoreCase(name, "X-Frame-Options");
      has_referrer = has_referrer || http::EqualsIgnoreCase(name, "Referrer-Policy");
      has_csp = has_csp || http::EqualsIgnoreCase(name, "Content-Security-Policy");
    }
    if (!has_type_options) headers.Add("X-Content-Type-Options", "nosniff");
    if (!has_frame_options) headers.Add("X-Frame-Options", "DENY");
    if (!has_referrer) headers.Add("Referrer-Policy", "strict-origin-when-cross-origin");
    if (!has_csp && !options_.content_security_policy.empty()) {
      headers.Add("Content-Security-Policy", options_.content_security_policy);
    }
    if (cors_allowed) {
      headers.Set("Access-Control-Allow-Origin", options_.cors_origin);
      headers.Set("Access-Control-Expose-Headers", std::string(kExposedHeaders));
    }
    if (!options_.cors_origin.empty()) headers.Add("Vary", "Origin");
    respond(std::move(response));
  };

  const std::string_view path = RawPath(request);
  if (std::find(options_.open_paths.begin(), options_.open_paths.end(), path) !=
      options_.open_paths.end()) {
    AttachPrincipal(request, Principal::Anonymous());
    return inner_.Dispatch(request, std::move(decorated));
  }

  if (request.method == "OPTIONS" && origin.has_value() &&
      request.Header("Access-Control-Request-Method").has_value()) {
    Response preflight = Response::NoContent();
    if (cors_allowed) {
      preflight.headers.Set("Access-Control-Allow-Methods", std::string(kAllowedMethods));
      preflight.headers.Set("Access-Control-Allow-Headers", std::string(kAllowedHeaders));
      preflight.headers.Set("Access-Control-Max-Age",
                            std::to_string(options_.cors_max_age_seconds));
    }
    return decorated(std::move(preflight));
  }

  // Authentication.
  Principal principal = Principal::Anonymous();
  if (std::optional<std::string_view> header = request.Header("Authorization")) {
    constexpr std::string_view kBearer = "Bearer ";
    if (header->size() <= kBearer.size() ||
        !http::EqualsIgnoreCase(header->substr(0, kBearer.size()), kBearer) ||
        header->size() > kBearer.size() + kCredentialBytesMax) {
      return decorated(Unauthenticated("invalid_authorization",
                                       "send Authorization: Bearer <token or API key>"));
    }
    absl::StatusOr<Principal> authenticated =
        options_.authenticate ? options_.authenticate(header->substr(kBearer.size()))
                              : absl::UnauthenticatedError("no authenticator");
    if (!authenticated.ok()) {
      if (absl::IsUnauthenticated(authenticated.status())) {
        return decorated(
            Unauthenticated("invalid_token", "the bearer token is not valid or has expired"));
      }
      return decorated(http::ErrorResponse(authenticated.status()));
    }
    principal = *authenticated;
  }

  // Rate limits: the principal's bucket (if any) and the address's bucket must both allow.
  const RouteClass route_class = ClassifyRoute(request.method, path);
  const RateLimit& limit = options_.limits[static_cast<size_t>(route_class)];
  if (limit.enabled) {
    const int64_t now_ms = options_.clock->NowMs();
    const std::string class_name(RouteClassName(route_class));
    int64_t retry_after_ms = 0;
    auto check = [&retry_after_ms](accounts::TakeResult result) {
      if (!result.allowed) {
        retry_after_ms = std::max(
            retry_after_ms, result.retry_after_ms < 0 ? int64_t{60'000} : result.retry_after_ms);
      }
      return result.allowed;
    };
    bool allowed = check(
        state_->addresses.Take(LimiterKey(class_name, {ClientAddress(request.remote_address)}),
                               limit.per_address, now_ms));
    std::string principal_key;
    switch (principal.kind) {
      case PrincipalKind::kAnonymous:
        break;
      case PrincipalKind::kCustomer:
        principal_key = LimiterKey(class_name, {"c", principal.customer_id});
        break;
      case PrincipalKind::kStaff:
        principal_key = LimiterKey(class_name, {"s", principal.key_id});
        break;
    }
    if (allowed && !principal_key.empty()) {
      allowed = check(state_->principals.Take(principal_key, limit.per_principal, now_ms));
    }
    if (!allowed) {
      Response limited = http::ErrorResponse(
          429, "rate_limit_error", "rate_limited",
          fmt::format("too many {} requests; retry after the Retry-After interval", class_name));
      limited.headers.Set("Retry-After",
                          std::to_string(std::max<int64_t>(1, (retry_after_ms + 999) / 1000)));
      return decorated(std::move(limited));
    }
  }

  AttachPrincipal(request, principal);
  inner_.Dispatch(request, std::move(decorated));
}

http::Router Gateway::ServingRouter() const {
  // Every request goes straight to Handle (no route matching twice: the inner router matches).
  // The methods the gateway serves are checked here as a catch-all route table would: others
  // get 405 with the same Allow list, HEAD goes through like GET.
  http::Router router;
  router.SetPassThrough([this](Request& request, Responder respond) {
    static constexpr std::array<std::string_view, 7> kServedMethods = {
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"};
    if (std::find(kServedMethods.begin(), kServedMethods.end(), request.method) ==
        kServedMethods.end()) {
      constexpr std::string_view kAllow = "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT";
      Response response = http::ErrorResponse(
          405, "invalid_request_error", "method_not_allowed",
          fmt::format("Method {} is not allowed here; allowed: {}.", request.method, kAllow));
      response.headers.Set("Allow", std::string(kAllow));
      return respond(std::move(response));
    }
    request.route.clear();
    request.path_params.clear();
    Handle(request, std::move(respond));
  });
  return router;
}

}  // namespace emporium::gateway
