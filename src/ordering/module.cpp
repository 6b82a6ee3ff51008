#include "ordering/module.h"

#include <utility>

#include "ordering/api.h"
#include "ordering/store.h"

namespace emporium::ordering {

PricingRules DefaultPricingRules() {
  PricingRules rules;
  rules.fallback = RegionRates{{{"USD", 999},
                                {"EUR", 999},
                                {"GBP", 899},
                                {"JPY", 1500},
                                {"CHF", 999},
                                {"CAD", 1299},
                                {"AUD", 1299},
                                {"SEK", 9900}},
                               0};
  rules.regions["us"] = RegionRates{{{"USD", 499}, {"CAD", 999}}, 800};
  rules.regions["eu"] = RegionRates{{{"EUR", 499}, {"USD", 599}, {"SEK", 4900}}, 2000};
  rules.regions["uk"] = RegionRates{{{"GBP", 399}, {"EUR", 599}}, 2000};
  rules.regions["jp"] = RegionRates{{{"JPY", 800}}, 1000};
  return rules;
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
