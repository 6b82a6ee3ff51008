#include "platform/bus/in_process_transport.h"

#include <string_view>
#include <system_error>
#include <thread>
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
  // Each matching consumer with its messages; views into `batch`, which outlives the calls.
  std::vector<std::pair<const Subscriber*, std::vector<std::string_view>>> deliveries;
  for (const auto& subscriber : subscribers) {
    std::vector<std::string_view> matching;
    for (const OutgoingMessage& message : batch) {
      for (const std::string& pattern : subscriber->subscription.type_patterns) {
        if (TypeMatches(pattern, message.type)) {
          matching.push_back(message.bytes);
          break;
        }
      }
    }
    if (!matching.empty()) deliveries.emplace_back(subscriber.get(), std::move(matching));
  }
  std::vector<absl::Status> outcomes(deliveries.size());
  {
    std::vector<std::thread> helpers;
    helpers.reserve(deliveries.size());
    for (size_t i = 1; i < deliveries.size(); ++i) {
      try {
        helpers.emplace_back([&deliveries, &outcomes, i] {
          outcomes[i] = deliveries[i].first->handler(deliveries[i].second);
        });
      } catch (const std::system_error&) {  // no thread to be had: deliver on this one
        outcomes[i] = deliveries[i].first->handler(deliveries[i].second);
      }
    }
    if (!deliveries.empty()) outcomes[0] = deliveries[0].first->handler(deliveries[0].second);
    for (std::thread& helper : helpers) helper.join();
  }
  absl::Status first_error;
  for (size_t i = 0; i < deliveries.size(); ++i) {
    if (!outcomes[i].ok() && first_error.ok()) {
      first_error = absl::UnavailableError(fmt::format("bus: consumer {} did not ack: {}",
                                                       deliveries[i].first->subscription.consumer,
                                                       outcomes[i].ToString()));
    }
  }
  return first_error;
}

void InProcessTransport::Close() {
  std::lock_guard<std::mutex> lock(mutex_);
  closed_ = true;
}

}  // namespace emporium::bus
