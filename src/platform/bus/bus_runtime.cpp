#include "platform/bus/bus_runtime.h"

#include <utility>

#include "fmt/format.h"
#include "platform/bus/in_process_transport.h"

namespace emporium::bus {

BusRuntime::BusRuntime(BusOptions options, std::unique_ptr<Transport> transport)
    : options_(std::move(options)), transport_(std::move(transport)) {
  if (transport_ == nullptr) transport_ = std::make_unique<InProcessTransport>();
}

BusRuntime::~BusRuntime() { Stop(); }

absl::Status BusRuntime::AddDatabase(std::string name, sql::Database& db) {
  if (state_ != State::kConfiguring) {
    return absl::FailedPreconditionError("bus: AddDatabase after Start");
  }
  for (const auto& relay : relays_) {
    if (relay->db_name() == name) {
      return absl::AlreadyExistsError(fmt::format("bus: database {} already added", name));
    }
  }
  RelayOptions relay_options = options_.relay;
  relay_options.clock = options_.clock;
  relay_options.metrics = options_.metrics;
  auto relay = std::make_unique<Relay>(std::move(name), db, *transport_, relay_options);
  relay->ListenForCommits();
  relays_.push_back(std::move(relay));
  return absl::OkStatus();
}

absl::Status BusRuntime::Subscribe(std::string consumer, sql::Database& db,
                                   std::vector<std::string> type_patterns, MessageHandler handler) {
  if (state_ != State::kConfiguring) {
    return absl::FailedPreconditionError("bus: Subscribe after Start");
  }
  if (consumer.empty() || type_patterns.empty() || !handler) {
    return absl::InvalidArgumentError("bus: a consumer needs a name, patterns and a handler");
  }
  ConsumerOptions consumer_options;
  consumer_options.retry = options_.retry;
  consumer_options.clock = options_.clock;
  consumer_options.metrics = options_.metrics;
  auto owned = std::make_unique<Consumer>(consumer, db, std::move(handler), consumer_options);
  Consumer* raw = owned.get();
  absl::Status subscribed = transport_->Subscribe(
      Subscription{std::move(consumer), std::move(type_patterns)},
      [raw](const std::vector<std::string_view>& messages) { return raw->HandleBatch(messages); });
  if (!subscribed.ok()) return subscribed;
  consumers_.push_back(std::move(owned));
  return absl::OkStatus();
}

absl::Status BusRuntime::Start() {
  if (state_ != State::kConfiguring) {
    return absl::FailedPreconditionError("bus: Start called twice");
  }
  state_ = State::kRunning;
  for (auto& relay : relays_) relay->Start();
  return absl::OkStatus();
}

void BusRuntime::Stop() {
  if (state_ == State::kStopped) return;
  state_ = State::kStopped;
  for (auto& relay : relays_) relay->Stop();
  for (auto& consumer : consumers_) consumer->Stop();
  transport_->Close();
}

absl::Status BusRuntime::ReplayDeadLetter(std::string_view consumer, int64_t id) {
  for (auto& candidate : consumers_) {
    if (candidate->name() == consumer) return candidate->ReplayDeadLetter(id);
  }
  return absl::NotFoundError(fmt::format("bus: no consumer {}", consumer));
}

sql::Database* BusRuntime::ConsumerDatabase(std::string_view consumer) const {
  for (const auto& candidate : consumers_) {
    if (candidate->name() == consumer) return &candidate->database();
  }
  return nullptr;
}

std::vector<std::string> BusRuntime::ConsumerNames() const {
  std::vector<std::string> names;
  for (const auto& consumer : consumers_) names.push_back(consumer->name());
  return names;
}

Relay* BusRuntime::relay(std::string_view name) {
  for (auto& relay : relays_) {
    if (relay->db_name() == name) return relay.get();
  }
  return nullptr;
}

}  // namespace emporium::bus
