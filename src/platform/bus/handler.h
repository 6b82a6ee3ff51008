// The signature every message consumer implements.
#pragma once

#include <functional>

#include "absl/status/status.h"
#include "platform/bus/envelope.h"
#include "platform/sql/database.h"

namespace emporium::bus {

// Handles one message inside a write transaction on the consumer's own database, the same
// transaction that records the message in the inbox: its effects commit iff the message is
// marked handled. It may Publish() follow-up messages through the same transaction. A non-OK
// status rolls its effects back and the message is retried (then dead-lettered). Called on the
// database's writer thread: it must not call Write()/Read() on that database.
using MessageHandler = std::function<absl::Status(sql::Transaction&, const Envelope&)>;

}  // namespace emporium::bus
