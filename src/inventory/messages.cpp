#include "inventory/messages.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "common/errors.h"
#include "common/format.h"
#include "common/json.h"
#include "common/status_macros.h"
#include "fmt/format.h"

namespace emporium::inventory::messages {
namespace {

template <class... Ts>
struct Overloaded : Ts... {
  using Ts::operator()...;
};
template <class... Ts>
Overloaded(Ts...) -> Overloaded<Ts...>;

std::string_view ExtendName(ExtendOutcome outcome) {
  switch (outcome) {
    case ExtendOutcome::kExtended:
      return "extended";
    case ExtendOutcome::kNotFound:
      return "not_found";
    case ExtendOutcome::kNotActive:
      return "not_active";
    case ExtendOutcome::kExpired:
      return "expired";
    case ExtendOutcome::kInvalidRequest:
      return "invalid_request";
  }
  return "unknown";
}

std::string_view ReleaseName(ReleaseOutcome outcome) {
  switch (outcome) {
    case ReleaseOutcome::kReleased:
      return "released";
    case ReleaseOutcome::kAlreadyReleased:
      return "already_released";
    case ReleaseOutcome::kAlreadyExpired:
      return "already_expired";
    case ReleaseOutcome::kNotFound:
      return "not_found";
    case ReleaseOutcome::kNotActive:
      return "not_active";
  }
  return "unknown";
}

std::string_view AllocateName(AllocateOutcome outcome) {
  switch (outcome) {
    case AllocateOutcome::kAllocated:
      return "allocated";
    case AllocateOutcome::kAlreadyAllocated:
      return "already_allocated";
    case AllocateOutcome::kExpired:
      return "expired";
    case AllocateOutcome::kReleased:
      return "released";
    case AllocateOutcome::kNotFound:
      return "not_found";
    case AllocateOutcome::kConflict:
      return "conflict";
    case AllocateOutcome::kInvalidRequest:
      return "invalid_request";
  }
  return "unknown";
}

std::string_view CancelName(CancelAllocationOutcome outcome) {
  switch (outcome) {
    case CancelAllocationOutcome::kCancelled:
      return "cancelled";
    case CancelAllocationOutcome::kAlreadyCancelled:
      return "already_cancelled";
    case CancelAllocationOutcome::kNotFound:
      return "not_found";
    case CancelAllocationOutcome::kAlreadyShipped:
      return "already_shipped";
  }
  return "unknown";
}

std::string_view ShipName(ShipOutcome outcome) {
  switch (outcome) {
    case ShipOutcome::kShipped:
      return "shipped";
    case ShipOutcome::kAlreadyApplied:
      return "already_applied";
    case ShipOutcome::kNotFound:
      return "not_found";
    case ShipOutcome::kNotAllocated:
      return "not_allocated";
    case ShipOutcome::kExceedsAllocation:
      return "exceeds_allocation";
    case ShipOutcome::kInvalidRequest:
      return "invalid_request";
  }
  return "unknown";
}

std::string_view DeliverName(DeliverOutcome outcome) {
  switch (outcome) {
    case DeliverOutcome::kDelivered:
      return "delivered";
    case DeliverOutcome::kAlreadyDelivered:
      return "already_delivered";
    case DeliverOutcome::kNotFound:
      return "not_found";
    case DeliverOutcome::kNotShipped:
      return "not_shipped";
  }
  return "unknown";
}

std::string_view ReturnName(ReturnOutcome outcome) {
  switch (outcome) {
    case ReturnOutcome::kReturned:
      return "returned";
    case ReturnOutcome::kAlreadyApplied:
      return "already_applied";
    case ReturnOutcome::kNotFound:
      return "not_found";
    case ReturnOutcome::kNotShipped:
      return "not_shipped";
    case ReturnOutcome::kExceedsShipped:
      return "exceeds_shipped";
    case ReturnOutcome::kInvalidRequest:
      return "invalid_request";
  }
  return "unknown";
}

std::string_view StockName(StockOutcome outcome) {
  switch (outcome) {
    case StockOutcome::kApplied:
      return "applied";
    case StockOutcome::kUnknownLocation:
      return "unknown_location";
    case StockOutcome::kInvalidRequest:
      return "invalid_request";
    case StockOutcome::kBelowCommitted:
      return "below_committed";
  }
  return "unknown";
}

Json SkuList(const std::vector<Sku>& skus) {
  Json list = Json::array();
  for (const Sku& sku : skus) list.push_back(sku.value());
  return list;
}

Event MakeEvent(std::string_view type, const std::string& key, const Json& payload) {
  return Event{std::string(type), key, DumpJson(payload)};
}

// The hot events (reserved, allocated: one per command on a flash sale) are formatted directly
// instead of through a JSON DOM; their keys are written in the DOM's (sorted) order.
// {"created_at_ms","expires_at_ms","id","lines","order_id","region","reservation_id","state"}:
// ReservationJson plus reservation_id, as DumpJson would write it.
std::string ReservedPayload(const Reservation& reservation, const ReservationId& id) {
  std::string out;
  out.reserve(256);
  out +=
      fmt::format("{{\"created_at_ms\":{},\"expires_at_ms\":{},\"id\":", reservation.created_at_ms,
                  reservation.expires_at_ms);
  AppendJsonString(out, reservation.id.value());
  out += ",\"lines\":[";
  for (size_t l = 0; l < reservation.lines.size(); ++l) {
    const ReservationLine& line = reservation.lines[l];
    if (l > 0) out += ',';
    out += "{\"locations\":[";
    for (size_t s = 0; s < line.splits.size(); ++s) {
      const Split& split = line.splits[s];
      if (s > 0) out += ',';
      out += "{\"location_id\":";
      AppendJsonString(out, split.location.value());
      out += fmt::format(",\"quantity\":{},\"returned\":{},\"shipped\":{}}}", split.quantity,
                         split.returned, split.shipped);
    }
    out += fmt::format("],\"quantity\":{},\"sku\":", line.quantity);
    AppendJsonString(out, line.sku.value());
    out += '}';
  }
  out += "],\"order_id\":";
  if (reservation.order_id.empty()) {
    out += "null";
  } else {
    AppendJsonString(out, reservation.order_id.value());
  }
  out += ",\"region\":";
  AppendJsonString(out, reservation.region);
  out += ",\"reservation_id\":";
  AppendJsonString(out, id.value());
  out += ",\"state\":";
  AppendJsonString(out, ReservationStateName(reservation.state));
  out += '}';
  return out;
}

// {"order_id","reservation_id"}, as DumpJson would write it.
std::string AllocatedPayload(const cmd::Allocate& command) {
  std::string out = "{\"order_id\":";
  AppendJsonString(out, command.order_id.value());
  out += ",\"reservation_id\":";
  AppendJsonString(out, command.id.value());
  out += '}';
  return out;
}

absl::StatusOr<int64_t> TtlMs(const Json& object, std::optional<int64_t> default_ttl_ms) {
  ASSIGN_OR_RETURN(std::optional<int64_t> ttl_seconds,
                   OptionalInt(object, "ttl_seconds", 1, kTtlSecondsMax));
  if (ttl_seconds.has_value()) return *ttl_seconds * 1000;
  if (!default_ttl_ms.has_value()) return InvalidParam("ttl_seconds", "ttl_seconds is required");
  return *default_ttl_ms;
}

absl::StatusOr<std::string> RequireReference(const Json& object, std::string_view field) {
  return RequireIdentifier(object, field);
}

}  // namespace

std::vector<std::string> CommandTypes() {
  return {std::string(kReserve),          std::string(kExtend),
          std::string(kRelease),          std::string(kAllocate),
          std::string(kCancelAllocation), std::string(kShip),
          std::string(kDeliver),          std::string(kReturn)};
}

absl::StatusOr<Json> ParseBoundedObject(std::string_view text) {
  if (text.size() > kPayloadBytesMax) {
    return WithErrorCode(absl::InvalidArgumentError(
                             fmt::format("payload is larger than {} bytes", kPayloadBytesMax)),
                         "payload_too_large");
  }
  if (JsonNestingDepth(text) > kPayloadDepthMax) {
    return WithErrorCode(absl::InvalidArgumentError(
                             fmt::format("payload nests deeper than {} levels", kPayloadDepthMax)),
                         "invalid_json");
  }
  return ParseJsonObject(text);
}

bool ValidIdentifier(std::string_view text) {
  if (text.empty() || text.size() > kIdLengthMax) return false;
  return std::all_of(text.begin(), text.end(),
                     [](char c) { return c > ' ' && c < 127 && c != ','; });
}

absl::StatusOr<std::string> RequireIdentifier(const Json& object, std::string_view field) {
  ASSIGN_OR_RETURN(std::string value, RequireString(object, field, kIdLengthMax));
  if (!ValidIdentifier(value)) {
    return InvalidParam(field, fmt::format("{} must be 1..{} printable characters without spaces "
                                           "or commas",
                                           field, kIdLengthMax));
  }
  return value;
}

absl::StatusOr<std::vector<LineRequest>> ParseLines(const Json& object, std::string_view field) {
  auto it = object.find(std::string(field));
  if (it == object.end() || !it->is_array()) {
    return InvalidParam(field, fmt::format("{} must be an array of {{sku, quantity}}", field));
  }
  if (it->empty() || it->size() > kReservationLinesMax) {
    return InvalidParam(field,
                        fmt::format("{} must hold 1..{} lines", field, kReservationLinesMax));
  }
  std::vector<LineRequest> lines;
  absl::flat_hash_set<std::string> seen;
  for (size_t i = 0; i < it->size(); ++i) {
    const Json& element = (*it)[i];
    const std::string prefix = fmt::format("{}[{}]", field, i);
    if (!element.is_object()) return InvalidParam(prefix, "a line must be an object");
    ASSIGN_OR_RETURN(std::string sku, RequireString(element, "sku", kIdLengthMax, prefix));
    if (!ValidIdentifier(sku)) {
      return InvalidParam(ParamPath(prefix, "sku"),
                          "sku must be printable characters without spaces or commas");
    }
    ASSIGN_OR_RETURN(int64_t quantity,
                     RequireInt(element, "quantity", 1, kLineQuantityMax, prefix));
    if (!seen.insert(sku).second) {
      return InvalidParam(ParamPath(prefix, "sku"), fmt::format("sku {} appears twice", sku));
    }
    lines.push_back(LineRequest{Sku(std::move(sku)), quantity});
  }
  return lines;
}

absl::StatusOr<cmd::Reserve> ParseReserve(const Json& object, int64_t default_ttl_ms,
                                          std::optional<std::string> fallback_id) {
  cmd::Reserve reserve;
  if (object.contains("reservation_id") || !fallback_id.has_value()) {
    ASSIGN_OR_RETURN(std::string id, RequireIdentifier(object, "reservation_id"));
    reserve.id = ReservationId(std::move(id));
  } else {
    if (!ValidIdentifier(*fallback_id)) {
      return InvalidParam("reservation_id", "reservation_id is required");
    }
    reserve.id = ReservationId(*std::move(fallback_id));
  }
  ASSIGN_OR_RETURN(reserve.lines, ParseLines(object, "lines"));
  ASSIGN_OR_RETURN(std::optional<std::string> region,
                   OptionalString(object, "region", kIdLengthMax));
  reserve.region = region.value_or("");
  ASSIGN_OR_RETURN(reserve.ttl_ms, TtlMs(object, default_ttl_ms));
  if (object.contains("replaces")) {
    ASSIGN_OR_RETURN(std::string replaces, RequireIdentifier(object, "replaces"));
    if (replaces == reserve.id.value()) {
      return InvalidParam("replaces", "replaces must name another reservation than reservation_id");
    }
    reserve.replaces = ReservationId(std::move(replaces));
  }
  return reserve;
}

absl::StatusOr<Command> ParseCommand(std::string_view type, std::string_view payload,
                                     int64_t default_ttl_ms) {
  ASSIGN_OR_RETURN(Json object, ParseBoundedObject(payload));
  if (type == kReserve) {
    ASSIGN_OR_RETURN(cmd::Reserve reserve, ParseReserve(object, default_ttl_ms));
    return Command(std::move(reserve));
  }
  if (type == kExtend) {
    ASSIGN_OR_RETURN(std::string id, RequireIdentifier(object, "reservation_id"));
    ASSIGN_OR_RETURN(int64_t ttl_ms, TtlMs(object, std::nullopt));
    return Command(cmd::Extend{ReservationId(std::move(id)), ttl_ms});
  }
  if (type == kRelease) {
    ASSIGN_OR_RETURN(std::string id, RequireIdentifier(object, "reservation_id"));
    return Command(cmd::Release{ReservationId(std::move(id))});
  }
  if (type == kAllocate) {
    ASSIGN_OR_RETURN(std::string id, RequireIdentifier(object, "reservation_id"));
    ASSIGN_OR_RETURN(std::string order_id, RequireIdentifier(object, "order_id"));
    return Command(cmd::Allocate{ReservationId(std::move(id)), OrderId(std::move(order_id))});
  }
  if (type == kCancelAllocation) {
    ASSIGN_OR_RETURN(std::string order_id, RequireIdentifier(object, "order_id"));
    return Command(cmd::CancelAllocation{OrderId(std::move(order_id))});
  }
  if (type == kShip || type == kReturn) {
    ASSIGN_OR_RETURN(std::string order_id, RequireIdentifier(object, "order_id"));
    const std::string_view reference_field = type == kShip ? "shipment_id" : "return_id";
    ASSIGN_OR_RETURN(std::string reference, RequireReference(object, reference_field));
    ASSIGN_OR_RETURN(std::vector<LineRequest> lines, ParseLines(object, "lines"));
    if (type == kShip) {
      return Command(
          cmd::Ship{OrderId(std::move(order_id)), std::move(reference), std::move(lines)});
    }
    return Command(
        cmd::Return{OrderId(std::move(order_id)), std::move(reference), std::move(lines)});
  }
  if (type == kDeliver) {
    ASSIGN_OR_RETURN(std::string order_id, RequireIdentifier(object, "order_id"));
    return Command(cmd::Deliver{OrderId(std::move(order_id))});
  }
  return absl::NotFoundError(fmt::format("{} is not an inventory command", type));
}

std::string_view CommandType(const Command& command) {
  return std::visit(Overloaded{
                        [](const cmd::Receive&) { return std::string_view(); },
                        [](const cmd::Adjust&) { return std::string_view(); },
                        [](const cmd::Reserve&) { return kReserve; },
                        [](const cmd::Extend&) { return kExtend; },
                        [](const cmd::Release&) { return kRelease; },
                        [](const cmd::Allocate&) { return kAllocate; },
                        [](const cmd::CancelAllocation&) { return kCancelAllocation; },
                        [](const cmd::Ship&) { return kShip; },
                        [](const cmd::Deliver&) { return kDeliver; },
                        [](const cmd::Return&) { return kReturn; },
                    },
                    command);
}

Json LinesJson(const std::vector<LineRequest>& lines) {
  Json list = Json::array();
  for (const LineRequest& line : lines) {
    list.push_back({{"sku", line.sku.value()}, {"quantity", line.quantity}});
  }
  return list;
}

std::string CommandPayload(const Command& command) {
  Json payload = std::visit(
      Overloaded{
          [](const cmd::Receive& c) {
            return Json{{"sku", c.sku.value()},
                        {"location_id", c.location.value()},
                        {"quantity", c.quantity},
                        {"reference", c.reference}};
          },
          [](const cmd::Adjust& c) {
            return Json{{"sku", c.sku.value()},
                        {"location_id", c.location.value()},
                        {"delta", c.delta},
                        {"reference", c.reference}};
          },
          [](const cmd::Reserve& c) {
            Json reserve{{"reservation_id", c.id.value()},
                         {"lines", LinesJson(c.lines)},
                         {"region", c.region},
                         {"ttl_seconds", std::max<int64_t>(1, c.ttl_ms / 1000)}};
            if (!c.replaces.empty()) reserve["replaces"] = c.replaces.value();
            return reserve;
          },
          [](const cmd::Extend& c) {
            return Json{{"reservation_id", c.id.value()},
                        {"ttl_seconds", std::max<int64_t>(1, c.ttl_ms / 1000)}};
          },
          [](const cmd::Release& c) {
            return Json{{"reservation_id", c.id.value()}};
          },
          [](const cmd::Allocate& c) {
            return Json{{"reservation_id", c.id.value()}, {"order_id", c.order_id.value()}};
          },
          [](const cmd::CancelAllocation& c) {
            return Json{{"order_id", c.order_id.value()}};
          },
          [](const cmd::Ship& c) {
            return Json{{"order_id", c.order_id.value()},
                        {"shipment_id", c.shipment_id},
                        {"lines", LinesJson(c.lines)}};
          },
          [](const cmd::Deliver& c) {
            return Json{{"order_id", c.order_id.value()}};
          },
          [](const cmd::Return& c) {
            return Json{{"order_id", c.order_id.value()},
                        {"return_id", c.return_id},
                        {"lines", LinesJson(c.lines)}};
          },
      },
      command);
  return DumpJson(payload);
}

std::string OutcomeName(const Outcome& outcome) {
  return std::string(std::visit(Overloaded{
                                    [](std::monostate) { return std::string_view(); },
                                    [](StockOutcome o) { return StockName(o); },
                                    [](ReserveOutcome o) { return ReserveOutcomeName(o); },
                                    [](ExtendOutcome o) { return ExtendName(o); },
                                    [](ReleaseOutcome o) { return ReleaseName(o); },
                                    [](AllocateOutcome o) { return AllocateName(o); },
                                    [](CancelAllocationOutcome o) { return CancelName(o); },
                                    [](ShipOutcome o) { return ShipName(o); },
                                    [](DeliverOutcome o) { return DeliverName(o); },
                                    [](ReturnOutcome o) { return ReturnName(o); },
                                },
                                outcome));
}

bool OutcomeSucceeded(const Outcome& outcome) {
  return std::visit(
      Overloaded{
          [](std::monostate) { return true; },
          [](StockOutcome o) { return o == StockOutcome::kApplied; },
          [](ReserveOutcome o) {
            return o == ReserveOutcome::kReserved || o == ReserveOutcome::kAlreadyReserved;
          },
          [](ExtendOutcome o) { return o == ExtendOutcome::kExtended; },
          [](ReleaseOutcome o) {
            return o == ReleaseOutcome::kReleased || o == ReleaseOutcome::kAlreadyReleased ||
                   o == ReleaseOutcome::kAlreadyExpired;
          },
          [](AllocateOutcome o) {
            return o == AllocateOutcome::kAllocated || o == AllocateOutcome::kAlreadyAllocated;
          },
          [](CancelAllocationOutcome o) {
            return o == CancelAllocationOutcome::kCancelled ||
                   o == CancelAllocationOutcome::kAlreadyCancelled;
          },
          [](ShipOutcome o) {
            return o == ShipOutcome::kShipped || o == ShipOutcome::kAlreadyApplied;
          },
          [](DeliverOutcome o) {
            return o == DeliverOutcome::kDelivered || o == DeliverOutcome::kAlreadyDelivered;
          },
          [](ReturnOutcome o) {
            return o == ReturnOutcome::kReturned || o == ReturnOutcome::kAlreadyApplied;
          },
      },
      outcome);
}

Json ReservationJson(const Reservation& reservation) {
  Json lines = Json::array();
  for (const ReservationLine& line : reservation.lines) {
    Json locations = Json::array();
    for (const Split& split : line.splits) {
      locations.push_back({{"location_id", split.location.value()},
                           {"quantity", split.quantity},
                           {"shipped", split.shipped},
                           {"returned", split.returned}});
    }
    lines.push_back(
        {{"sku", line.sku.value()}, {"quantity", line.quantity}, {"locations", locations}});
  }
  return Json{{"id", reservation.id.value()},
              {"state", std::string(ReservationStateName(reservation.state))},
              {"region", reservation.region},
              {"created_at_ms", reservation.created_at_ms},
              {"expires_at_ms", reservation.expires_at_ms},
              {"order_id",
               reservation.order_id.empty() ? Json(nullptr) : Json(reservation.order_id.value())},
              {"lines", lines}};
}

std::optional<std::string> StaffStockAnswer(const std::string& request_json,
                                            const CommandResult& result) {
  if (!result.status.ok()) return std::nullopt;
  const StockOutcome* outcome = std::get_if<StockOutcome>(&result.outcome);
  if (outcome == nullptr || *outcome != StockOutcome::kApplied) return std::nullopt;
  absl::StatusOr<Json> body = ParseJson(request_json);
  if (!body.ok() || !body->is_object()) return std::nullopt;
  (*body)["ledger_sequence"] = result.entries.empty() ? 0 : result.entries.back().sequence;
  return DumpJson(*body);
}

std::vector<Event> EventsFor(const Command* command, const CommandResult& result) {
  std::vector<Event> events;
  if (!result.status.ok()) return events;
  if (command == nullptr) {
    for (const ReservationId& id : result.expired) {
      events.push_back(
          MakeEvent(kReservationExpired, id.value(), {{"reservation_id", id.value()}}));
    }
    return events;
  }
  std::visit(
      Overloaded{
          [](const cmd::Receive&) {},
          [](const cmd::Adjust&) {},
          [&](const cmd::Reserve& c) {
            if (result.released_replaced) {
              // The replaced reservation went first, as a Release before this Reserve would.
              events.push_back(MakeEvent(kReleased, c.replaces.value(),
                                         {{"reservation_id", c.replaces.value()}}));
            }
            const ReserveOutcome outcome = std::get<ReserveOutcome>(result.outcome);
            switch (outcome) {
              case ReserveOutcome::kReserved: {
                events.push_back(Event{std::string(kReserved), c.id.value(),
                                       ReservedPayload(*result.reservation, c.id)});
                return;
              }
              case ReserveOutcome::kAlreadyReserved:
                return;  // a replay: the event went out with the original
              case ReserveOutcome::kInsufficientStock:
              case ReserveOutcome::kUnknownSku:
              case ReserveOutcome::kConflict:
              case ReserveOutcome::kInvalidRequest:
                events.push_back(MakeEvent(kReservationFailed, c.id.value(),
                                           {{"reservation_id", c.id.value()},
                                            {"reason", std::string(ReserveOutcomeName(outcome))},
                                            {"short_skus", SkuList(result.short_skus)},
                                            {"unknown_skus", SkuList(result.unknown_skus)}}));
                return;
            }
          },
          [](const cmd::Extend&) {},
          [&](const cmd::Release& c) {
            if (std::get<ReleaseOutcome>(result.outcome) == ReleaseOutcome::kReleased) {
              events.push_back(
                  MakeEvent(kReleased, c.id.value(), {{"reservation_id", c.id.value()}}));
            }
          },
          [&](const cmd::Allocate& c) {
            const AllocateOutcome outcome = std::get<AllocateOutcome>(result.outcome);
            if (outcome == AllocateOutcome::kAllocated) {
              events.push_back(Event{std::string(kAllocated), c.id.value(), AllocatedPayload(c)});
            } else if (outcome == AllocateOutcome::kExpired && !result.entries.empty()) {
              // The allocation found the reservation past its expiry and expired it itself.
              events.push_back(
                  MakeEvent(kReservationExpired, c.id.value(), {{"reservation_id", c.id.value()}}));
            }
          },
          [&](const cmd::CancelAllocation& c) {
            if (std::get<CancelAllocationOutcome>(result.outcome) ==
                CancelAllocationOutcome::kCancelled) {
              events.push_back(MakeEvent(kAllocationCancelled, c.order_id.value(),
                                         {{"order_id", c.order_id.value()}}));
            }
          },
          [&](const cmd::Ship& c) {
            if (std::get<ShipOutcome>(result.outcome) == ShipOutcome::kShipped) {
              events.push_back(MakeEvent(kShipped, c.order_id.value(),
                                         {{"order_id", c.order_id.value()},
                                          {"shipment_id", c.shipment_id},
                                          {"lines", LinesJson(c.lines)}}));
            }
          },
          [&](const cmd::Deliver& c) {
            if (std::get<DeliverOutcome>(result.outcome) == DeliverOutcome::kDelivered) {
              events.push_back(
                  MakeEvent(kDelivered, c.order_id.value(), {{"order_id", c.order_id.value()}}));
            }
          },
          [&](const cmd::Return& c) {
            if (std::get<ReturnOutcome>(result.outcome) == ReturnOutcome::kReturned) {
              events.push_back(MakeEvent(kReturned, c.order_id.value(),
                                         {{"order_id", c.order_id.value()},
                                          {"return_id", c.return_id},
                                          {"lines", LinesJson(c.lines)}}));
            }
          },
      },
      *command);
  return events;
}

Event AvailabilityChanged(const SkuTotals& totals) {
  return MakeEvent(kAvailabilityChanged, totals.sku.value(),
                   {{"sku", totals.sku.value()},
                    {"available", totals.available()},
                    {"on_hand", totals.on_hand}});
}

std::string ReplyPayload(const Command& command, const CommandResult& result) {
  Json reply{{"command", std::string(CommandType(command))},
             {"outcome", OutcomeName(result.outcome)},
             {"ok", OutcomeSucceeded(result.outcome)},
             {"short_skus", SkuList(result.short_skus)},
             {"unknown_skus", SkuList(result.unknown_skus)}};
  std::visit(Overloaded{
                 [](const cmd::Receive&) {},
                 [](const cmd::Adjust&) {},
                 [&](const cmd::Reserve& c) {
                   reply["reservation_id"] = c.id.value();
                   if (result.reservation.has_value()) {
                     reply["expires_at_ms"] = result.reservation->expires_at_ms;
                   }
                 },
                 [&](const cmd::Extend& c) { reply["reservation_id"] = c.id.value(); },
                 [&](const cmd::Release& c) { reply["reservation_id"] = c.id.value(); },
                 [&](const cmd::Allocate& c) {
                   reply["reservation_id"] = c.id.value();
                   reply["order_id"] = c.order_id.value();
                 },
                 [&](const cmd::CancelAllocation& c) { reply["order_id"] = c.order_id.value(); },
                 [&](const cmd::Ship& c) { reply["order_id"] = c.order_id.value(); },
                 [&](const cmd::Deliver& c) { reply["order_id"] = c.order_id.value(); },
                 [&](const cmd::Return& c) { reply["order_id"] = c.order_id.value(); },
             },
             command);
  return DumpJson(reply);
}

absl::StatusOr<AvailabilityChangedEvent> ParseAvailabilityChanged(std::string_view payload) {
  ASSIGN_OR_RETURN(Json object, ParseBoundedObject(payload));
  AvailabilityChangedEvent event;
  ASSIGN_OR_RETURN(event.sku, RequireIdentifier(object, "sku"));
  ASSIGN_OR_RETURN(event.available,
                   RequireInt(object, "available", -kStockQuantityMax, kStockQuantityMax));
  ASSIGN_OR_RETURN(event.on_hand, RequireInt(object, "on_hand", 0, kStockQuantityMax));
  return event;
}

absl::StatusOr<CommandReply> ParseReply(std::string_view payload) {
  ASSIGN_OR_RETURN(Json object, ParseBoundedObject(payload));
  CommandReply reply;
  ASSIGN_OR_RETURN(reply.command, RequireString(object, "command", kIdLengthMax));
  ASSIGN_OR_RETURN(reply.outcome, RequireString(object, "outcome", kIdLengthMax));
  ASSIGN_OR_RETURN(reply.ok, OptionalBool(object, "ok", false));
  for (const char* field : {"short_skus", "unknown_skus"}) {
    auto it = object.find(field);
    if (it == object.end()) continue;
    if (!it->is_array() || it->size() > kReservationLinesMax) {
      return InvalidParam(field, "must be an array of SKUs");
    }
    std::vector<std::string>& target =
        std::string_view(field) == "short_skus" ? reply.short_skus : reply.unknown_skus;
    for (const Json& sku : *it) {
      if (!sku.is_string()) return InvalidParam(field, "must be an array of SKUs");
      target.push_back(sku.get<std::string>());
    }
  }
  return reply;
}

}  // namespace emporium::inventory::messages
