#include "common/money.h"

#include <array>
#include <limits>

#include "fmt/format.h"

namespace emporium {
namespace {

// The currencies Emporium trades in. Adding one is a one-line change here.
constexpr std::array<Currency, 12> kCurrencies = {{
    {"USD", 2},
    {"EUR", 2},
    {"GBP", 2},
    {"JPY", 0},
    {"CHF", 2},
    {"CAD", 2},
    {"AUD", 2},
    {"SEK", 2},
    {"KWD", 3},
    {"BHD", 3},
    {"KRW", 0},
    {"INR", 2},
}};

absl::Status CurrencyMismatch(const Money& a, const Money& b) {
  return absl::InvalidArgumentError(
      fmt::format("currency mismatch: {} and {}", a.currency_code(), b.currency_code()));
}

}  // namespace

absl::StatusOr<Currency> FindCurrency(std::string_view code) {
  for (const Currency& currency : kCurrencies) {
    if (currency.code == code) return currency;
  }
  return absl::NotFoundError(fmt::format("unknown currency: {}", code));
}

absl::StatusOr<Money> Money::FromMinor(int64_t amount_minor, std::string_view currency_code) {
  absl::StatusOr<Currency> currency = FindCurrency(currency_code);
  if (!currency.ok()) return currency.status();
  return Money(amount_minor, *currency);
}

absl::StatusOr<Money> Money::Zero(std::string_view currency_code) {
  return FromMinor(0, currency_code);
}

absl::StatusOr<Money> Money::Parse(std::string_view decimal, std::string_view currency_code) {
  absl::StatusOr<Currency> currency = FindCurrency(currency_code);
  if (!currency.ok()) return currency.status();
  std::string_view text = decimal;
  bool negative = false;
  if (!text.empty() && (text.front() == '-' || text.front() == '+')) {
    negative = text.front() == '-';
    text.remove_prefix(1);
  }
  if (text.empty()) return absl::InvalidArgumentError("empty amount");
  int64_t value = 0;
  int fraction_digits = -1;  // -1 until a '.' is seen
  bool any_digit = false;
  for (char c : text) {
    if (c == '.') {
      if (fraction_digits >= 0) return absl::InvalidArgumentError("more than one decimal point");
      fraction_digits = 0;
      continue;
    }
    if (c < '0' || c > '9') {
      return absl::InvalidArgumentError(fmt::format("not a decimal amount: {}", decimal));
    }
    any_digit = true;
    if (fraction_digits >= 0 && ++fraction_digits > currency->exponent) {
      return absl::InvalidArgumentError(
          fmt::format("{} allows {} fraction digits", currency->code, currency->exponent));
    }
    if (__builtin_mul_overflow(value, int64_t{10}, &value) ||
        __builtin_add_overflow(value, int64_t{c - '0'}, &value)) {
      return absl::OutOfRangeError("amount too large");
    }
  }
  if (!any_digit) return absl::InvalidArgumentError("amount has no digits");
  for (int i = std::max(fraction_digits, 0); i < currency->exponent; ++i) {
    if (__builtin_mul_overflow(value, int64_t{10}, &value)) {
      return absl::OutOfRangeError("amount too large");
    }
  }
  return Money(negative ? -value : value, *currency);
}

absl::StatusOr<Money> Money::Add(const Money& other) const {
  if (!(currency_ == other.currency_)) return CurrencyMismatch(*this, other);
  int64_t sum = 0;
  if (__builtin_add_overflow(amount_minor_, other.amount_minor_, &sum)) {
    return absl::OutOfRangeError("money overflow");
  }
  return Money(sum, currency_);
}

absl::StatusOr<Money> Money::Subtract(const Money& other) const {
  if (!(currency_ == other.currency_)) return CurrencyMismatch(*this, other);
  int64_t difference = 0;
  if (__builtin_sub_overflow(amount_minor_, other.amount_minor_, &difference)) {
    return absl::OutOfRangeError("money overflow");
  }
  return Money(difference, currency_);
}

absl::StatusOr<Money> Money::Multiply(int64_t factor) const {
  int64_t product = 0;
  if (__builtin_mul_overflow(amount_minor_, factor, &product)) {
    return absl::OutOfRangeError("money overflow");
  }
  return Money(product, currency_);
}

absl::StatusOr<Money> Money::MultiplyBasisPoints(int64_t basis_points) const {
  __extension__ using Int128 = __int128;  // GCC extension; exact for any int64 product
  Int128 product = static_cast<Int128>(amount_minor_) * basis_points;
  Int128 rounded = product >= 0 ? (product + 5000) / 10000 : (product - 5000) / 10000;
  if (rounded > std::numeric_limits<int64_t>::max() ||
      rounded < std::numeric_limits<int64_t>::min()) {
    return absl::OutOfRangeError("money overflow");
  }
  return Money(static_cast<int64_t>(rounded), currency_);
}

std::string Money::ToDecimalString() const {
  // Work in unsigned space so INT64_MIN prints correctly. Built by appending (not insert) to
  // keep clear of GCC 12's false -Wrestrict positives on std::string::insert.
  uint64_t magnitude = amount_minor_ < 0 ? 0 - static_cast<uint64_t>(amount_minor_)
                                         : static_cast<uint64_t>(amount_minor_);
  const std::string digits = std::to_string(magnitude);
  const auto exponent = static_cast<size_t>(currency_.exponent);
  std::string text;
  text.reserve(digits.size() + exponent + 3);
  if (amount_minor_ < 0) text.push_back('-');
  if (exponent == 0) return text.append(digits);
  if (digits.size() <= exponent) {
    text.append("0.");
    text.append(exponent - digits.size(), '0');
    return text.append(digits);
  }
  const size_t whole_digits = digits.size() - exponent;
  text.append(digits, 0, whole_digits);
  text.push_back('.');
  return text.append(digits, whole_digits, exponent);
}

}  // namespace emporium
