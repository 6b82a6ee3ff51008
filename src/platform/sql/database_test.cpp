#include "platform/sql/database.h"

#include <gtest/gtest.h>

namespace emporium::sql {
namespace {

Row Sample() {
  return Row(
      {std::monostate{}, int64_t{42}, 2.75, std::string("text"), Blob{std::string("\0b", 2)}});
}

TEST(RowTest, TypedAccessAndConversions) {
  Row row = Sample();
  EXPECT_EQ(row.size(), 5u);
  EXPECT_TRUE(row.IsNull(0));
  EXPECT_FALSE(row.IsNull(1));
  EXPECT_EQ(row.Int(1), 42);
  EXPECT_EQ(row.Double(1), 42.0);
  EXPECT_EQ(row.Double(2), 2.75);
  EXPECT_EQ(row.Int(2), 2);
  EXPECT_EQ(row.Text(3), "text");
  EXPECT_EQ(row.Text(4), std::string("\0b", 2));
  EXPECT_EQ(row.OptionalInt(0), std::nullopt);
  EXPECT_EQ(row.OptionalInt(1), 42);
  EXPECT_EQ(row.OptionalText(0), std::nullopt);
  EXPECT_EQ(row.OptionalText(3), "text");
}

TEST(RowDeathTest, WrongTypeCrashes) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  Row row = Sample();
  EXPECT_DEATH(row.Int(3), "column 3 is text, asked for integer");
  EXPECT_DEATH(row.Text(1), "column 1 is integer, asked for text");
  EXPECT_DEATH(row.Int(0), "column 0 is NULL");
  EXPECT_THROW(row.value(9), std::out_of_range);
}

}  // namespace
}  // namespace emporium::sql
