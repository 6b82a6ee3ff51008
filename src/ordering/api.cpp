#include "ordering/api.h"

#include <algorithm>
#include <memory>
#include <mutex>
#include <string_view>
#include <utility>

#include "absl/time/clock.h"
#include "common/errors.h"
#include "common/format.h"
#include "common/status_macros.h"
#include "fmt/format.h"
#include "platform/context/principal.h"

namespace emporium::ordering {
namespace {

using http::Request;
using http::Responder;
using http::Response;

constexpr size_t kIdempotencyKeyLengthMax = 255;
constexpr int64_t kStuckDefaultS = 30;
constexpr std::string_view kGuestCustomerId = "guest";
// A guest may name the payment method's owner, but only a guest one ("guest" or "guest-..."):
// never a customer's id, which would bill that customer's cards and list the order as theirs.
constexpr std::string_view kGuestCustomerPrefix = "guest-";

Json MoneyJson(int64_t amount_minor, const std::string& currency) {
  absl::StatusOr<Money> money = Money::FromMinor(amount_minor, currency);
  return Json{{"amount", money.ok() ? money->ToDecimalString() : ""},
              {"amount_minor", amount_minor},
              {"currency", currency}};
}

Json MoneyJson(const Money& money) {
  return MoneyJson(money.amount_minor(), std::string(money.currency_code()));
}

Json LineJson(const PricedLine& line) {
  return Json{{"sku", line.sku},
              {"title", line.title},
              {"quantity", line.quantity},
              {"unit_price", MoneyJson(line.unit_price)},
              {"line_total", MoneyJson(line.line_total)}};
}

// DOM-free writers of the same bytes DumpJson writes for MoneyJson / LineJson (keys in the
// byte order of nlohmann's std::map); CartJsonText and OrderJsonText build on them.
void AppendMoneyText(std::string& out, int64_t amount_minor, std::string_view currency) {
  absl::StatusOr<Money> money = Money::FromMinor(amount_minor, currency);
  out += "{\"amount\":";
  AppendJsonString(out, money.ok() ? money->ToDecimalString() : "");
  out += fmt::format(",\"amount_minor\":{},\"currency\":", amount_minor);
  AppendJsonString(out, currency);
  out += '}';
}

void AppendMoneyText(std::string& out, const Money& money) {
  AppendMoneyText(out, money.amount_minor(), money.currency_code());
}

void AppendLinesText(std::string& out, const std::vector<PricedLine>& lines) {
  out += '[';
  for (size_t i = 0; i < lines.size(); ++i) {
    const PricedLine& line = lines[i];
    if (i > 0) out += ',';
    out += "{\"line_total\":";
    AppendMoneyText(out, line.line_total);
    out += fmt::format(",\"quantity\":{},\"sku\":", line.quantity);
    AppendJsonString(out, line.sku);
    out += ",\"title\":";
    AppendJsonString(out, line.title);
    out += ",\"unit_price\":";
    AppendMoneyText(out, line.unit_price);
    out += '}';
  }
  out += ']';
}

void AppendStringOrNullText(std::string& out, const std::string& text) {
  if (text.empty()) {
    out += "null";
  } else {
    AppendJsonString(out, text);
  }
}

Response Error(const absl::Status& status) { return http::ErrorResponse(status); }

absl::StatusOr<Json> Body(const Request& request) {
  if (request.body.empty()) return Json::object();
  return ParseJsonObject(request.body);
}

// `Prefer: wait=N` in seconds, clamped to `max_ms`; 0 when absent.
int64_t PreferWaitMs(const Request& request, int64_t max_ms) {
  for (std::string_view value : request.headers.GetAll("Prefer")) {
    size_t at = value.find("wait=");
    if (at == std::string_view::npos) continue;
    int64_t seconds = 0;
    for (size_t i = at + 5; i < value.size() && value[i] >= '0' && value[i] <= '9'; ++i) {
      seconds = std::min<int64_t>(seconds * 10 + (value[i] - '0'), 1'000'000);
    }
    return std::min(seconds * 1000, max_ms);
  }
  return 0;
}

std::optional<int64_t> IntParam(const Request& request, std::string_view name) {
  std::optional<std::string> text = request.QueryParam(name);
  if (!text || text->empty() || text->size() > 12) return std::nullopt;
  int64_t value = 0;
  for (char c : *text) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + (c - '0');
  }
  return value;
}

struct Shared {
  OrderingService& service;
  ApiOptions options;
};

constexpr int64_t kStreamRetryMs = 3'000;            // EventSource reconnect delay we ask for
constexpr size_t kStreamPendingBytesMax = 64 << 10;  // frames held before the stream starts
constexpr std::string_view kEndFrame = "event: end\ndata: {}\n\n";

std::string StatusFrame(const Order& order) {
  return fmt::format("id: {}\nevent: status\ndata: {}\n\n", order.event_seq,
                     DumpJson(Json{{"order_id", order.id},
                                   {"state", OrderStateName(order.state())},
                                   {"reason", order.saga.reason}}));
}

// One SSE response as the notifier thread sees it. Frames produced before the server started
// the stream are held (bounded) and written when it starts. Guarded by `mutex`.
struct SseSink {
  std::mutex mutex;
  std::shared_ptr<http::BodyStream> stream;
  std::string pending;
  std::string last_state;
  bool ended = false;    // no more frames: settled, expired, client gone or never started
  bool closing = false;  // End() before the stream started: close it once it does

  // False once nothing more can be sent.
  bool Send(std::string frame) {
    if (ended) return false;
    if (stream) {
      if (!stream->Write(std::move(frame))) ended = true;
      return !ended;
    }
    if (pending.size() + frame.size() > kStreamPendingBytesMax) {
      ended = true;
      return false;
    }
    pending += frame;
    return true;
  }
  void End() {
    ended = true;
    if (stream) {
      stream->Close();
    } else {
      closing = true;
    }
  }
  void Attach(std::shared_ptr<http::BodyStream> body) {
    std::lock_guard lock(mutex);
    stream = std::move(body);
    if (!pending.empty()) stream->Write(std::move(pending));
    pending.clear();
    if (closing || ended) stream->Close();
  }
};

// Marks the sink ended when the server drops the start callback without calling it.
struct StartGuard {
  explicit StartGuard(std::shared_ptr<SseSink> s) : sink(std::move(s)) {}
  ~StartGuard() {
    if (started) return;
    std::lock_guard lock(sink->mutex);
    sink->ended = true;
  }
  StartGuard(const StartGuard&) = delete;
  StartGuard& operator=(const StartGuard&) = delete;
  std::shared_ptr<SseSink> sink;
  bool started = false;
};

// The signed-in customer's id, or nullopt for anyone else (anonymous, staff, no gateway).
std::optional<std::string> CustomerOf(const Request& request) {
  std::optional<Principal> principal = PrincipalOf(request);
  if (!principal || principal->kind != PrincipalKind::kCustomer) return std::nullopt;
  return principal->customer_id;
}

// Who may use a cart: an owned cart only its owner (anyone else, staff included, gets the 404 a
// missing cart gets); a guest cart (no owner) whoever holds its unguessable id.
absl::Status AuthorizeCart(const Request& request, const std::string& owner_customer_id) {
  if (owner_customer_id.empty()) return absl::OkStatus();
  return OwnedOrNotFound(request, owner_customer_id, "cart");
}

// Authorizes the caller on the cart in the path before anything else happens (a write, or
// validating the body), so a stranger learns nothing about the cart from the answer.
absl::Status CheckCartAccess(const Shared& shared, const Request& request) {
  ASSIGN_OR_RETURN(std::string owner, shared.service.CartOwner(request.PathParam("id")));
  return AuthorizeCart(request, owner);
}

// The order in the path when the caller may see it. An order follows its cart: one placed from
// an owned cart belongs to that cart's customer (404 to everyone else, staff included: they use
// the admin routes); one placed from a guest cart is, like the cart, a capability of its id.
// The customer an order is listed under (account_id: a guest order attached on e-mail
// verification) may always see it.
absl::StatusOr<Order> VisibleOrder(const Shared& shared, const Request& request) {
  ASSIGN_OR_RETURN(Order order, shared.service.GetOrder(request.PathParam("id")));
  if (!order.account_id.empty() && CustomerOf(request) == order.account_id) return order;
  absl::StatusOr<std::string> owner = shared.service.CartOwner(order.cart_id);
  if (absl::IsNotFound(owner.status())) {
    // Fail closed: without its cart nobody can tell whose order it is.
    return WithErrorCode(absl::NotFoundError("order not found"), "order_not_found");
  }
  if (!owner.ok()) return owner.status();
  if (owner->empty()) return order;
  RETURN_IF_ERROR(OwnedOrNotFound(request, *owner, "order"));
  return order;
}

Response CartResponse(int status, const absl::StatusOr<CartView>& view) {
  if (!view.ok()) return Error(view.status());
  return Response::Text(status, CartJsonText(*view), "application/json");
}

Callback<CartView> CartCallback(Responder respond, int status = 200) {
  return [respond = std::move(respond), status](absl::StatusOr<CartView> view) {
    respond(CartResponse(status, view));
  };
}

// A cart edit's optional Idempotency-Key, with the hash of what it names: the method, the path
// and the parsed body (so whitespace and key order do not matter).
absl::StatusOr<IdempotentEdit> EditIdempotency(const Request& request, const Json& body) {
  IdempotentEdit edit;
  edit.render = [](const CartView& view) { return CartJsonText(view); };
  if (std::optional<std::string_view> key = request.Header("Idempotency-Key")) {
    if (key->empty() || key->size() > kIdempotencyKeyLengthMax) {
      return InvalidParam("Idempotency-Key", "must be 1..255 characters");
    }
    edit.key = std::string(*key);
    edit.request_hash =
        HashHex(fmt::format("{}\n{}\n{}", request.method, request.path, DumpJson(body)));
  }
  return edit;
}

Callback<CartEditReply> EditCallback(Responder respond) {
  return [respond = std::move(respond)](absl::StatusOr<CartEditReply> reply) {
    if (!reply.ok()) return respond(Error(reply.status()));
    Response response = Response::Text(200, std::move(reply->body), "application/json");
    if (reply->replayed) response.headers.Set("Idempotent-Replayed", "true");
    respond(std::move(response));
  };
}

Response OrderResponse(int status, const Order& order) {
  Response response = Response::Text(status, OrderJsonText(order), "application/json");
  response.headers.Set("Location", fmt::format("/api/v1/orders/{}", order.id));
  return response;
}

void AddCartRoutes(http::Router& router, const std::shared_ptr<Shared>& shared) {
  router.Add("POST", "/api/v1/carts", [shared](Request& request, Responder respond) {
    absl::StatusOr<Json> body = Body(request);
    if (!body.ok()) return respond(Error(body.status()));
    CartInput input;
    auto currency = RequireString(*body, "currency", 3);
    if (!currency.ok()) return respond(Error(currency.status()));
    input.currency = *currency;
    auto region = OptionalString(*body, "region", 64);
    auto email = OptionalString(*body, "email", 254);
    if (!region.ok()) return respond(Error(region.status()));
    if (!email.ok()) return respond(Error(email.status()));
    input.region = region->value_or("");
    input.email = email->value_or("");
    if (auto it = body->find("shipping_address"); it != body->end() && !it->is_null()) {
      input.shipping_address = *it;
    }
    input.customer_id = CustomerOf(request).value_or("");
    shared->service.CreateCart(std::move(input), CartCallback(std::move(respond), 201));
  });

  router.AddSync("GET", "/api/v1/carts/{id}", [shared](const Request& request) {
    absl::StatusOr<CartView> view = shared->service.GetCart(request.PathParam("id"));
    if (!view.ok()) return Error(view.status());
    if (absl::Status allowed = AuthorizeCart(request, view->cart.customer_id); !allowed.ok()) {
      return Error(allowed);
    }
    return CartResponse(200, view);
  });

  router.Add("PATCH", "/api/v1/carts/{id}", [shared](Request& request, Responder respond) {
    if (absl::Status allowed = CheckCartAccess(*shared, request); !allowed.ok()) {
      return respond(Error(allowed));
    }
    absl::StatusOr<Json> body = Body(request);
    if (!body.ok()) return respond(Error(body.status()));
    CartPatch patch;
    auto currency = OptionalString(*body, "currency", 3);
    auto region = OptionalString(*body, "region", 64);
    auto email = OptionalString(*body, "email", 254);
    for (const auto* field : {&currency, &region, &email}) {
      if (!field->ok()) return respond(Error(field->status()));
    }
    patch.currency = *currency;
    patch.region = *region;
    patch.email = *email;
    if (auto it = body->find("shipping_address"); it != body->end() && !it->is_null()) {
      patch.shipping_address = *it;
    }
    absl::StatusOr<IdempotentEdit> idempotency = EditIdempotency(request, *body);
    if (!idempotency.ok()) return respond(Error(idempotency.status()));
    shared->service.UpdateCart(request.PathParam("id"), std::move(patch), *std::move(idempotency),
                               EditCallback(std::move(respond)));
  });

  router.Add("DELETE", "/api/v1/carts/{id}", [shared](Request& request, Responder respond) {
    if (absl::Status allowed = CheckCartAccess(*shared, request); !allowed.ok()) {
      return respond(Error(allowed));
    }
    shared->service.AbandonCart(request.PathParam("id"), CartCallback(std::move(respond)));
  });

  router.Add("POST", "/api/v1/carts/{id}/lines", [shared](Request& request, Responder respond) {
    if (absl::Status allowed = CheckCartAccess(*shared, request); !allowed.ok()) {
      return respond(Error(allowed));
    }
    absl::StatusOr<Json> body = Body(request);
    if (!body.ok()) return respond(Error(body.status()));
    auto sku = RequireString(*body, "sku", kSkuLengthMax);
    if (!sku.ok()) return respond(Error(sku.status()));
    auto quantity = RequireInt(*body, "quantity", 1, 1'000'000);
    if (!quantity.ok()) return respond(Error(quantity.status()));
    absl::StatusOr<IdempotentEdit> idempotency = EditIdempotency(request, *body);
    if (!idempotency.ok()) return respond(Error(idempotency.status()));
    shared->service.AddLine(request.PathParam("id"), *sku, *quantity, *std::move(idempotency),
                            EditCallback(std::move(respond)));
  });

  router.Add("PUT", "/api/v1/carts/{id}/lines/{sku}",
             [shared](Request& request, Responder respond) {
               if (absl::Status allowed = CheckCartAccess(*shared, request); !allowed.ok()) {
                 return respond(Error(allowed));
               }
               absl::StatusOr<Json> body = Body(request);
               if (!body.ok()) return respond(Error(body.status()));
               auto quantity = RequireInt(*body, "quantity", 0, 1'000'000);
               if (!quantity.ok()) return respond(Error(quantity.status()));
               absl::StatusOr<IdempotentEdit> idempotency = EditIdempotency(request, *body);
               if (!idempotency.ok()) return respond(Error(idempotency.status()));
               shared->service.SetLine(request.PathParam("id"), request.PathParam("sku"), *quantity,
                                       *std::move(idempotency), EditCallback(std::move(respond)));
             });

  router.Add(
      "DELETE", "/api/v1/carts/{id}/lines/{sku}", [shared](Request& request, Responder respond) {
        if (absl::Status allowed = CheckCartAccess(*shared, request); !allowed.ok()) {
          return respond(Error(allowed));
        }
        absl::StatusOr<IdempotentEdit> idempotency = EditIdempotency(request, Json::object());
        if (!idempotency.ok()) return respond(Error(idempotency.status()));
        shared->service.SetLine(request.PathParam("id"), request.PathParam("sku"), 0,
                                *std::move(idempotency), EditCallback(std::move(respond)));
      });

  router.Add("POST", "/api/v1/carts/{id}/checkout", [shared](Request& request, Responder respond) {
    if (absl::Status allowed = CheckCartAccess(*shared, request); !allowed.ok()) {
      return respond(Error(allowed));
    }
    absl::StatusOr<Json> body = Body(request);
    if (!body.ok()) return respond(Error(body.status()));
    auto method = RequireString(*body, "payment_method", 200);
    if (!method.ok()) return respond(Error(method.status()));
    CheckoutRequest checkout;
    checkout.cart_id = request.PathParam("id");
    checkout.payment_method = *method;
    // The payment method must belong to the same customer. A signed-in caller's identity
    // always wins; a guest names the guest owner it created the payment method for (default
    // "guest").
    auto guest = OptionalString(*body, "customer_id", 128);
    if (!guest.ok()) return respond(Error(guest.status()));
    if (std::optional<std::string> customer = CustomerOf(request)) {
      checkout.customer_id = *customer;
      checkout.account_id = *customer;
    } else {
      checkout.customer_id = guest->value_or(std::string(kGuestCustomerId));
      if (checkout.customer_id != kGuestCustomerId &&
          !std::string_view(checkout.customer_id).starts_with(kGuestCustomerPrefix)) {
        return respond(Error(InvalidParam(
            "customer_id", "a guest checkout names a guest owner: \"guest\" or \"guest-...\"")));
      }
    }
    checkout.client_ip = request.remote_address;
    if (std::optional<std::string_view> key = request.Header("Idempotency-Key")) {
      if (key->empty() || key->size() > kIdempotencyKeyLengthMax) {
        return respond(Error(InvalidParam("Idempotency-Key", "must be 1..255 characters")));
      }
      checkout.idempotency_key = std::string(*key);
      checkout.request_hash =
          HashHex(fmt::format("{}\n{}\n{}", checkout.cart_id, *method, DumpJson(*body)));
    }
    const int64_t wait_ms = PreferWaitMs(request, shared->service.options().wait_max_ms);
    OrderingService& service = shared->service;
    service.Checkout(std::move(checkout),
                     [&service, wait_ms, respond](absl::StatusOr<CheckoutResult> result) {
                       if (!result.ok()) return respond(Error(result.status()));
                       if (wait_ms <= 0 || IsSettled(result->order.state())) {
                         const int status = IsSettled(result->order.state()) ? 200 : 202;
                         return respond(OrderResponse(status, result->order));
                       }
                       Order pending = result->order;
                       absl::Status parked = service.WaitSettled(
                           pending.id, absl::Now() + absl::Milliseconds(wait_ms),
                           [respond, pending](absl::StatusOr<Order> order) {
                             const Order& latest = order.ok() ? *order : pending;
                             respond(OrderResponse(IsSettled(latest.state()) ? 200 : 202, latest));
                           });
                       if (!parked.ok()) respond(OrderResponse(202, pending));
                     });
  });
}

void AddOrderRoutes(http::Router& router, const std::shared_ptr<Shared>& shared) {
  router.AddSync("GET", "/api/v1/orders", [shared](const Request& request) {
    absl::StatusOr<std::string> customer = RequireCustomer(request);
    if (!customer.ok()) return Error(customer.status());
    OrderQuery query;
    query.account_id = *customer;
    query.limit = IntParam(request, "limit").value_or(50);
    query.after_id = request.QueryParam("cursor").value_or("");
    absl::StatusOr<std::vector<Order>> orders = shared->service.ListOrders(query);
    if (!orders.ok()) return Error(orders.status());
    Json items = Json::array();
    for (const Order& order : *orders) items.push_back(OrderJson(order));
    Json next =
        static_cast<int64_t>(orders->size()) == std::clamp<int64_t>(query.limit, 1, kListPageMax)
            ? Json(orders->back().id)
            : Json(nullptr);
    return Response::Json(200, Json{{"items", items}, {"next_cursor", next}});
  });

  router.AddSync("GET", "/api/v1/orders/{id}", [shared](const Request& request) {
    absl::StatusOr<Order> order = VisibleOrder(*shared, request);
    if (!order.ok()) return Error(order.status());
    return Response::Json(200, OrderJson(*order));
  });

  router.Add("POST", "/api/v1/orders/{id}/cancel", [shared](Request& request, Responder respond) {
    if (absl::StatusOr<Order> visible = VisibleOrder(*shared, request); !visible.ok()) {
      return respond(Error(visible.status()));
    }
    shared->service.Cancel(request.PathParam("id"), [respond](absl::StatusOr<Order> order) {
      if (!order.ok()) return respond(Error(order.status()));
      respond(Response::Json(200, OrderJson(*order)));
    });
  });

  router.AddSync("GET", "/api/v1/orders/{id}/events", [shared](const Request& request) {
    if (absl::StatusOr<Order> visible = VisibleOrder(*shared, request); !visible.ok()) {
      return Error(visible.status());
    }
    absl::StatusOr<std::vector<OrderEvent>> events =
        shared->service.Timeline(request.PathParam("id"), IntParam(request, "after").value_or(0),
                                 IntParam(request, "limit").value_or(1000));
    if (!events.ok()) return Error(events.status());
    Json items = Json::array();
    for (const OrderEvent& event : *events) {
      items.push_back(Json{{"seq", event.seq},
                           {"at_ms", event.at_ms},
                           {"kind", event.kind},
                           {"detail", event.detail},
                           {"state", event.state}});
    }
    return Response::Json(200, Json{{"order_id", request.PathParam("id")}, {"items", items}});
  });

  // Server-Sent Events, streamed: `event: status` now and on every state change, a comment
  // every stream_heartbeat_ms, and `event: end` when the order settles or the duration passes.
  router.Add("GET", "/api/v1/orders/{id}/stream", [shared](Request& request, Responder respond) {
    const std::string id = request.PathParam("id");
    absl::StatusOr<Order> order = VisibleOrder(*shared, request);
    if (!order.ok()) return respond(Error(order.status()));
    OrderingService& service = shared->service;
    const int64_t duration_max_s = service.options().stream_duration_max_ms / 1000;
    const int64_t duration_s = std::clamp<int64_t>(
        IntParam(request, "timeout").value_or(duration_max_s), 0, duration_max_s);
    const std::string first = fmt::format("retry: {}\n\n{}", kStreamRetryMs, StatusFrame(*order));
    auto stream_response = [&](std::string body, http::StreamStart start) {
      Response response =
          Response::Stream(200, "text/event-stream", std::move(body), std::move(start));
      response.headers.Set("Cache-Control", "no-store");
      response.headers.Set("X-Accel-Buffering", "no");
      return response;
    };
    if (IsSettled(order->state()) || duration_s == 0) {
      return respond(
          stream_response(first + std::string(kEndFrame),
                          [](std::shared_ptr<http::BodyStream> body) { body->Close(); }));
    }
    auto sink = std::make_shared<SseSink>();
    sink->last_state = std::string(OrderStateName(order->state()));
    absl::Status watching = service.Watch(
        id, absl::Now() + absl::Seconds(duration_s),
        [sink](absl::StatusOr<Order> current) -> bool {
          std::lock_guard lock(sink->mutex);
          if (sink->ended) return false;
          if (!current.ok()) {  // the duration passed (or the service stops)
            sink->Send(std::string(kEndFrame));
            sink->End();
            return false;
          }
          const std::string state(OrderStateName(current->state()));
          if (state != sink->last_state) {
            sink->last_state = state;
            if (!sink->Send(StatusFrame(*current))) return false;
          }
          if (IsSettled(current->state())) {
            sink->Send(std::string(kEndFrame));
            sink->End();
            return false;
          }
          return true;
        },
        absl::Milliseconds(service.options().stream_heartbeat_ms),
        [sink]() -> bool {
          std::lock_guard lock(sink->mutex);
          return !sink->ended && sink->Send(": keep-alive\n\n");
        });
    if (!watching.ok()) return respond(Error(watching));
    // If the server drops the response without starting the stream (HEAD, a failed write),
    // the watcher ends at its next heartbeat or change.
    auto started = std::make_shared<StartGuard>(sink);
    respond(stream_response(first, [sink, started](std::shared_ptr<http::BodyStream> body) {
      started->started = true;
      sink->Attach(std::move(body));
    }));
  });
}

void AddStaffRoutes(http::Router& router, const std::shared_ptr<Shared>& shared) {
  // Support answers customers about their orders; ops unsticks sagas. Admin always passes.
  router.AddSync("GET", "/api/v1/admin/orders", [shared](const Request& request) {
    Response denied;
    if (!AuthorizeStaff(request, shared->options.admin_api_key, {Role::kSupport, Role::kOps},
                        denied))
      return denied;
    OrderQuery query;
    if (std::optional<std::string> state = request.QueryParam("state")) {
      query.state = ParseOrderState(*state);
      if (!query.state) return Error(InvalidParam("state", "unknown order state"));
    }
    query.limit = IntParam(request, "limit").value_or(50);
    query.after_id = request.QueryParam("cursor").value_or("");
    absl::StatusOr<std::vector<Order>> orders = shared->service.ListOrders(query);
    if (!orders.ok()) return Error(orders.status());
    Json items = Json::array();
    for (const Order& order : *orders) items.push_back(OrderJson(order));
    Json next = !orders->empty() && static_cast<int64_t>(orders->size()) ==
                                        std::clamp<int64_t>(query.limit, 1, kListPageMax)
                    ? Json(orders->back().id)
                    : Json(nullptr);
    return Response::Json(200, Json{{"items", items}, {"next_cursor", next}});
  });

  router.AddSync("GET", "/api/v1/admin/orders/stuck", [shared](const Request& request) {
    Response denied;
    if (!AuthorizeStaff(request, shared->options.admin_api_key, {Role::kSupport, Role::kOps},
                        denied))
      return denied;
    const int64_t older_than_s = IntParam(request, "older_than_s").value_or(kStuckDefaultS);
    absl::StatusOr<std::vector<Order>> orders =
        shared->service.Stuck(older_than_s * 1000, IntParam(request, "limit").value_or(100));
    if (!orders.ok()) return Error(orders.status());
    Json items = Json::array();
    for (const Order& order : *orders) items.push_back(OrderJson(order));
    return Response::Json(200, Json{{"items", items}});
  });

  for (const auto& [path, action] :
       {std::pair{"/api/v1/admin/orders/{id}/retry", StaffAction::kRetry},
        std::pair{"/api/v1/admin/orders/{id}/compensate", StaffAction::kCompensate}}) {
    router.Add("POST", path, [shared, action](Request& request, Responder respond) {
      Response denied;
      if (!AuthorizeStaff(request, shared->options.admin_api_key, {Role::kSupport, Role::kOps},
                          denied)) {
        return respond(std::move(denied));
      }
      shared->service.Staff(request.PathParam("id"), action,
                            [respond](absl::StatusOr<Order> order) {
                              if (!order.ok()) return respond(Error(order.status()));
                              respond(Response::Json(200, OrderJson(*order)));
                            });
    });
  }
}

}  // namespace

Json CartJson(const CartView& view) {
  const Cart& cart = view.cart;
  Json lines = Json::array();
  for (const PricedLine& line : view.lines) lines.push_back(LineJson(line));
  Json totals = nullptr;
  if (view.totals) {
    totals = Json{{"subtotal", MoneyJson(view.totals->subtotal)},
                  {"shipping", MoneyJson(view.totals->shipping)},
                  {"tax", MoneyJson(view.totals->tax)},
                  {"grand_total", MoneyJson(view.totals->grand_total)}};
  }
  Json reservation = {{"id", cart.reservation_id},
                      {"status", CartReservationName(cart.reservation)},
                      {"short_skus", cart.reservation_short_skus}};
  if (cart.reservation == CartReservation::kPending ||
      cart.reservation == CartReservation::kReserved) {
    reservation["expires_at_ms"] = cart.reservation_expires_at_ms;
    reservation["expires_at"] =
        absl::FormatTime(absl::RFC3339_sec, absl::FromUnixMillis(cart.reservation_expires_at_ms),
                         absl::UTCTimeZone());
  }
  return Json{{"id", cart.id},
              {"status", CartStatusName(cart.status)},
              {"currency", cart.currency},
              {"region", cart.region},
              {"email", cart.email},
              {"shipping_address", cart.shipping_address},
              {"lines", lines},
              {"quantities",
               [&] {
                 Json q = Json::array();
                 for (const CartLine& line : cart.lines) {
                   q.push_back({{"sku", line.sku}, {"quantity", line.quantity}});
                 }
                 return q;
               }()},
              {"totals", totals},
              {"pricing_problem",
               view.pricing_problem.empty() ? Json(nullptr) : Json(view.pricing_problem)},
              {"reservation", reservation},
              {"order_id", cart.order_id.empty() ? Json(nullptr) : Json(cart.order_id)},
              {"version", cart.version},
              {"created_at_ms", cart.created_at_ms},
              {"updated_at_ms", cart.updated_at_ms}};
}

std::string CartJsonText(const CartView& view) {
  const Cart& cart = view.cart;
  std::string out = fmt::format("{{\"created_at_ms\":{},\"currency\":", cart.created_at_ms);
  AppendJsonString(out, cart.currency);
  out += ",\"email\":";
  AppendJsonString(out, cart.email);
  out += ",\"id\":";
  AppendJsonString(out, cart.id);
  out += ",\"lines\":";
  AppendLinesText(out, view.lines);
  out += ",\"order_id\":";
  AppendStringOrNullText(out, cart.order_id);
  out += ",\"pricing_problem\":";
  AppendStringOrNullText(out, view.pricing_problem);
  out += ",\"quantities\":[";
  for (size_t i = 0; i < cart.lines.size(); ++i) {
    if (i > 0) out += ',';
    out += fmt::format("{{\"quantity\":{},\"sku\":", cart.lines[i].quantity);
    AppendJsonString(out, cart.lines[i].sku);
    out += '}';
  }
  out += "],\"region\":";
  AppendJsonString(out, cart.region);
  out += ",\"reservation\":{";
  if (cart.reservation == CartReservation::kPending ||
      cart.reservation == CartReservation::kReserved) {
    out += "\"expires_at\":";
    AppendJsonString(out, absl::FormatTime(absl::RFC3339_sec,
                                           absl::FromUnixMillis(cart.reservation_expires_at_ms),
                                           absl::UTCTimeZone()));
    out += fmt::format(",\"expires_at_ms\":{},", cart.reservation_expires_at_ms);
  }
  out += "\"id\":";
  AppendJsonString(out, cart.reservation_id);
  out += ",\"short_skus\":";
  AppendJsonStringArray(out, cart.reservation_short_skus);
  out += ",\"status\":";
  AppendJsonString(out, CartReservationName(cart.reservation));
  out += "},\"shipping_address\":";
  out += DumpJson(cart.shipping_address);
  out += ",\"status\":";
  AppendJsonString(out, CartStatusName(cart.status));
  out += ",\"totals\":";
  if (view.totals) {
    out += "{\"grand_total\":";
    AppendMoneyText(out, view.totals->grand_total);
    out += ",\"shipping\":";
    AppendMoneyText(out, view.totals->shipping);
    out += ",\"subtotal\":";
    AppendMoneyText(out, view.totals->subtotal);
    out += ",\"tax\":";
    AppendMoneyText(out, view.totals->tax);
    out += '}';
  } else {
    out += "null";
  }
  out += fmt::format(",\"updated_at_ms\":{},\"version\":{}}}", cart.updated_at_ms, cart.version);
  return out;
}

std::string OrderJsonText(const Order& order) {
  const SagaState& saga = order.saga;
  std::string out = fmt::format("{{\"cart_id\":");
  AppendJsonString(out, order.cart_id);
  out += fmt::format(",\"created_at_ms\":{},\"currency\":", order.created_at_ms);
  AppendJsonString(out, order.currency);
  out += ",\"email\":";
  AppendJsonString(out, order.email);
  out += ",\"id\":";
  AppendJsonString(out, order.id);
  out += ",\"lines\":";
  AppendLinesText(out, order.lines);
  out += ",\"reason\":";
  AppendStringOrNullText(out, saga.reason);
  out += ",\"region\":";
  AppendJsonString(out, order.region);
  out += fmt::format(
      ",\"saga\":{{\"attempt\":{},\"authorized\":{},\"deadline_ms\":{},"
      "\"finished\":{},\"reservation_id\":",
      saga.attempt, saga.authorized, saga.deadline_ms, SagaFinished(saga));
  AppendJsonString(out, saga.reservation_id);
  out += ",\"step\":";
  AppendJsonString(out, SagaStepName(saga.step));
  out += "},\"shipping_address\":";
  out += DumpJson(order.shipping_address);
  out += ",\"short_skus\":";
  AppendJsonStringArray(out, saga.short_skus);
  out += ",\"state\":";
  AppendJsonString(out, OrderStateName(order.state()));
  out += ",\"totals\":{\"grand_total\":";
  AppendMoneyText(out, order.total_minor, order.currency);
  out += ",\"shipping\":";
  AppendMoneyText(out, order.shipping_minor, order.currency);
  out += ",\"subtotal\":";
  AppendMoneyText(out, order.subtotal_minor, order.currency);
  out += ",\"tax\":";
  AppendMoneyText(out, order.tax_minor, order.currency);
  out +=
      fmt::format("}},\"updated_at_ms\":{},\"version\":{}}}", order.updated_at_ms, order.version);
  return out;
}

Json OrderJson(const Order& order) {
  Json lines = Json::array();
  for (const PricedLine& line : order.lines) lines.push_back(LineJson(line));
  const SagaState& saga = order.saga;
  return Json{{"id", order.id},
              {"cart_id", order.cart_id},
              {"state", OrderStateName(order.state())},
              {"reason", saga.reason.empty() ? Json(nullptr) : Json(saga.reason)},
              {"short_skus", saga.short_skus},
              {"currency", order.currency},
              {"region", order.region},
              {"email", order.email},
              {"shipping_address", order.shipping_address},
              {"lines", lines},
              {"totals",
               {{"subtotal", MoneyJson(order.subtotal_minor, order.currency)},
                {"shipping", MoneyJson(order.shipping_minor, order.currency)},
                {"tax", MoneyJson(order.tax_minor, order.currency)},
                {"grand_total", MoneyJson(order.total_minor, order.currency)}}},
              {"saga",
               {{"step", SagaStepName(saga.step)},
                {"attempt", saga.attempt},
                {"deadline_ms", saga.deadline_ms},
                {"reservation_id", saga.reservation_id},
                {"authorized", saga.authorized},
                {"finished", SagaFinished(saga)}}},
              {"version", order.version},
              {"created_at_ms", order.created_at_ms},
              {"updated_at_ms", order.updated_at_ms}};
}

void AddOrderingRoutes(http::Router& router, OrderingService& service, ApiOptions options) {
  auto shared = std::make_shared<Shared>(Shared{service, std::move(options)});
  AddCartRoutes(router, shared);
  AddOrderRoutes(router, shared);
  AddStaffRoutes(router, shared);
}

}  // namespace emporium::ordering
