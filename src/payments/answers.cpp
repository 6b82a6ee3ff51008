#include "payments/answers.h"

#include <string>

#include "fmt/format.h"

namespace emporium::payments {
namespace {

Json SplitReasons(const std::string& reasons) {
  Json out = Json::array();
  size_t start = 0;
  while (start < reasons.size()) {
    size_t comma = reasons.find(',', start);
    if (comma == std::string::npos) comma = reasons.size();
    if (comma > start) out.push_back(reasons.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

// A failed intent (declined by the PSP, rejected by fraud rules or by staff) is an answer,
// told as a 402 in the error shape with the intent's id beside it.
http::Response DeclinedResponse(const IntentRecord& intent) {
  const std::string reason = intent.decline_reason.empty() ? "declined" : intent.decline_reason;
  Json body = Json{{"error",
                    {{"type", http::ErrorTypeFor(402)},
                     {"code", reason},
                     {"message", fmt::format("the payment was declined ({})", reason)},
                     {"param", "payment_method"},
                     {"payment_intent", intent.id}}}};
  return http::Response::Json(402, body);
}

}  // namespace

Json IntentJson(const IntentRecord& intent) {
  return Json{{"id", intent.id},
              {"order_id", intent.order_id},
              {"customer_id", intent.customer_id},
              {"payment_method", intent.payment_method},
              {"state", IntentStateName(intent.state)},
              {"amount_minor", intent.amounts.amount_minor},
              {"currency", intent.amounts.currency},
              {"authorized_minor", intent.amounts.authorized_minor},
              {"captured_minor", intent.amounts.captured_minor},
              {"refunded_minor", intent.amounts.refunded_minor},
              {"decline_reason",
               intent.decline_reason.empty() ? Json(nullptr) : Json(intent.decline_reason)},
              {"fraud_score", intent.fraud_score},
              {"fraud_reasons", SplitReasons(intent.fraud_reasons)},
              {"created_at_ms", intent.created_at_ms},
              {"updated_at_ms", intent.updated_at_ms}};
}

http::Response AuthorizeAnswer(const absl::StatusOr<IntentRecord>& result) {
  if (!result.ok()) return http::ErrorResponse(result.status());
  switch (result->state) {
    case IntentState::kFailed:
    case IntentState::kExpired:
      return DeclinedResponse(*result);
    case IntentState::kInReview:
      return http::Response::Json(202, IntentJson(*result));
    case IntentState::kRequiresAuthorization:
    case IntentState::kAuthorized:
    case IntentState::kCaptured:
    case IntentState::kPartiallyRefunded:
    case IntentState::kRefunded:
    case IntentState::kVoided:
      return http::Response::Json(201, IntentJson(*result));
  }
  return http::ErrorResponse(500, http::ErrorTypeFor(500), "internal", "unexpected intent state");
}

http::Response IntentAnswer(const absl::StatusOr<IntentRecord>& result) {
  if (!result.ok()) return http::ErrorResponse(result.status());
  return http::Response::Json(200, IntentJson(*result));
}

http::Response RenderAnswer(HttpAnswerKind kind, const absl::StatusOr<IntentRecord>& result) {
  switch (kind) {
    case HttpAnswerKind::kAuthorize:
      return AuthorizeAnswer(result);
    case HttpAnswerKind::kIntent:
      return IntentAnswer(result);
  }
  return http::ErrorResponse(500, http::ErrorTypeFor(500), "internal", "unknown answer kind");
}

bool ReplayableStatus(int http_status) { return http_status < 500 && http_status != 429; }

}  // namespace emporium::payments
