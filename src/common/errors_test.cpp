#include "common/errors.h"

#include "common/status_macros.h"
#include "gtest/gtest.h"

namespace emporium {
namespace {

TEST(ErrorsTest, CodeAndParamRideOnTheStatus) {
  absl::Status status = InvalidParam("lines[0].quantity", "must be positive");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ErrorParam(status), "lines[0].quantity");
  EXPECT_EQ(ErrorCode(status), "invalid_param");
  EXPECT_FALSE(ErrorCode(absl::InternalError("x")).has_value());
  EXPECT_TRUE(WithErrorCode(absl::OkStatus(), "ignored").ok());
}

absl::StatusOr<int> Half(int value) {
  if (value % 2 != 0) return absl::InvalidArgumentError("odd");
  return value / 2;
}

absl::StatusOr<int> Quarter(int value) {
  ASSIGN_OR_RETURN(int half, Half(value));
  ASSIGN_OR_RETURN(int quarter, Half(half));
  return quarter;
}

absl::Status CheckEven(int value) {
  RETURN_IF_ERROR(Half(value).status());
  return absl::OkStatus();
}

TEST(StatusMacrosTest, PropagateTheFirstError) {
  EXPECT_EQ(*Quarter(8), 2);
  EXPECT_EQ(Quarter(6).status().message(), "odd");
  EXPECT_TRUE(CheckEven(2).ok());
  EXPECT_FALSE(CheckEven(3).ok());
}

}  // namespace
}  // namespace emporium
