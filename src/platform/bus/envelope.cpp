#include "platform/bus/envelope.h"

#include <cstdint>
#include <iterator>
#include <limits>
#include <utility>

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
    if (!Literal("{\"causation_id\":") || !String(envelope.causation_id) ||
        !Literal(",\"correlation_id\":") || !String(envelope.correlation_id) ||
        !Literal(",\"id\":") || !String(envelope.id) || !Literal(",\"key\":") ||
        !String(envelope.key) || !Literal(",\"occurred_at_ms\":") ||
        !Integer(envelope.occurred_at_ms) || !Literal(",\"payload\":") ||
        !String(envelope.payload)) {
      return false;
    }
    if (Literal(",\"reply_to\":")) {
      std::string reply_to;
      if (!String(reply_to)) return false;
      envelope.reply_to = std::move(reply_to);
    }
    return Literal(",\"source\":") && String(envelope.source) && Literal(",\"traceparent\":") &&
           String(envelope.traceparent) && Literal(",\"type\":") && String(envelope.type) &&
           Literal("}") && at_ == in_.size();
  }

 private:
  bool Literal(std::string_view text) {
    if (in_.substr(at_, text.size()) != text) return false;
    at_ += text.size();
    return true;
  }

  bool String(std::string& out) {
    if (at_ >= in_.size() || in_[at_] != '"') return false;
    ++at_;
    out.clear();
    size_t run_start = at_;
    while (at_ < in_.size()) {
      const auto c = static_cast<unsigned char>(in_[at_]);
      if (c == '"') {
        out.append(in_.data() + run_start, at_ - run_start);
        ++at_;
        return true;
      }
      // Control bytes are invalid JSON and non-ASCII needs UTF-8 validation: the DOM decides.
      if (c < 0x20 || c >= 0x80) return false;
      if (c != '\\') {
        ++at_;
        continue;
      }
      out.append(in_.data() + run_start, at_ - run_start);
      if (at_ + 1 >= in_.size()) return false;
      switch (in_[at_ + 1]) {
        case '"':
          out += '"';
          break;
        case '\\':
          out += '\\';
          break;
        case '/':
          out += '/';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        default:
          return false;  // \uXXXX (and anything invalid): the DOM decodes or rejects it
      }
      at_ += 2;
      run_start = at_;
    }
    return false;
  }

  // 0 or [1-9][0-9]{0,17}: always within int64_t; longer, signed or fractional: the DOM.
  bool Integer(int64_t& out) {
    constexpr size_t kDigitsMax = 18;
    size_t digits = 0;
    int64_t value = 0;
    while (at_ + digits < in_.size() && in_[at_ + digits] >= '0' && in_[at_ + digits] <= '9') {
      if (digits == kDigitsMax) return false;
      value = value * 10 + (in_[at_ + digits] - '0');
      ++digits;
    }
    if (digits == 0 || (digits > 1 && in_[at_] == '0')) return false;
    at_ += digits;
    out = value;
    return true;
  }

  std::string_view in_;
  size_t at_ = 0;
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
