// The authorization matrix: every route the OpenAPI document (or the router) declares is called
// through the real gateway and listener as each caller class — anonymous, the owner customer,
// another customer, and each staff role — and the outcome is checked against the table below.
// A route with no table entry fails the test, so a new route cannot ship without a decision on
// who may call it. Rows whose route is not in the router (a context not wired yet) are skipped.
//
// Also here, end to end over HTTP: brute-force login is throttled (429 + Retry-After), logout
// revokes, password change revokes other sessions, and no password or token reaches a log.
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "app/openapi.h"
#include "app/server_app.h"
#include "common/format.h"
#include "fmt/format.h"
#include "gtest/gtest.h"
#include "platform/http/client.h"
#include "platform/obs/log.h"
#include "spdlog/sinks/sink.h"
#include "test_support.h"

namespace emporium {
namespace {

using testing::TempDir;

constexpr char kAdminKey[] = "matrix-admin-key";
constexpr char kPassword[] = "correct horse battery staple";

// What a caller class must observe.
enum class Outcome {
  kPass,       // authorization passed: anything but 401/403 (the handler may still say 400/404)
  kVisible,    // an owned object is visible: anything but 401/403/404
  kAuth401,    // must authenticate
  kDenied403,  // authenticated but not allowed
  kHidden404,  // someone else's object: indistinguishable from a missing one
};

std::string_view OutcomeName(Outcome outcome) {
  switch (outcome) {
    case Outcome::kPass:
      return "pass";
    case Outcome::kVisible:
      return "visible";
    case Outcome::kAuth401:
      return "401";
    case Outcome::kDenied403:
      return "403";
    case Outcome::kHidden404:
      return "404";
  }
  return "?";
}

bool Matches(Outcome outcome, int status) {
  switch (outcome) {
    case Outcome::kPass:
      return status != 401 && status != 403 && status != 429 && status < 500;
    case Outcome::kVisible:
      return status != 401 && status != 403 && status != 404 && status != 429 && status < 500;
    case Outcome::kAuth401:
      return status == 401;
    case Outcome::kDenied403:
      return status == 403;
    case Outcome::kHidden404:
      return status == 404;
  }
  return false;
}

enum Caller { kAnonymous, kOwner, kOther, kAdmin, kCatalogManager, kSupport, kOps, kCallerCount };
constexpr const char* kCallerNames[] = {
    "anonymous", "owner", "other customer", "admin", "catalog_manager", "support", "ops"};

struct Expectation {
  // Indexed by Caller.
  std::array<Outcome, kCallerCount> outcomes;
};

constexpr Outcome P = Outcome::kPass;
constexpr Outcome V = Outcome::kVisible;
constexpr Outcome U = Outcome::kAuth401;
constexpr Outcome F = Outcome::kDenied403;
constexpr Outcome H = Outcome::kHidden404;

// Shorthands for the common policies.
constexpr Expectation kPublic{{P, P, P, P, P, P, P}};
// Staff only, with the roles allowed (admin always).
constexpr Expectation Staff(Outcome catalog_manager, Outcome support, Outcome ops) {
  return Expectation{{U, F, F, P, catalog_manager, support, ops}};
}
constexpr Expectation kAdminOnly = Staff(F, F, F);
constexpr Expectation kCatalogStaff = Staff(P, F, F);
constexpr Expectation kSupportStaff = Staff(F, P, F);
constexpr Expectation kOpsStaff = Staff(F, F, P);
// The calling customer's own resource (no object id in the path); staff are not customers.
constexpr Expectation kSelf{{U, V, V, F, F, F, F}};
// A customer-owned object addressed by id: only its owner sees it; everyone else gets 404
// (anonymous gets 401 first, which says nothing about the object).
constexpr Expectation kOwned{{U, V, H, H, H, H, H}};
// A customer-owned object under /me: another customer's id is 404; staff are not customers (403).
constexpr Expectation kOwnedUnderMe{{U, V, H, F, F, F, F}};
// A customer-owned object that guests may also hold (carts): anonymous gets 404 too.
constexpr Expectation kOwnedGuestCapable{{H, V, H, H, H, H, H}};
// The same where the test has no owned object to address (an order needs a whole checkout; a
// cart line a priced SKU): the owner column only checks that authorization lets it through.
constexpr Expectation kOwnedNoFixture{{H, P, H, H, H, H, H}};

using RouteKey = std::pair<std::string, std::string>;

const std::map<RouteKey, Expectation>& Matrix() {
  static const std::map<RouteKey, Expectation> matrix = {
      // Platform.
      {{"GET", "/healthz"}, kPublic},
      {{"GET", "/readyz"}, kPublic},
      {{"GET", "/metrics"}, kPublic},
      {{"GET", "/api/v1/openapi.json"}, kPublic},
      {{"GET", "/api/v1/admin/dead-letters"}, kOpsStaff},
      {{"POST", "/api/v1/admin/dead-letters/{consumer}/{id}/replay"}, kOpsStaff},
      {{"POST", "/api/v1/admin/audit"}, kOpsStaff},
      // Accounts.
      {{"POST", "/api/v1/accounts/signup"}, kPublic},
      {{"POST", "/api/v1/accounts/login"}, kPublic},
      {{"POST", "/api/v1/accounts/logout"}, kSelf},
      {{"POST", "/api/v1/accounts/verify-email"}, kPublic},
      {{"GET", "/api/v1/accounts/me"}, kSelf},
      {{"PATCH", "/api/v1/accounts/me"}, kSelf},
      {{"POST", "/api/v1/accounts/me/password"}, kSelf},
      {{"GET", "/api/v1/accounts/me/addresses"}, kSelf},
      {{"POST", "/api/v1/accounts/me/addresses"}, kSelf},
      {{"GET", "/api/v1/accounts/me/addresses/{id}"}, kOwnedUnderMe},
      {{"PATCH", "/api/v1/accounts/me/addresses/{id}"}, kOwnedUnderMe},
      {{"DELETE", "/api/v1/accounts/me/addresses/{id}"}, kOwnedUnderMe},
      {{"GET", "/api/v1/admin/customers/{id}"}, kSupportStaff},
      {{"GET", "/api/v1/admin/staff-keys"}, kAdminOnly},
      {{"POST", "/api/v1/admin/staff-keys"}, kAdminOnly},
      {{"DELETE", "/api/v1/admin/staff-keys/{id}"}, kAdminOnly},
      // Catalog.
      {{"POST", "/api/v1/admin/products"}, kCatalogStaff},
      {{"POST", "/api/v1/admin/products/batch"}, kCatalogStaff},
      {{"GET", "/api/v1/admin/products/{id}"}, kCatalogStaff},
      {{"PUT", "/api/v1/admin/products/{id}"}, kCatalogStaff},
      {{"PATCH", "/api/v1/admin/products/{id}"}, kCatalogStaff},
      {{"DELETE", "/api/v1/admin/products/{id}"}, kCatalogStaff},
      {{"GET", "/api/v1/admin/catalog/updates/{id}"}, kCatalogStaff},
      {{"POST", "/api/v1/admin/catalog/reindex"}, kCatalogStaff},
      {{"GET", "/api/v1/products"}, kPublic},
      {{"GET", "/api/v1/products/{key}"}, kPublic},
      {{"GET", "/api/v1/products/{key}/reviews"}, kPublic},
      // A review's author is the signed-in customer; staff are not customers.
      {{"POST", "/api/v1/products/{key}/reviews"}, Expectation{{U, P, P, F, F, F, F}}},
      {{"GET", "/api/v1/search"}, kPublic},
      {{"GET", "/api/v1/categories"}, kPublic},
      {{"GET", "/static/{path}"}, kPublic},
      // Inventory. The reservation routes are public today (ordering reserves over the bus);
      // see the report.
      {{"GET", "/api/v1/inventory"}, kPublic},
      {{"GET", "/api/v1/inventory/{sku}"}, kPublic},
      {{"POST", "/api/v1/inventory/reservations"}, kOpsStaff},
      {{"GET", "/api/v1/inventory/reservations/{id}"}, kOpsStaff},
      {{"POST", "/api/v1/inventory/reservations/{id}/extend"}, kOpsStaff},
      {{"POST", "/api/v1/inventory/reservations/{id}/release"}, kOpsStaff},
      {{"POST", "/api/v1/admin/inventory/locations"}, kOpsStaff},
      {{"GET", "/api/v1/admin/inventory/locations"}, kOpsStaff},
      {{"POST", "/api/v1/admin/inventory/receive"}, kOpsStaff},
      {{"POST", "/api/v1/admin/inventory/adjust"}, kOpsStaff},
      // Ordering: carts and orders belong to their customer.
      {{"POST", "/api/v1/carts"}, kPublic},
      {{"GET", "/api/v1/carts/{id}"}, kOwnedGuestCapable},
      {{"PATCH", "/api/v1/carts/{id}"}, kOwnedGuestCapable},
      {{"DELETE", "/api/v1/carts/{id}"}, kOwnedGuestCapable},
      {{"POST", "/api/v1/carts/{id}/lines"}, kOwnedGuestCapable},
      {{"PUT", "/api/v1/carts/{id}/lines/{sku}"}, kOwnedNoFixture},
      {{"DELETE", "/api/v1/carts/{id}/lines/{sku}"}, kOwnedNoFixture},
      {{"POST", "/api/v1/carts/{id}/checkout"}, kOwnedGuestCapable},
      {{"GET", "/api/v1/orders"}, kSelf},
      // An order follows its cart: a customer's order is theirs alone; a guest order is a
      // capability of its id, so anonymous callers are not turned away with 401 but get 404.
      {{"GET", "/api/v1/orders/{id}"}, kOwnedNoFixture},
      {{"POST", "/api/v1/orders/{id}/cancel"}, kOwnedNoFixture},
      {{"GET", "/api/v1/orders/{id}/events"}, kOwnedNoFixture},
      {{"GET", "/api/v1/orders/{id}/stream"}, kOwnedNoFixture},
      // Support answers customers; ops unsticks sagas and needs to find them.
      {{"GET", "/api/v1/admin/orders"}, Staff(F, P, P)},
      {{"GET", "/api/v1/admin/orders/stuck"}, Staff(F, P, P)},
      {{"POST", "/api/v1/admin/orders/{id}/retry"}, Staff(F, P, P)},
      {{"POST", "/api/v1/admin/orders/{id}/compensate"}, Staff(F, P, P)},
      // Payments: a vaulted card belongs to whoever vaulted it (guests too); intents are
      // moved by ordering over the bus and by support staff, never by a customer over HTTP.
      {{"POST", "/api/v1/payment-methods"}, kPublic},
      {{"GET", "/api/v1/payment-methods/{token}"}, kOwnedNoFixture},
      {{"POST", "/api/v1/payment-intents"}, kSupportStaff},
      {{"GET", "/api/v1/payment-intents/{id}"}, kSupportStaff},
      {{"POST", "/api/v1/payment-intents/{id}/capture"}, kSupportStaff},
      {{"POST", "/api/v1/payment-intents/{id}/refund"}, kSupportStaff},
      {{"POST", "/api/v1/payment-intents/{id}/void"}, kSupportStaff},
      // Authenticated by the PSP's HMAC signature, not by a bearer: unsigned calls are 401.
      {{"POST", "/api/v1/payments/psp-notifications"}, Expectation{{U, U, U, U, U, U, U}}},
      {{"GET", "/api/v1/admin/payments/reviews"}, kSupportStaff},
      {{"POST", "/api/v1/admin/payments/reviews/{id}/approve"}, kSupportStaff},
      {{"POST", "/api/v1/admin/payments/reviews/{id}/reject"}, kSupportStaff},
  };
  return matrix;
}

// Rows whose context does not enforce its entry yet, with what it must do. Their mismatches are
// printed, not failed; a pending row that fully passes fails, so the list only shrinks.
const std::map<RouteKey, std::string>& Pending() {
  static const std::map<RouteKey, std::string> pending = [] {
    std::map<RouteKey, std::string> rows;
    return rows;
  }();
  return pending;
}

// "/static/{path...}" in the router is "/static/{path}" in OpenAPI.
std::string SpecPattern(std::string pattern) {
  if (size_t at = pattern.find("...}"); at != std::string::npos) pattern.erase(at, 3);
  return pattern;
}

app::Config TestConfig(const TempDir& dir) {
  app::Config config;
  config.server.port = 0;
  config.server.io_threads = 2;
  config.data_dir = dir.path() + "/data";
  config.admin_api_key = kAdminKey;
  config.log_level = "error";
  // The matrix makes many calls from one address; its own test below turns limits back on.
  config.gateway.read_per_minute = 0;
  config.gateway.write_per_minute = 0;
  config.gateway.checkout_per_minute = 0;
  config.gateway.login_per_minute = 0;
  config.gateway.cors_origin = "https://shop.example.com";
  return config;
}

class AppHarness {
 public:
  explicit AppHarness(app::Config config) {
    absl::StatusOr<std::unique_ptr<app::ServerApp>> server = app::ServerApp::Open(config);
    EXPECT_TRUE(server.ok()) << server.status();
    if (!server.ok()) return;
    server_ = std::move(*server);
    EXPECT_TRUE(server_->Start().ok());
    http::ClientOptions options;
    options.port = server_->port();
    client_ = std::make_unique<http::HttpClient>(options);
  }
  ~AppHarness() {
    client_.reset();
    if (server_) server_->Shutdown();
  }
  bool ok() const { return client_ != nullptr; }
  const http::Router& router() const { return server_->router(); }

  http::ClientResponse Call(const std::string& method, const std::string& target,
                            const std::string& bearer = "", const std::string& body = "") {
    http::ClientRequest request;
    request.method = method;
    request.target = target;
    if (!bearer.empty()) request.headers.Set("Authorization", "Bearer " + bearer);
    if (method == "POST" || method == "PUT" || method == "PATCH") {
      request.headers.Set("Content-Type", "application/json");
      request.body = body.empty() ? "{}" : body;
    }
    absl::StatusOr<http::ClientResponse> response = client_->Send(request);
    EXPECT_TRUE(response.ok()) << method << " " << target << ": " << response.status();
    if (!response.ok()) return http::ClientResponse{};
    return *response;
  }

  // Signs up and returns (customer id, session token).
  std::pair<std::string, std::string> SignUp(const std::string& email) {
    http::ClientResponse response =
        Call("POST", "/api/v1/accounts/signup", "",
             DumpJson(Json{{"email", email}, {"password", kPassword}, {"name", "Matrix"}}));
    EXPECT_EQ(response.status, 201) << response.body;
    absl::StatusOr<Json> json = ParseJson(response.body);
    if (!json.ok() || !json->contains("session")) return {"", ""};
    return {(*json)["customer"]["id"].get<std::string>(),
            (*json)["session"]["token"].get<std::string>()};
  }

  std::string StaffKey(const std::string& role) {
    http::ClientResponse response = Call("POST", "/api/v1/admin/staff-keys", kAdminKey,
                                         DumpJson(Json{{"role", role}, {"label", "matrix"}}));
    EXPECT_EQ(response.status, 201) << response.body;
    absl::StatusOr<Json> json = ParseJson(response.body);
    return json.ok() && json->contains("key") ? (*json)["key"].get<std::string>() : "";
  }

 private:
  std::unique_ptr<app::ServerApp> server_;
  std::unique_ptr<http::HttpClient> client_;
};

TEST(AuthorizationMatrixTest, EveryRouteHasAnEntryAndEveryCallerGetsItsOutcome) {
  TempDir dir;
  AppHarness app(TestConfig(dir));
  ASSERT_TRUE(app.ok());

  std::set<RouteKey> routed;
  for (const auto& [method, pattern] : app.router().routes())
    routed.emplace(method, SpecPattern(pattern));
  absl::StatusOr<Json> document = app::OpenApiJson();
  ASSERT_TRUE(document.ok()) << document.status();
  std::set<RouteKey> routes = routed;
  for (const auto& route : app::OpenApiRoutes(*document)) routes.insert(route);

  for (const RouteKey& route : routes) {
    EXPECT_TRUE(Matrix().count(route))
        << route.first << " " << route.second
        << " has no authorization matrix entry: decide who may call it and add one";
  }

  std::array<std::string, kCallerCount> bearer;
  auto [owner_id, owner_token] = app.SignUp("owner@example.com");
  auto [other_id, other_token] = app.SignUp("other@example.com");
  bearer[kOwner] = owner_token;
  bearer[kOther] = other_token;
  bearer[kAdmin] = app.StaffKey("admin");
  bearer[kCatalogManager] = app.StaffKey("catalog_manager");
  bearer[kSupport] = app.StaffKey("support");
  bearer[kOps] = app.StaffKey("ops");
  for (int caller = kOwner; caller < kCallerCount; ++caller) ASSERT_FALSE(bearer[caller].empty());

  const std::string address_body = DumpJson(Json{{"name", "Owner"},
                                                 {"line1", "1 Main St"},
                                                 {"city", "London"},
                                                 {"postal_code", "N1"},
                                                 {"country", "GB"}});
  int rows_run = 0;
  for (const auto& [route, expectation] : Matrix()) {
    if (!routed.count(route)) {
      std::printf("[ SKIPPED  ] %s %s (not in the router yet)\n", route.first.c_str(),
                  route.second.c_str());
      continue;
    }
    ++rows_run;
    std::vector<std::string> mismatches;
    // Owners call last, so a destructive call (DELETE, logout) cannot change what the others
    // see; objects are created fresh for each row.
    for (int caller : {kAnonymous, kOther, kAdmin, kCatalogManager, kSupport, kOps, kOwner}) {
      std::string owned_id = "0192f3a1-7c2e-7b3d-9f1a-2c3d4e5f6a7b";  // exists for nobody
      std::string token = bearer[caller];
      if (route.second.find("/addresses/{id}") != std::string::npos) {
        http::ClientResponse created =
            app.Call("POST", "/api/v1/accounts/me/addresses", owner_token, address_body);
        ASSERT_EQ(created.status, 201) << created.body;
        owned_id = (*ParseJson(created.body))["id"].get<std::string>();
      } else if (route.second.find("/carts/{id}") != std::string::npos) {
        http::ClientResponse created =
            app.Call("POST", "/api/v1/carts", owner_token, R"({"currency":"USD"})");
        ASSERT_LT(created.status, 300) << "cannot create the owner's cart: " << created.body;
        owned_id = (*ParseJson(created.body))["id"].get<std::string>();
      } else if (route.second == "/api/v1/admin/customers/{id}") {
        owned_id = owner_id;
      }
      if (route.second == "/api/v1/accounts/logout" && (caller == kOwner || caller == kOther)) {
        // Log out a session of its own, so the customer's main token stays valid.
        http::ClientResponse login = app.Call(
            "POST", "/api/v1/accounts/login", "",
            DumpJson(Json{{"email", caller == kOwner ? "owner@example.com" : "other@example.com"},
                          {"password", kPassword}}));
        ASSERT_EQ(login.status, 200) << login.body;
        token = (*ParseJson(login.body))["session"]["token"].get<std::string>();
      }
      std::string target = route.second;
      auto fill = [&target](const std::string& name, const std::string& value) {
        if (size_t at = target.find("{" + name + "}"); at != std::string::npos) {
          target.replace(at, name.size() + 2, value);
        }
      };
      fill("id", owned_id);
      fill("key", "no-such-product");
      fill("sku", "no-such-sku");
      fill("consumer", "no-such-consumer");
      fill("path", "no-such-file.txt");
      const Outcome expected = expectation.outcomes[caller];
      http::ClientResponse response = app.Call(route.first, target, token);
      if (!Matches(expected, response.status)) {
        mismatches.push_back(fmt::format("{} {} as {}: expected {}, got {} {}", route.first,
                                         route.second, kCallerNames[caller], OutcomeName(expected),
                                         response.status, response.body.substr(0, 200)));
      }
    }
    auto pending = Pending().find(route);
    if (pending == Pending().end()) {
      for (const std::string& mismatch : mismatches) ADD_FAILURE() << mismatch;
    } else if (mismatches.empty()) {
      ADD_FAILURE() << route.first << " " << route.second
                    << " now meets its matrix entry: remove it from Pending()";
    } else {
      std::printf("[ PENDING  ] %s %s — %s\n", route.first.c_str(), route.second.c_str(),
                  pending->second.c_str());
      for (const std::string& mismatch : mismatches) std::printf("    %s\n", mismatch.c_str());
    }
  }
  EXPECT_GT(rows_run, 30);
}

TEST(GatewayOverHttpTest, BruteForceLoginIsThrottled) {
  TempDir dir;
  app::Config config = TestConfig(dir);
  config.gateway.login_per_minute = 6;
  config.gateway.login_burst = 5;
  config.gateway.address_factor = 2;
  AppHarness app(config);
  ASSERT_TRUE(app.ok());
  app.SignUp("victim@example.com");  // one login-class token
  int unauthorized = 0;
  http::ClientResponse last;
  for (int attempt = 0; attempt < 20; ++attempt) {
    last = app.Call("POST", "/api/v1/accounts/login", "",
                    DumpJson(Json{{"email", "victim@example.com"},
                                  {"password", fmt::format("guess-{:06}", attempt)}}));
    if (last.status == 429) break;
    EXPECT_EQ(last.status, 401);
    ++unauthorized;
  }
  EXPECT_EQ(last.status, 429);
  EXPECT_LE(unauthorized, 9);
  EXPECT_TRUE(last.headers.Get("Retry-After").has_value());
  EXPECT_NE(last.body.find("rate_limit_error"), std::string::npos);
}

TEST(GatewayOverHttpTest, LogoutAndPasswordChangeRevokeAndHeadersAreSet) {
  TempDir dir;
  AppHarness app(TestConfig(dir));
  ASSERT_TRUE(app.ok());
  auto [id, token] = app.SignUp("ada@example.com");
  http::ClientResponse login =
      app.Call("POST", "/api/v1/accounts/login", "",
               DumpJson(Json{{"email", "ada@example.com"}, {"password", kPassword}}));
  ASSERT_EQ(login.status, 200);
  const std::string second = (*ParseJson(login.body))["session"]["token"].get<std::string>();

  http::ClientResponse me = app.Call("GET", "/api/v1/accounts/me", token);
  EXPECT_EQ(me.status, 200);
  EXPECT_EQ(me.headers.Get("X-Content-Type-Options"), "nosniff");
  EXPECT_EQ(me.headers.Get("X-Frame-Options"), "DENY");
  EXPECT_TRUE(me.headers.Get("Content-Security-Policy").has_value());
  EXPECT_EQ(me.headers.Get("Cache-Control"), "no-store");

  ASSERT_EQ(app.Call("POST", "/api/v1/accounts/me/password", token,
                     DumpJson(Json{{"current_password", kPassword},
                                   {"new_password", "another good password"}}))
                .status,
            204);
  EXPECT_EQ(app.Call("GET", "/api/v1/accounts/me", second).status, 401);
  EXPECT_EQ(app.Call("GET", "/api/v1/accounts/me", token).status, 200);
  EXPECT_EQ(app.Call("POST", "/api/v1/accounts/logout", token).status, 204);
  EXPECT_EQ(app.Call("GET", "/api/v1/accounts/me", token).status, 401);

  // The legacy admin key still works as role admin.
  EXPECT_EQ(app.Call("GET", "/api/v1/admin/staff-keys", kAdminKey).status, 200);
}

TEST(GatewayOverHttpTest, PasswordsAndTokensNeverReachTheLog) {
  TempDir dir;
  // Every logger made from now on (the access log included) writes to this file; a logger on a
  // MemoryLogSink shows that even a careless call site cannot leak them.
  const std::string log_path = dir.path() + "/emporium.log";
  ASSERT_TRUE(obs::InitLogging(obs::LogOptions{obs::LogLevel::kDebug, log_path}).ok());
  obs::MemoryLogSink sink;
  obs::Logger careless("careless", sink.sink());
  app::Config config = TestConfig(dir);
  config.log_level = "debug";
  std::string token;
  {
    AppHarness app(config);
    ASSERT_TRUE(app.ok());
    token = app.SignUp("secret@example.com").second;
    app.Call("POST", "/api/v1/accounts/login", "",
             DumpJson(Json{{"email", "secret@example.com"}, {"password", "wrong password 123"}}));
    app.Call("GET", "/api/v1/accounts/me", token);
    app.Call("GET", "/api/v1/accounts/me?token=" + token, token);
    app.Call("GET", "/api/v1/accounts/me", "emp_s_not-a-real-token-but-secret-looking");
    careless.Info(fmt::format("login password={} Authorization: Bearer {}", kPassword, token),
                  {{"password", kPassword}, {"token", token}});
  }
  obs::DefaultLogSink()->flush();
  std::ifstream file(log_path);
  std::stringstream logged;
  logged << file.rdbuf();
  const std::string text = logged.str() + sink.text();
  EXPECT_FALSE(logged.str().empty());
  EXPECT_EQ(text.find(kPassword), std::string::npos) << text;
  EXPECT_EQ(text.find("wrong password 123"), std::string::npos);
  EXPECT_EQ(text.find(token), std::string::npos);
  EXPECT_EQ(text.find("not-a-real-token"), std::string::npos);
  ASSERT_TRUE(obs::InitLogging(obs::LogOptions{obs::LogLevel::kError, ""}).ok());
}

}  // namespace
}  // namespace emporium
