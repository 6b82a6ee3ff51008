// AccountsModule: the accounts context as the composition root sees it. Owns the service and
// the worker pool for blocking work, adds the accounts routes, and hands the gateway its
// authenticator (bearer credential -> Principal).
//
// Thread-safety: Wire/Start/Stop from the app's owner thread (see ContextModule); service()
// and Authenticate from any thread after Wire.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "accounts/service.h"
#include "accounts/workers.h"
#include "common/clock.h"
#include "common/ids.h"
#include "platform/context/context_module.h"

namespace emporium::accounts {

struct AccountsModuleOptions {
  AccountsOptions accounts;  // admin_api_key defaults to ContextDeps::admin_api_key
  int worker_threads = 2;
  size_t worker_queue_max = 1024;
  const Clock* clock = &SystemClock::Instance();  // must outlive the module
};

class AccountsModule final : public ContextModule {
 public:
  explicit AccountsModule(AccountsModuleOptions options) : options_(std::move(options)) {}
  ~AccountsModule() override;

  std::string_view name() const override { return "accounts"; }
  std::vector<sql::Migration> Migrations() const override { return AccountsMigrations(); }
  absl::Status Wire(const ContextDeps& deps, http::Router& router) override;
  void Stop() override;
  std::string ReadinessProblem() const override;

  // After Wire; nullptr before.
  AccountsService* service() { return service_.get(); }

 private:
  AccountsModuleOptions options_;
  std::unique_ptr<UuidV7Generator> ids_;
  std::unique_ptr<AccountsService> service_;
  std::unique_ptr<BlockingWorkers> workers_;
};

}  // namespace emporium::accounts
