#include "platform/bus/envelope.h"

#include <cstdint>
#include <iterator>
#include <limits>
#include <utility>

#include "common/exact_json_reader.h"
#include "common/json.h"
#include "fmt/format.h"
#include "nlohmann/json.hpp"

namespace emporium::bus {
namespace {

using Json = nlohmann::json;

bool IsTypeChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

absl::Status CheckLength(std::string_view field, const std::string& value, size_t max_bytes) {
  if (value.size() > max_bytes) {
    return absl::InvalidArgumentError(
        fmt::format("envelope: {} is {} bytes, more than {}", field, value.size(), max_bytes));
  }
  return absl::OkStatus();
}

absl::Status CheckType(std::string_view field, const std::string& value) {
  if (value.empty()) return absl::InvalidArgumentError(fmt::format("envelope: {} is empty", field));
  if (absl::Status length = CheckLength(field, value, kEnvelopeTypeBytesMax); !length.ok()) {
    return length;
  }
  for (char c : value) {
    if (!IsTypeChar(c)) {
      return absl::InvalidArgumentError(
          fmt::format("envelope: {} may hold only [a-z0-9._-]", field));
    }
  }
  return absl::OkStatus();
}

// Reads an optional string member into `out`; absent or null leaves it empty.
absl::Status ReadString(const Json& object, const char* field, std::string& out) {
  auto it = object.find(field);
  if (it == object.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_string()) {
    return absl::InvalidArgumentError(fmt::format("envelope: {} must be a string", field));
  }
  out = it->get<std::string>();
  return absl::OkStatus();
}

// Reads exactly the text Serialize writes -- every member in Serialize's order, no whitespace,
// ASCII strings whose only escapes are the two-character ones, occurred_at_ms a plain
// non-negative integer -- and gives up (false) at the first byte that differs, leaving the
// input to the DOM reader. Whatever it accepts, the DOM reader reads as the same Envelope: a
// flat object of distinct keys, strings unescaped alike, the same integer. Receivers parse
// every message once per consumer, so this takes the JSON tree off the bus's hot path.
class SerializedReader {
 public:
  explicit SerializedReader(std::string_view bytes) : in_(bytes) {}

  bool Read(Envelope& envelope) {
    constexpr size_t kTimeDigitsMax = 18;  // longer (or signed): the DOM's
    if (!in_.Literal("{\"causation_id\":") || !in_.String(envelope.causation_id) ||
        !in_.Literal(",\"correlation_id\":") || !in_.String(envelope.correlation_id) ||
        !in_.Literal(",\"id\":") || !in_.String(envelope.id) || !in_.Literal(",\"key\":") ||
        !in_.String(envelope.key) || !in_.Literal(",\"occurred_at_ms\":") ||
        !in_.Integer(envelope.occurred_at_ms, kTimeDigitsMax) || !in_.Literal(",\"payload\":") ||
        !in_.String(envelope.payload)) {
      return false;
    }
    if (in_.Literal(",\"reply_to\":")) {
      std::string reply_to;
      if (!in_.String(reply_to)) return false;
      envelope.reply_to = std::move(reply_to);
    }
    return in_.Literal(",\"source\":") && in_.String(envelope.source) &&
           in_.Literal(",\"traceparent\":") && in_.String(envelope.traceparent) &&
           in_.Literal(",\"type\":") && in_.String(envelope.type) && in_.Literal("}") &&
           in_.AtEnd();
  }

 private:
  ExactJsonReader in_;
};

}  // namespace

absl::Status Validate(const Envelope& envelope) {
  if (envelope.id.empty()) return absl::InvalidArgumentError("envelope: id is empty");
  struct Bound {
    const char* field;
    const std::string& value;
    size_t max_bytes;
  };
  const Bound bounds[] = {
      {"id", envelope.id, kEnvelopeIdBytesMax},
      {"correlation_id", envelope.correlation_id, kEnvelopeIdBytesMax},
      {"causation_id", envelope.causation_id, kEnvelopeIdBytesMax},
      {"source", envelope.source, kEnvelopeTypeBytesMax},
      {"key", envelope.key, kEnvelopeKeyBytesMax},
      {"traceparent", envelope.traceparent, kEnvelopeTraceparentBytesMax},
      {"payload", envelope.payload, kEnvelopeBytesMax},
  };
  for (const Bound& bound : bounds) {
    if (absl::Status status = CheckLength(bound.field, bound.value, bound.max_bytes);
        !status.ok()) {
      return status;
    }
  }
  if (absl::Status status = CheckType("type", envelope.type); !status.ok()) return status;
  if (envelope.reply_to.has_value()) {
    if (absl::Status status = CheckType("reply_to", *envelope.reply_to); !status.ok()) {
      return status;
    }
  }
  if (envelope.occurred_at_ms < 0) {
    return absl::InvalidArgumentError("envelope: occurred_at_ms is negative");
  }
  return absl::OkStatus();
}

std::string Serialize(const Envelope& envelope) {
  // The outbox serializes every published message on the database writer thread, so this is
  // written straight into one string instead of through a JSON DOM (a map node and a string
  // copy per field, then a second pass to dump). Keys are emitted in the DOM's (sorted) order
  // and strings by AppendJsonString (DumpJson's bytes, invalid UTF-8 repaired alike), so the
  // bytes are identical.
  const std::string* fields[] = {
      &envelope.causation_id, &envelope.correlation_id, &envelope.id,          &envelope.key,
      &envelope.payload,      &envelope.source,         &envelope.traceparent, &envelope.type};
  size_t size = 160;
  for (const std::string* field : fields) size += field->size() + field->size() / 8;
  if (envelope.reply_to.has_value()) size += envelope.reply_to->size() + 16;
  std::string out;
  out.reserve(size);
  auto member = [&out](std::string_view name, const std::string& value) {
    out += '"';
    out += name;
    out += "\":";
    AppendJsonString(out, value);
  };
  out += '{';
  member("causation_id", envelope.causation_id);
  out += ',';
  member("correlation_id", envelope.correlation_id);
  out += ',';
  member("id", envelope.id);
  out += ',';
  member("key", envelope.key);
  out += ",\"occurred_at_ms\":";
  fmt::format_to(std::back_inserter(out), "{}", envelope.occurred_at_ms);
  out += ',';
  member("payload", envelope.payload);
  if (envelope.reply_to.has_value()) {
    out += ',';
    member("reply_to", *envelope.reply_to);
  }
  out += ',';
  member("source", envelope.source);
  out += ',';
  member("traceparent", envelope.traceparent);
  out += ',';
  member("type", envelope.type);
  out += '}';
  return out;
}

absl::StatusOr<Envelope> Deserialize(std::string_view bytes) {
  if (bytes.size() > kEnvelopeBytesMax) {
    return absl::InvalidArgumentError(
        fmt::format("envelope: {} bytes, more than {}", bytes.size(), kEnvelopeBytesMax));
  }
  Envelope envelope;
  if (SerializedReader(bytes).Read(envelope)) {
    if (absl::Status status = Validate(envelope); !status.ok()) return status;
    return envelope;
  }
  return DeserializeWithDom(bytes);
}

absl::StatusOr<Envelope> DeserializeWithDom(std::string_view bytes) {
  if (bytes.size() > kEnvelopeBytesMax) {
    return absl::InvalidArgumentError(
        fmt::format("envelope: {} bytes, more than {}", bytes.size(), kEnvelopeBytesMax));
  }
  if (JsonNestingDepth(bytes) > kEnvelopeJsonDepthMax) {
    return absl::InvalidArgumentError("envelope: JSON nested too deeply");
  }
  Json object = Json::parse(bytes, /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (object.is_discarded()) return absl::InvalidArgumentError("envelope: not valid JSON");
  if (!object.is_object()) return absl::InvalidArgumentError("envelope: not a JSON object");

  Envelope envelope;
  const std::pair<const char*, std::string*> strings[] = {
      {"id", &envelope.id},
      {"type", &envelope.type},
      {"source", &envelope.source},
      {"key", &envelope.key},
      {"correlation_id", &envelope.correlation_id},
      {"causation_id", &envelope.causation_id},
      {"traceparent", &envelope.traceparent},
  };
  for (const auto& [field, out] : strings) {
    if (absl::Status status = ReadString(object, field, *out); !status.ok()) return status;
  }
  if (auto it = object.find("reply_to"); it != object.end() && !it->is_null()) {
    if (!it->is_string()) return absl::InvalidArgumentError("envelope: reply_to must be a string");
    envelope.reply_to = it->get<std::string>();
  }
  auto occurred = object.find("occurred_at_ms");
  if (occurred == object.end() || !occurred->is_number_integer()) {
    return absl::InvalidArgumentError("envelope: occurred_at_ms must be an integer");
  }
  if (occurred->is_number_unsigned() &&
      occurred->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return absl::InvalidArgumentError("envelope: occurred_at_ms out of range");
  }
  envelope.occurred_at_ms = occurred->get<int64_t>();
  auto payload = object.find("payload");
  if (payload == object.end() || payload->is_null()) {
    envelope.payload.clear();
  } else if (payload->is_string()) {
    envelope.payload = payload->get<std::string>();
  } else if (payload->is_object() || payload->is_array()) {
    envelope.payload = payload->dump(-1, ' ', false, Json::error_handler_t::replace);
  } else {
    return absl::InvalidArgumentError("envelope: payload must be a string, object or array");
  }
  if (absl::Status status = Validate(envelope); !status.ok()) return status;
  return envelope;
}

absl::StatusOr<Envelope> MakeReply(const Envelope& request, std::string reply_id,
                                   std::string source, int64_t occurred_at_ms,
                                   std::string payload) {
  if (!request.reply_to.has_value() || request.reply_to->empty()) {
    return absl::FailedPreconditionError(
        fmt::format("envelope: request {} has no reply_to", request.id));
  }
  Envelope reply;
  reply.id = std::move(reply_id);
  reply.type = *request.reply_to;
  reply.source = std::move(source);
  reply.key = request.key;
  reply.correlation_id = request.correlation_id;
  reply.causation_id = request.id;
  reply.traceparent = request.traceparent;
  reply.occurred_at_ms = occurred_at_ms;
  reply.payload = std::move(payload);
  return reply;
}

bool TypeMatches(std::string_view pattern, std::string_view type) {
  if (pattern == "*") return true;
  if (!pattern.empty() && pattern.back() == '.') return type.substr(0, pattern.size()) == pattern;
  return pattern == type;
}

}  // namespace emporium::bus
