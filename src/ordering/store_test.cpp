// SagaJsonText must write exactly the bytes DumpJson(SagaToJson(saga)) writes: the saga column
// of rows written before it and after it must not differ.
#include "ordering/store.h"

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace emporium::ordering {
namespace {

// The saga as a DOM: the reference SagaJsonText must match byte for byte once dumped.
Json SagaToJson(const SagaState& saga) {
  Json compensations = Json::array();
  for (SagaStep step : saga.compensations) compensations.push_back(SagaStepName(step));
  return Json{{"order_state", OrderStateName(saga.order_state)},
              {"step", SagaStepName(saga.step)},
              {"attempt", saga.attempt},
              {"deadline_ms", saga.deadline_ms},
              {"updated_at_ms", saga.updated_at_ms},
              {"reservation_id", saga.reservation_id},
              {"own_reservation_id", saga.own_reservation_id},
              {"authorization_requested", saga.authorization_requested},
              {"authorized", saga.authorized},
              {"captured", saga.captured},
              {"allocated", saga.allocated},
              {"reason", saga.reason},
              {"short_skus", saga.short_skus},
              {"compensations", std::move(compensations)}};
}

void ExpectSameBytes(const SagaState& saga) {
  EXPECT_EQ(SagaJsonText(saga), DumpJson(SagaToJson(saga)));
  // And it reads back as the same saga.
  absl::StatusOr<Json> parsed = ParseJson(SagaJsonText(saga));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  absl::StatusOr<SagaState> back = SagaFromJson(*parsed);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, saga);
}

TEST(SagaJsonTextTest, DefaultSagaIsWrittenAsTheDomWritesIt) { ExpectSameBytes(SagaState{}); }

TEST(SagaJsonTextTest, EveryStateStepAndFlagIsWrittenAsTheDomWritesIt) {
  const OrderState states[] = {OrderState::kPending,    OrderState::kReserved,
                               OrderState::kAuthorized, OrderState::kConfirmed,
                               OrderState::kRejected,   OrderState::kCancelled};
  const SagaStep steps[] = {SagaStep::kExtend,   SagaStep::kAwaitCartReservation,
                            SagaStep::kReserve,  SagaStep::kAuthorize,
                            SagaStep::kAllocate, SagaStep::kVoid,
                            SagaStep::kRefund,   SagaStep::kCancelAllocation,
                            SagaStep::kRelease,  SagaStep::kDone};
  int variant = 0;
  for (OrderState state : states) {
    for (SagaStep step : steps) {
      SagaState saga;
      saga.order_state = state;
      saga.step = step;
      saga.attempt = variant % 7;
      saga.deadline_ms = variant % 2 == 0 ? 0 : 1'790'000'000'000 + variant;
      saga.updated_at_ms = -variant;
      saga.reservation_id = variant % 3 == 0 ? "" : "cart-0193-" + std::to_string(variant);
      saga.own_reservation_id = "order-0193abc";
      saga.authorization_requested = (variant & 1) != 0;
      saga.authorized = (variant & 2) != 0;
      saga.captured = (variant & 4) != 0;
      saga.allocated = (variant & 8) != 0;
      saga.reason = variant % 4 == 0 ? "" : "insufficient_stock";
      if (variant % 5 == 1) saga.short_skus = {"SKU-1", "SKU-2"};
      if (variant % 3 == 2) saga.compensations = {SagaStep::kVoid, step, SagaStep::kRelease};
      ExpectSameBytes(saga);
      ++variant;
    }
  }
}

TEST(SagaJsonTextTest, HostileStringsAreEscapedAsTheDomEscapesThem) {
  SagaState saga;
  saga.reason = std::string("quote \" backslash \\ newline \n tab \t nul ") + '\0' + " \x1f end";
  saga.reservation_id = "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80";  // UTF-8 passes through
  saga.own_reservation_id = "bad \xff\xfe utf8 \xc3";                 // invalid: replaced
  saga.short_skus = {"", "\x7f", "</script>", std::string(300, 'x')};
  EXPECT_EQ(SagaJsonText(saga), DumpJson(SagaToJson(saga)));
}

// SagaFromText must answer what ParseJson + SagaFromJson answer, for any text.
absl::StatusOr<SagaState> ReadWithDom(const std::string& text) {
  absl::StatusOr<Json> json = ParseJson(text);
  if (!json.ok()) return json.status();
  return SagaFromJson(*json);
}

void ExpectReadAsTheDomReads(const std::string& text) {
  absl::StatusOr<SagaState> fast = SagaFromText(text);
  absl::StatusOr<SagaState> dom = ReadWithDom(text);
  ASSERT_EQ(fast.status(), dom.status()) << text;
  if (fast.ok()) {
    EXPECT_EQ(*fast, *dom) << text;
  }
}

SagaState BusySaga() {
  SagaState saga;
  saga.order_state = OrderState::kAuthorized;
  saga.step = SagaStep::kAllocate;
  saga.attempt = 2;
  saga.deadline_ms = 1'790'000'001'000;
  saga.updated_at_ms = 1'790'000'000'000;
  saga.reservation_id = "cart-0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b-2";
  saga.authorization_requested = true;
  saga.authorized = true;
  saga.short_skus = {"SKU-1", "SKU-2"};
  saga.compensations = {SagaStep::kVoid, SagaStep::kRelease};
  return saga;
}

TEST(SagaFromTextTest, ReadsWhatSagaJsonTextWrites) {
  for (const SagaState& saga : {SagaState{}, BusySaga()}) {
    absl::StatusOr<SagaState> read = SagaFromText(SagaJsonText(saga));
    ASSERT_TRUE(read.ok()) << read.status();
    EXPECT_EQ(*read, saga);
    ExpectReadAsTheDomReads(SagaJsonText(saga));
  }
  SagaState odd = BusySaga();
  odd.reason = "quote \" and caf\xc3\xa9";  // escapes and UTF-8: read by the DOM
  odd.attempt = 2'000'000'000;              // ten digits: the DOM's
  odd.deadline_ms = 0;
  ExpectReadAsTheDomReads(SagaJsonText(odd));
  EXPECT_EQ(*SagaFromText(SagaJsonText(odd)), odd);
}

TEST(SagaFromTextTest, OtherTextIsReadAsTheDomReadsIt) {
  const std::string valid = SagaJsonText(BusySaga());
  const std::string others[] = {
      "",
      "{}",
      "null",
      valid + " ",
      valid.substr(0, valid.size() - 1),
      // A row written before updated_at_ms existed, keys in another order, a duplicate key.
      R"({"order_state":"PENDING","step":"reserve","attempt":0,"deadline_ms":5,)"
      R"("reservation_id":"","own_reservation_id":"","authorization_requested":false,)"
      R"("authorized":false,"captured":false,"allocated":false,"reason":"","short_skus":[],)"
      R"("compensations":[]})",
      R"({"allocated":false,"allocated":true,"attempt":0,"authorization_requested":false,)"
      R"("authorized":false,"captured":false,"compensations":[],"deadline_ms":0,)"
      R"("order_state":"PENDING","own_reservation_id":"","reason":"","reservation_id":"",)"
      R"("short_skus":[],"step":"reserve","updated_at_ms":0})",
      R"({"allocated":false,"attempt":0,"authorization_requested":false,"authorized":false,)"
      R"("captured":false,"compensations":["nonsense"],"deadline_ms":0,"order_state":"PENDING",)"
      R"("own_reservation_id":"","reason":"","reservation_id":"","short_skus":[],)"
      R"("step":"reserve","updated_at_ms":0})",
      R"({"allocated":false,"attempt":0,"authorization_requested":false,"authorized":false,)"
      R"("captured":false,"compensations":[],"deadline_ms":-1,"order_state":"SHIPPED",)"
      R"("own_reservation_id":"","reason":"","reservation_id":"","short_skus":[],)"
      R"("step":"reserve","updated_at_ms":0})",
  };
  for (const std::string& text : others) ExpectReadAsTheDomReads(text);
}

TEST(SagaFromTextTest, MutatedTextIsReadAsTheDomReadsIt) {
  const std::string alphabet = "\"\\:,{}[]0123456789-.eE tfaluesr\x01\x80\xff";
  uint64_t state = 0x2545F4914F6CDD1DULL;  // xorshift, deterministic
  auto next = [&state] {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
  };
  for (const SagaState& saga : {SagaState{}, BusySaga()}) {
    const std::string valid = SagaJsonText(saga);
    for (int i = 0; i < 20000; ++i) {
      std::string text = valid;
      const int flips = 1 + static_cast<int>(next() % 3);
      for (int flip = 0; flip < flips; ++flip) {
        const uint64_t r = next();
        const char c =
            (r >> 60) < 12 ? alphabet[(r >> 32) % alphabet.size()] : static_cast<char>(r >> 56);
        text[r % text.size()] = c;
      }
      ExpectReadAsTheDomReads(text);
      if (::testing::Test::HasFatalFailure()) return;
    }
  }
}

}  // namespace
}  // namespace emporium::ordering
