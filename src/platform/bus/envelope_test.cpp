#include "platform/bus/envelope.h"

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

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

// Deserialize reads Serialize's own bytes without the DOM; whatever it is given, it must answer
// exactly what the DOM reader answers (the same envelope or the same error).
void ExpectSameAsDom(const std::string& bytes) {
  absl::StatusOr<Envelope> fast = Deserialize(bytes);
  absl::StatusOr<Envelope> dom = DeserializeWithDom(bytes);
  ASSERT_EQ(fast.status(), dom.status()) << bytes;
  if (fast.ok()) {
    EXPECT_EQ(*fast, *dom) << bytes;
  }
}

TEST(EnvelopeTest, ReadsSerializedBytesAsTheDomReadsThem) {
  std::vector<Envelope> envelopes;
  envelopes.push_back(Sample());
  Envelope e = Sample();
  e.reply_to.reset();
  e.occurred_at_ms = 0;
  envelopes.push_back(e);
  e.reply_to = "";  // present but empty: still written, still read back
  e.payload = "";
  e.causation_id = e.traceparent = "";
  envelopes.push_back(e);
  e = Sample();
  e.payload = "quote \" backslash \\ slash / tab \t newline \n cr \r bs \b ff \f end";
  envelopes.push_back(e);
  e.payload = std::string("control ") + '\x01' + " and nul " + std::string(1, '\0') + " \x1f";
  envelopes.push_back(e);  // \u00XX escapes: the DOM's
  e.payload = "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80";
  envelopes.push_back(e);  // UTF-8: the DOM's
  e.payload = "bad \xff utf8";
  envelopes.push_back(e);
  e = Sample();
  for (int64_t at : {int64_t{1}, int64_t{9}, int64_t{10}, int64_t{999'999'999'999'999'999},
                     int64_t{1'000'000'000'000'000'000}, std::numeric_limits<int64_t>::max()}) {
    e.occurred_at_ms = at;  // 19 digits: the DOM's
    envelopes.push_back(e);
  }
  e = Sample();
  e.type = "Not A Type";  // read, then refused by Validate alike
  envelopes.push_back(e);
  e = Sample();
  e.id = "";
  envelopes.push_back(e);
  e = Sample();
  e.key = std::string(kEnvelopeKeyBytesMax + 1, 'k');
  envelopes.push_back(e);
  for (const Envelope& envelope : envelopes) {
    const std::string bytes = Serialize(envelope);
    ExpectSameAsDom(bytes);
    if (Validate(envelope).ok()) {
      absl::StatusOr<Envelope> read = Deserialize(bytes);
      ASSERT_TRUE(read.ok()) << read.status();
      // Invalid UTF-8 is repaired on the way out; everything else comes back exactly.
      if (envelope.payload.find('\xff') == std::string::npos) {
        EXPECT_EQ(*read, envelope);
      }
    }
  }
  // Equivalent producers: whitespace, another key order, a duplicate key, a raw payload.
  const std::string valid = Serialize(Sample());
  const std::string others[] = {
      valid + " ",
      " " + valid,
      valid + "x",
      valid.substr(0, valid.size() - 1),
      R"({"id":"m1","type":"a.b","occurred_at_ms":1})",
      R"({"causation_id":"","correlation_id":"","id":"m1","key":"","occurred_at_ms":01,)"
      R"("payload":"","source":"","traceparent":"","type":"a.b"})",
      R"({"causation_id":"","correlation_id":"","id":"m1","key":"","occurred_at_ms":-1,)"
      R"("payload":"","source":"","traceparent":"","type":"a.b"})",
      R"({"causation_id":"","correlation_id":"","id":"m1","key":"","occurred_at_ms":1.0,)"
      R"("payload":"","source":"","traceparent":"","type":"a.b"})",
      R"({"causation_id":"","correlation_id":"","id":"m1","key":"","occurred_at_ms":1,)"
      R"("payload":"","source":"","traceparent":"","type":"a.b","type":"c.d"})",
      R"({"causation_id":"","correlation_id":"","id":"m\u0031","key":"","occurred_at_ms":1,)"
      R"("payload":{"a":[1,2]},"source":"","traceparent":"","type":"a.b"})",
      R"({"causation_id":"","correlation_id":"","id":"m1","key":"","occurred_at_ms":1,)"
      R"("payload":"\x","source":"","traceparent":"","type":"a.b"})",
  };
  for (const std::string& bytes : others) ExpectSameAsDom(bytes);
}

TEST(EnvelopeTest, MutatedBytesAreReadAsTheDomReadsThem) {
  // Flips aimed at the bytes the fast path decides on (quotes, escapes, digits, separators)
  // as well as arbitrary ones.
  const std::string alphabet = "\"\\/:,{}[]0123456789-.eE \tunbrft\x01\x7f\x80\xc3\xff";
  Envelope plain = Sample();
  plain.payload = R"({"lines":[{"quantity":2,"sku":"SKU-1"}],"reservation_id":"cart-1"})";
  uint64_t state = 0x9E3779B97F4A7C15ULL;  // xorshift, deterministic
  auto next = [&state] {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
  };
  for (const Envelope& base : {Sample(), plain}) {
    const std::string valid = Serialize(base);
    ExpectSameAsDom(valid);
    for (int i = 0; i < 20000; ++i) {
      std::string bytes = valid;
      const int flips = 1 + static_cast<int>(next() % 3);
      for (int flip = 0; flip < flips; ++flip) {
        const uint64_t r = next();
        const char c =
            (r >> 60) < 12 ? alphabet[(r >> 32) % alphabet.size()] : static_cast<char>(r >> 56);
        bytes[r % bytes.size()] = c;
      }
      ExpectSameAsDom(bytes);
      if (::testing::Test::HasFatalFailure()) return;
    }
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
