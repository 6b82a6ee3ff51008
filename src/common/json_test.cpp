#include "common/json.h"

#include "common/errors.h"
#include "gtest/gtest.h"

namespace emporium {
namespace {

TEST(JsonTest, ParseFailuresAreInvalidJsonNotExceptions) {
  for (const char* bad : {"", "{", "{\"a\":}", "nul", "[1,2", "\xff\xfe"}) {
    absl::StatusOr<Json> parsed = ParseJson(bad);
    ASSERT_FALSE(parsed.ok()) << bad;
    EXPECT_EQ(ErrorCode(parsed.status()), "invalid_json");
  }
  EXPECT_FALSE(ParseJsonObject("[1]").ok());
  EXPECT_TRUE(ParseJsonObject("{\"a\":1}").ok());
}

TEST(JsonTest, RequiredFieldsNameTheirParam) {
  Json body = Json::parse(R"({"sku":"A-1","quantity":"3","big":99999999999999999999})");
  EXPECT_EQ(*RequireString(body, "sku"), "A-1");
  absl::StatusOr<std::string> missing = RequireString(body, "email", 100, "customer");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(ErrorParam(missing.status()), "customer.email");
  EXPECT_EQ(ErrorCode(missing.status()), "missing_param");
  absl::StatusOr<int64_t> wrong_type = RequireInt(body, "quantity", 1, 100);
  ASSERT_FALSE(wrong_type.ok());
  EXPECT_EQ(ErrorParam(wrong_type.status()), "quantity");
  EXPECT_FALSE(RequireInt(body, "big", 0, 1000).ok());
  EXPECT_FALSE(RequireString(body, "sku", 2).ok()) << "too long";
}

TEST(JsonTest, IntegerBounds) {
  Json body = Json::parse(R"({"q":0,"n":-1})");
  EXPECT_FALSE(RequireInt(body, "q", 1, 10).ok());
  EXPECT_EQ(*RequireInt(body, "n", -5, 5), -1);
  EXPECT_FALSE(OptionalInt(body, "absent", 0, 1)->has_value());
}

TEST(JsonTest, NestingDepthIgnoresBracketsInStrings) {
  EXPECT_EQ(JsonNestingDepth("1"), 0);
  EXPECT_EQ(JsonNestingDepth(R"({"a":[1,{"b":2}]})"), 3);
  EXPECT_EQ(JsonNestingDepth(R"({"a":"[[[{{{\"]]]"})"), 1);
  EXPECT_EQ(JsonNestingDepth(std::string(10000, '[')), 10000);
}

TEST(JsonTest, DumpNeverThrowsOnBadUtf8) {
  Json value = std::string("\xff ok");
  EXPECT_NO_THROW(DumpJson(value));
}

TEST(JsonTest, AppendJsonStringWritesDumpJsonsBytes) {
  const std::string hostile[] = {
      "",
      "plain",
      "quote \" backslash \\ slash /",
      std::string("controls \b\f\n\r\t \x01 \x1f end"),
      std::string("nul \0 inside", 13),
      "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x9b\x92",  // 2-, 3- and 4-byte UTF-8
      "\xff\xfe invalid",                           // the DOM's replacement rules
      "overlong \xc0\xaf",
      "surrogate \xed\xa0\x80",
      "truncated \xe2\x82",
  };
  for (const std::string& text : hostile) {
    std::string out = "prefix:";
    AppendJsonString(out, text);
    EXPECT_EQ(out, "prefix:" + DumpJson(Json(text))) << text;
  }
}

TEST(JsonTest, IsValidUtf8RejectsOverlongsSurrogatesAndTruncation) {
  EXPECT_TRUE(IsValidUtf8("caf\xc3\xa9 \xf4\x8f\xbf\xbf"));  // U+10FFFF is the last
  EXPECT_FALSE(IsValidUtf8("\xc0\xaf"));
  EXPECT_FALSE(IsValidUtf8("\xed\xa0\x80"));
  EXPECT_FALSE(IsValidUtf8("\xf4\x90\x80\x80"));
  EXPECT_FALSE(IsValidUtf8("\xe2\x82"));
}

}  // namespace
}  // namespace emporium
