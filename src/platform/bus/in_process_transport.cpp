#include "platform/bus/in_process_transport.h"

#include <string_view>
#include <system_error>
#include <thread>
#include <utility>

#include "common/thread_name.h"
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
    // Deliveries 1..n-1 on helpers, 0 here; `remaining` counts the helpers' unfinished ones.
    std::mutex done_mutex;
    std::condition_variable done_cv;
    size_t remaining = 0;
    for (size_t i = 1; i < deliveries.size(); ++i) {
      auto task = [&deliveries, &outcomes, &done_mutex, &done_cv, &remaining, i] {
        outcomes[i] = deliveries[i].first->handler(deliveries[i].second);
        std::lock_guard<std::mutex> lock(done_mutex);
        if (--remaining == 0) done_cv.notify_all();
      };
      {
        std::lock_guard<std::mutex> lock(done_mutex);
        ++remaining;
      }
      if (!RunOnHelper(task)) task();  // no thread to be had: deliver on this one
    }
    if (!deliveries.empty()) outcomes[0] = deliveries[0].first->handler(deliveries[0].second);
    // Every queued task runs (helpers drain their queue before they exit), so this ends.
    std::unique_lock<std::mutex> lock(done_mutex);
    done_cv.wait(lock, [&remaining] { return remaining == 0; });
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

InProcessTransport::~InProcessTransport() {
  std::vector<std::thread> helpers;
  {
    std::lock_guard<std::mutex> lock(helpers_mutex_);
    helpers_stopping_ = true;
    helpers.swap(helpers_);
  }
  helpers_cv_.notify_all();
  for (std::thread& helper : helpers) helper.join();
}

bool InProcessTransport::RunOnHelper(std::function<void()> task) {
  std::unique_lock<std::mutex> lock(helpers_mutex_);
  if (helpers_stopping_) return false;
  helper_tasks_.push_back(std::move(task));
  if (helper_tasks_.size() > helpers_idle_ && helpers_.size() < kDeliveryHelpersMax) {
    try {
      helpers_.emplace_back([this] {
        SetCurrentThreadName("bus-deliver");
        HelperLoop();
      });
    } catch (const std::system_error&) {
      if (helpers_.empty()) {
        helper_tasks_.pop_back();
        return false;
      }
      // The existing helpers will get to it.
    }
  }
  lock.unlock();
  helpers_cv_.notify_one();
  return true;
}

void InProcessTransport::HelperLoop() {
  std::unique_lock<std::mutex> lock(helpers_mutex_);
  while (true) {
    ++helpers_idle_;
    helpers_cv_.wait(lock, [this] { return helpers_stopping_ || !helper_tasks_.empty(); });
    --helpers_idle_;
    // Stopping drains the queue first: a Publish() may be waiting on a queued delivery.
    if (helper_tasks_.empty()) return;
    std::function<void()> task = std::move(helper_tasks_.front());
    helper_tasks_.pop_front();
    lock.unlock();
    task();
    lock.lock();
  }
}

void InProcessTransport::Close() {
  std::lock_guard<std::mutex> lock(mutex_);
  closed_ = true;
}

}  // namespace emporium::bus
