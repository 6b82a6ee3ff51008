#include "platform/http/client.h"

// <utility> must precede Asio's coroutine headers in Boost 1.74.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <optional>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "boost/asio/co_spawn.hpp"
#include "boost/asio/executor_work_guard.hpp"
#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/redirect_error.hpp"
#include "boost/asio/use_awaitable.hpp"
#include "boost/beast/core.hpp"
#include "boost/beast/http.hpp"
#include "common/errors.h"
#include "fmt/format.h"

namespace emporium::http {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;

// How long Send waits past the deadline for the io thread to report; the io operations are
// themselves bounded by the deadline, so this only guards against a wedged io thread.
constexpr auto kCompletionGrace = std::chrono::seconds(2);

beast::string_view Bv(std::string_view text) { return {text.data(), text.size()}; }
std::string_view Sv(beast::string_view text) { return {text.data(), text.size()}; }

std::chrono::steady_clock::time_point SteadyDeadline(absl::Time deadline) {
  absl::Duration left = deadline - absl::Now();
  if (left < absl::ZeroDuration()) left = absl::ZeroDuration();
  return std::chrono::steady_clock::now() +
         std::chrono::nanoseconds(absl::ToInt64Nanoseconds(left));
}

absl::Status NotSent(std::string_view code, std::string message) {
  return WithErrorCode(absl::UnavailableError(message), code);
}

absl::Status OutcomeUnknown(const beast::error_code& ec, std::string_view stage) {
  if (ec == beast::error::timeout) {
    return WithErrorCode(
        absl::DeadlineExceededError(fmt::format("HTTP request timed out while {}", stage)),
        "outcome_unknown");
  }
  return WithErrorCode(
      absl::UnknownError(fmt::format("HTTP exchange failed while {}: {}", stage, ec.message())),
      "outcome_unknown");
}

}  // namespace

struct HttpClient::Impl {
  explicit Impl(ClientOptions client_options)
      : options(std::move(client_options)), work(asio::make_work_guard(io)) {}

  ClientOptions options;
  asio::io_context io{1};
  asio::executor_work_guard<asio::io_context::executor_type> work;
  std::thread thread;

  std::mutex pool_mutex;
  std::condition_variable pool_changed;
  std::vector<std::unique_ptr<beast::tcp_stream>> idle;  // guarded by pool_mutex
  int open_count = 0;                                    // guarded by pool_mutex
  std::atomic<int64_t> opened{0};

  // Returns a connection slot: the stream to reuse, or null when the caller must connect.
  void Release(std::unique_ptr<beast::tcp_stream> stream) {
    std::lock_guard<std::mutex> lock(pool_mutex);
    if (stream != nullptr) {
      idle.push_back(std::move(stream));
    } else {
      --open_count;
    }
    pool_changed.notify_one();
  }

  asio::awaitable<absl::StatusOr<ClientResponse>> Exchange(
      std::unique_ptr<beast::tcp_stream>& stream, const ClientRequest& request,
      absl::Time deadline);
};

HttpClient::HttpClient(ClientOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {
  impl_->thread = std::thread([this] { impl_->io.run(); });
}

HttpClient::~HttpClient() {
  impl_->work.reset();
  asio::post(impl_->io, [impl = impl_.get()] {
    std::lock_guard<std::mutex> lock(impl->pool_mutex);
    impl->idle.clear();
  });
  impl_->io.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
  std::lock_guard<std::mutex> lock(impl_->pool_mutex);
  impl_->idle.clear();
}

int64_t HttpClient::connections_opened() const { return impl_->opened.load(); }

asio::awaitable<absl::StatusOr<ClientResponse>> HttpClient::Impl::Exchange(
    std::unique_ptr<beast::tcp_stream>& stream, const ClientRequest& request, absl::Time deadline) {
  beast::error_code ec;
  if (stream != nullptr) {
    // A pooled connection the server has since closed reads as EOF without blocking; drop it
    // before sending rather than learn it after (when the outcome would be unknown).
    tcp::socket& socket = stream->socket();
    char probe = 0;
    socket.non_blocking(true, ec);
    socket.read_some(asio::buffer(&probe, 1), ec);
    bool alive = ec == asio::error::would_block;
    socket.non_blocking(false, ec);
    if (!alive) stream.reset();
  }
  if (stream == nullptr) {
    absl::Time connect_deadline = std::min(deadline, absl::Now() + options.connect_timeout);
    stream = std::make_unique<beast::tcp_stream>(io);
    opened.fetch_add(1);
    tcp::resolver resolver(io);
    auto endpoints = co_await resolver.async_resolve(options.host, fmt::format("{}", options.port),
                                                     asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      stream.reset();
      co_return NotSent("connect_failed",
                        fmt::format("cannot resolve {}: {}", options.host, ec.message()));
    }
    stream->expires_at(SteadyDeadline(connect_deadline));
    co_await stream->async_connect(endpoints, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      stream.reset();
      if (ec == beast::error::timeout) {
        co_return NotSent("connect_timeout",
                          fmt::format("connect to {}:{} timed out", options.host, options.port));
      }
      co_return NotSent("connect_failed", fmt::format("cannot connect to {}:{}: {}", options.host,
                                                      options.port, ec.message()));
    }
    stream->socket().set_option(tcp::no_delay(true), ec);
  }

  bhttp::request<bhttp::string_body> message;
  message.version(11);
  bhttp::verb verb = bhttp::string_to_verb(Bv(request.method));
  if (verb == bhttp::verb::unknown) {
    message.method_string(Bv(request.method));
  } else {
    message.method(verb);
  }
  message.target(Bv(request.target));
  for (const Headers::Entry& entry : request.headers.entries()) {
    if (EqualsIgnoreCase(entry.first, "Host") || EqualsIgnoreCase(entry.first, "Content-Length")) {
      continue;
    }
    message.insert(Bv(entry.first), Bv(entry.second));
  }
  message.set(bhttp::field::host, fmt::format("{}:{}", options.host, options.port));
  message.body() = request.body;
  message.prepare_payload();
  message.keep_alive(true);

  stream->expires_at(SteadyDeadline(deadline));
  co_await bhttp::async_write(*stream, message, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    stream.reset();
    co_return OutcomeUnknown(ec, "sending the request");
  }
  beast::flat_buffer buffer;
  bhttp::response_parser<bhttp::string_body> parser;
  parser.body_limit(options.response_body_bytes_max);
  if (request.method == "HEAD") parser.skip(true);
  co_await bhttp::async_read(*stream, buffer, parser,
                             asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    stream.reset();
    co_return OutcomeUnknown(ec, "reading the response");
  }
  bhttp::response<bhttp::string_body> reply = parser.release();
  ClientResponse response;
  response.status = static_cast<int>(reply.result_int());
  for (const auto& field : reply) {
    response.headers.Add(std::string(Sv(field.name_string())), std::string(Sv(field.value())));
  }
  response.body = std::move(reply.body());
  // Bytes left over mean a confused peer; only a clean keep-alive connection goes back.
  if (!reply.keep_alive() || buffer.size() != 0) stream.reset();
  if (stream != nullptr) stream->expires_never();
  co_return response;
}

absl::StatusOr<ClientResponse> HttpClient::Send(const ClientRequest& request) {
  Impl& impl = *impl_;
  absl::Time deadline = absl::Now() + request.timeout.value_or(impl.options.request_timeout);
  if (request.deadline.has_value()) deadline = std::min(deadline, *request.deadline);
  if (deadline <= absl::Now()) return NotSent("deadline_passed", "the deadline has passed");

  std::unique_ptr<beast::tcp_stream> stream;
  {
    std::unique_lock<std::mutex> lock(impl.pool_mutex);
    bool got = impl.pool_changed.wait_until(lock, SteadyDeadline(deadline), [&] {
      return !impl.idle.empty() || impl.open_count < impl.options.connection_count_max;
    });
    if (!got) {
      return NotSent(
          "pool_exhausted",
          fmt::format("all {} connections to {}:{} stayed busy until the deadline",
                      impl.options.connection_count_max, impl.options.host, impl.options.port));
    }
    if (!impl.idle.empty()) {
      stream = std::move(impl.idle.back());
      impl.idle.pop_back();
    } else {
      ++impl.open_count;
    }
  }

  // The io thread owns the connection for the exchange and returns it to the pool itself,
  // so a Send that gives up waiting never races with the io operation.
  auto promise = std::make_shared<std::promise<absl::StatusOr<ClientResponse>>>();
  std::future<absl::StatusOr<ClientResponse>> future = promise->get_future();
  auto owned = std::make_shared<std::unique_ptr<beast::tcp_stream>>(std::move(stream));
  auto copy = std::make_shared<ClientRequest>(request);
  asio::co_spawn(
      impl.io,
      [&impl, owned, copy, deadline]() -> asio::awaitable<absl::StatusOr<ClientResponse>> {
        co_return co_await impl.Exchange(*owned, *copy, deadline);
      },
      [&impl, owned, promise](std::exception_ptr error, absl::StatusOr<ClientResponse> result) {
        impl.Release(std::move(*owned));
        if (error != nullptr) {
          promise->set_value(
              WithErrorCode(absl::UnknownError("HTTP exchange failed"), "outcome_unknown"));
          return;
        }
        promise->set_value(std::move(result));
      });
  if (future.wait_until(SteadyDeadline(deadline) + kCompletionGrace) != std::future_status::ready) {
    return WithErrorCode(absl::DeadlineExceededError("HTTP request did not complete in time"),
                         "outcome_unknown");
  }
  return future.get();
}

}  // namespace emporium::http
