#include "platform/bus/in_process_transport.h"

#include <utility>

#include "fmt/format.h"
#include "platform/bus/envelope.h"

namespace emporium::bus {

absl::Status InProcessTransport::Subscribe(Subscription subscription, BatchHandler handler) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (closed_) return absl::FailedPreconditionError("bus: transport is closed");
  for (const auto& subscriber : subscribers_) {
    if (subscriber->subscription.consumer == subscription.consumer) {
      return absl::AlreadyExistsError(
          fmt::format("bus: consumer {} is already subscribed", subscription.consumer));
    }
  }
  // shared_ptr: Publish() copies the list under the lock and calls handlers outside it.
  subscribers_.push_back(
      std::make_shared<const Subscriber>(Subscriber{std::move(subscription), std::move(handler)}));
  return absl::OkStatus();
}

absl::Status InProcessTransport::Publish(const std::vector<OutgoingMessage>& batch) {
  std::vector<std::shared_ptr<const Subscriber>> subscribers;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (closed_) return absl::UnavailableError("bus: transport is closed");
    subscribers = subscribers_;
  }
  absl::Status first_error;
  std::vector<std::string_view> matching;
  matching.reserve(batch.size());
  for (const auto& subscriber : subscribers) {
    matching.clear();
    for (const OutgoingMessage& message : batch) {
      for (const std::string& pattern : subscriber->subscription.type_patterns) {
        if (TypeMatches(pattern, message.type)) {
          matching.push_back(message.bytes);
          break;
        }
      }
    }
    if (matching.empty()) continue;
    absl::Status status = subscriber->handler(matching);
    if (!status.ok() && first_error.ok()) {
      first_error =
          absl::UnavailableError(fmt::format("bus: consumer {} did not ack: {}",
                                             subscriber->subscription.consumer, status.ToString()));
    }
  }
  return first_error;
}

void InProcessTransport::Close() {
  std::lock_guard<std::mutex> lock(mutex_);
  closed_ = true;
}

}  // namespace emporium::bus
