// A small bounded pool of threads for the accounts context's blocking work (argon2id hashing,
// durable writes), so the HTTP I/O threads never wait on either. Submit refuses work when the
// queue is full or the pool has stopped; the caller answers 503.
//
// Thread-safety: Submit from any thread; Stop from the owner thread (idempotent, joins).
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace emporium::accounts {

class BlockingWorkers {
 public:
  BlockingWorkers(int threads, size_t queue_max);
  ~BlockingWorkers();
  BlockingWorkers(const BlockingWorkers&) = delete;
  BlockingWorkers& operator=(const BlockingWorkers&) = delete;

  // False (and `task` dropped) when queue_max tasks are waiting or after Stop.
  bool Submit(std::function<void()> task);
  // Runs the queued tasks, then joins the threads.
  void Stop();

 private:
  void Run();

  const size_t queue_max_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::function<void()>> queue_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace emporium::accounts
