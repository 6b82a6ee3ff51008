#include "accounts/api.h"

#include <memory>

#include "common/errors.h"
#include "common/format.h"
#include "fmt/format.h"
#include "platform/context/principal.h"

namespace emporium::accounts {
namespace {

using http::Request;
using http::Responder;
using http::Response;

constexpr size_t kCredentialBytesMax = 256;

Json CustomerJson(const CustomerRecord& customer) {
  return Json{{"id", customer.id},
              {"email", customer.email},
              {"name", customer.name},
              {"email_verified", customer.email_verified},
              {"created_at_ms", customer.created_at_ms}};
}

Json AddressJson(const AddressRecord& address) {
  Json json = AddressFieldsJson(address.fields);
  json["id"] = address.id;
  json["created_at_ms"] = address.created_at_ms;
  json["updated_at_ms"] = address.updated_at_ms;
  return json;
}

Json StaffKeyJson(const StaffKeyRecord& key) {
  return Json{{"id", key.id},
              {"role", key.role},
              {"label", key.label},
              {"created_at_ms", key.created_at_ms},
              {"revoked", key.revoked}};
}

Json SessionJson(const Session& session) {
  return Json{
      {"token", session.token}, {"token_type", "Bearer"}, {"expires_at_ms", session.expires_at_ms}};
}

Response NoStore(Response response) {
  response.headers.Set("Cache-Control", "no-store");
  return response;
}

// Runs `work` on the worker pool and answers with its response; 503 when the pool is full.
template <typename Work>
void Offload(const ApiDeps& deps, Responder respond, Work work) {
  auto shared_respond = std::make_shared<Responder>(std::move(respond));
  const bool queued = deps.workers->Submit(
      [shared_respond, work = std::move(work)]() mutable { (*shared_respond)(work()); });
  if (!queued) {
    Response busy = http::ErrorResponse(
        WithErrorCode(absl::UnavailableError("accounts is busy; retry shortly"), "accounts_busy"));
    busy.headers.Set("Retry-After", "1");
    (*shared_respond)(std::move(busy));
  }
}

// The customer or the 401/403 to answer.
template <typename F>
http::Handler CustomerRoute(F handler) {
  return [handler](Request& request, Responder respond) {
    absl::StatusOr<std::string> customer_id = RequireCustomer(request);
    if (!customer_id.ok()) return respond(AccountsErrorResponse(customer_id.status()));
    handler(request, *customer_id, std::move(respond));
  };
}

absl::StatusOr<Json> Body(const Request& request) { return ParseJsonObject(request.body); }

// The request's Idempotency-Key ("" when absent); InvalidArgument when empty or too long.
absl::StatusOr<std::string> IdempotencyKeyOf(const Request& request) {
  std::optional<std::string_view> key = request.Header("Idempotency-Key");
  if (!key.has_value()) return std::string();
  if (key->empty() || key->size() > kIdempotencyKeyBytesMax) {
    return InvalidParam("Idempotency-Key",
                        fmt::format("must be 1 to {} bytes", kIdempotencyKeyBytesMax));
  }
  return std::string(*key);
}

}  // namespace

std::optional<std::string> BearerCredential(const http::Request& request) {
  std::optional<std::string_view> header = request.Header("Authorization");
  constexpr std::string_view kBearer = "Bearer ";
  if (!header.has_value() || header->size() <= kBearer.size() ||
      !http::EqualsIgnoreCase(header->substr(0, kBearer.size()), kBearer)) {
    return std::nullopt;
  }
  std::string_view credential = header->substr(kBearer.size());
  if (credential.size() > kCredentialBytesMax) return std::nullopt;
  return std::string(credential);
}

http::Response AccountsErrorResponse(const absl::Status& status) {
  Response response = http::ErrorResponse(status);
  if (std::optional<int64_t> retry_after_ms = RetryAfterMs(status); retry_after_ms.has_value()) {
    response.headers.Set("Retry-After", std::to_string((*retry_after_ms + 999) / 1000));
  }
  if (response.status == 401) response.headers.Set("WWW-Authenticate", "Bearer");
  return response;
}

void AddAccountsRoutes(http::Router& router, ApiDeps deps) {
  auto d = std::make_shared<ApiDeps>(std::move(deps));

  router.Add("POST", "/api/v1/accounts/signup", [d](Request& request, Responder respond) {
    absl::StatusOr<Json> body = Body(request);
    if (!body.ok()) return respond(AccountsErrorResponse(body.status()));
    absl::StatusOr<std::string> email = RequireString(*body, "email", kEmailBytesMax);
    if (!email.ok()) return respond(AccountsErrorResponse(email.status()));
    absl::StatusOr<std::string> password = RequireString(*body, "password", kPasswordBytesMax);
    if (!password.ok()) return respond(AccountsErrorResponse(password.status()));
    absl::StatusOr<std::optional<std::string>> name = OptionalString(*body, "name", kNameBytesMax);
    if (!name.ok()) return respond(AccountsErrorResponse(name.status()));
    absl::StatusOr<std::string> key = IdempotencyKeyOf(request);
    if (!key.ok()) return respond(AccountsErrorResponse(key.status()));
    Offload(*d, std::move(respond),
            [d, email = *email, password = *password, name = name->value_or(""), key = *key] {
              absl::StatusOr<SignUpResult> result = d->service->SignUp(email, password, name, key);
              if (!result.ok()) return AccountsErrorResponse(result.status());
              return NoStore(Response::Json(201, {{"customer", CustomerJson(result->customer)},
                                                  {"session", SessionJson(result->session)}}));
            });
  });

  router.Add("POST", "/api/v1/accounts/login", [d](Request& request, Responder respond) {
    absl::StatusOr<Json> body = Body(request);
    if (!body.ok()) return respond(AccountsErrorResponse(body.status()));
    absl::StatusOr<std::string> email = RequireString(*body, "email", kEmailBytesMax);
    if (!email.ok()) return respond(AccountsErrorResponse(email.status()));
    absl::StatusOr<std::string> password = RequireString(*body, "password", kPasswordBytesMax);
    if (!password.ok()) return respond(AccountsErrorResponse(password.status()));
    Offload(*d, std::move(respond), [d, email = *email, password = *password] {
      absl::StatusOr<LoginResult> result = d->service->Login(email, password);
      if (!result.ok()) return AccountsErrorResponse(result.status());
      return NoStore(Response::Json(200, {{"customer", CustomerJson(result->customer)},
                                          {"session", SessionJson(result->session)}}));
    });
  });

  router.Add("POST", "/api/v1/accounts/logout",
             CustomerRoute([d](Request& request, const std::string&, Responder respond) {
               std::optional<std::string> token = BearerCredential(request);
               Offload(*d, std::move(respond), [d, token = token.value_or("")] {
                 absl::Status status = d->service->Logout(token);
                 if (!status.ok()) return AccountsErrorResponse(status);
                 return Response::NoContent();
               });
             }));

  router.Add("POST", "/api/v1/accounts/verify-email", [d](Request& request, Responder respond) {
    absl::StatusOr<Json> body = Body(request);
    if (!body.ok()) return respond(AccountsErrorResponse(body.status()));
    absl::StatusOr<std::string> token = RequireString(*body, "token", kCredentialBytesMax);
    if (!token.ok()) return respond(AccountsErrorResponse(token.status()));
    Offload(*d, std::move(respond), [d, token = *token] {
      absl::StatusOr<CustomerRecord> customer = d->service->VerifyEmail(token);
      if (!customer.ok()) return AccountsErrorResponse(customer.status());
      return Response::Json(200, CustomerJson(*customer));
    });
  });

  router.Add("GET", "/api/v1/accounts/me",
             CustomerRoute([d](Request&, const std::string& customer_id, Responder respond) {
               absl::StatusOr<CustomerRecord> customer = d->service->GetCustomer(customer_id);
               if (!customer.ok()) return respond(AccountsErrorResponse(customer.status()));
               respond(NoStore(Response::Json(200, CustomerJson(*customer))));
             }));

  router.Add(
      "PATCH", "/api/v1/accounts/me",
      CustomerRoute([d](Request& request, const std::string& customer_id, Responder respond) {
        absl::StatusOr<Json> body = Body(request);
        if (!body.ok()) return respond(AccountsErrorResponse(body.status()));
        for (const auto& [key, value] : body->items()) {
          if (key != "name") {
            return respond(AccountsErrorResponse(
                InvalidParam(key, "only name can be changed here", "unknown_field")));
          }
        }
        absl::StatusOr<std::string> name = RequireString(*body, "name", kNameBytesMax);
        if (!name.ok()) return respond(AccountsErrorResponse(name.status()));
        Offload(*d, std::move(respond), [d, customer_id, name = *name] {
          absl::StatusOr<CustomerRecord> customer = d->service->UpdateName(customer_id, name);
          if (!customer.ok()) return AccountsErrorResponse(customer.status());
          return NoStore(Response::Json(200, CustomerJson(*customer)));
        });
      }));

  router.Add(
      "POST", "/api/v1/accounts/me/password",
      CustomerRoute([d](Request& request, const std::string& customer_id, Responder respond) {
        absl::StatusOr<Json> body = Body(request);
        if (!body.ok()) return respond(AccountsErrorResponse(body.status()));
        absl::StatusOr<std::string> current =
            RequireString(*body, "current_password", kPasswordBytesMax);
        if (!current.ok()) return respond(AccountsErrorResponse(current.status()));
        absl::StatusOr<std::string> next = RequireString(*body, "new_password", kPasswordBytesMax);
        if (!next.ok()) return respond(AccountsErrorResponse(next.status()));
        Offload(*d, std::move(respond),
                [d, customer_id, token = BearerCredential(request).value_or(""), current = *current,
                 next = *next] {
                  absl::Status status =
                      d->service->ChangePassword(customer_id, token, current, next);
                  if (!status.ok()) return AccountsErrorResponse(status);
                  return Response::NoContent();
                });
      }));

  router.Add("GET", "/api/v1/accounts/me/addresses",
             CustomerRoute([d](Request&, const std::string& customer_id, Responder respond) {
               absl::StatusOr<std::vector<AddressRecord>> addresses =
                   d->service->ListAddresses(customer_id);
               if (!addresses.ok()) return respond(AccountsErrorResponse(addresses.status()));
               Json data = Json::array();
               for (const AddressRecord& address : *addresses) data.push_back(AddressJson(address));
               respond(NoStore(Response::Json(200, {{"data", data}})));
             }));

  router.Add(
      "POST", "/api/v1/accounts/me/addresses",
      CustomerRoute([d](Request& request, const std::string& customer_id, Responder respond) {
        absl::StatusOr<Json> body = Body(request);
        if (!body.ok()) return respond(AccountsErrorResponse(body.status()));
        absl::StatusOr<AddressFields> fields = ParseAddress(*body, AddressInput::kFull);
        if (!fields.ok()) return respond(AccountsErrorResponse(fields.status()));
        absl::StatusOr<std::string> key = IdempotencyKeyOf(request);
        if (!key.ok()) return respond(AccountsErrorResponse(key.status()));
        Offload(*d, std::move(respond), [d, customer_id, fields = *fields, key = *key] {
          absl::StatusOr<AddressRecord> address =
              d->service->CreateAddress(customer_id, fields, key);
          if (!address.ok()) return AccountsErrorResponse(address.status());
          return Response::Json(201, AddressJson(*address));
        });
      }));

  router.Add(
      "GET", "/api/v1/accounts/me/addresses/{id}",
      CustomerRoute([d](Request& request, const std::string& customer_id, Responder respond) {
        absl::StatusOr<AddressRecord> address =
            d->service->GetAddress(customer_id, request.PathParam("id"));
        if (!address.ok()) return respond(AccountsErrorResponse(address.status()));
        respond(NoStore(Response::Json(200, AddressJson(*address))));
      }));

  router.Add(
      "PATCH", "/api/v1/accounts/me/addresses/{id}",
      CustomerRoute([d](Request& request, const std::string& customer_id, Responder respond) {
        absl::StatusOr<Json> body = Body(request);
        if (!body.ok()) return respond(AccountsErrorResponse(body.status()));
        Offload(*d, std::move(respond),
                [d, customer_id, id = request.PathParam("id"), body = std::move(*body)] {
                  absl::StatusOr<AddressRecord> address =
                      d->service->UpdateAddress(customer_id, id, body);
                  if (!address.ok()) return AccountsErrorResponse(address.status());
                  return Response::Json(200, AddressJson(*address));
                });
      }));

  router.Add(
      "DELETE", "/api/v1/accounts/me/addresses/{id}",
      CustomerRoute([d](Request& request, const std::string& customer_id, Responder respond) {
        Offload(*d, std::move(respond), [d, customer_id, id = request.PathParam("id")] {
          absl::Status status = d->service->DeleteAddress(customer_id, id);
          if (!status.ok()) return AccountsErrorResponse(status);
          return Response::NoContent();
        });
      }));

  router.Add("GET", "/api/v1/admin/customers/{id}", [d](Request& request, Responder respond) {
    Response denied;
    if (!AuthorizeStaff(request, d->admin_api_key, {Role::kSupport}, denied)) {
      return respond(std::move(denied));
    }
    absl::StatusOr<CustomerRecord> customer = d->service->GetCustomer(request.PathParam("id"));
    if (!customer.ok()) return respond(AccountsErrorResponse(customer.status()));
    respond(NoStore(Response::Json(200, CustomerJson(*customer))));
  });

  router.Add("GET", "/api/v1/admin/staff-keys", [d](Request& request, Responder respond) {
    Response denied;
    if (!AuthorizeStaff(request, d->admin_api_key, {Role::kAdmin}, denied)) {
      return respond(std::move(denied));
    }
    absl::StatusOr<std::vector<StaffKeyRecord>> keys = d->service->ListStaffKeys();
    if (!keys.ok()) return respond(AccountsErrorResponse(keys.status()));
    Json data = Json::array();
    for (const StaffKeyRecord& key : *keys) data.push_back(StaffKeyJson(key));
    respond(NoStore(Response::Json(200, {{"data", data}})));
  });

  router.Add("POST", "/api/v1/admin/staff-keys", [d](Request& request, Responder respond) {
    Response denied;
    if (!AuthorizeStaff(request, d->admin_api_key, {Role::kAdmin}, denied)) {
      return respond(std::move(denied));
    }
    absl::StatusOr<Json> body = Body(request);
    if (!body.ok()) return respond(AccountsErrorResponse(body.status()));
    absl::StatusOr<std::string> role_name = RequireString(*body, "role", 32);
    if (!role_name.ok()) return respond(AccountsErrorResponse(role_name.status()));
    std::optional<Role> role = ParseRole(*role_name);
    if (!role.has_value()) {
      return respond(AccountsErrorResponse(
          InvalidParam("role", "must be admin, catalog_manager, support or ops")));
    }
    absl::StatusOr<std::optional<std::string>> label =
        OptionalString(*body, "label", kStaffKeyLabelBytesMax);
    if (!label.ok()) return respond(AccountsErrorResponse(label.status()));
    Offload(*d, std::move(respond), [d, role = *role, label = label->value_or("")] {
      absl::StatusOr<CreatedStaffKey> created = d->service->CreateStaffKey(role, label);
      if (!created.ok()) return AccountsErrorResponse(created.status());
      Json json = StaffKeyJson(created->record);
      json["key"] = created->key;
      return NoStore(Response::Json(201, json));
    });
  });

  router.Add("DELETE", "/api/v1/admin/staff-keys/{id}", [d](Request& request, Responder respond) {
    Response denied;
    if (!AuthorizeStaff(request, d->admin_api_key, {Role::kAdmin}, denied)) {
      return respond(std::move(denied));
    }
    Offload(*d, std::move(respond), [d, id = request.PathParam("id")] {
      absl::Status status = d->service->RevokeStaffKey(id);
      if (!status.ok()) return AccountsErrorResponse(status);
      return Response::NoContent();
    });
  });
}

}  // namespace emporium::accounts
