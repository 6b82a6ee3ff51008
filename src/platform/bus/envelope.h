// The bus envelope: the only thing that crosses a bounded-context boundary. A message is
// serialized to bytes by its sender and parsed again by every receiver, even when both live in
// the same process, so a context can never hand a neighbour a pointer into its own state.
//
// Wire format (JSON object, UTF-8):
//   {"id","type","source","key","correlation_id","causation_id","reply_to"?,"traceparent",
//    "occurred_at_ms","payload"}
// `payload` is written as a JSON string holding the payload bytes exactly; a reader also
// accepts a raw JSON object/array there (tools and hand-written messages), which is then
// re-serialized compactly.
//
// Thread-safety: free functions over values; safe from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace emporium::bus {

// Bounds applied by Deserialize (and checked by Validate) so hostile bytes cannot cost much.
inline constexpr size_t kEnvelopeBytesMax = 1 << 20;  // 1 MiB per serialized envelope
inline constexpr size_t kEnvelopeIdBytesMax = 128;    // id, correlation_id, causation_id
inline constexpr size_t kEnvelopeTypeBytesMax = 200;  // type, source, reply_to
inline constexpr size_t kEnvelopeKeyBytesMax = 512;   // key
inline constexpr size_t kEnvelopeTraceparentBytesMax = 256;
inline constexpr int kEnvelopeJsonDepthMax = 64;  // nesting of the whole document

struct Envelope {
  std::string id;                       // UUIDv7, unique per message; the de-duplication key
  std::string type;                     // "inventory.reserved"; subscriptions match on it
  std::string source;                   // the sending context, "inventory"
  std::string key;                      // ordering / sharding key; same key => delivered in order
  std::string correlation_id;           // ties a conversation together (request <-> reply, saga)
  std::string causation_id;             // id of the message that caused this one, if any
  std::optional<std::string> reply_to;  // the type a reply must be sent as (request/reply)
  std::string traceparent;              // W3C trace context
  int64_t occurred_at_ms = 0;           // when the sender produced it (Unix ms)
  std::string payload;                  // JSON bytes, the message body

  friend bool operator==(const Envelope&, const Envelope&) = default;
};

// InvalidArgument when a field is missing or out of bounds (id and type are required; type is
// lower-case dotted: [a-z0-9_.-]).
absl::Status Validate(const Envelope& envelope);

std::string Serialize(const Envelope& envelope);

// Parses bytes produced by Serialize (or an equivalent producer). Any malformed, oversized,
// too deeply nested or otherwise hostile input yields InvalidArgument; never throws or crashes.
// Bytes exactly as Serialize writes them (ASCII strings) are read without a JSON DOM; anything
// else goes through DeserializeWithDom, with the same result for every input.
absl::StatusOr<Envelope> Deserialize(std::string_view bytes);
// The general reader (a JSON DOM): what Deserialize answers for any input. Exposed so tests can
// hold Deserialize's fast path to it.
absl::StatusOr<Envelope> DeserializeWithDom(std::string_view bytes);

// The reply to `request`: type = request.reply_to, same correlation_id and key,
// causation_id = request.id, same traceparent. FailedPrecondition if the request has no
// reply_to.
absl::StatusOr<Envelope> MakeReply(const Envelope& request, std::string reply_id,
                                   std::string source, int64_t occurred_at_ms, std::string payload);

// True when a subscription pattern matches a message type: "*" matches everything, a pattern
// ending in '.' matches every type starting with it ("inventory."), anything else matches
// exactly.
bool TypeMatches(std::string_view pattern, std::string_view type);

}  // namespace emporium::bus
