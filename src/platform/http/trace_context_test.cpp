#include "platform/http/trace_context.h"

#include <set>

#include "gtest/gtest.h"

namespace emporium::http {
namespace {

constexpr char kValid[] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

TEST(TraceparentTest, ParsesAndFormatsRoundTrip) {
  std::optional<TraceContext> context = ParseTraceparent(kValid);
  ASSERT_TRUE(context.has_value());
  EXPECT_EQ(context->TraceIdHex(), "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_EQ(context->SpanIdHex(), "00f067aa0ba902b7");
  EXPECT_TRUE(context->sampled());
  EXPECT_EQ(FormatTraceparent(*context), kValid);
}

TEST(TraceparentTest, RejectsHostileInput) {
  for (const char* bad : {
           "",
           "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
           "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
           "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
           "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
           "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
           "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
           "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
           "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
           "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
           "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
       }) {
    EXPECT_FALSE(ParseTraceparent(bad).has_value()) << bad;
  }
  EXPECT_TRUE(ParseTraceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future")
                  .has_value());
}

TEST(TraceparentTest, NewAndChildContexts) {
  std::set<std::string> seen;
  for (int i = 0; i < 100; ++i) {
    TraceContext context = NewTraceContext();
    std::string header = FormatTraceparent(context);
    ASSERT_TRUE(ParseTraceparent(header).has_value()) << header;
    seen.insert(context.TraceIdHex());
    TraceContext child = ChildOf(context);
    EXPECT_EQ(child.trace_id, context.trace_id);
    EXPECT_NE(child.span_id, context.span_id);
  }
  EXPECT_EQ(seen.size(), 100u);
  EXPECT_EQ(RandomHex128().size(), 32u);
}

}  // namespace
}  // namespace emporium::http
