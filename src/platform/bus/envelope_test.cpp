#include "platform/bus/envelope.h"

#include <string>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace emporium::bus {
namespace {

Envelope Sample() {
  Envelope e;
  e.id = "0192f3a1-7c2e-7b3d-9f1a-2c3d4e5f6a7b";
  e.type = "inventory.reserved";
  e.source = "inventory";
  e.key = "sku-1";
  e.correlation_id = "order-7";
  e.causation_id = "0192f3a1-0000-7b3d-9f1a-2c3d4e5f6a7b";
  e.reply_to = "ordering.replies";
  e.traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  e.occurred_at_ms = 1767225600000;
  e.payload = R"({"sku":"sku-1","quantity":2,"note":"caf\u00e9 \"quoted\""})";
  return e;
}

TEST(EnvelopeTest, RoundTripsEveryFieldAndPayloadBytesExactly) {
  const Envelope e = Sample();
  absl::StatusOr<Envelope> back = Deserialize(Serialize(e));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, e);
}

TEST(EnvelopeTest, RoundTripsWithoutReplyToAndEmptyPayload) {
  Envelope e = Sample();
  e.reply_to.reset();
  e.payload.clear();
  absl::StatusOr<Envelope> back = Deserialize(Serialize(e));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, e);
  EXPECT_FALSE(back->reply_to.has_value());
}

// What Serialize wrote before it stopped building a DOM: the bytes must not change, so stored
// outbox rows and every reader see the same format.
std::string SerializeThroughDom(const Envelope& envelope) {
  nlohmann::json object = nlohmann::json::object();
  object["id"] = envelope.id;
  object["type"] = envelope.type;
  object["source"] = envelope.source;
  object["key"] = envelope.key;
  object["correlation_id"] = envelope.correlation_id;
  object["causation_id"] = envelope.causation_id;
  if (envelope.reply_to.has_value()) object["reply_to"] = *envelope.reply_to;
  object["traceparent"] = envelope.traceparent;
  object["occurred_at_ms"] = envelope.occurred_at_ms;
  object["payload"] = envelope.payload;
  return object.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

TEST(EnvelopeTest, SerializesTheSameBytesAsTheJsonDom) {
  std::string every_control;
  for (int c = 0; c < 0x20; ++c) every_control += static_cast<char>(c);
  const std::string texts[] = {
      "",
      "plain",
      R"({"a":"b \"q\" \\ /"})",
      every_control,
      "\x7f del and caf\xc3\xa9 and \xe2\x82\xac and \xf0\x9f\x98\x80",
      std::string("nul\0inside", 11),
      "\xff\xfe invalid",  // invalid UTF-8: the DOM's replacement rules
      "\xc0\xaf overlong",
      "\xed\xa0\x80 surrogate",
      "\xe2\x82 truncated",
      "\xf4\x90\x80\x80 past U+10FFFF",
  };
  for (const std::string& text : texts) {
    for (int field = 0; field < 4; ++field) {
      Envelope e = Sample();
      if (field == 0) e.payload = text;
      if (field == 1) e.key = text;
      if (field == 2) e.reply_to = text;
      if (field == 3) {
        e.reply_to.reset();
        e.traceparent = text;
        e.occurred_at_ms = -5;
      }
      EXPECT_EQ(Serialize(e), SerializeThroughDom(e)) << "field " << field << " text " << text;
    }
  }
}

TEST(EnvelopeTest, AcceptsRawJsonPayload) {
  absl::StatusOr<Envelope> e =
      Deserialize(R"({"id":"m1","type":"a.b","occurred_at_ms":5,"payload":{"x":[1,2]}})");
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->payload, R"({"x":[1,2]})");
  EXPECT_EQ(e->occurred_at_ms, 5);
}

TEST(EnvelopeTest, RejectsHostileBytes) {
  const std::string too_deep = std::string(100000, '[') + std::string(100000, ']');
  const std::string huge = std::string(kEnvelopeBytesMax + 1, ' ');
  const std::string cases[] = {
      "",
      "null",
      "[]",
      "\"just a string\"",
      "{",
      "{\"id\":\"m1\"",
      std::string("{\"id\":\"m\0\",\"type\":\"a\"}", 21),
      "\xff\xfe\xfd",
      R"({"type":"a.b","occurred_at_ms":1})",              // no id
      R"({"id":"m1","occurred_at_ms":1})",                 // no type
      R"({"id":"m1","type":"a.b"})",                       // no occurred_at_ms
      R"({"id":"m1","type":"a.b","occurred_at_ms":"1"})",  // wrong type
      R"({"id":"m1","type":"a.b","occurred_at_ms":1.5})",  // not an integer
      R"({"id":"m1","type":"a.b","occurred_at_ms":-1})",   // negative
      R"({"id":"m1","type":"a.b","occurred_at_ms":18446744073709551615})",
      R"({"id":7,"type":"a.b","occurred_at_ms":1})",                   // id not a string
      R"({"id":"m1","type":"A B","occurred_at_ms":1})",                // bad type chars
      R"({"id":"m1","type":"a.b","occurred_at_ms":1,"payload":5})",    // bad payload
      R"({"id":"m1","type":"a.b","occurred_at_ms":1,"reply_to":[]})",  // bad reply_to
      R"({"id":"m1","type":"a.b","occurred_at_ms":1,"payload":{"a":)",
      too_deep,
      "{\"id\":\"m1\",\"type\":\"a.b\",\"occurred_at_ms\":1,\"payload\":" + std::string(200, '[') +
          std::string(200, ']') + "}",
      huge,
      "{\"id\":\"" + std::string(kEnvelopeIdBytesMax + 1, 'x') +
          "\",\"type\":\"a.b\",\"occurred_at_ms\":1}",
  };
  for (const std::string& bytes : cases) {
    absl::StatusOr<Envelope> parsed = Deserialize(bytes);
    EXPECT_FALSE(parsed.ok()) << bytes.substr(0, 80);
    if (!parsed.ok()) {
      EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    }
  }
}

TEST(EnvelopeTest, SurvivesRandomMutationsOfValidBytes) {
  const std::string valid = Serialize(Sample());
  uint64_t state = 88172645463325252ULL;  // xorshift, deterministic
  for (int i = 0; i < 5000; ++i) {
    std::string bytes = valid;
    for (int flips = 0; flips < 3; ++flips) {
      state ^= state << 13;
      state ^= state >> 7;
      state ^= state << 17;
      bytes[state % bytes.size()] = static_cast<char>(state >> 56);
    }
    (void)Deserialize(bytes);  // must not crash; either outcome is fine
  }
}

TEST(EnvelopeTest, ValidateBoundsFields) {
  Envelope e = Sample();
  EXPECT_TRUE(Validate(e).ok());
  e.key = std::string(kEnvelopeKeyBytesMax + 1, 'k');
  EXPECT_EQ(Validate(e).code(), absl::StatusCode::kInvalidArgument);
  e = Sample();
  e.id.clear();
  EXPECT_EQ(Validate(e).code(), absl::StatusCode::kInvalidArgument);
}

TEST(EnvelopeTest, MakeReplyAddressesTheRequester) {
  const Envelope request = Sample();
  absl::StatusOr<Envelope> reply = MakeReply(request, "r1", "inventory", 9, "{}");
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->type, "ordering.replies");
  EXPECT_EQ(reply->correlation_id, request.correlation_id);
  EXPECT_EQ(reply->causation_id, request.id);
  EXPECT_EQ(reply->key, request.key);
  Envelope no_reply_to = request;
  no_reply_to.reply_to.reset();
  EXPECT_EQ(MakeReply(no_reply_to, "r2", "inventory", 9, "{}").status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(EnvelopeTest, TypeMatching) {
  EXPECT_TRUE(TypeMatches("*", "anything.at_all"));
  EXPECT_TRUE(TypeMatches("inventory.", "inventory.reserved"));
  EXPECT_FALSE(TypeMatches("inventory.", "inventoryx.reserved"));
  EXPECT_FALSE(TypeMatches("inventory.", "inventory"));
  EXPECT_TRUE(TypeMatches("inventory.reserved", "inventory.reserved"));
  EXPECT_FALSE(TypeMatches("inventory.reserved", "inventory.reserved2"));
}

}  // namespace
}  // namespace emporium::bus
