#include "platform/http/router.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <optional>
#include <set>
#include <span>

#include "fmt/format.h"

namespace emporium::http {
namespace {

enum class SegmentKind { kLiteral, kParam, kWildcard };

struct Segment {
  SegmentKind kind;
  std::string text;  // literal text or parameter name
};

struct Route {
  std::string method;
  Handler handler;
  RouteOptions options;
};

struct PathEntry {
  std::string pattern;
  std::vector<Segment> segments;
  std::vector<Route> routes;  // one per method
};

[[noreturn]] void FailRoute(std::string_view pattern, std::string_view why) {
  std::fprintf(stderr, "Router: invalid route %.*s: %.*s\n", static_cast<int>(pattern.size()),
               pattern.data(), static_cast<int>(why.size()), why.data());
  std::abort();
}

// Splits "/a/b" into {"a","b"} and "/" into {""}; `path` must start with '/'.
std::vector<std::string_view> SplitPath(std::string_view path) {
  std::vector<std::string_view> parts;
  std::string_view rest = path.substr(1);
  while (true) {
    size_t slash = rest.find('/');
    parts.push_back(rest.substr(0, slash));
    if (slash == std::string_view::npos) break;
    rest = rest.substr(slash + 1);
  }
  return parts;
}

std::vector<Segment> ParsePattern(std::string_view pattern) {
  if (pattern.empty() || pattern[0] != '/') FailRoute(pattern, "must start with '/'");
  std::vector<Segment> segments;
  std::set<std::string, std::less<>> names;
  std::vector<std::string_view> parts = SplitPath(pattern);
  for (size_t i = 0; i < parts.size(); ++i) {
    std::string_view part = parts[i];
    if (part.size() >= 2 && part.front() == '{' && part.back() == '}') {
      std::string_view name = part.substr(1, part.size() - 2);
      SegmentKind kind = SegmentKind::kParam;
      if (name.size() > 3 && name.substr(name.size() - 3) == "...") {
        if (i + 1 != parts.size()) FailRoute(pattern, "a wildcard must be the last segment");
        name = name.substr(0, name.size() - 3);
        kind = SegmentKind::kWildcard;
      }
      if (name.empty() || name.find_first_of("{}./") != std::string_view::npos) {
        FailRoute(pattern, "bad parameter name");
      }
      if (!names.emplace(name).second) FailRoute(pattern, "repeated parameter name");
      segments.push_back({kind, std::string(name)});
    } else {
      if (part.find_first_of("{}") != std::string_view::npos) {
        FailRoute(pattern, "braces must enclose a whole segment");
      }
      segments.push_back({SegmentKind::kLiteral, std::string(part)});
    }
  }
  return segments;
}

// The parts of a request path: on the stack for the usual few segments, on the heap beyond.
class PathParts {
 public:
  static constexpr size_t kInlineCountMax = 16;

  // `path` must start with '/' and outlive this object.
  explicit PathParts(std::string_view path) {
    const size_t count = static_cast<size_t>(std::count(path.begin(), path.end(), '/'));
    std::string_view* out = inline_.data();
    if (count > kInlineCountMax) {
      heap_.resize(count);
      out = heap_.data();
    }
    std::string_view rest = path.substr(1);
    for (size_t i = 0; i < count; ++i) {
      const size_t slash = rest.find('/');
      out[i] = rest.substr(0, slash);
      rest = slash == std::string_view::npos ? std::string_view() : rest.substr(slash + 1);
    }
    parts_ = std::span<const std::string_view>(out, count);
  }
  PathParts(const PathParts&) = delete;
  PathParts& operator=(const PathParts&) = delete;

  std::span<const std::string_view> parts() const { return parts_; }

 private:
  std::array<std::string_view, kInlineCountMax> inline_;
  std::vector<std::string_view> heap_;
  std::span<const std::string_view> parts_;
};

// A literal segment compares without decoding unless the part holds an escape.
bool LiteralMatches(std::string_view part, const std::string& text) {
  if (part.find('%') == std::string_view::npos) return part == text;
  std::optional<std::string> decoded = PercentDecode(part, PlusSign::kLiteral);
  return decoded.has_value() && *decoded == text;
}

// Matches raw path parts against a pattern; fills decoded params. False on mismatch or on a
// parameter that does not decode. Literals and the segment count are checked first, without
// allocating, so the many routes that do not match cost little.
bool MatchSegments(const std::vector<Segment>& segments, std::span<const std::string_view> parts,
                   std::map<std::string, std::string>& params) {
  params.clear();
  const bool has_wildcard = !segments.empty() && segments.back().kind == SegmentKind::kWildcard;
  if (has_wildcard ? parts.size() + 1 < segments.size() : parts.size() != segments.size()) {
    return false;
  }
  // Last to first: routes share their leading literals ("api", "v1"), so they differ late.
  for (size_t i = segments.size(); i-- > 0;) {
    if (segments[i].kind == SegmentKind::kLiteral && !LiteralMatches(parts[i], segments[i].text)) {
      return false;
    }
  }
  for (size_t i = 0; i < segments.size(); ++i) {
    const Segment& segment = segments[i];
    switch (segment.kind) {
      case SegmentKind::kLiteral:
        break;  // checked above
      case SegmentKind::kParam: {
        std::optional<std::string> decoded = PercentDecode(parts[i], PlusSign::kLiteral);
        if (!decoded.has_value() || decoded->empty()) return false;
        params[segment.text] = std::move(*decoded);
        break;
      }
      case SegmentKind::kWildcard: {
        // The parts are consecutive views of one raw path, so the rest of the path ('/'
        // included) is the span from this part to the end of the last one.
        std::string_view rest;
        if (i < parts.size()) {
          const char* begin = parts[i].data();
          const char* end = parts.back().data() + parts.back().size();
          rest = std::string_view(begin, static_cast<size_t>(end - begin));
        }
        std::optional<std::string> decoded = PercentDecode(rest, PlusSign::kLiteral);
        if (!decoded.has_value()) return false;
        params[segment.text] = std::move(*decoded);
        return true;
      }
    }
  }
  return true;
}

// Lower is more specific: compares segment kinds position by position.
bool MoreSpecific(const PathEntry& a, const PathEntry& b) {
  size_t n = std::min(a.segments.size(), b.segments.size());
  for (size_t i = 0; i < n; ++i) {
    if (a.segments[i].kind != b.segments[i].kind) {
      return static_cast<int>(a.segments[i].kind) < static_cast<int>(b.segments[i].kind);
    }
  }
  return a.segments.size() > b.segments.size();
}

std::string_view MediaType(std::string_view content_type) {
  std::string_view type = content_type.substr(0, content_type.find(';'));
  while (!type.empty() && (type.back() == ' ' || type.back() == '\t')) type.remove_suffix(1);
  while (!type.empty() && (type.front() == ' ' || type.front() == '\t')) type.remove_prefix(1);
  return type;
}

bool BodyTypeAccepted(const Request& request, const RouteOptions& options) {
  if (request.body.empty() || options.accepted_content_types.empty()) return true;
  if (request.method != "POST" && request.method != "PUT" && request.method != "PATCH") {
    return true;
  }
  std::optional<std::string_view> content_type = request.Header("Content-Type");
  if (!content_type.has_value()) return false;
  std::string_view type = MediaType(*content_type);
  for (const std::string& accepted : options.accepted_content_types) {
    if (EqualsIgnoreCase(type, accepted)) return true;
  }
  return false;
}

}  // namespace

// The one answer a Dispatch gives, shared by the Responder handed to the handler and the
// router's own error paths (a handler may answer and then throw).
struct Router::AnswerOnce {
  std::atomic<bool> answered{false};
  bool materialize_body = false;  // the caller reads Response::body only
  Responder respond;

  void Answer(Response response) {
    if (answered.exchange(true)) return;
    if (materialize_body) response.MaterializeBody();
    respond(std::move(response));
  }
};

struct Router::Table {
  std::vector<PathEntry> paths;
  // Indexes into `paths`, in registration order: the entries without a wildcard by their
  // segment count, and the entries ending in a wildcard. A path of N segments can only match
  // the first group's [N] and the wildcards, so Dispatch looks at nothing else.
  std::vector<std::vector<size_t>> by_segment_count;
  std::vector<size_t> wildcards;
  std::vector<std::pair<std::string, std::string>> registered;
  Handler pass_through;  // set: every request goes here unmatched
};

Router::Router() : table_(std::make_unique<Table>()) {}
Router::~Router() = default;
Router::Router(Router&&) noexcept = default;
Router& Router::operator=(Router&&) noexcept = default;

void Router::Add(std::string_view method, std::string_view pattern, Handler handler,
                 RouteOptions options) {
  if (method.empty()) FailRoute(pattern, "empty method");
  for (char c : method) {
    if (c < 'A' || c > 'Z') FailRoute(pattern, "method must be upper-case letters");
  }
  if (!handler) FailRoute(pattern, "null handler");
  if (table_->pass_through) FailRoute(pattern, "the router passes everything through");
  std::vector<Segment> segments = ParsePattern(pattern);
  PathEntry* entry = nullptr;
  for (PathEntry& candidate : table_->paths) {
    if (candidate.pattern == pattern) entry = &candidate;
  }
  if (entry == nullptr) {
    const size_t index = table_->paths.size();
    const bool wildcard = segments.back().kind == SegmentKind::kWildcard;
    const size_t count = segments.size();
    table_->paths.push_back({std::string(pattern), std::move(segments), {}});
    entry = &table_->paths.back();
    if (wildcard) {
      table_->wildcards.push_back(index);
    } else {
      if (table_->by_segment_count.size() <= count) table_->by_segment_count.resize(count + 1);
      table_->by_segment_count[count].push_back(index);
    }
  }
  for (const Route& route : entry->routes) {
    if (route.method == method) FailRoute(pattern, "registered twice for this method");
  }
  entry->routes.push_back({std::string(method), std::move(handler), std::move(options)});
  table_->registered.emplace_back(std::string(method), std::string(pattern));
}

void Router::AddSync(std::string_view method, std::string_view pattern, SyncHandler handler,
                     RouteOptions options) {
  if (!handler) FailRoute(pattern, "null handler");
  Add(
      method, pattern,
      [handler = std::move(handler)](Request& request, Responder respond) {
        respond(handler(request));
      },
      std::move(options));
}

std::vector<std::pair<std::string, std::string>> Router::routes() const {
  return table_->registered;
}

void Router::SetPassThrough(Handler handler) {
  if (!handler) FailRoute("*", "null pass-through handler");
  if (!table_->paths.empty() || table_->pass_through) FailRoute("*", "pass-through with routes");
  table_->pass_through = std::move(handler);
}

void Router::Dispatch(Request& request, Responder respond) const {
  // Guarantees at most one answer reaches the caller even if a handler answers and then throws.
  auto once = std::make_shared<AnswerOnce>();
  once->materialize_body = !request.shared_body_accepted;
  once->respond = std::move(respond);
  if (table_->pass_through) return Invoke(table_->pass_through, request, std::move(once));

  std::string_view raw_path =
      request.target.empty() ? std::string_view(request.path)
                             : std::string_view(request.target).substr(0, request.target.find('?'));
  if (raw_path.empty() || raw_path[0] != '/') {
    once->Answer(
        ErrorResponse(404, "not_found_error", "route_not_found", "No route matches this path."));
    return;
  }
  const PathParts path_parts(raw_path);
  const std::span<const std::string_view> parts = path_parts.parts();

  const PathEntry* best_entry = nullptr;
  const Route* best_route = nullptr;
  std::map<std::string, std::string> best_params;
  std::map<std::string, std::string> params;
  bool matched_any_path = false;
  const bool is_head = request.method == "HEAD";
  auto consider = [&](const PathEntry& entry) {
    if (!MatchSegments(entry.segments, parts, params)) return;
    matched_any_path = true;
    const Route* exact = nullptr;
    const Route* get = nullptr;
    for (const Route& route : entry.routes) {
      if (route.method == request.method) exact = &route;
      if (route.method == "GET") get = &route;
    }
    const Route* chosen = exact != nullptr ? exact : (is_head ? get : nullptr);
    if (chosen == nullptr) return;
    if (best_entry == nullptr || MoreSpecific(entry, *best_entry)) {
      best_entry = &entry;
      best_route = chosen;
      best_params.swap(params);
    }
  };
  // Ties (same kinds at every position) only occur between entries of one group, which keeps
  // registration order, so visiting the groups one after the other picks what a scan of every
  // entry would.
  if (parts.size() < table_->by_segment_count.size()) {
    for (size_t index : table_->by_segment_count[parts.size()]) consider(table_->paths[index]);
  }
  for (size_t index : table_->wildcards) consider(table_->paths[index]);

  if (best_route == nullptr) {
    if (!matched_any_path) {
      once->Answer(
          ErrorResponse(404, "not_found_error", "route_not_found", "No route matches this path."));
      return;
    }
    // The rare path: collect the methods of every matching path for the Allow header.
    std::set<std::string> allowed;
    for (const PathEntry& entry : table_->paths) {
      if (!MatchSegments(entry.segments, parts, params)) continue;
      for (const Route& route : entry.routes) {
        allowed.insert(route.method);
        if (route.method == "GET") allowed.insert("HEAD");
      }
    }
    std::string allow;
    for (const std::string& method : allowed) {
      if (!allow.empty()) allow += ", ";
      allow += method;
    }
    Response response = ErrorResponse(
        405, "invalid_request_error", "method_not_allowed",
        fmt::format("Method {} is not allowed here; allowed: {}.", request.method, allow));
    response.headers.Set("Allow", allow);
    once->Answer(std::move(response));
    return;
  }

  request.route = best_entry->pattern;
  request.path_params = std::move(best_params);
  if (!BodyTypeAccepted(request, best_route->options)) {
    once->Answer(ErrorResponse(415, "invalid_request_error", "unsupported_media_type",
                               "The request body must be sent as application/json."));
    return;
  }
  Invoke(best_route->handler, request, std::move(once));
}

void Router::Invoke(const Handler& handler, Request& request, std::shared_ptr<AnswerOnce> once) {
  try {
    handler(request, [once](Response response) { once->Answer(std::move(response)); });
  } catch (const std::exception& error) {
    std::fprintf(stderr, "Router: handler for %s %s threw: %s\n", request.method.c_str(),
                 request.route.c_str(), error.what());
    once->Answer(ErrorResponse(500, "api_error", "internal", "An internal error occurred."));
  } catch (...) {
    std::fprintf(stderr, "Router: handler for %s %s threw a non-exception\n",
                 request.method.c_str(), request.route.c_str());
    once->Answer(ErrorResponse(500, "api_error", "internal", "An internal error occurred."));
  }
}

}  // namespace emporium::http
