#include "ordering/module.h"

#include <cstdlib>
#include <utility>

#include "ordering/api.h"
#include "ordering/store.h"

namespace emporium::ordering {

PricingRules DefaultPricingRules() {
  absl::StatusOr<PricingRules> rules = ParsePricingRules(kDefaultShippingRates, kDefaultTaxRates);
  if (!rules.ok()) std::abort();  // the built-in text is checked by ordering_model_test
  return *std::move(rules);
}

OrderingOptions OrderingModule::DefaultOrderingOptions() {
  OrderingOptions options;
  options.pricing = DefaultPricingRules();
  return options;
}

OrderingModule::OrderingModule(OrderingOptions options) : options_(std::move(options)) {}

OrderingModule::~OrderingModule() { Stop(); }

std::vector<sql::Migration> OrderingModule::Migrations() const { return OrderingMigrations(); }

absl::Status OrderingModule::Wire(const ContextDeps& deps, http::Router& router) {
  if (deps.database == nullptr || deps.bus == nullptr) {
    return absl::InvalidArgumentError("ordering: database and bus are required");
  }
  if (service_) return absl::FailedPreconditionError("ordering: already wired");
  service_ = std::make_unique<OrderingService>(*deps.database, options_);
  OrderingService* raw = service_.get();
  absl::Status saga = deps.bus->Subscribe(
      std::string(kSagaConsumer), *deps.database, {std::string(kInventoryReplyType), "payment."},
      [raw](sql::Transaction& tx, const bus::Envelope& envelope) {
        return raw->HandleSagaMessage(tx, envelope);
      });
  if (!saga.ok()) return saga;
  absl::Status prices =
      deps.bus->Subscribe(std::string(kPriceConsumer), *deps.database, {"catalog.product_changed"},
                          [raw](sql::Transaction& tx, const bus::Envelope& envelope) {
                            return raw->HandleProductChanged(tx, envelope);
                          });
  if (!prices.ok()) return prices;
  absl::Status accounts = deps.bus->Subscribe(
      std::string(kAccountsConsumer), *deps.database, {std::string(kCustomerVerifiedType)},
      [raw](sql::Transaction& tx, const bus::Envelope& envelope) {
        return raw->HandleCustomerVerified(tx, envelope);
      });
  if (!accounts.ok()) return accounts;
  AddOrderingRoutes(router, *service_, ApiOptions{deps.admin_api_key});
  return absl::OkStatus();
}

absl::Status OrderingModule::Start() {
  if (!service_) return absl::FailedPreconditionError("ordering: Start before Wire");
  service_->Start();
  started_ = true;
  return absl::OkStatus();
}

void OrderingModule::Stop() {
  if (service_) service_->Stop();
  started_ = false;
}

std::string OrderingModule::ReadinessProblem() const {
  if (!service_) return "ordering not wired";
  return started_ ? "" : "ordering not started";
}

}  // namespace emporium::ordering
