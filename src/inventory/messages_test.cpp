#include "inventory/messages.h"

#include <string>

#include "common/errors.h"
#include "fmt/format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace emporium::inventory::messages {
namespace {

constexpr int64_t kDefaultTtlMs = 60'000;

TEST(MessagesTest, ReserveRoundTrips) {
  cmd::Reserve reserve{ReservationId("r1"), {{Sku("a"), 2}, {Sku("b"), 1}}, "eu", 30'000};
  absl::StatusOr<Command> parsed = ParseCommand(kReserve, CommandPayload(reserve), kDefaultTtlMs);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const auto& back = std::get<cmd::Reserve>(*parsed);
  EXPECT_EQ(back.id, reserve.id);
  EXPECT_EQ(back.lines, reserve.lines);
  EXPECT_EQ(back.region, "eu");
  EXPECT_EQ(back.ttl_ms, 30'000);
}

TEST(MessagesTest, ReserveWithReplacesRoundTripsAndIsValidated) {
  cmd::Reserve reserve{.id = ReservationId("cart-c-2"),
                       .lines = {{Sku("a"), 3}},
                       .region = "eu",
                       .ttl_ms = 30'000,
                       .replaces = ReservationId("cart-c-1")};
  const std::string payload = CommandPayload(reserve);
  EXPECT_THAT(payload, ::testing::HasSubstr(R"("replaces":"cart-c-1")"));
  absl::StatusOr<Command> parsed = ParseCommand(kReserve, payload, kDefaultTtlMs);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(std::get<cmd::Reserve>(*parsed).replaces, ReservationId("cart-c-1"));
  // Absent: nothing replaced, and the payload has no such field.
  reserve.replaces = ReservationId();
  EXPECT_THAT(CommandPayload(reserve), ::testing::Not(::testing::HasSubstr("replaces")));
  parsed = ParseCommand(kReserve, CommandPayload(reserve), kDefaultTtlMs);
  ASSERT_TRUE(parsed.ok());
  EXPECT_TRUE(std::get<cmd::Reserve>(*parsed).replaces.empty());
  // Hostile values name the param.
  for (std::string_view bad :
       {R"("replaces":"")", R"("replaces":7)", R"("replaces":null)", R"("replaces":"has space")",
        R"("replaces":["x"])", R"("replaces":"r")"}) {
    SCOPED_TRACE(bad);
    absl::StatusOr<Command> refused = ParseCommand(
        kReserve,
        fmt::format(R"({{"reservation_id":"r","lines":[{{"sku":"a","quantity":1}}],{}}})", bad),
        kDefaultTtlMs);
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(ErrorParam(refused.status()).value_or(""), "replaces");
  }
  const std::string too_long(kIdLengthMax + 1, 'x');
  EXPECT_FALSE(ParseCommand(kReserve,
                            fmt::format(R"({{"reservation_id":"r","lines":[{{"sku":"a",)"
                                        R"("quantity":1}}],"replaces":"{}"}})",
                                        too_long),
                            kDefaultTtlMs)
                   .ok());
}

TEST(MessagesTest, EventsForAReplacingReserveReleaseTheReplacedFirst) {
  cmd::Reserve reserve{.id = ReservationId("r2"),
                       .lines = {{Sku("a"), 2}},
                       .region = "",
                       .ttl_ms = 1000,
                       .replaces = ReservationId("r1")};
  Command command = reserve;
  CommandResult failed;
  failed.outcome = ReserveOutcome::kInsufficientStock;
  failed.short_skus = {Sku("a")};
  failed.released_replaced = true;
  std::vector<Event> events = EventsFor(&command, failed);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].type, kReleased);
  EXPECT_EQ(events[0].key, "r1");
  EXPECT_EQ(events[1].type, kReservationFailed);
  EXPECT_EQ(events[1].key, "r2");
  // Nothing was released (unknown or inactive replaced id): the reserve's events alone.
  failed.released_replaced = false;
  events = EventsFor(&command, failed);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].type, kReservationFailed);
  EXPECT_THAT(ReplyPayload(command, failed), ::testing::HasSubstr(R"("short_skus":["a"])"));
}

TEST(MessagesTest, EveryCommandRoundTrips) {
  std::vector<Command> commands = {
      cmd::Extend{ReservationId("r"), 5000},
      cmd::Release{ReservationId("r")},
      cmd::Allocate{ReservationId("r"), OrderId("o")},
      cmd::CancelAllocation{OrderId("o")},
      cmd::Ship{OrderId("o"), "s1", {{Sku("a"), 1}}},
      cmd::Deliver{OrderId("o")},
      cmd::Return{OrderId("o"), "ret1", {{Sku("a"), 1}}},
  };
  for (const Command& command : commands) {
    absl::StatusOr<Command> parsed =
        ParseCommand(CommandType(command), CommandPayload(command), kDefaultTtlMs);
    ASSERT_TRUE(parsed.ok()) << CommandType(command) << ": " << parsed.status();
    EXPECT_EQ(parsed->index(), command.index());
  }
}

TEST(MessagesTest, DefaultsTtl) {
  absl::StatusOr<Command> parsed = ParseCommand(
      kReserve, R"({"reservation_id":"r","lines":[{"sku":"a","quantity":1}]})", kDefaultTtlMs);
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(std::get<cmd::Reserve>(*parsed).ttl_ms, kDefaultTtlMs);
}

void ExpectParam(std::string_view payload, std::string_view param) {
  absl::StatusOr<Command> parsed = ParseCommand(kReserve, payload, kDefaultTtlMs);
  ASSERT_FALSE(parsed.ok()) << payload;
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ErrorParam(parsed.status()).value_or(""), param) << payload;
}

TEST(MessagesTest, RejectsBadReserves) {
  ExpectParam(R"({"lines":[{"sku":"a","quantity":1}]})", "reservation_id");
  ExpectParam(R"({"reservation_id":"","lines":[{"sku":"a","quantity":1}]})", "reservation_id");
  ExpectParam(R"({"reservation_id":"r","lines":[]})", "lines");
  ExpectParam(R"({"reservation_id":"r","lines":{}})", "lines");
  ExpectParam(R"({"reservation_id":"r","lines":[{"sku":"a","quantity":0}]})", "lines[0].quantity");
  ExpectParam(R"({"reservation_id":"r","lines":[{"sku":"a","quantity":1e300}]})",
              "lines[0].quantity");
  ExpectParam(R"({"reservation_id":"r","lines":[{"sku":"a","quantity":-1}]})", "lines[0].quantity");
  ExpectParam(
      R"({"reservation_id":"r","lines":[{"sku":"a","quantity":1},{"sku":"a","quantity":1}]})",
      "lines[1].sku");
  ExpectParam(R"({"reservation_id":"r","lines":[{"sku":"a,b","quantity":1}]})", "lines[0].sku");
  ExpectParam(R"({"reservation_id":"r","lines":[5]})", "lines[0]");
  ExpectParam(
      R"({"reservation_id":"r","lines":[{"sku":"a","quantity":1}],"ttl_seconds":99999999999})",
      "ttl_seconds");
}

TEST(MessagesTest, BoundsLineCount) {
  std::string payload = R"({"reservation_id":"r","lines":[)";
  for (size_t i = 0; i <= kReservationLinesMax; ++i) {
    if (i > 0) payload += ",";
    payload += R"({"sku":"s)" + std::to_string(i) + R"(","quantity":1})";
  }
  payload += "]}";
  ExpectParam(payload, "lines");
}

TEST(MessagesTest, SurvivesHostileJson) {
  for (std::string_view payload :
       {"", "null", "[]", "{", "\"x\"", "{\"reservation_id\":1}", "\xff\xfe", "{}}"}) {
    EXPECT_FALSE(ParseCommand(kReserve, payload, kDefaultTtlMs).ok()) << payload;
  }
  std::string deep(100'000, '[');
  EXPECT_FALSE(ParseCommand(kReserve, deep, kDefaultTtlMs).ok());
  std::string huge = R"({"reservation_id":")" + std::string(kPayloadBytesMax, 'x') + "\"}";
  EXPECT_FALSE(ParseCommand(kReserve, huge, kDefaultTtlMs).ok());
  EXPECT_EQ(ParseCommand("inventory.reserved", "{}", kDefaultTtlMs).status().code(),
            absl::StatusCode::kNotFound);
}

TEST(MessagesTest, EventsForReserveOutcomes) {
  cmd::Reserve reserve{ReservationId("r1"), {{Sku("a"), 2}}, "", 1000};
  Command command = reserve;
  CommandResult reserved;
  reserved.outcome = ReserveOutcome::kReserved;
  reserved.reservation = Reservation{.id = ReservationId("r1"),
                                     .lines = {{Sku("a"), 2, {{LocationId("w1"), 2, 0, 0}}}}};
  std::vector<Event> events = EventsFor(&command, reserved);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].type, kReserved);
  EXPECT_EQ(events[0].key, "r1");

  CommandResult replay = reserved;
  replay.outcome = ReserveOutcome::kAlreadyReserved;
  EXPECT_TRUE(EventsFor(&command, replay).empty());

  CommandResult short_stock;
  short_stock.outcome = ReserveOutcome::kInsufficientStock;
  short_stock.short_skus = {Sku("a")};
  events = EventsFor(&command, short_stock);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].type, kReservationFailed);
  EXPECT_THAT(events[0].payload, ::testing::HasSubstr("insufficient_stock"));

  CommandResult swept;
  swept.expired = {ReservationId("x"), ReservationId("y")};
  EXPECT_EQ(EventsFor(nullptr, swept).size(), 2u);
}

TEST(MessagesTest, ReplyAndAvailabilityParse) {
  Command command = cmd::Release{ReservationId("r")};
  CommandResult result;
  result.outcome = ReleaseOutcome::kAlreadyReleased;
  absl::StatusOr<CommandReply> reply = ParseReply(ReplyPayload(command, result));
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->command, kRelease);
  EXPECT_EQ(reply->outcome, "already_released");
  EXPECT_TRUE(reply->ok);

  Event event = AvailabilityChanged(SkuTotals{Sku("a"), 10, 3, 2});
  absl::StatusOr<AvailabilityChangedEvent> parsed = ParseAvailabilityChanged(event.payload);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->sku, "a");
  EXPECT_EQ(parsed->available, 5);
  EXPECT_EQ(parsed->on_hand, 10);
}

// The reserved and allocated payloads are formatted directly (the hot path); they must be the
// bytes the JSON DOM would produce, for hostile strings too.
TEST(MessagesTest, HotEventPayloadsEqualTheDomRendering) {
  const std::vector<std::string> texts = {
      "r1", "q\"uo\\te", std::string("c\x01\x1f\b\f\n\r\t", 9), "caf\xc3\xa9", "bad\xff utf8",
      "",   "del\x7f"};
  for (const std::string& text : texts) {
    Reservation reservation{
        .id = ReservationId(text),
        .lines = {ReservationLine{.sku = Sku(text),
                                  .quantity = 5,
                                  .splits = {Split{.location = LocationId(text), .quantity = 2},
                                             Split{.location = LocationId("w2"),
                                                   .quantity = 3,
                                                   .shipped = 1,
                                                   .returned = 1}}},
                  ReservationLine{.sku = Sku("b"), .quantity = 1, .splits = {}}},
        .region = text,
        .created_at_ms = 17,
        .expires_at_ms = 1'700'000'000'000,
        .state = ReservationState::kActive,
        .order_id = OrderId(text),
    };
    cmd::Reserve reserve{reservation.id, {{Sku(text), 5}}, text, 60'000};
    CommandResult reserved;
    reserved.outcome = ReserveOutcome::kReserved;
    reserved.reservation = reservation;
    const Command reserve_command = reserve;
    std::vector<Event> events = EventsFor(&reserve_command, reserved);
    ASSERT_EQ(events.size(), 1u);
    Json expected = ReservationJson(reservation);
    expected["reservation_id"] = text;
    EXPECT_EQ(events[0].payload, DumpJson(expected)) << text;
    EXPECT_EQ(events[0].type, kReserved);

    const Command allocate = cmd::Allocate{ReservationId(text), OrderId(text + "-o")};
    CommandResult allocated;
    allocated.outcome = AllocateOutcome::kAllocated;
    events = EventsFor(&allocate, allocated);
    ASSERT_EQ(events.size(), 1u);
    EXPECT_EQ(events[0].payload,
              DumpJson(Json{{"reservation_id", text}, {"order_id", text + "-o"}}))
        << text;
  }
}

}  // namespace
}  // namespace emporium::inventory::messages
