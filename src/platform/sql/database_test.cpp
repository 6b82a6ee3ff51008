#include "platform/sql/database.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

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

// What a driver sees of the parameters a caller passes, as a braced list or as a vector.
std::vector<std::string> Describe(Params params) {
  std::vector<std::string> out;
  for (size_t i = 0; i < params.size(); ++i) {
    Param param = params[i];
    switch (param.kind()) {
      case Param::Kind::kNull:
        out.push_back("null");
        break;
      case Param::Kind::kInt:
        out.push_back("int " + std::to_string(param.integer()));
        break;
      case Param::Kind::kDouble:
        out.push_back("double " + std::to_string(param.real()));
        break;
      case Param::Kind::kText:
        out.push_back("text " + std::string(param.bytes()));
        break;
      case Param::Kind::kBlob:
        out.push_back("blob " + std::string(param.bytes()));
        break;
    }
  }
  return out;
}

TEST(ParamsTest, BracedListsConvertLikeValue) {
  const std::string name = "owned";
  const Value value = std::string("from value");
  const Value null_value;
  EXPECT_EQ(Describe({}), std::vector<std::string>{});
  EXPECT_EQ(Describe({int64_t{7}, 3, 2.5, true, name, "literal", std::string("temporary"),
                      Blob{"bytes"}, std::monostate{}, value, null_value, Value{int64_t{9}}}),
            (std::vector<std::string>{"int 7", "int 3", "double 2.500000", "int 1", "text owned",
                                      "text literal", "text temporary", "blob bytes", "null",
                                      "text from value", "null", "int 9"}));
}

TEST(ParamsTest, VectorsAreViewedElementByElement) {
  const std::vector<Value> values = {int64_t{1}, 0.5, std::string("t"), Blob{"b"},
                                     std::monostate{}};
  EXPECT_EQ(Describe(values),
            (std::vector<std::string>{"int 1", "double 0.500000", "text t", "blob b", "null"}));
  EXPECT_EQ(Describe(std::vector<Value>{}), std::vector<std::string>{});
}

TEST(ParamsTest, TextParamsViewTheCallersBytes) {
  const std::string text = "shared";
  const Value value = std::string("in a value");
  auto data_of = [](Params params, size_t index) { return params[index].bytes().data(); };
  EXPECT_EQ(data_of({text}, 0), text.data());
  EXPECT_EQ(data_of({value}, 0), std::get<std::string>(value).data());
  const std::vector<Value> values = {value};
  EXPECT_EQ(data_of(values, 0), std::get<std::string>(values[0]).data());
}

}  // namespace
}  // namespace emporium::sql
