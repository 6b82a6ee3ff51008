// `emporium loadgen` and `emporium audit` as CLI11 subcommands, so src/app/main.cpp only
// registers and dispatches them.
//
// Exit codes of loadgen: 0 done (or the scenario skipped itself, e.g. browse without a
// catalog), 1 bad flags or set-up failure, 3 the scenario's verdict failed (a flash sale sold
// more than it stocked) or an audit found violations (the target's, see target_audit.h, or the
// offline one of --audit-data-dir), 4 the target's audit could not be obtained (transport error,
// refused key, server error). A target without the audit route (404) is reported as "not
// available" and does not fail the run; neither does running without --admin-key.
//
// Thread-safety: call from the main thread.
#pragma once

#include <cstdint>
#include <string>

namespace CLI {
class App;
}

namespace emporium::loadgen {

struct LoadgenFlags {
  std::string url = "http://127.0.0.1:8080";
  std::string scenario = "get";
  std::string path = "/healthz";
  int concurrency = 64;
  double rate = 0;  // 0 = closed loop
  int threads = 0;  // 0 = one per core, at most one per connection
  std::string duration = "10s";
  std::string warmup = "2s";
  std::string timeout = "10s";
  std::string out_dir;
  std::string admin_key;
  std::string sku = "LOADGEN-FLASH-1";
  int64_t stock = 100;
  std::string run_id;
  int products = 20;                                // checkout
  double decline_share = 0;                         // checkout
  std::string mix = "browse=90,cart=8,checkout=2";  // mixed
  bool audit = true;  // the target's audit after the run (needs admin_key)
  std::string audit_data_dir;
  bool progress = true;
};

// Adds the `loadgen` subcommand to `parent`; `flags` must outlive parsing.
CLI::App* AddLoadgenCommand(CLI::App& parent, LoadgenFlags& flags);
int RunLoadgen(const LoadgenFlags& flags);

}  // namespace emporium::loadgen
