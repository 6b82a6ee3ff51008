#include "platform/http/message.h"

#include "common/errors.h"
#include "fmt/format.h"
#include "gtest/gtest.h"

namespace emporium::http {
namespace {

Json BodyOf(const Response& response) { return Json::parse(response.body); }

TEST(HeadersTest, CaseInsensitiveAndMultiValued) {
  Headers headers;
  headers.Add("Set-Cookie", "a=1");
  headers.Add("set-cookie", "b=2");
  headers.Add("Content-Type", "application/json");
  EXPECT_EQ(headers.Get("SET-COOKIE"), "a=1");
  EXPECT_EQ(headers.GetAll("Set-Cookie").size(), 2u);
  headers.Set("SET-cookie", "c=3");
  ASSERT_EQ(headers.GetAll("set-cookie").size(), 1u);
  EXPECT_EQ(headers.GetAll("set-cookie")[0], "c=3");
  headers.Remove("content-type");
  EXPECT_FALSE(headers.Has("Content-Type"));
  EXPECT_FALSE(headers.Get("missing").has_value());
}

TEST(RequestTest, QueryParamDecodes) {
  Request request;
  request.query = "q=red+shoes&limit=5&flag&enc=%C3%A9%2F&bad=%zz";
  EXPECT_EQ(request.QueryParam("q"), "red shoes");
  EXPECT_EQ(request.QueryParam("limit"), "5");
  EXPECT_EQ(request.QueryParam("flag"), "");
  EXPECT_EQ(request.QueryParam("enc"), "\xC3\xA9/");
  EXPECT_FALSE(request.QueryParam("bad").has_value());
  EXPECT_FALSE(request.QueryParam("absent").has_value());
  request.headers.Add("X-Thing", "1");
  EXPECT_EQ(request.Header("x-thing"), "1");
  EXPECT_EQ(request.PathParam("id"), "");
}

TEST(PercentTest, DecodeRejectsMalformed) {
  EXPECT_EQ(PercentDecode("a%20b+c", PlusSign::kLiteral), "a b+c");
  EXPECT_EQ(PercentDecode("a+c", PlusSign::kSpace), "a c");
  EXPECT_FALSE(PercentDecode("%4", PlusSign::kLiteral).has_value());
  EXPECT_FALSE(PercentDecode("%", PlusSign::kLiteral).has_value());
  EXPECT_FALSE(PercentDecode("%g0", PlusSign::kLiteral).has_value());
  EXPECT_EQ(PercentEncode("a b/é"), "a%20b%2F%C3%A9");
}

TEST(PercentTest, DecodeCopiesPlainTextAndDecodesAfterAPlainPrefix) {
  EXPECT_EQ(PercentDecode("", PlusSign::kLiteral), "");
  EXPECT_EQ(PercentDecode("/api/v1/products/p_123", PlusSign::kLiteral), "/api/v1/products/p_123");
  EXPECT_EQ(PercentDecode("/a/b%2Fc", PlusSign::kLiteral), "/a/b/c");
  EXPECT_EQ(PercentDecode("long-plain-prefix+x", PlusSign::kSpace), "long-plain-prefix x");
  EXPECT_EQ(PercentDecode("long-plain-prefix+x", PlusSign::kLiteral), "long-plain-prefix+x");
  EXPECT_FALSE(PercentDecode("long-plain-prefix%", PlusSign::kLiteral).has_value());
  EXPECT_FALSE(PercentDecode("long-plain-prefix%2", PlusSign::kSpace).has_value());
}

TEST(HeadersTest, EqualsIgnoreCaseIsAsciiOnly) {
  EXPECT_TRUE(EqualsIgnoreCase("Content-Type", "cONTENT-tYPE"));
  EXPECT_FALSE(EqualsIgnoreCase("Content-Type", "Content-Typ"));
  EXPECT_FALSE(EqualsIgnoreCase("a[", "A{"));  // '[' and '{' differ by the case bit only
  EXPECT_FALSE(EqualsIgnoreCase("@", "`"));
  Headers headers;
  for (int i = 0; i < 20; ++i) headers.Add(fmt::format("X-{}", i), "v");  // past the reserve
  EXPECT_EQ(headers.entries().size(), 20u);
  EXPECT_EQ(headers.Get("x-19"), "v");
  headers.Set("X-3", "w");
  EXPECT_EQ(headers.GetAll("x-3"), std::vector<std::string_view>{"w"});
}

TEST(ResponseTest, SharedBodyIsReadThroughBodyViewAndMaterializes) {
  auto owner = std::make_shared<const std::string>(R"({"id":"p_1"})");
  Response response;
  response.shared_body = owner;
  EXPECT_EQ(response.BodyView(), R"({"id":"p_1"})");
  EXPECT_TRUE(response.body.empty());
  response.MaterializeBody();
  EXPECT_EQ(response.body, R"({"id":"p_1"})");
  EXPECT_EQ(response.shared_body, nullptr);
  EXPECT_EQ(response.BodyView(), R"({"id":"p_1"})");
  EXPECT_EQ(owner.use_count(), 1);  // the response no longer holds the owner
  Response plain = Response::Text(200, "hi");
  plain.MaterializeBody();  // nothing shared: unchanged
  EXPECT_EQ(plain.BodyView(), "hi");
}

TEST(ErrorResponseTest, MapsCanonicalCodes) {
  struct Case {
    absl::Status status;
    int http;
    std::string type;
  };
  std::vector<Case> cases = {
      {absl::InvalidArgumentError("x"), 400, "invalid_request_error"},
      {absl::OutOfRangeError("x"), 400, "invalid_request_error"},
      {absl::UnauthenticatedError("x"), 401, "authentication_error"},
      {absl::PermissionDeniedError("x"), 403, "permission_error"},
      {absl::NotFoundError("x"), 404, "not_found_error"},
      {absl::AlreadyExistsError("x"), 409, "conflict_error"},
      {absl::AbortedError("x"), 409, "conflict_error"},
      {absl::FailedPreconditionError("x"), 409, "conflict_error"},
      {absl::ResourceExhaustedError("x"), 429, "rate_limit_error"},
      {absl::UnavailableError("x"), 503, "api_error"},
      {absl::DeadlineExceededError("x"), 504, "api_error"},
      {absl::InternalError("x"), 500, "api_error"},
      {absl::UnknownError("x"), 500, "api_error"},
      {absl::OkStatus(), 500, "api_error"},
  };
  for (const Case& c : cases) {
    Response response = ErrorResponse(c.status);
    EXPECT_EQ(response.status, c.http) << c.status;
    EXPECT_EQ(response.headers.Get("Content-Type"), "application/json");
    Json body = BodyOf(response);
    EXPECT_EQ(body["error"]["type"], c.type) << c.status;
    EXPECT_TRUE(body["error"]["code"].is_string());
    EXPECT_TRUE(body["error"].contains("param"));
  }
}

TEST(ErrorResponseTest, UsesPayloadsAndHidesInternals) {
  Response response = ErrorResponse(InvalidParam("lines[0].quantity", "must be positive"));
  Json body = BodyOf(response);
  EXPECT_EQ(response.status, 400);
  EXPECT_EQ(body["error"]["code"], "invalid_param");
  EXPECT_EQ(body["error"]["param"], "lines[0].quantity");
  EXPECT_EQ(body["error"]["message"], "must be positive");

  Response internal = ErrorResponse(absl::InternalError("sqlite: /var/db/orders.db is locked"));
  EXPECT_EQ(internal.body.find("sqlite"), std::string::npos);
  EXPECT_TRUE(BodyOf(internal)["error"]["param"].is_null());

  absl::Status forced = WithHttpStatus(
      WithErrorCode(absl::FailedPreconditionError("key reused"), "idempotency_key_reused"), 422);
  Response unprocessable = ErrorResponse(forced);
  EXPECT_EQ(unprocessable.status, 422);
  EXPECT_EQ(BodyOf(unprocessable)["error"]["code"], "idempotency_key_reused");
  EXPECT_EQ(BodyOf(unprocessable)["error"]["type"], "invalid_request_error");
  EXPECT_EQ(ErrorResponse(WithHttpStatus(absl::AbortedError("x"), 200)).status, 409);
}

TEST(ResponseTest, Builders) {
  Response json = Response::Json(201, Json{{"id", "o_1"}});
  EXPECT_EQ(json.status, 201);
  EXPECT_EQ(json.body, R"({"id":"o_1"})");
  Response text = Response::Text(200, "hi");
  EXPECT_EQ(text.headers.Get("content-type"), "text/plain; charset=utf-8");
  EXPECT_EQ(Response::NoContent().status, 204);
  EXPECT_EQ(ReasonPhrase(404), "Not Found");
}

}  // namespace
}  // namespace emporium::http
