// Test helpers for SQLite: a temporary directory deleted with everything in it on destruction,
// and SQLite's plan of a query.
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "fmt/format.h"
#include "platform/sql/database.h"

namespace emporium::sql {

class TempDir {
 public:
  TempDir() {
    std::string pattern = "/tmp/emporium_sql_XXXXXX";
    if (mkdtemp(pattern.data()) != nullptr) path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    if (!path_.empty()) std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  // Empty if the directory could not be created.
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// The detail column of EXPLAIN QUERY PLAN for `query` with `params`, one step per element
// (e.g. "SEARCH orders USING INDEX orders_by_state (state=?)"), read on a reader connection.
inline absl::StatusOr<std::vector<std::string>> QueryPlan(Database& db, std::string_view query,
                                                          const std::vector<Value>& params) {
  std::vector<std::string> plan;
  absl::Status status = db.Read([&](Transaction& tx) -> absl::Status {
    absl::StatusOr<ResultSet> rows = tx.Query(fmt::format("EXPLAIN QUERY PLAN {}", query), params);
    if (!rows.ok()) return rows.status();
    for (const Row& row : rows->rows) plan.push_back(row.Text(3));
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  return plan;
}

}  // namespace emporium::sql
