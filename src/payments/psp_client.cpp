#include "payments/psp_client.h"

#include <utility>

#include "common/errors.h"
#include "common/format.h"
#include "common/json.h"
#include "fmt/format.h"
#include "platform/http/client.h"

namespace emporium::payments {
namespace {

class HttpPspClient final : public PspClient {
 public:
  explicit HttpPspClient(const HttpPspOptions& options) : options_(options) {
    http::ClientOptions client;
    client.host = options.host;
    client.port = options.port;
    client.connection_count_max = options.connection_count_max;
    client.request_timeout = options.timeout;
    client_ = std::make_unique<http::HttpClient>(client);
  }

  absl::StatusOr<PspResult> Authorize(const std::string& key, int64_t amount_minor,
                                      const std::string& currency, const std::string& card_number,
                                      const std::string& reference) override {
    return Post("/v1/authorizations", key,
                {{"amount_minor", amount_minor},
                 {"currency", currency},
                 {"card_number", card_number},
                 {"reference", reference}});
  }

  absl::StatusOr<PspResult> Capture(const std::string& key, const std::string& authorization_id,
                                    int64_t amount_minor) override {
    return Post(fmt::format("/v1/authorizations/{}/capture", authorization_id), key,
                {{"amount_minor", amount_minor}});
  }

  absl::StatusOr<PspResult> Void(const std::string& key,
                                 const std::string& authorization_id) override {
    return Post(fmt::format("/v1/authorizations/{}/void", authorization_id), key, Json::object());
  }

  absl::StatusOr<PspResult> Refund(const std::string& key, const std::string& authorization_id,
                                   int64_t amount_minor) override {
    return Post("/v1/refunds", key,
                {{"authorization_id", authorization_id}, {"amount_minor", amount_minor}});
  }

 private:
  absl::StatusOr<PspResult> Post(const std::string& target, const std::string& key,
                                 const Json& body) {
    http::ClientRequest request;
    request.method = "POST";
    request.target = target;
    request.body = DumpJson(body);
    request.headers.Set("Content-Type", "application/json");
    request.headers.Set("Idempotency-Key", key);
    absl::StatusOr<http::ClientResponse> response = client_->Send(request);
    // Transport errors keep the client's contract (Unavailable vs outcome unknown). The
    // messages never carry the request body, so no card number can leak through them.
    if (!response.ok()) return response.status();
    absl::StatusOr<Json> parsed = ParseJson(response->body);
    if (response->status >= 500) {
      return WithErrorCode(absl::UnavailableError(fmt::format("psp answered {}", response->status)),
                           "psp_error");
    }
    if (!parsed.ok() || !parsed->is_object()) {
      return WithErrorCode(absl::UnknownError("psp answered malformed JSON"), "outcome_unknown");
    }
    PspResult result;
    if (response->status >= 200 && response->status < 300) {
      result.outcome = PspOutcome::kSucceeded;
      result.object_id = parsed->value("id", "");
      result.amount_minor = parsed->value("amount_minor", int64_t{0});
      return result;
    }
    const Json error = parsed->value("error", Json::object());
    result.code = error.is_object() ? error.value("code", "unknown") : "unknown";
    result.outcome = response->status == 402 ? PspOutcome::kDeclined : PspOutcome::kRejected;
    return result;
  }

  HttpPspOptions options_;
  std::unique_ptr<http::HttpClient> client_;
};

}  // namespace

std::unique_ptr<PspClient> MakeHttpPspClient(const HttpPspOptions& options) {
  return std::make_unique<HttpPspClient>(options);
}

}  // namespace emporium::payments
