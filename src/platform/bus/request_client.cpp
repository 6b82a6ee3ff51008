#include "platform/bus/request_client.h"

#include <algorithm>
#include <memory>
#include <utility>

#include "common/status_macros.h"
#include "common/thread_name.h"
#include "fmt/format.h"
#include "platform/bus/outbox.h"

namespace emporium::bus {

RequestClient::RequestClient(RequestClientOptions options) : options_(std::move(options)) {}

RequestClient::~RequestClient() { Stop(); }

MessageHandler RequestClient::ReplyHandler() {
  return [this](sql::Transaction& tx, const Envelope& reply) { return OnReply(tx, reply); };
}

void RequestClient::Start() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (thread_.joinable()) return;
  stopping_ = false;
  thread_ = std::thread([this] {
    SetCurrentThreadName("bus-request");
    Run();
  });
}

void RequestClient::Stop() {
  std::vector<Completion> cancelled;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& completion : completions_) cancelled.push_back(std::move(completion));
    completions_.clear();
    for (auto& [id, pending] : pending_) {
      cancelled.push_back(
          Completion{std::move(pending.done), absl::CancelledError("bus: request client stopped")});
    }
    pending_.clear();
  }
  for (Completion& completion : cancelled) completion.done(std::move(completion.result));
}

absl::StatusOr<std::string> RequestClient::Register(Envelope& command, absl::Duration timeout,
                                                    ReplyCallback done) {
  command.reply_to = options_.reply_to;
  if (command.correlation_id.empty()) command.correlation_id = command.id;
  RETURN_IF_ERROR(Validate(command));
  std::lock_guard<std::mutex> lock(mutex_);
  if (pending_.size() >= options_.pending_max) {
    return absl::ResourceExhaustedError(
        fmt::format("bus: {} requests already pending", pending_.size()));
  }
  auto [it, inserted] = pending_.try_emplace(
      command.correlation_id, Pending{options_.clock->Now() + timeout, std::move(done)});
  if (!inserted) {
    return absl::AlreadyExistsError(
        fmt::format("bus: a request with correlation id {} is pending", command.correlation_id));
  }
  changed_ = true;
  cv_.notify_all();
  return command.correlation_id;
}

absl::StatusOr<std::string> RequestClient::Request(sql::Transaction& tx, Envelope command,
                                                   absl::Duration timeout, ReplyCallback done) {
  ASSIGN_OR_RETURN(std::string correlation_id, Register(command, timeout, std::move(done)));
  if (absl::Status published = Publish(tx, command); !published.ok()) {
    // Not sent: the caller learns it from the status, so the callback is dropped unrun.
    std::lock_guard<std::mutex> lock(mutex_);
    pending_.erase(correlation_id);
    return published;
  }
  return correlation_id;
}

absl::StatusOr<std::string> RequestClient::Request(sql::Database& db, Envelope command,
                                                   absl::Duration timeout, ReplyCallback done) {
  ASSIGN_OR_RETURN(std::string correlation_id, Register(command, timeout, std::move(done)));
  absl::Status written =
      db.Write([&command](sql::Transaction& tx) { return Publish(tx, command); });
  if (!written.ok()) {
    std::lock_guard<std::mutex> lock(mutex_);
    pending_.erase(correlation_id);
    return written;
  }
  return correlation_id;
}

std::future<absl::StatusOr<Envelope>> RequestClient::RequestAsync(sql::Database& db,
                                                                  Envelope command,
                                                                  absl::Duration timeout) {
  // shared_ptr: the promise is owned jointly by the callback (a copyable std::function) and
  // this frame until Request() returns.
  auto promise = std::make_shared<std::promise<absl::StatusOr<Envelope>>>();
  std::future<absl::StatusOr<Envelope>> future = promise->get_future();
  absl::StatusOr<std::string> sent =
      Request(db, std::move(command), timeout,
              [promise](absl::StatusOr<Envelope> reply) { promise->set_value(std::move(reply)); });
  if (!sent.ok()) promise->set_value(sent.status());
  return future;
}

absl::Status RequestClient::Cancel(const std::string& correlation_id) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = pending_.find(correlation_id);
  if (it == pending_.end()) {
    return absl::NotFoundError(fmt::format("bus: no pending request {}", correlation_id));
  }
  completions_.push_back(
      Completion{std::move(it->second.done), absl::CancelledError("bus: request cancelled")});
  pending_.erase(it);
  changed_ = true;
  cv_.notify_all();
  return absl::OkStatus();
}

size_t RequestClient::pending() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return pending_.size();
}

absl::Status RequestClient::OnReply(sql::Transaction& tx, const Envelope& reply) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = pending_.find(reply.correlation_id);
    if (it != pending_.end()) {
      // Completed now even though the reply's inbox row commits a moment later: if that commit
      // failed, the redelivered reply would find nothing pending and go to `unmatched`.
      completions_.push_back(Completion{std::move(it->second.done), reply});
      pending_.erase(it);
      changed_ = true;
      cv_.notify_all();
      return absl::OkStatus();
    }
  }
  if (options_.unmatched) return options_.unmatched(tx, reply);
  return absl::OkStatus();
}

void RequestClient::Run() {
  while (true) {
    std::vector<Completion> ready;
    bool stopping = false;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      const absl::Time now = options_.clock->Now();
      for (auto it = pending_.begin(); it != pending_.end();) {
        if (it->second.deadline <= now) {
          ready.push_back(
              Completion{std::move(it->second.done),
                         absl::DeadlineExceededError(fmt::format(
                             "bus: no reply to request {} by its deadline", it->first))});
          pending_.erase(it++);
        } else {
          ++it;
        }
      }
      for (auto& completion : completions_) ready.push_back(std::move(completion));
      completions_.clear();
      stopping = stopping_;
      if (ready.empty() && !stopping) {
        // Nearest deadline, measured on the injected clock; a manual clock that jumps is seen
        // within one tick.
        absl::Duration wait = options_.tick;
        for (const auto& [id, pending] : pending_) {
          wait = std::min(wait, std::max(pending.deadline - now, absl::ZeroDuration()));
        }
        cv_.wait_for(lock, absl::ToChronoNanoseconds(wait),
                     [this] { return changed_ || stopping_; });
        changed_ = false;
        continue;
      }
    }
    for (Completion& completion : ready) completion.done(std::move(completion.result));
    if (stopping) return;
  }
}

}  // namespace emporium::bus
