#include "platform/sql/database.h"

#include <cstdio>
#include <cstdlib>

namespace emporium::sql {
namespace {

// Asking a Row for the wrong type is a bug in the calling store, not a runtime condition, so
// it crashes loudly in every build mode (assert() would vanish in release builds).
[[noreturn]] void WrongType(size_t column, const char* wanted, const Value& value) {
  static constexpr const char* kTypeNames[] = {"NULL", "integer", "double", "text", "blob"};
  std::fprintf(stderr, "emporium::sql::Row: column %zu is %s, asked for %s\n", column,
               kTypeNames[value.index()], wanted);
  std::abort();
}

}  // namespace

bool Row::IsNull(size_t column) const {
  return std::holds_alternative<std::monostate>(value(column));
}

int64_t Row::Int(size_t column) const {
  const Value& v = value(column);
  if (const auto* i = std::get_if<int64_t>(&v)) return *i;
  if (const auto* d = std::get_if<double>(&v)) return static_cast<int64_t>(*d);
  WrongType(column, "integer", v);
}

double Row::Double(size_t column) const {
  const Value& v = value(column);
  if (const auto* d = std::get_if<double>(&v)) return *d;
  if (const auto* i = std::get_if<int64_t>(&v)) return static_cast<double>(*i);
  WrongType(column, "double", v);
}

std::string Row::Text(size_t column) const {
  const Value& v = value(column);
  if (const auto* s = std::get_if<std::string>(&v)) return *s;
  if (const auto* b = std::get_if<Blob>(&v)) return b->bytes;
  WrongType(column, "text", v);
}

std::optional<int64_t> Row::OptionalInt(size_t column) const {
  if (IsNull(column)) return std::nullopt;
  return Int(column);
}

std::optional<std::string> Row::OptionalText(size_t column) const {
  if (IsNull(column)) return std::nullopt;
  return Text(column);
}

}  // namespace emporium::sql
