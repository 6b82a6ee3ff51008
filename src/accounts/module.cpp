#include "accounts/module.h"

#include "accounts/api.h"

namespace emporium::accounts {

AccountsModule::~AccountsModule() { Stop(); }

absl::Status AccountsModule::Wire(const ContextDeps& deps, http::Router& router) {
  if (deps.database == nullptr) return absl::InvalidArgumentError("accounts needs its database");
  AccountsOptions accounts = options_.accounts;
  if (accounts.admin_api_key.empty()) accounts.admin_api_key = deps.admin_api_key;
  ids_ = std::make_unique<UuidV7Generator>(*options_.clock);
  service_ = std::make_unique<AccountsService>(*deps.database, *options_.clock, *ids_, accounts);
  workers_ = std::make_unique<BlockingWorkers>(options_.worker_threads, options_.worker_queue_max);
  AddAccountsRoutes(router, ApiDeps{service_.get(), workers_.get(), deps.admin_api_key});
  return absl::OkStatus();
}

void AccountsModule::Stop() {
  if (workers_) workers_->Stop();
}

std::string AccountsModule::ReadinessProblem() const {
  return service_ ? "" : "accounts not wired";
}

}  // namespace emporium::accounts
