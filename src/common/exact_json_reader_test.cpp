#include "common/exact_json_reader.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <string_view>

namespace emporium {
namespace {

TEST(ExactJsonReader, ReadsTheExpectedLayoutAndStopsAtTheFirstDifference) {
  ExactJsonReader reader(R"({"a":true,"n":120,"s":"x\"y\\z\n","p":"plain"})");
  bool flag = false;
  int64_t number = 0;
  std::string text;
  std::string_view plain;
  ASSERT_TRUE(reader.Literal("{\"a\":"));
  ASSERT_TRUE(reader.Bool(flag));
  EXPECT_TRUE(flag);
  ASSERT_TRUE(reader.Literal(",\"n\":"));
  ASSERT_TRUE(reader.Integer(number, 18));
  EXPECT_EQ(number, 120);
  ASSERT_TRUE(reader.Literal(",\"s\":"));
  ASSERT_TRUE(reader.String(text));
  EXPECT_EQ(text, "x\"y\\z\n");
  ASSERT_TRUE(reader.Literal(",\"p\":"));
  ASSERT_TRUE(reader.PlainString(plain));
  EXPECT_EQ(plain, "plain");
  EXPECT_FALSE(reader.AtEnd());
  EXPECT_FALSE(reader.Literal("]"));  // a mismatch consumes nothing
  ASSERT_TRUE(reader.Literal("}"));
  EXPECT_TRUE(reader.AtEnd());
}

TEST(ExactJsonReader, LeavesWhatItDoesNotReadExactlyToTheGeneralReader) {
  int64_t number = 0;
  for (std::string_view text : {"-1", "01", "1.5", "1e3", "", "x", "1234567890123456789"}) {
    ExactJsonReader reader(text);
    EXPECT_FALSE(reader.Integer(number, 18) && reader.AtEnd()) << text;
  }
  std::string out;
  std::string_view view;
  for (std::string_view text :
       {R"("\u0041")", "\"caf\xc3\xa9\"", "\"tab\there\"", R"("open)", R"("bad\q")", R"(plain)"}) {
    EXPECT_FALSE(ExactJsonReader(text).String(out)) << text;
    EXPECT_FALSE(ExactJsonReader(text).PlainString(view)) << text;
  }
  EXPECT_FALSE(ExactJsonReader(R"("a\nb")").PlainString(view));  // escapes: String only
  bool flag = false;
  EXPECT_FALSE(ExactJsonReader("True").Bool(flag));
  EXPECT_FALSE(ExactJsonReader("null").Bool(flag));
}

}  // namespace
}  // namespace emporium
