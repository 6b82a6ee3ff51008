// Money: an integer count of a currency's minor units (cents, pence, yen).
//
// No floating point ever touches an amount. Arithmetic is overflow-checked and refuses to
// mix currencies; both failures come back as absl::Status, never as a wrong number.
// Values are immutable and safe to share between threads.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace emporium {

// An ISO-4217 currency known to Emporium, with the number of digits after its decimal point.
struct Currency {
  std::string_view code;  // "USD"
  int exponent = 2;       // USD 2, JPY 0, KWD 3

  friend bool operator==(const Currency& a, const Currency& b) { return a.code == b.code; }
};

// Looks up a currency by its ISO-4217 code (upper case). NotFound for codes Emporium does not
// trade in.
absl::StatusOr<Currency> FindCurrency(std::string_view code);

class Money {
 public:
  // Builds an amount from minor units; `currency` must come from FindCurrency.
  Money(int64_t amount_minor, Currency currency)
      : amount_minor_(amount_minor), currency_(currency) {}

  static absl::StatusOr<Money> FromMinor(int64_t amount_minor, std::string_view currency_code);
  // Parses a decimal string such as "12.34" or "-0.5" exactly. More fraction digits than the
  // currency allows is InvalidArgument rather than silent rounding.
  static absl::StatusOr<Money> Parse(std::string_view decimal, std::string_view currency_code);
  static absl::StatusOr<Money> Zero(std::string_view currency_code);

  int64_t amount_minor() const { return amount_minor_; }
  const Currency& currency() const { return currency_; }
  std::string_view currency_code() const { return currency_.code; }
  bool is_zero() const { return amount_minor_ == 0; }
  bool is_negative() const { return amount_minor_ < 0; }

  // Checked arithmetic: InvalidArgument on a currency mismatch, OutOfRange on overflow.
  absl::StatusOr<Money> Add(const Money& other) const;
  absl::StatusOr<Money> Subtract(const Money& other) const;
  absl::StatusOr<Money> Multiply(int64_t factor) const;
  // Multiplies by basis points (1/100 of a percent), rounding half away from zero. For tax.
  absl::StatusOr<Money> MultiplyBasisPoints(int64_t basis_points) const;

  // "12.34" with the currency's exponent; no currency sign.
  std::string ToDecimalString() const;

  friend bool operator==(const Money& a, const Money& b) {
    return a.amount_minor_ == b.amount_minor_ && a.currency_ == b.currency_;
  }

 private:
  int64_t amount_minor_;
  Currency currency_;
};

}  // namespace emporium
