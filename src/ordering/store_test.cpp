// SagaJsonText must write exactly the bytes DumpJson(SagaToJson(saga)) writes: the saga column
// of rows written before it and after it must not differ.
#include "ordering/store.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace emporium::ordering {
namespace {

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
  const SagaStep steps[] = {SagaStep::kExtend,           SagaStep::kReserve, SagaStep::kAuthorize,
                            SagaStep::kAllocate,         SagaStep::kVoid,    SagaStep::kRefund,
                            SagaStep::kCancelAllocation, SagaStep::kRelease, SagaStep::kDone};
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

}  // namespace
}  // namespace emporium::ordering
