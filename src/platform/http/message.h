// HTTP request and response values shared by the router, the server, the gateway and every
// context's API layer, plus the one function that renders an absl::Status as the platform's
// error shape {"error":{"type","code","message","param"}}.
//
// These are plain values with no I/O and no Boost dependency. A Request is owned by the server
// (or the caller of Router::Dispatch) and handed to one handler at a time; it is not
// synchronized. The free functions are thread-safe.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/json.h"

namespace emporium::http {

// Header fields in arrival order. Names compare case-insensitively; a name may repeat.
class Headers {
 public:
  using Entry = std::pair<std::string, std::string>;
  // Room made by the first Add: enough for a typical response (handler and gateway fields).
  static constexpr size_t kInitialFieldCapacity = 8;

  // Appends a field, keeping any earlier one with the same name.
  void Add(std::string name, std::string value);
  // Replaces every field named `name` with a single one.
  void Set(std::string name, std::string value);
  // Removes every field named `name`.
  void Remove(std::string_view name);

  // The first value of `name`, if present.
  std::optional<std::string_view> Get(std::string_view name) const;
  // Every value of `name`, in arrival order.
  std::vector<std::string_view> GetAll(std::string_view name) const;
  bool Has(std::string_view name) const { return Get(name).has_value(); }
  // Makes room for `count` fields without reallocating (a hint; fields are still added one by
  // one).
  void Reserve(size_t count) { entries_.reserve(count); }

  const std::vector<Entry>& entries() const { return entries_; }
  bool empty() const { return entries_.empty(); }

 private:
  std::vector<Entry> entries_;
};

// True when `a` and `b` are equal ignoring ASCII case.
bool EqualsIgnoreCase(std::string_view a, std::string_view b);

struct Request {
  std::string method;  // upper-case token: "GET", "POST", ...
  std::string target;  // as received: "/api/v1/orders/o%201?limit=5"
  std::string path;    // percent-decoded path: "/api/v1/orders/o 1"
  std::string query;   // raw query string without '?': "limit=5"
  Headers headers;
  std::string body;

  // Filled by the router: decoded `{param}` values and the matched pattern
  // ("/api/v1/orders/{id}"); route stays empty when nothing matched.
  std::map<std::string, std::string> path_params;
  std::string route;

  // Filled by the server's middleware.
  std::string request_id;      // echoed as X-Request-Id
  std::string traceparent;     // W3C traceparent of this request (incoming or new)
  std::string remote_address;  // "ip:port" of the peer
  absl::Time deadline = absl::InfiniteFuture();  // the server answers 504 after this

  // Free-form facts other layers attach (auth: "customer_id", "role", ...).
  std::map<std::string, std::string> attributes;

  // Set by a transport that sends Response::shared_body itself (the HTTP server). When false
  // (an in-process caller of Router::Dispatch), the router copies a shared body into
  // Response::body before answering, so such callers only ever read `body`.
  bool shared_body_accepted = false;

  // The first value of header `name` (case-insensitive).
  std::optional<std::string_view> Header(std::string_view name) const { return headers.Get(name); }
  // The decoded value of the first `name=` query parameter ('+' means space). A parameter
  // present without '=' yields "". Undecodable escapes yield nullopt.
  std::optional<std::string> QueryParam(std::string_view name) const;
  // The path parameter `name`, or "" when the route has none by that name.
  std::string PathParam(std::string_view name) const;
  // The attribute `name`, if set.
  std::optional<std::string> Attribute(std::string_view name) const;
};

// The writing end of a streamed response body (Server-Sent Events). Thread-safe: any thread
// may Write or Close, at any time, also after the client left.
class BodyStream {
 public:
  virtual ~BodyStream() = default;
  // Queues `bytes` to be sent as one chunk. False, queuing nothing, once the stream is closed
  // (Close(), the client left, a write failed or timed out, the server is stopping) or when
  // more than the server's bound is already waiting to be sent (the stream is then closed).
  virtual bool Write(std::string bytes) = 0;
  // Ends the response after what is queued. Idempotent.
  virtual void Close() = 0;
  virtual bool closed() const = 0;
};

// Called once, on the server's io thread, after the status and headers of a streamed response
// went out. Keep it short: hand the stream to whoever produces the body.
using StreamStart = std::function<void(std::shared_ptr<BodyStream>)>;

struct Response {
  int status = 200;
  Headers headers;
  std::string body;
  // An immutable body shared with its owner (e.g. a read-cache entry) and sent without being
  // copied. When set it is the body and `body` stays empty; read both through BodyView().
  // shared_ptr because the owner (a cache) and every response in flight hold it at once and the
  // last one to finish frees it. Router::Dispatch copies it into `body` for callers that did not
  // set Request::shared_body_accepted.
  std::shared_ptr<const std::string> shared_body;
  // A streamed response: when set and the status is 2xx, the server sends the headers with
  // chunked transfer encoding (no Content-Length), then `body` as the first chunk if it is not
  // empty, calls `stream`, and sends every chunk written until the stream is closed; then it
  // closes the connection. A HEAD request gets the headers only. Unset: an ordinary response.
  StreamStart stream;

  // The body bytes: `*shared_body` when set, else `body`.
  std::string_view BodyView() const {
    return shared_body != nullptr ? std::string_view(*shared_body) : std::string_view(body);
  }
  // Moves a shared body into `body` (a copy of the bytes); no-op when there is none.
  void MaterializeBody();

  // `status` with a compact JSON body and Content-Type application/json.
  static Response Json(int status, const ::emporium::Json& body);
  // `status` with a text body (Content-Type text/plain; charset=utf-8 unless given).
  static Response Text(int status, std::string body,
                       std::string content_type = "text/plain; charset=utf-8");
  // 204 with no body.
  static Response NoContent();
  // `status` with Content-Type `content_type`, `first` as the first chunk, then the stream.
  static Response Stream(int status, std::string content_type, std::string first,
                         StreamStart start);
};

// Attaches an explicit HTTP status to `status` (e.g. 412 or 422 for a FailedPrecondition) that
// ErrorResponse uses instead of the canonical mapping. Only 400..599 is honoured.
absl::Status WithHttpStatus(absl::Status status, int http_status);
std::optional<int> HttpStatusOverride(const absl::Status& status);

// The HTTP status ErrorResponse(status) would use.
int HttpStatusFor(const absl::Status& status);
// The error "type" for an HTTP status: invalid_request_error, authentication_error,
// permission_error, not_found_error, conflict_error, rate_limit_error or api_error.
std::string_view ErrorTypeFor(int http_status);

// Renders a non-OK status in the one error shape. Mapping:
//   InvalidArgument/OutOfRange -> 400, Unauthenticated -> 401, PermissionDenied -> 403,
//   NotFound -> 404, AlreadyExists/Aborted/FailedPrecondition -> 409, ResourceExhausted -> 429,
//   Unavailable -> 503, DeadlineExceeded -> 504, anything else -> 500;
//   a WithHttpStatus payload overrides the mapping.
// `code` comes from the ErrorCode payload (else a default per status), `param` from the
// ErrorParam payload (else JSON null). 4xx messages are the status message; 5xx messages are
// generic, so internals never leak. An OK status renders as 500 (a caller bug, never a 200).
Response ErrorResponse(const absl::Status& status);
// The error shape from explicit parts; an empty `param` renders as null.
Response ErrorResponse(int http_status, std::string_view type, std::string_view code,
                       std::string_view message, std::string_view param = "");

// How PercentDecode treats '+': literally (paths) or as a space (query strings).
enum class PlusSign { kLiteral, kSpace };
// Percent-decodes `text`. Nullopt on a malformed escape ("%4", "%zz").
std::optional<std::string> PercentDecode(std::string_view text, PlusSign plus);
// Escapes everything outside RFC 3986 unreserved characters.
std::string PercentEncode(std::string_view text);

// The standard reason phrase ("Not Found"), or "Unknown".
std::string_view ReasonPhrase(int http_status);

}  // namespace emporium::http
