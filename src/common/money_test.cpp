#include "common/money.h"

#include <limits>

#include "gtest/gtest.h"

namespace emporium {
namespace {

TEST(MoneyTest, ParsesExactlyWithoutFloatingPoint) {
  EXPECT_EQ(Money::Parse("12.34", "USD")->amount_minor(), 1234);
  EXPECT_EQ(Money::Parse("0.1", "USD")->amount_minor(), 10);
  EXPECT_EQ(Money::Parse("-5", "EUR")->amount_minor(), -500);
  EXPECT_EQ(Money::Parse("1500", "JPY")->amount_minor(), 1500);
  EXPECT_EQ(Money::Parse("1.234", "KWD")->amount_minor(), 1234);
}

TEST(MoneyTest, RejectsMalformedAmounts) {
  EXPECT_FALSE(Money::Parse("1.234", "USD").ok()) << "more digits than the currency has";
  EXPECT_FALSE(Money::Parse("1.5", "JPY").ok());
  EXPECT_FALSE(Money::Parse("", "USD").ok());
  EXPECT_FALSE(Money::Parse("-", "USD").ok());
  EXPECT_FALSE(Money::Parse(".", "USD").ok());
  EXPECT_FALSE(Money::Parse("1.2.3", "USD").ok());
  EXPECT_FALSE(Money::Parse("1e5", "USD").ok());
  EXPECT_FALSE(Money::Parse("12", "XXX").ok());
  EXPECT_EQ(Money::Parse("99999999999999999999", "USD").status().code(),
            absl::StatusCode::kOutOfRange);
}

TEST(MoneyTest, FormatsWithTheCurrencyExponent) {
  EXPECT_EQ(Money::FromMinor(1234, "USD")->ToDecimalString(), "12.34");
  EXPECT_EQ(Money::FromMinor(5, "USD")->ToDecimalString(), "0.05");
  EXPECT_EQ(Money::FromMinor(-5, "USD")->ToDecimalString(), "-0.05");
  EXPECT_EQ(Money::FromMinor(1500, "JPY")->ToDecimalString(), "1500");
  EXPECT_EQ(Money::FromMinor(1, "KWD")->ToDecimalString(), "0.001");
  EXPECT_EQ(Money::FromMinor(std::numeric_limits<int64_t>::min(), "USD")->ToDecimalString(),
            "-92233720368547758.08");
}

TEST(MoneyTest, ArithmeticRefusesMixedCurrenciesAndOverflow) {
  Money usd = *Money::FromMinor(100, "USD");
  Money eur = *Money::FromMinor(100, "EUR");
  EXPECT_EQ(usd.Add(usd)->amount_minor(), 200);
  EXPECT_EQ(usd.Subtract(*Money::FromMinor(150, "USD"))->amount_minor(), -50);
  EXPECT_EQ(usd.Add(eur).status().code(), absl::StatusCode::kInvalidArgument);
  Money big = *Money::FromMinor(std::numeric_limits<int64_t>::max(), "USD");
  EXPECT_EQ(big.Add(usd).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(big.Multiply(2).status().code(), absl::StatusCode::kOutOfRange);
  Money small = *Money::FromMinor(std::numeric_limits<int64_t>::min(), "USD");
  EXPECT_EQ(small.Subtract(usd).status().code(), absl::StatusCode::kOutOfRange);
}

TEST(MoneyTest, BasisPointsRoundHalfAwayFromZero) {
  Money price = *Money::FromMinor(1999, "USD");
  EXPECT_EQ(price.MultiplyBasisPoints(825)->amount_minor(), 165);  // 8.25% of 19.99 = 1.649
  EXPECT_EQ(Money::FromMinor(50, "USD")->MultiplyBasisPoints(1000)->amount_minor(), 5);
  EXPECT_EQ(Money::FromMinor(5, "USD")->MultiplyBasisPoints(1000)->amount_minor(), 1);  // 0.5
  EXPECT_EQ(Money::FromMinor(-5, "USD")->MultiplyBasisPoints(1000)->amount_minor(), -1);
}

}  // namespace
}  // namespace emporium
