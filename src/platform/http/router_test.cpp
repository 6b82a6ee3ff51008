#include "platform/http/router.h"

#include <optional>
#include <stdexcept>

#include "gtest/gtest.h"

namespace emporium::http {
namespace {

Request MakeRequest(std::string method, std::string target, std::string body = "",
                    std::string content_type = "") {
  Request request;
  request.method = std::move(method);
  request.target = target;
  request.path = target.substr(0, target.find('?'));
  request.body = std::move(body);
  if (!content_type.empty()) request.headers.Add("Content-Type", content_type);
  return request;
}

// Dispatches synchronously-answering routes and returns the single answer.
Response Call(const Router& router, Request& request) {
  std::optional<Response> answer;
  int calls = 0;
  router.Dispatch(request, [&](Response response) {
    ++calls;
    answer = std::move(response);
  });
  EXPECT_EQ(calls, 1);
  return answer.value_or(Response{});
}

std::string ErrorCodeOf(const Response& response) {
  return Json::parse(response.body)["error"]["code"];
}

Router MakeRouter() {
  Router router;
  router.AddSync("GET", "/api/v1/orders/{id}", [](const Request& request) {
    return Response::Text(200, "order " + request.PathParam("id"));
  });
  router.AddSync("GET", "/api/v1/orders/search",
                 [](const Request&) { return Response::Text(200, "search"); });
  router.AddSync("POST", "/api/v1/orders",
                 [](const Request& request) { return Response::Text(201, request.body); });
  router.AddSync("GET", "/api/v1/orders/{id}/lines/{line}", [](const Request& request) {
    return Response::Text(200, request.PathParam("id") + ":" + request.PathParam("line"));
  });
  router.AddSync("GET", "/static/{path...}", [](const Request& request) {
    return Response::Text(200, "file " + request.PathParam("path"));
  });
  router.AddSync(
      "POST", "/upload", [](const Request&) { return Response::NoContent(); },
      RouteOptions{.accepted_content_types = {"text/csv"}});
  router.AddSync("GET", "/boom",
                 [](const Request&) -> Response { throw std::runtime_error("kaput"); });
  return router;
}

TEST(RouterTest, MatchesParamsAndPrefersLiterals) {
  Router router = MakeRouter();
  Request by_id = MakeRequest("GET", "/api/v1/orders/o%2F1?x=1");
  EXPECT_EQ(Call(router, by_id).body, "order o/1");
  EXPECT_EQ(by_id.route, "/api/v1/orders/{id}");
  Request search = MakeRequest("GET", "/api/v1/orders/search");
  EXPECT_EQ(Call(router, search).body, "search");
  EXPECT_EQ(search.route, "/api/v1/orders/search");
  Request line = MakeRequest("GET", "/api/v1/orders/o1/lines/3");
  EXPECT_EQ(Call(router, line).body, "o1:3");
  Request file = MakeRequest("GET", "/static/css/site%20main.css");
  EXPECT_EQ(Call(router, file).body, "file css/site main.css");
  Request root = MakeRequest("GET", "/static/");
  EXPECT_EQ(Call(router, root).body, "file ");
}

TEST(RouterTest, UnknownPathIs404AndWrongMethodIs405) {
  Router router = MakeRouter();
  Request missing = MakeRequest("GET", "/api/v1/nothing");
  Response not_found = Call(router, missing);
  EXPECT_EQ(not_found.status, 404);
  EXPECT_EQ(ErrorCodeOf(not_found), "route_not_found");
  EXPECT_TRUE(missing.route.empty());

  Request empty_param = MakeRequest("GET", "/api/v1/orders//lines/1");
  EXPECT_EQ(Call(router, empty_param).status, 404);
  Request bad_escape = MakeRequest("GET", "/api/v1/orders/%zz");
  EXPECT_EQ(Call(router, bad_escape).status, 404);

  Request wrong = MakeRequest("DELETE", "/api/v1/orders/o1");
  Response not_allowed = Call(router, wrong);
  EXPECT_EQ(not_allowed.status, 405);
  EXPECT_EQ(not_allowed.headers.Get("Allow"), "GET, HEAD");
  EXPECT_EQ(ErrorCodeOf(not_allowed), "method_not_allowed");
}

TEST(RouterTest, HeadUsesGetHandler) {
  Router router = MakeRouter();
  Request head = MakeRequest("HEAD", "/api/v1/orders/o1");
  Response response = Call(router, head);
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(head.route, "/api/v1/orders/{id}");
}

TEST(RouterTest, ContentTypeChecks) {
  Router router = MakeRouter();
  Request json = MakeRequest("POST", "/api/v1/orders", "{}", "Application/JSON; charset=utf-8");
  EXPECT_EQ(Call(router, json).status, 201);
  Request form = MakeRequest("POST", "/api/v1/orders", "a=1", "application/x-www-form-urlencoded");
  Response unsupported = Call(router, form);
  EXPECT_EQ(unsupported.status, 415);
  EXPECT_EQ(ErrorCodeOf(unsupported), "unsupported_media_type");
  Request none = MakeRequest("POST", "/api/v1/orders", "{}");
  EXPECT_EQ(Call(router, none).status, 415);
  Request empty = MakeRequest("POST", "/api/v1/orders");
  EXPECT_EQ(Call(router, empty).status, 201);
  Request csv = MakeRequest("POST", "/upload", "a,b", "text/csv");
  EXPECT_EQ(Call(router, csv).status, 204);
}

TEST(RouterTest, ThrowingHandlerBecomes500) {
  Router router = MakeRouter();
  Request boom = MakeRequest("GET", "/boom");
  Response response = Call(router, boom);
  EXPECT_EQ(response.status, 500);
  EXPECT_EQ(response.body.find("kaput"), std::string::npos);
}

TEST(RouterTest, AnswerThenThrowAnswersOnce) {
  Router router;
  router.Add("GET", "/twice", [](Request&, Responder respond) {
    respond(Response::Text(200, "first"));
    throw std::runtime_error("after answering");
  });
  Request request = MakeRequest("GET", "/twice");
  EXPECT_EQ(Call(router, request).body, "first");
}

TEST(RouterTest, AsyncResponderFromLater) {
  Router router;
  Responder saved;
  router.Add("GET", "/later", [&](Request&, Responder respond) { saved = std::move(respond); });
  Request request = MakeRequest("GET", "/later");
  std::optional<Response> answer;
  router.Dispatch(request, [&](Response response) { answer = std::move(response); });
  EXPECT_FALSE(answer.has_value());
  saved(Response::Text(202, "done"));
  saved(Response::Text(500, "ignored"));
  ASSERT_TRUE(answer.has_value());
  EXPECT_EQ(answer->status, 202);
}

TEST(RouterTest, ListsRoutes) {
  Router router = MakeRouter();
  auto routes = router.routes();
  ASSERT_EQ(routes.size(), 7u);
  EXPECT_EQ(routes[0], (std::pair<std::string, std::string>("GET", "/api/v1/orders/{id}")));
}

TEST(RouterDeathTest, MalformedPatternsAbort) {
  Router router;
  auto ok = [](const Request&) { return Response::NoContent(); };
  EXPECT_DEATH(router.AddSync("GET", "no-slash", ok), "must start");
  EXPECT_DEATH(router.AddSync("GET", "/a/{rest...}/b", ok), "wildcard");
  EXPECT_DEATH(router.AddSync("get", "/a", ok), "upper-case");
  router.AddSync("GET", "/a", ok);
  EXPECT_DEATH(router.AddSync("GET", "/a", ok), "twice");
}

}  // namespace
}  // namespace emporium::http
