// Request routing: methods plus path patterns with `{param}` segments and an optional trailing
// `{rest...}` wildcard, dispatched to asynchronous handlers.
//
// Build the router once at startup (Add/AddSync are not thread-safe and abort on a malformed
// or duplicate route: that is a programmer error), then share it read-only: Resolve, Dispatch
// and routes() are const and safe to call from any number of threads.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "platform/http/message.h"

namespace emporium::http {

// Delivers a handler's answer. Call it exactly once, from any thread (a group-commit write may
// complete on a writer thread); later calls are ignored. The Request passed to the handler
// stays valid for as long as any copy of its Responder is alive.
using Responder = std::function<void(Response)>;
using Handler = std::function<void(Request&, Responder)>;
using SyncHandler = std::function<Response(const Request&)>;

struct RouteOptions {
  // Media types (compared without parameters, case-insensitively) a POST/PUT/PATCH with a
  // non-empty body may carry; anything else is answered 415. Empty accepts every type.
  std::vector<std::string> accepted_content_types = {"application/json"};
};

class Router {
 public:
  Router();
  ~Router();
  Router(Router&&) noexcept;
  Router& operator=(Router&&) noexcept;

  // Registers `handler` for `method` (upper-case) and `pattern`, e.g. "/api/v1/orders/{id}" or
  // "/static/{path...}". A pattern starts with '/'; a parameter fills a whole segment; a
  // wildcard may only be the last segment and captures the rest of the path ('/' included,
  // possibly empty). Literal segments beat parameters, parameters beat wildcards.
  void Add(std::string_view method, std::string_view pattern, Handler handler,
           RouteOptions options = {});
  // The same for a handler that answers synchronously on the calling thread.
  void AddSync(std::string_view method, std::string_view pattern, SyncHandler handler,
               RouteOptions options = {});

  // Makes the router hand every request, whatever its method and path, to `handler` without
  // matching: request.route and path_params stay as they are and no 404/405/415 comes from
  // here; a throwing handler is answered 500 and the answer is still given at most once. For a
  // front door that routes by itself (the gateway). Aborts if routes are registered too.
  void SetPassThrough(Handler handler);

  // Routes and answers `request`:
  //  - fills request.path_params and request.route (the pattern) when a route matches;
  //  - unknown path -> 404, known path with another method -> 405 with an Allow header,
  //    a body whose Content-Type the route does not accept -> 415 (all in the error shape);
  //  - HEAD without its own route runs the GET handler (the response keeps the GET body so the
  //    transport can report Content-Length; the transport must not send it);
  //  - a handler that throws is answered 500 and the exception goes no further.
  // The route is matched on the raw path (request.target up to '?', or request.path when the
  // target is empty) and each parameter is percent-decoded, so "%2F" stays inside one segment.
  // `respond` is called exactly once, possibly later and on another thread.
  void Dispatch(Request& request, Responder respond) const;

  // Every registered (method, pattern) pair, in registration order (implicit HEAD not listed).
  std::vector<std::pair<std::string, std::string>> routes() const;

 private:
  struct Table;
  struct AnswerOnce;
  // Calls `handler` with a Responder that answers through `once`; answers 500 if it throws.
  static void Invoke(const Handler& handler, Request& request, std::shared_ptr<AnswerOnce> once);
  std::unique_ptr<Table> table_;
};

}  // namespace emporium::http
