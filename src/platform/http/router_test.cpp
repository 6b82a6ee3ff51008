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

TEST(RouterTest, SharedBodyIsCopiedForInProcessCallersOnly) {
  auto owner = std::make_shared<const std::string>("cached bytes");
  Router router;
  router.AddSync("GET", "/cached", [owner](const Request&) {
    Response response;
    response.shared_body = owner;
    return response;
  });
  Request in_process = MakeRequest("GET", "/cached");
  Response copied = Call(router, in_process);
  EXPECT_EQ(copied.body, "cached bytes");
  EXPECT_EQ(copied.shared_body, nullptr);

  Request from_server = MakeRequest("GET", "/cached");
  from_server.shared_body_accepted = true;
  Response shared = Call(router, from_server);
  EXPECT_TRUE(shared.body.empty());
  EXPECT_EQ(shared.shared_body, owner);  // the same bytes, not a copy
  EXPECT_EQ(shared.BodyView(), "cached bytes");
}

TEST(RouterTest, SegmentCountIndexKeepsPrecedence) {
  Router router;
  auto answer = [](std::string text) {
    return [text](const Request&) { return Response::Text(200, text); };
  };
  // Registered wildcard first, so a scan in registration order would meet it first.
  router.AddSync("GET", "/a/{rest...}", answer("wildcard"));
  router.AddSync("GET", "/a/{x}", answer("param"));
  router.AddSync("GET", "/a/b", answer("literal"));
  router.AddSync("GET", "/a/{x}/c", answer("deep"));
  router.AddSync("GET", "/{first}/{second}", answer("two params"));
  auto body = [&](std::string target) {
    Request request = MakeRequest("GET", std::move(target));
    return Call(router, request).body;
  };
  EXPECT_EQ(body("/a/b"), "literal");
  EXPECT_EQ(body("/a/z"), "param");
  EXPECT_EQ(body("/a/z/c"), "deep");
  EXPECT_EQ(body("/a/z/d"), "wildcard");
  EXPECT_EQ(body("/a"), "wildcard");  // the wildcard may capture nothing
  EXPECT_EQ(body("/q/r"), "two params");
  Request none = MakeRequest("GET", "/q/r/s");
  EXPECT_EQ(Call(router, none).status, 404);
}

TEST(RouterTest, ManySegmentsAndEscapesInAWildcard) {
  Router router = MakeRouter();
  std::string deep = "/static";
  for (int i = 0; i < 40; ++i) deep += "/d" + std::to_string(i);  // past the inline parts
  Request request = MakeRequest("GET", deep + "/x%20y");
  Response response = Call(router, request);
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.body, "file " + deep.substr(8) + "/x y");
  Request empty_rest = MakeRequest("GET", "/static/");
  EXPECT_EQ(Call(router, empty_rest).body, "file ");
  Request bad_escape = MakeRequest("GET", "/static/a/%zz");
  EXPECT_EQ(Call(router, bad_escape).status, 404);
  std::string many_params = "/api/v1/orders";
  for (int i = 0; i < 30; ++i) many_params += "/x";
  Request too_deep = MakeRequest("GET", many_params);
  EXPECT_EQ(Call(router, too_deep).status, 404);
}

TEST(RouterTest, PassThroughSeesEveryRequestUnmatched) {
  Router router;
  int calls = 0;
  router.SetPassThrough([&calls](Request& request, Responder respond) {
    ++calls;
    if (request.path == "/boom") throw std::runtime_error("kaput");
    if (request.path == "/twice") {
      respond(Response::Text(200, "first"));
      respond(Response::Text(200, "second"));
      return;
    }
    respond(Response::Text(200, request.method + " " + request.path + " route=" + request.route));
  });
  Request any = MakeRequest("TRACE", "/no/such/route");
  Response response = Call(router, any);
  EXPECT_EQ(response.body, "TRACE /no/such/route route=");
  Request boom = MakeRequest("GET", "/boom");
  EXPECT_EQ(Call(router, boom).status, 500);
  Request twice = MakeRequest("GET", "/twice");
  EXPECT_EQ(Call(router, twice).body, "first");  // Call checks a single answer
  EXPECT_EQ(calls, 3);
  EXPECT_TRUE(router.routes().empty());
}

TEST(RouterDeathTest, PassThroughExcludesRoutes) {
  auto ok = [](const Request&) { return Response::NoContent(); };
  auto pass = [](Request&, Responder respond) { respond(Response::NoContent()); };
  Router with_route;
  with_route.AddSync("GET", "/a", ok);
  EXPECT_DEATH(with_route.SetPassThrough(pass), "pass-through");
  Router passing;
  passing.SetPassThrough(pass);
  EXPECT_DEATH(passing.AddSync("GET", "/a", ok), "passes everything");
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
