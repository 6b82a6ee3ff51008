#include "payments/api.h"

#include <sodium.h>

#include <charconv>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "common/errors.h"
#include "common/format.h"
#include "common/json.h"
#include "fmt/format.h"
#include "payments/answers.h"
#include "platform/context/principal.h"
#include "platform/context/role.h"

namespace emporium::payments {
namespace {

using http::Request;
using http::Responder;
using http::Response;

constexpr std::string_view kIdempotencyHeader = "Idempotency-Key";
constexpr std::string_view kSignatureHeader = "Psp-Signature";
constexpr size_t kIdempotencyKeyCharsMax = 255;
constexpr size_t kIdCharsMax = 128;
constexpr size_t kCardNumberCharsMax = 32;  // digits plus separators; the model checks more
constexpr size_t kCvcCharsMax = 8;
constexpr size_t kHolderCharsMax = 200;
constexpr size_t kCountryCharsMax = 2;
constexpr int64_t kReviewsLimitDefault = 50;
constexpr int64_t kReviewsLimitMax = 100;
constexpr int64_t kAmountMinorMax = int64_t{1} << 50;
// The owner a guest (a caller with no customer account) vaults a card for, shared with ordering's
// guest checkout: "guest" or "guest-<anything>". Customer ids never take this form.
constexpr std::string_view kGuestCustomerId = "guest";
constexpr std::string_view kGuestCustomerPrefix = "guest-";

Response Error(int status, std::string_view code, std::string_view message,
               std::string_view param = "") {
  return http::ErrorResponse(status, http::ErrorTypeFor(status), code, message, param);
}

Json MethodJson(const PaymentMethod& method) {
  return Json{{"token", method.token},
              {"customer_id", method.customer_id},
              {"brand", CardBrandName(method.brand)},
              {"last4", method.last4},
              {"exp_month", method.expiry_month},
              {"exp_year", method.expiry_year},
              {"created_at_ms", method.created_at_ms}};
}

// A hex BLAKE2b of what identifies a request: method, route and body.
std::string RequestHash(const Request& request) {
  const std::string text = fmt::format("{}\n{}\n{}", request.method, request.path, request.body);
  unsigned char hash[crypto_generichash_BYTES];
  crypto_generichash(hash, sizeof(hash), reinterpret_cast<const unsigned char*>(text.data()),
                     text.size(), nullptr, 0);
  char hex[crypto_generichash_BYTES * 2 + 1];
  sodium_bin2hex(hex, sizeof(hex), hash, sizeof(hash));
  return hex;
}

// The Idempotency-Key header, required; nullopt with `error` filled when missing or bad.
std::optional<std::string> IdempotencyKey(const Request& request, Response& error) {
  std::optional<std::string_view> key = request.Header(kIdempotencyHeader);
  if (!key.has_value()) {
    error = Error(400, "missing_idempotency_key", "the Idempotency-Key header is required",
                  kIdempotencyHeader);
    return std::nullopt;
  }
  bool printable = !key->empty() && key->size() <= kIdempotencyKeyCharsMax;
  for (char c : *key) printable = printable && c > ' ' && c < 0x7f;
  if (!printable) {
    error = Error(
        400, "invalid_param",
        fmt::format("Idempotency-Key must be 1..{} printable characters", kIdempotencyKeyCharsMax),
        kIdempotencyHeader);
    return std::nullopt;
  }
  return std::string(*key);
}

bool ValidId(std::string_view id) {
  if (id.empty() || id.size() > kIdCharsMax) return false;
  for (char c : id) {
    if (c <= ' ' || c >= 0x7f) return false;
  }
  return true;
}

struct Shared {
  PaymentsService& service;
  ApiOptions options;
};

// The answer to an idempotent HTTP command: the key's earlier state, or the command's outcome
// rendered as the service stored it for replays.
Response HttpCommandResponse(HttpAnswerKind kind, const HttpCommandAnswer& answer) {
  switch (answer.claim) {
    case HttpKeyClaim::kReplay: {
      Response replay =
          Response::Text(answer.stored.status, answer.stored.body, "application/json");
      replay.headers.Set("Idempotent-Replayed", "true");
      return replay;
    }
    case HttpKeyClaim::kMismatch:
      return Error(422, "idempotency_key_reused",
                   "this Idempotency-Key was used with a different request", kIdempotencyHeader);
    case HttpKeyClaim::kInProgress:
      return Error(409, "request_in_progress",
                   "a request with this Idempotency-Key is still in progress; retry later",
                   kIdempotencyHeader);
    case HttpKeyClaim::kClaimed:
      break;
  }
  return RenderAnswer(kind, answer.result);
}

// Runs `task` on the service's executor; answers 503/429 when it cannot.
void Offload(const std::shared_ptr<Shared>& shared, const Responder& respond,
             std::function<void()> task) {
  absl::Status queued = shared->service.RunAsync(std::move(task));
  if (!queued.ok()) respond(http::ErrorResponse(queued));
}

// Renames the model's card params to the API's field names.
absl::Status ApiCardParam(absl::Status status) {
  std::optional<std::string> param = ErrorParam(status);
  if (param == "expiry_month") return WithErrorParam(std::move(status), "exp_month");
  if (param == "expiry_year") return WithErrorParam(std::move(status), "exp_year");
  return status;
}

absl::StatusOr<CardInput> ParseCard(const Json& body) {
  CardInput card;
  absl::StatusOr<std::string> number = RequireString(body, "number", kCardNumberCharsMax);
  if (!number.ok()) return number.status();
  card.number = std::move(*number);
  absl::StatusOr<int64_t> month = RequireInt(body, "exp_month", 0, 99);
  if (!month.ok()) return month.status();
  absl::StatusOr<int64_t> year = RequireInt(body, "exp_year", 0, 9999);
  if (!year.ok()) return year.status();
  card.expiry_month = static_cast<int>(*month);
  card.expiry_year = static_cast<int>(*year);
  absl::StatusOr<std::string> cvc = RequireString(body, "cvc", kCvcCharsMax);
  if (!cvc.ok()) return cvc.status();
  card.cvc = std::move(*cvc);
  absl::StatusOr<std::string> holder = RequireString(body, "holder", kHolderCharsMax);
  if (!holder.ok()) return holder.status();
  card.holder = std::move(*holder);
  return card;
}

std::string ClientIp(const Request& request) {
  const size_t colon = request.remote_address.rfind(':');
  return colon == std::string::npos ? request.remote_address
                                    : request.remote_address.substr(0, colon);
}

absl::StatusOr<AuthorizeCommand> ParseAuthorize(const Request& request, const std::string& key) {
  absl::StatusOr<Json> body = ParseJsonObject(request.body);
  if (!body.ok()) return body.status();
  AuthorizeCommand c;
  c.command_id = "http:" + key;
  absl::StatusOr<std::string> order_id = RequireString(*body, "order_id", kIdCharsMax);
  if (!order_id.ok()) return order_id.status();
  c.order_id = std::move(*order_id);
  absl::StatusOr<int64_t> amount = RequireInt(*body, "amount_minor", 1, kAmountMinorMax);
  if (!amount.ok()) return amount.status();
  c.amount_minor = *amount;
  absl::StatusOr<std::string> currency = RequireString(*body, "currency", 3);
  if (!currency.ok()) return currency.status();
  c.currency = std::move(*currency);
  absl::StatusOr<std::string> method = RequireString(*body, "payment_method", kIdCharsMax);
  if (!method.ok()) return method.status();
  c.payment_method = std::move(*method);
  absl::StatusOr<std::string> customer = RequireString(*body, "customer_id", kIdCharsMax);
  if (!customer.ok()) return customer.status();
  c.customer_id = std::move(*customer);
  for (auto [field, target] : {std::pair{"billing_country", &c.billing_country},
                               std::pair{"shipping_country", &c.shipping_country}}) {
    absl::StatusOr<std::optional<std::string>> country =
        OptionalString(*body, field, kCountryCharsMax);
    if (!country.ok()) return country.status();
    *target = country->value_or("");
  }
  absl::StatusOr<std::optional<std::string>> payer_email =
      OptionalString(*body, "payer_email", kPayerEmailBytesMax);
  if (!payer_email.ok()) return payer_email.status();
  c.payer_email = payer_email->value_or("");
  // Velocity rules count per client address: the peer's, never one the body claims.
  c.client_ip = ClientIp(request);
  return c;
}

bool IsGuestOwner(std::string_view customer_id) {
  return customer_id == kGuestCustomerId || customer_id.starts_with(kGuestCustomerPrefix);
}

// Who owns a payment method being created, from the caller and the body's customer_id.
//  - a signed-in customer: always that customer; a body naming anyone else is a 400.
//  - anonymous callers and staff: a guest owner only ("guest" by default, or "guest-..."), so
//    nobody can plant a card on a customer's account.
//  - no principal (dispatched in process, no gateway): the body's customer_id, required, as
//    trusted in-process callers (tools, tests) always named it.
absl::StatusOr<std::string> NewMethodOwner(const std::optional<Principal>& principal,
                                           const std::optional<std::string>& named) {
  if (!principal.has_value()) {
    if (!named.has_value() || named->empty()) {
      return InvalidParam("customer_id", "customer_id is required", "missing_param");
    }
    return *named;
  }
  switch (principal->kind) {
    case PrincipalKind::kCustomer:
      if (named.has_value() && *named != principal->customer_id) {
        return InvalidParam("customer_id",
                            "a signed-in customer vaults cards for themselves only; omit "
                            "customer_id");
      }
      return principal->customer_id;
    case PrincipalKind::kAnonymous:
    case PrincipalKind::kStaff:
      if (!named.has_value()) return std::string(kGuestCustomerId);
      if (!IsGuestOwner(*named)) {
        return InvalidParam("customer_id",
                            "without a customer session a card is vaulted for a guest owner: "
                            "\"guest\" or \"guest-...\"");
      }
      return *named;
  }
  return absl::InternalError("unknown principal kind");
}

// Whether the caller may read a vaulted card's public view. A customer's card: its owner only
// (staff and everyone else get the 404 a missing token gets). A guest's card: whoever holds its
// unguessable token, since a guest has no identity to check (the same rule as guest carts);
// the view never holds more than brand, last4 and expiry. Without a principal (in-process
// dispatch, no gateway) the caller is trusted.
bool MayReadMethod(const Request& request, const std::string& owner_customer_id) {
  if (IsGuestOwner(owner_customer_id)) return true;
  if (!PrincipalOf(request).has_value()) return true;
  return OwnedOrNotFound(request, owner_customer_id, "payment_method").ok();
}

// Runs `handler` only for support staff (admin always passes): anonymous callers get 401, others
// 403. Without a gateway (in-process dispatch) the admin bearer key is required instead.
template <typename F>
http::Handler SupportStaff(const std::shared_ptr<Shared>& shared, F handler) {
  return [shared, handler](Request& request, Responder respond) {
    Response denied;
    if (!AuthorizeStaff(request, shared->options.admin_api_key, {Role::kSupport}, denied)) {
      return respond(std::move(denied));
    }
    handler(request, std::move(respond));
  };
}

void AddPublicRoutes(http::Router& router, const std::shared_ptr<Shared>& shared) {
  router.Add("POST", "/api/v1/payment-methods", [shared](Request& request, Responder respond) {
    Offload(shared, respond, [shared, &request, respond] {
      absl::StatusOr<Json> body = ParseJsonObject(request.body);
      if (!body.ok()) return respond(http::ErrorResponse(body.status()));
      absl::StatusOr<std::optional<std::string>> named =
          OptionalString(*body, "customer_id", kIdCharsMax);
      if (!named.ok()) return respond(http::ErrorResponse(named.status()));
      absl::StatusOr<std::string> owner = NewMethodOwner(PrincipalOf(request), *named);
      if (!owner.ok()) return respond(http::ErrorResponse(owner.status()));
      absl::StatusOr<CardInput> card = ParseCard(*body);
      if (!card.ok()) return respond(http::ErrorResponse(card.status()));
      absl::StatusOr<PaymentMethod> method = shared->service.AddPaymentMethod(*owner, *card);
      sodium_memzero(card->number.data(), card->number.size());
      sodium_memzero(card->cvc.data(), card->cvc.size());
      if (!method.ok()) return respond(http::ErrorResponse(ApiCardParam(method.status())));
      respond(Response::Json(201, MethodJson(*method)));
    });
  });

  router.Add("GET", "/api/v1/payment-methods/{token}",
             [shared](Request& request, Responder respond) {
               const std::string token = request.PathParam("token");
               if (!ValidId(token))
                 return respond(Error(400, "invalid_param", "bad token", "token"));
               Offload(shared, respond, [shared, &request, token, respond] {
                 absl::StatusOr<PaymentMethod> method = shared->service.GetPaymentMethod(token);
                 if (!method.ok() && !absl::IsNotFound(method.status())) {
                   return respond(http::ErrorResponse(method.status()));
                 }
                 // Someone else's method answers exactly like a missing one.
                 if (!method.ok() || !MayReadMethod(request, method->customer_id)) {
                   return respond(
                       Error(404, "payment_method_not_found", "no such payment method", "token"));
                 }
                 respond(Response::Json(200, MethodJson(*method)));
               });
             });

  // Intents are moved by ordering over the bus; over HTTP only support staff create or read one.
  router.Add("POST", "/api/v1/payment-intents",
             SupportStaff(shared, [shared](Request& request, Responder respond) {
               Response error;
               std::optional<std::string> key = IdempotencyKey(request, error);
               if (!key.has_value()) return respond(std::move(error));
               absl::StatusOr<AuthorizeCommand> command = ParseAuthorize(request, *key);
               if (!command.ok()) return respond(http::ErrorResponse(command.status()));
               Offload(shared, respond,
                       [shared, key = *key, hash = RequestHash(request), respond,
                        command = *std::move(command)] {
                         shared->service.AuthorizeHttp(
                             command, {key, hash, HttpAnswerKind::kAuthorize},
                             [respond](HttpCommandAnswer answer) {
                               respond(HttpCommandResponse(HttpAnswerKind::kAuthorize, answer));
                             });
                       });
             }));

  router.Add(
      "GET", "/api/v1/payment-intents/{id}",
      SupportStaff(shared, [shared](Request& request, Responder respond) {
        const std::string id = request.PathParam("id");
        if (!ValidId(id))
          return respond(Error(400, "invalid_param", "bad payment intent id", "id"));
        Offload(shared, respond, [shared, id, respond] {
          absl::StatusOr<IntentRecord> intent = shared->service.GetIntent(id);
          if (!intent.ok() && absl::IsNotFound(intent.status())) {
            return respond(Error(404, "payment_intent_not_found", "no such payment intent", "id"));
          }
          respond(IntentAnswer(intent));
        });
      }));

  router.Add("POST", "/api/v1/payments/psp-notifications",
             [shared](Request& request, Responder respond) {
               std::string signature(request.Header(kSignatureHeader).value_or(""));
               Offload(shared, respond, [shared, signature, &request, respond] {
                 absl::Status handled = shared->service.HandleNotification(signature, request.body);
                 if (!handled.ok()) return respond(http::ErrorResponse(handled));
                 respond(Response::Json(200, Json{{"received", true}}));
               });
             });
}

void AddIntentCommandRoute(http::Router& router, const std::shared_ptr<Shared>& shared,
                           PspOperation operation) {
  const std::string pattern =
      fmt::format("/api/v1/payment-intents/{{id}}/{}", PspOperationName(operation));
  router.Add(
      "POST", pattern,
      SupportStaff(shared, [shared, operation](Request& request, Responder respond) {
        const std::string id = request.PathParam("id");
        if (!ValidId(id)) {
          return respond(Error(400, "invalid_param", "bad payment intent id", "id"));
        }
        Response error;
        std::optional<std::string> key = IdempotencyKey(request, error);
        if (!key.has_value()) return respond(std::move(error));
        absl::StatusOr<Json> body = request.body.empty() ? absl::StatusOr<Json>(Json::object())
                                                         : ParseJsonObject(request.body);
        if (!body.ok()) return respond(http::ErrorResponse(body.status()));
        IntentCommand command;
        command.command_id = "http:" + *key;
        command.intent_id = id;
        command.operation = operation;
        switch (operation) {
          case PspOperation::kCapture: {
            absl::StatusOr<std::optional<int64_t>> amount =
                OptionalInt(*body, "amount_minor", 1, kAmountMinorMax);
            if (!amount.ok()) return respond(http::ErrorResponse(amount.status()));
            command.amount_minor = amount->value_or(0);
            break;
          }
          case PspOperation::kRefund: {
            absl::StatusOr<int64_t> amount = RequireInt(*body, "amount_minor", 1, kAmountMinorMax);
            if (!amount.ok()) return respond(http::ErrorResponse(amount.status()));
            command.amount_minor = *amount;
            break;
          }
          case PspOperation::kVoid:
          case PspOperation::kAuthorize:
            break;
        }
        Offload(shared, respond,
                [shared, key = *key, hash = RequestHash(request), respond, command] {
                  shared->service.ExecuteHttp(
                      command, {key, hash, HttpAnswerKind::kIntent},
                      [respond](HttpCommandAnswer answer) {
                        respond(HttpCommandResponse(HttpAnswerKind::kIntent, answer));
                      });
                });
      }));
}

void AddStaffRoutes(http::Router& router, const std::shared_ptr<Shared>& shared) {
  for (PspOperation operation :
       {PspOperation::kCapture, PspOperation::kVoid, PspOperation::kRefund}) {
    AddIntentCommandRoute(router, shared, operation);
  }

  router.Add(
      "GET", "/api/v1/admin/payments/reviews",
      SupportStaff(shared, [shared](Request& request, Responder respond) {
        int64_t count = kReviewsLimitDefault;
        if (std::optional<std::string> text = request.QueryParam("limit")) {
          auto [end, error] = std::from_chars(text->data(), text->data() + text->size(), count);
          if (error != std::errc() || end != text->data() + text->size() || count < 1 ||
              count > kReviewsLimitMax) {
            return respond(Error(400, "invalid_param",
                                 fmt::format("limit must be 1..{}", kReviewsLimitMax), "limit"));
          }
        }
        Offload(shared, respond, [shared, count, respond] {
          absl::StatusOr<std::vector<IntentRecord>> reviews = shared->service.ListReviews(count);
          if (!reviews.ok()) return respond(http::ErrorResponse(reviews.status()));
          Json items = Json::array();
          for (const IntentRecord& intent : *reviews) items.push_back(IntentJson(intent));
          respond(Response::Json(200, Json{{"items", items}}));
        });
      }));

  for (ReviewDecision decision : {ReviewDecision::kApprove, ReviewDecision::kReject}) {
    const std::string pattern =
        fmt::format("/api/v1/admin/payments/reviews/{{id}}/{}",
                    decision == ReviewDecision::kApprove ? "approve" : "reject");
    router.Add("POST", pattern,
               SupportStaff(shared, [shared, decision](Request& request, Responder respond) {
                 const std::string id = request.PathParam("id");
                 if (!ValidId(id)) {
                   return respond(Error(400, "invalid_param", "bad payment intent id", "id"));
                 }
                 Offload(shared, respond, [shared, id, decision, respond] {
                   absl::StatusOr<IntentRecord> intent = shared->service.DecideReview(id, decision);
                   if (!intent.ok() && absl::IsNotFound(intent.status())) {
                     return respond(
                         Error(404, "payment_intent_not_found", "no such payment intent", "id"));
                   }
                   respond(IntentAnswer(intent));
                 });
               }));
  }
}

}  // namespace

void AddPaymentsRoutes(http::Router& router, PaymentsService& service, ApiOptions options) {
  auto shared = std::make_shared<Shared>(Shared{service, std::move(options)});
  AddPublicRoutes(router, shared);
  AddStaffRoutes(router, shared);
}

}  // namespace emporium::payments
