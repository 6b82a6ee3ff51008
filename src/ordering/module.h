// OrderingModule: the ordering context as the composition root sees it (ContextModule).
//
// Wire() builds the OrderingService on the context's database, subscribes the consumers
// "ordering.saga" (inventory replies and payment.* events) and "ordering.prices"
// (catalog.product_changed, the price read model) and "ordering.accounts"
// (accounts.customer_verified: guest orders attach to the verified customer) and adds the HTTP
// routes. Start() starts the
// deadline sweeper, which resumes every unfinished saga left by a previous run, and the
// notifier; Stop() stops them (after the HTTP server drained, before the bus stops).
//
// Thread-safety: as ContextModule; ReadinessProblem from any thread.
#pragma once

#include <memory>
#include <string_view>
#include <vector>

#include "ordering/service.h"
#include "platform/context/context_module.h"

namespace emporium::ordering {

// Flat shipping and tax per region used when the app passes no rules of its own
// (kDefaultShippingRates / kDefaultTaxRates in model.h).
PricingRules DefaultPricingRules();

class OrderingModule final : public ContextModule {
 public:
  explicit OrderingModule(OrderingOptions options = DefaultOrderingOptions());
  ~OrderingModule() override;

  static OrderingOptions DefaultOrderingOptions();

  std::string_view name() const override { return "ordering"; }
  std::vector<sql::Migration> Migrations() const override;
  absl::Status Wire(const ContextDeps& deps, http::Router& router) override;
  absl::Status Start() override;
  void Stop() override;
  std::string ReadinessProblem() const override;

  // The service after Wire() (tests, tools); nullptr before.
  OrderingService* service() { return service_.get(); }

 private:
  OrderingOptions options_;
  std::unique_ptr<OrderingService> service_;
  bool started_ = false;
};

}  // namespace emporium::ordering
