#include "gateway/gateway.h"

#include "gtest/gtest.h"

namespace emporium::gateway {
namespace {

using http::Request;
using http::Response;

class GatewayTest : public ::testing::Test {
 protected:
  GatewayTest() {
    inner_.AddSync("GET", "/api/v1/whoami", [](const Request& request) {
      std::optional<Principal> principal = PrincipalOf(request);
      return Response::Json(
          200, {{"kind", principal ? std::string(PrincipalKindName(principal->kind)) : "none"},
                {"customer_id", principal ? principal->customer_id : ""}});
    });
    inner_.AddSync("POST", "/api/v1/accounts/login",
                   [](const Request&) { return Response::Json(200, Json::object()); });
    inner_.AddSync("GET", "/healthz", [](const Request& request) {
      return Response::Text(200, request.Attribute(kPrincipalKindAttribute).value_or("none"));
    });
  }

  GatewayOptions Options() {
    GatewayOptions options;
    options.clock = &clock_;
    options.cors_origin = "https://shop.example.com";
    options.authenticate = [](std::string_view credential) -> absl::StatusOr<Principal> {
      if (credential == "good") return Principal::Customer("c1");
      if (credential == "staff") return Principal::Staff(Role::kOps, "k1");
      return absl::UnauthenticatedError("no");
    };
    return options;
  }

  Response Call(const Gateway& gateway, std::string method, std::string path,
                std::vector<std::pair<std::string, std::string>> headers = {},
                std::string remote = "10.0.0.1:5555") {
    Request request;
    request.method = std::move(method);
    request.target = path;
    request.path = path;
    request.remote_address = std::move(remote);
    for (auto& [name, value] : headers) request.headers.Add(name, value);
    Response answer;
    answer.status = -1;
    gateway.Handle(request, [&answer](Response response) { answer = std::move(response); });
    return answer;
  }

  ManualClock clock_;
  http::Router inner_;
};

TEST_F(GatewayTest, AttachesPrincipalOrRejectsBadCredentials) {
  Gateway gateway(inner_, Options());
  Response anonymous = Call(gateway, "GET", "/api/v1/whoami");
  EXPECT_EQ(anonymous.status, 200);
  EXPECT_NE(anonymous.body.find("\"anonymous\""), std::string::npos);
  Response customer = Call(gateway, "GET", "/api/v1/whoami", {{"Authorization", "Bearer good"}});
  EXPECT_NE(customer.body.find("\"c1\""), std::string::npos);
  EXPECT_EQ(Call(gateway, "GET", "/api/v1/whoami", {{"Authorization", "Bearer bad"}}).status, 401);
  EXPECT_EQ(Call(gateway, "GET", "/api/v1/whoami", {{"Authorization", "Basic abc"}}).status, 401);
  EXPECT_EQ(Call(gateway, "GET", "/api/v1/whoami", {{"Authorization", "Bearer "}}).status, 401);
  EXPECT_EQ(Call(gateway, "GET", "/api/v1/whoami",
                 {{"Authorization", "Bearer " + std::string(5000, 'x')}})
                .status,
            401);
  // Open paths skip authentication entirely.
  EXPECT_EQ(Call(gateway, "GET", "/healthz", {{"Authorization", "Bearer bad"}}).status, 200);
}

TEST_F(GatewayTest, SecurityHeadersOnEveryAnswer) {
  Gateway gateway(inner_, Options());
  for (const Response& response :
       {Call(gateway, "GET", "/api/v1/whoami"), Call(gateway, "GET", "/nope"),
        Call(gateway, "GET", "/api/v1/whoami", {{"Authorization", "Bearer bad"}})}) {
    EXPECT_EQ(response.headers.Get("X-Content-Type-Options"), "nosniff");
    EXPECT_EQ(response.headers.Get("X-Frame-Options"), "DENY");
    EXPECT_TRUE(response.headers.Has("Referrer-Policy"));
    EXPECT_TRUE(response.headers.Has("Content-Security-Policy"));
  }
}

TEST_F(GatewayTest, CorsOnlyForTheConfiguredOrigin) {
  Gateway gateway(inner_, Options());
  Response preflight =
      Call(gateway, "OPTIONS", "/api/v1/whoami",
           {{"Origin", "https://shop.example.com"}, {"Access-Control-Request-Method", "POST"}});
  EXPECT_EQ(preflight.status, 204);
  EXPECT_EQ(preflight.headers.Get("Access-Control-Allow-Origin"), "https://shop.example.com");
  EXPECT_TRUE(preflight.headers.Has("Access-Control-Allow-Headers"));
  Response evil =
      Call(gateway, "OPTIONS", "/api/v1/whoami",
           {{"Origin", "https://evil.example"}, {"Access-Control-Request-Method", "POST"}});
  EXPECT_FALSE(evil.headers.Has("Access-Control-Allow-Origin"));
  Response simple =
      Call(gateway, "GET", "/api/v1/whoami", {{"Origin", "https://shop.example.com"}});
  EXPECT_EQ(simple.headers.Get("Access-Control-Allow-Origin"), "https://shop.example.com");
}

TEST_F(GatewayTest, RateLimitsPerAddressAndPrincipalWithRetryAfter) {
  GatewayOptions options = Options();
  options.limits[static_cast<size_t>(RouteClass::kLogin)] = RateLimit{{100, 1}, {3, 1}, true};
  options.limits[static_cast<size_t>(RouteClass::kRead)] = RateLimit{{2, 1}, {100, 1}, true};
  Gateway gateway(inner_, options);
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(Call(gateway, "POST", "/api/v1/accounts/login").status, 200);
  Response limited = Call(gateway, "POST", "/api/v1/accounts/login");
  EXPECT_EQ(limited.status, 429);
  EXPECT_EQ(limited.headers.Get("Retry-After"), "1");
  EXPECT_NE(limited.body.find("rate_limit_error"), std::string::npos);
  // Another address has its own bucket.
  EXPECT_EQ(Call(gateway, "POST", "/api/v1/accounts/login", {}, "10.0.0.2:1").status, 200);
  clock_.Advance(absl::Seconds(1));
  EXPECT_EQ(Call(gateway, "POST", "/api/v1/accounts/login").status, 200);

  // Per principal: the same customer from two addresses shares one bucket.
  auto auth = std::vector<std::pair<std::string, std::string>>{{"Authorization", "Bearer good"}};
  EXPECT_EQ(Call(gateway, "GET", "/api/v1/whoami", auth, "10.0.0.3:1").status, 200);
  EXPECT_EQ(Call(gateway, "GET", "/api/v1/whoami", auth, "10.0.0.4:1").status, 200);
  EXPECT_EQ(Call(gateway, "GET", "/api/v1/whoami", auth, "10.0.0.5:1").status, 429);
}

TEST_F(GatewayTest, ServingRouterPassesServedMethodsAnd405sOthers) {
  Gateway gateway(inner_, Options());
  http::Router serving = gateway.ServingRouter();
  auto call = [&serving](std::string method, std::string path) {
    Request request;
    request.method = std::move(method);
    request.target = path;
    request.path = path;
    request.remote_address = "10.0.0.1:5555";
    Response answer;
    answer.status = -1;
    serving.Dispatch(request, [&answer](Response response) { answer = std::move(response); });
    return answer;
  };
  Response whoami = call("GET", "/api/v1/whoami");
  EXPECT_EQ(whoami.status, 200);
  EXPECT_EQ(whoami.headers.Get("X-Frame-Options"), "DENY");  // through the gateway
  EXPECT_EQ(call("HEAD", "/api/v1/whoami").status, 200);
  EXPECT_EQ(call("GET", "/api/v1/nothing").status, 404);
  EXPECT_EQ(call("POST", "/api/v1/whoami").status, 405);  // the inner router's 405
  Response trace = call("TRACE", "/api/v1/whoami");
  EXPECT_EQ(trace.status, 405);
  EXPECT_EQ(trace.headers.Get("Allow"), "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT");
}

TEST(RouteClassTest, Classifies) {
  EXPECT_EQ(ClassifyRoute("GET", "/api/v1/products"), RouteClass::kRead);
  EXPECT_EQ(ClassifyRoute("POST", "/api/v1/accounts/login"), RouteClass::kLogin);
  EXPECT_EQ(ClassifyRoute("POST", "/api/v1/accounts/signup"), RouteClass::kLogin);
  EXPECT_EQ(ClassifyRoute("POST", "/api/v1/checkout"), RouteClass::kCheckout);
  EXPECT_EQ(ClassifyRoute("POST", "/api/v1/carts/x/checkout"), RouteClass::kCheckout);
  EXPECT_EQ(ClassifyRoute("POST", "/api/v1/checkouts"), RouteClass::kWrite);
  EXPECT_EQ(ClassifyRoute("DELETE", "/api/v1/accounts/me/addresses/x"), RouteClass::kWrite);
}

TEST(ClientAddressTest, StripsPort) {
  EXPECT_EQ(ClientAddress("1.2.3.4:80"), "1.2.3.4");
  EXPECT_EQ(ClientAddress("[::1]:80"), "::1");
  EXPECT_EQ(ClientAddress("::1"), "::1");
  EXPECT_EQ(ClientAddress(""), "");
}

}  // namespace
}  // namespace emporium::gateway
