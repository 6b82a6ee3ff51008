// Inventory's wire contract: the bus commands it accepts, the events and replies it publishes,
// and their JSON payloads. Senders (the ordering saga, tests, tools) build commands with
// CommandPayload(); inventory parses them with ParseCommand(), which validates everything
// (bounded sizes, lines and quantities) and never throws or crashes on hostile bytes.
//
// Commands (envelope type -> payload):
//   inventory.reserve            {reservation_id, lines:[{sku, quantity}], region?, ttl_seconds?,
//                                 replaces?}  replaces: a reservation (not reservation_id) released
//                                 in the same command if still active, before reserving, so its
//                                 units count for the new one; its release stands even when the
//                                 new reservation fails; unknown / inactive: ignored (see
//                                 InventoryState::Reserve). Events: inventory.released for it,
//                                 then inventory.reserved / reservation_failed.
//   inventory.extend             {reservation_id, ttl_seconds}
//   inventory.release            {reservation_id}
//   inventory.allocate           {reservation_id, order_id}
//   inventory.cancel_allocation  {order_id}
//   inventory.ship               {order_id, shipment_id, lines:[{sku, quantity}]}
//   inventory.deliver            {order_id}
//   inventory.return             {order_id, return_id, lines:[{sku, quantity}]}
// A command sent with reply_to gets a reply of that type:
//   {command, outcome, ok, reservation_id?, order_id?, expires_at_ms?, short_skus, unknown_skus}
//
// Events (key in brackets):
//   inventory.reserved              [reservation_id] {reservation_id, region, expires_at_ms,
//                                    lines:[{sku, quantity, locations:[{location_id, quantity}]}]}
//   inventory.reservation_failed    [reservation_id] {reservation_id, reason, short_skus,
//                                    unknown_skus}   reason: insufficient_stock | unknown_sku |
//                                    conflict | invalid_request
//   inventory.reservation_expired   [reservation_id] {reservation_id}
//   inventory.released              [reservation_id] {reservation_id}
//   inventory.allocated             [reservation_id] {reservation_id, order_id}
//   inventory.allocation_cancelled  [order_id]       {order_id}
//   inventory.shipped               [order_id]       {order_id, shipment_id, lines}
//   inventory.delivered             [order_id]       {order_id}
//   inventory.returned              [order_id]       {order_id, return_id, lines}
//   inventory.availability_changed  [sku]            {sku, available, on_hand}  (total over
//                                    every location, once per batch that changed either; feeds
//                                    the catalog's in-stock filter)
//
// Thread-safety: free functions over values; safe from any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "common/json.h"
#include "inventory/model.h"
#include "inventory/shard_engine.h"

namespace emporium::inventory::messages {

// Command types.
inline constexpr std::string_view kReserve = "inventory.reserve";
inline constexpr std::string_view kExtend = "inventory.extend";
inline constexpr std::string_view kRelease = "inventory.release";
inline constexpr std::string_view kAllocate = "inventory.allocate";
inline constexpr std::string_view kCancelAllocation = "inventory.cancel_allocation";
inline constexpr std::string_view kShip = "inventory.ship";
inline constexpr std::string_view kDeliver = "inventory.deliver";
inline constexpr std::string_view kReturn = "inventory.return";

// Event types.
inline constexpr std::string_view kReserved = "inventory.reserved";
inline constexpr std::string_view kReservationFailed = "inventory.reservation_failed";
inline constexpr std::string_view kReservationExpired = "inventory.reservation_expired";
inline constexpr std::string_view kReleased = "inventory.released";
inline constexpr std::string_view kAllocated = "inventory.allocated";
inline constexpr std::string_view kAllocationCancelled = "inventory.allocation_cancelled";
inline constexpr std::string_view kShipped = "inventory.shipped";
inline constexpr std::string_view kDelivered = "inventory.delivered";
inline constexpr std::string_view kReturned = "inventory.returned";
inline constexpr std::string_view kAvailabilityChanged = "inventory.availability_changed";

inline constexpr std::string_view kSource = "inventory";

// Bounds on what a payload may carry.
inline constexpr size_t kPayloadBytesMax = 256 * 1024;
inline constexpr int kPayloadDepthMax = 8;
inline constexpr size_t kIdLengthMax = kReferenceLengthMax;  // ids, SKUs, regions, references
inline constexpr int64_t kTtlSecondsMax = kReservationTtlMaxMs / 1000;

// Every command type, for the consumer's subscription (exact types: our own events share the
// "inventory." prefix and must not reach the command consumer).
std::vector<std::string> CommandTypes();

// Parses `text` as a JSON object within kPayloadBytesMax and kPayloadDepthMax.
// InvalidArgument otherwise (code invalid_json / payload_too_large).
absl::StatusOr<Json> ParseBoundedObject(std::string_view text);

// True for 1..kIdLengthMax printable ASCII characters without ',' or spaces.
bool ValidIdentifier(std::string_view text);

// Required identifier field: InvalidParam naming `field` when missing or not ValidIdentifier.
absl::StatusOr<std::string> RequireIdentifier(const Json& object, std::string_view field);

// `field` of `object`: an array of 1..kReservationLinesMax {sku, quantity} with quantity in
// 1..kLineQuantityMax and no SKU twice. Errors name the element ("lines[2].quantity").
absl::StatusOr<std::vector<LineRequest>> ParseLines(const Json& object, std::string_view field);

// The reserve command from a payload or request body. `reservation_id` may be absent only when
// `fallback_id` is given (the HTTP API passes the Idempotency-Key); ttl_seconds defaults to
// `default_ttl_ms`.
absl::StatusOr<cmd::Reserve> ParseReserve(const Json& object, int64_t default_ttl_ms,
                                          std::optional<std::string> fallback_id = std::nullopt);

// Parses the payload of command `type`. InvalidArgument naming the param for bad input,
// NotFound for a type that is not a command.
absl::StatusOr<Command> ParseCommand(std::string_view type, std::string_view payload,
                                     int64_t default_ttl_ms);

// The envelope type and payload of a command (the inverse of ParseCommand). Receive/Adjust are
// staff HTTP operations with no bus command: their type is "".
std::string_view CommandType(const Command& command);
std::string CommandPayload(const Command& command);

// Snake-case outcome names ("insufficient_stock", "already_released", ...); "" for monostate.
std::string OutcomeName(const Outcome& outcome);
// True when the outcome means the command's intent holds (including idempotent replays).
bool OutcomeSucceeded(const Outcome& outcome);

// A reservation as the API and events show it.
Json ReservationJson(const Reservation& reservation);
Json LinesJson(const std::vector<LineRequest>& lines);

struct Event {
  std::string type;
  std::string key;
  std::string payload;
};

// The events one applied command (nullptr: an expiry sweep) produced, in order.
std::vector<Event> EventsFor(const Command* command, const CommandResult& result);
Event AvailabilityChanged(const SkuTotals& totals);

// The 200 answer of a staff receive/adjust that applied: the request's JSON plus the ledger
// sequence of its entry. nullopt when the command did not apply (nothing is recorded then, so a
// retry is evaluated afresh).
std::optional<std::string> StaffStockAnswer(const std::string& request_json,
                                            const CommandResult& result);

// The reply payload for a queued command.
std::string ReplyPayload(const Command& command, const CommandResult& result);

// Parsed forms for consumers of inventory's messages.
struct AvailabilityChangedEvent {
  std::string sku;
  int64_t available = 0;
  int64_t on_hand = 0;
};
absl::StatusOr<AvailabilityChangedEvent> ParseAvailabilityChanged(std::string_view payload);

struct CommandReply {
  std::string command;
  std::string outcome;
  bool ok = false;
  std::vector<std::string> short_skus;
  std::vector<std::string> unknown_skus;
};
absl::StatusOr<CommandReply> ParseReply(std::string_view payload);

}  // namespace emporium::inventory::messages
