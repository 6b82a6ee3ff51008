#include "platform/http/message.h"

#include <algorithm>
#include <cctype>

#include "absl/strings/cord.h"
#include "common/errors.h"
#include "fmt/format.h"

namespace emporium::http {
namespace {

constexpr std::string_view kHttpStatusUrl = "type.emporium.dev/http-status";

absl::string_view ToAbsl(std::string_view text) { return {text.data(), text.size()}; }

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The default machine-readable code for a status that carries none.
std::string_view DefaultCode(int http_status) {
  switch (http_status) {
    case 400:
      return "invalid_request";
    case 401:
      return "unauthenticated";
    case 403:
      return "forbidden";
    case 404:
      return "not_found";
    case 405:
      return "method_not_allowed";
    case 408:
      return "request_timeout";
    case 409:
      return "conflict";
    case 412:
      return "precondition_failed";
    case 413:
      return "payload_too_large";
    case 415:
      return "unsupported_media_type";
    case 422:
      return "unprocessable";
    case 429:
      return "rate_limited";
    case 431:
      return "headers_too_large";
    case 503:
      return "unavailable";
    case 504:
      return "deadline_exceeded";
    default:
      return http_status >= 500 ? "internal" : "invalid_request";
  }
}

// A fixed message for 5xx answers: a status message may name hosts, files or SQL.
std::string_view GenericServerMessage(int http_status) {
  switch (http_status) {
    case 503:
      return "The service is temporarily unavailable; retry later.";
    case 504:
      return "The request did not complete in time.";
    default:
      return "An internal error occurred.";
  }
}

}  // namespace

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    // ASCII only (field names are tokens): no locale lookup per character.
    const auto lower = [](char c) {
      return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
    };
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

void Headers::Add(std::string name, std::string value) {
  // Most messages carry a handful of fields: one allocation up front instead of regrowing.
  if (entries_.capacity() == 0) entries_.reserve(kInitialFieldCapacity);
  entries_.emplace_back(std::move(name), std::move(value));
}

void Headers::Set(std::string name, std::string value) {
  Remove(name);
  Add(std::move(name), std::move(value));
}

void Headers::Remove(std::string_view name) {
  std::erase_if(entries_, [&](const Entry& entry) { return EqualsIgnoreCase(entry.first, name); });
}

std::optional<std::string_view> Headers::Get(std::string_view name) const {
  for (const Entry& entry : entries_) {
    if (EqualsIgnoreCase(entry.first, name)) return std::string_view(entry.second);
  }
  return std::nullopt;
}

std::vector<std::string_view> Headers::GetAll(std::string_view name) const {
  std::vector<std::string_view> values;
  for (const Entry& entry : entries_) {
    if (EqualsIgnoreCase(entry.first, name)) values.emplace_back(entry.second);
  }
  return values;
}

std::optional<std::string> Request::QueryParam(std::string_view name) const {
  std::string_view rest = query;
  while (!rest.empty()) {
    size_t amp = rest.find('&');
    std::string_view pair = rest.substr(0, amp);
    rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
    size_t eq = pair.find('=');
    std::optional<std::string> key = PercentDecode(pair.substr(0, eq), PlusSign::kSpace);
    if (!key.has_value() || *key != name) continue;
    if (eq == std::string_view::npos) return std::string();
    return PercentDecode(pair.substr(eq + 1), PlusSign::kSpace);
  }
  return std::nullopt;
}

std::string Request::PathParam(std::string_view name) const {
  auto it = path_params.find(std::string(name));
  return it == path_params.end() ? std::string() : it->second;
}

std::optional<std::string> Request::Attribute(std::string_view name) const {
  auto it = attributes.find(std::string(name));
  if (it == attributes.end()) return std::nullopt;
  return it->second;
}

void Response::MaterializeBody() {
  if (shared_body == nullptr) return;
  body = *shared_body;
  shared_body.reset();
}

Response Response::Json(int status, const ::emporium::Json& body) {
  Response response;
  response.status = status;
  response.headers.Set("Content-Type", "application/json");
  response.body = DumpJson(body);
  return response;
}

Response Response::Text(int status, std::string body, std::string content_type) {
  Response response;
  response.status = status;
  response.headers.Set("Content-Type", std::move(content_type));
  response.body = std::move(body);
  return response;
}

Response Response::NoContent() {
  Response response;
  response.status = 204;
  return response;
}

Response Response::Stream(int status, std::string content_type, std::string first,
                          StreamStart start) {
  Response response = Text(status, std::move(first), std::move(content_type));
  response.stream = std::move(start);
  return response;
}

absl::Status WithHttpStatus(absl::Status status, int http_status) {
  if (!status.ok()) {
    status.SetPayload(ToAbsl(kHttpStatusUrl), absl::Cord(fmt::format("{}", http_status)));
  }
  return status;
}

std::optional<int> HttpStatusOverride(const absl::Status& status) {
  absl::optional<absl::Cord> payload = status.GetPayload(ToAbsl(kHttpStatusUrl));
  if (!payload.has_value()) return std::nullopt;
  std::string text(*payload);
  if (text.size() != 3 || !std::all_of(text.begin(), text.end(), ::isdigit)) return std::nullopt;
  int value = std::stoi(text);
  if (value < 400 || value > 599) return std::nullopt;
  return value;
}

int HttpStatusFor(const absl::Status& status) {
  if (std::optional<int> forced = HttpStatusOverride(status)) return *forced;
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      return 400;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kAborted:
    case absl::StatusCode::kFailedPrecondition:
      return 409;
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kUnavailable:
      return 503;
    case absl::StatusCode::kDeadlineExceeded:
      return 504;
    case absl::StatusCode::kOk:
    case absl::StatusCode::kCancelled:
    case absl::StatusCode::kUnknown:
    case absl::StatusCode::kUnimplemented:
    case absl::StatusCode::kInternal:
    case absl::StatusCode::kDataLoss:
      return 500;
    case absl::StatusCode::kDoNotUseReservedForFutureExpansionUseDefaultInSwitchInstead_:
      return 500;
  }
  return 500;
}

std::string_view ErrorTypeFor(int http_status) {
  switch (http_status) {
    case 401:
      return "authentication_error";
    case 403:
      return "permission_error";
    case 404:
      return "not_found_error";
    case 409:
      return "conflict_error";
    case 429:
      return "rate_limit_error";
    default:
      return http_status >= 500 ? "api_error" : "invalid_request_error";
  }
}

Response ErrorResponse(const absl::Status& status) {
  int http_status = status.ok() ? 500 : HttpStatusFor(status);
  std::optional<std::string> code = ErrorCode(status);
  std::optional<std::string> param = ErrorParam(status);
  std::string message = http_status >= 500 ? std::string(GenericServerMessage(http_status))
                                           : std::string(status.message());
  // A 5xx code is kept only when the producer chose one on purpose (e.g. "outcome_unknown").
  return ErrorResponse(http_status, ErrorTypeFor(http_status),
                       code.has_value() ? std::string_view(*code) : DefaultCode(http_status),
                       message, param.value_or(""));
}

Response ErrorResponse(int http_status, std::string_view type, std::string_view code,
                       std::string_view message, std::string_view param) {
  ::emporium::Json error = {{"type", type}, {"code", code}, {"message", message}};
  error["param"] = param.empty() ? ::emporium::Json(nullptr) : ::emporium::Json(param);
  return Response::Json(http_status, ::emporium::Json{{"error", std::move(error)}});
}

std::optional<std::string> PercentDecode(std::string_view text, PlusSign plus) {
  // Most paths and parameters hold nothing to decode: copy them in one go. (A plain scan:
  // string_view::find_first_of calls memchr once per character.)
  size_t first = 0;
  while (first < text.size() && text[first] != '%' &&
         (plus == PlusSign::kLiteral || text[first] != '+')) {
    ++first;
  }
  if (first == text.size()) return std::string(text);
  std::string out;
  out.reserve(text.size());
  out.append(text.substr(0, first));
  for (size_t i = first; i < text.size(); ++i) {
    char c = text[i];
    if (c == '%') {
      if (i + 2 >= text.size()) return std::nullopt;
      int high = HexValue(text[i + 1]);
      int low = HexValue(text[i + 2]);
      if (high < 0 || low < 0) return std::nullopt;
      out.push_back(static_cast<char>(high * 16 + low));
      i += 2;
    } else if (c == '+' && plus == PlusSign::kSpace) {
      out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::string PercentEncode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    auto byte = static_cast<unsigned char>(c);
    if (std::isalnum(byte) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(kHex[byte >> 4]);
      out.push_back(kHex[byte & 0x0F]);
    }
  }
  return out;
}

std::string_view ReasonPhrase(int http_status) {
  switch (http_status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 304:
      return "Not Modified";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 412:
      return "Precondition Failed";
    case 413:
      return "Content Too Large";
    case 415:
      return "Unsupported Media Type";
    case 422:
      return "Unprocessable Content";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    default:
      return "Unknown";
  }
}

}  // namespace emporium::http
