#include "platform/http/client.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "boost/asio/buffer.hpp"
#include "boost/beast/http/parser.hpp"
#include "boost/beast/http/string_body.hpp"
#include "common/errors.h"
#include "fmt/format.h"

namespace emporium::http {
namespace {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;

// Bytes read from the socket per recv: a PSP or context answer fits in one.
constexpr size_t kReadChunkBytes = 16 << 10;

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

absl::Status OutcomeUnknown(std::string_view stage, std::string_view reason) {
  return WithErrorCode(
      absl::UnknownError(fmt::format("HTTP exchange failed while {}: {}", stage, reason)),
      "outcome_unknown");
}

absl::Status TimedOut(std::string_view stage) {
  return WithErrorCode(
      absl::DeadlineExceededError(fmt::format("HTTP request timed out while {}", stage)),
      "outcome_unknown");
}

// An owned socket descriptor.
class Socket {
 public:
  Socket() = default;
  explicit Socket(int fd) : fd_(fd) {}
  ~Socket() { Reset(); }
  Socket(Socket&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Socket& operator=(Socket&& other) noexcept {
    if (this != &other) {
      Reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;

  int fd() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  void Reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

enum class WaitResult { kReady, kTimedOut, kFailed };

// Waits (bounded by `deadline`) until `fd` is readable or writable (`events`).
WaitResult WaitFor(int fd, short events, absl::Time deadline) {
  while (true) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return WaitResult::kTimedOut;
    // Round up, so a wait never spins on a sub-millisecond remainder.
    const int64_t wait_ms = absl::ToInt64Milliseconds(left + absl::Microseconds(999));
    pollfd entry{fd, events, 0};
    const int ready = ::poll(&entry, 1, static_cast<int>(std::min<int64_t>(wait_ms, 60'000)));
    if (ready > 0) return WaitResult::kReady;
    if (ready < 0 && errno != EINTR) return WaitResult::kFailed;
  }
}

// A pooled connection the server has since closed reads as EOF without blocking; drop it
// before sending rather than learn it after (when the outcome would be unknown).
bool StillOpen(const Socket& socket) {
  char probe = 0;
  const ssize_t n = ::recv(socket.fd(), &probe, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

// The request's bytes: request line, fields (Host and Content-Length set here) and body.
std::string SerializeRequest(const ClientRequest& request, const std::string& host_field) {
  std::string out;
  size_t size =
      request.method.size() + request.target.size() + host_field.size() + request.body.size() + 64;
  for (const Headers::Entry& entry : request.headers.entries()) {
    size += entry.first.size() + entry.second.size() + 4;
  }
  out.reserve(size);
  out.append(request.method).append(" ").append(request.target).append(" HTTP/1.1\r\n");
  out.append("Host: ").append(host_field).append("\r\n");
  for (const Headers::Entry& entry : request.headers.entries()) {
    if (EqualsIgnoreCase(entry.first, "Host") || EqualsIgnoreCase(entry.first, "Content-Length")) {
      continue;
    }
    out.append(entry.first).append(": ").append(entry.second).append("\r\n");
  }
  // As Beast's prepare_payload: a body, or a method that expects one, states its length.
  const bool expects_body =
      request.method == "POST" || request.method == "PUT" || request.method == "PATCH";
  if (!request.body.empty() || expects_body) {
    out.append("Content-Length: ").append(fmt::format("{}", request.body.size())).append("\r\n");
  }
  out.append("\r\n").append(request.body);
  return out;
}

}  // namespace

struct HttpClient::Impl {
  explicit Impl(ClientOptions client_options)
      : options(std::move(client_options)),
        host_field(fmt::format("{}:{}", options.host, options.port)) {}

  ClientOptions options;
  const std::string host_field;

  std::mutex pool_mutex;
  std::condition_variable pool_changed;
  std::vector<Socket> idle;  // guarded by pool_mutex
  int open_count = 0;        // guarded by pool_mutex
  std::atomic<int64_t> opened{0};

  // Returns a connection slot: the socket to keep (or an invalid one when it was closed).
  void Release(Socket socket) {
    std::lock_guard<std::mutex> lock(pool_mutex);
    if (socket.valid()) {
      idle.push_back(std::move(socket));
    } else {
      --open_count;
    }
    pool_changed.notify_one();
  }

  absl::StatusOr<Socket> Connect(absl::Time deadline);
  absl::StatusOr<ClientResponse> Exchange(Socket& socket, const ClientRequest& request,
                                          absl::Time deadline);
};

absl::StatusOr<Socket> HttpClient::Impl::Connect(absl::Time deadline) {
  const absl::Time connect_deadline = std::min(deadline, absl::Now() + options.connect_timeout);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const std::string port = fmt::format("{}", options.port);
  if (const int rc = ::getaddrinfo(options.host.c_str(), port.c_str(), &hints, &found); rc != 0) {
    return NotSent("connect_failed",
                   fmt::format("cannot resolve {}: {}", options.host, ::gai_strerror(rc)));
  }
  std::string failure = "no address";
  bool timed_out = false;
  Socket connected;
  for (addrinfo* address = found; address != nullptr && !connected.valid();
       address = address->ai_next) {
    Socket socket(::socket(address->ai_family, address->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                           address->ai_protocol));
    if (!socket.valid()) {
      failure = std::strerror(errno);
      continue;
    }
    opened.fetch_add(1);
    if (::connect(socket.fd(), address->ai_addr, address->ai_addrlen) != 0) {
      if (errno != EINPROGRESS) {
        failure = std::strerror(errno);
        continue;
      }
      const WaitResult waited = WaitFor(socket.fd(), POLLOUT, connect_deadline);
      if (waited == WaitResult::kTimedOut) {
        timed_out = true;
        break;
      }
      int error = 0;
      socklen_t length = sizeof(error);
      if (waited == WaitResult::kFailed ||
          ::getsockopt(socket.fd(), SOL_SOCKET, SO_ERROR, &error, &length) != 0 || error != 0) {
        failure = std::strerror(error != 0 ? error : errno);
        continue;
      }
    }
    const int on = 1;
    ::setsockopt(socket.fd(), IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
    connected = std::move(socket);
  }
  ::freeaddrinfo(found);
  if (connected.valid()) return connected;
  if (timed_out) {
    return NotSent("connect_timeout",
                   fmt::format("connect to {}:{} timed out", options.host, options.port));
  }
  return NotSent("connect_failed",
                 fmt::format("cannot connect to {}:{}: {}", options.host, options.port, failure));
}

absl::StatusOr<ClientResponse> HttpClient::Impl::Exchange(Socket& socket,
                                                          const ClientRequest& request,
                                                          absl::Time deadline) {
  if (socket.valid() && !StillOpen(socket)) socket.Reset();
  if (!socket.valid()) {
    absl::StatusOr<Socket> connected = Connect(deadline);
    if (!connected.ok()) return connected.status();
    socket = std::move(*connected);
  }

  // Send: from the first byte on, the server may act on the request.
  const std::string bytes = SerializeRequest(request, host_field);
  size_t sent = 0;
  while (sent < bytes.size()) {
    const ssize_t n = ::send(socket.fd(), bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      const WaitResult waited = WaitFor(socket.fd(), POLLOUT, deadline);
      if (waited == WaitResult::kReady) continue;
      socket.Reset();
      return waited == WaitResult::kTimedOut ? TimedOut("sending the request")
                                             : OutcomeUnknown("sending the request", "poll");
    }
    const std::string reason = std::strerror(errno);
    socket.Reset();
    return OutcomeUnknown("sending the request", reason);
  }

  // Receive and parse, bounded by the deadline and the body limit.
  bhttp::response_parser<bhttp::string_body> parser;
  parser.body_limit(options.response_body_bytes_max);
  parser.eager(true);
  if (request.method == "HEAD") parser.skip(true);
  std::string buffer;
  size_t parsed = 0;  // bytes of `buffer` the parser consumed
  char chunk[kReadChunkBytes];
  while (!parser.is_done()) {
    const ssize_t n = ::recv(socket.fd(), chunk, sizeof(chunk), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      const WaitResult waited = WaitFor(socket.fd(), POLLIN, deadline);
      if (waited == WaitResult::kReady) continue;
      socket.Reset();
      return waited == WaitResult::kTimedOut ? TimedOut("reading the response")
                                             : OutcomeUnknown("reading the response", "poll");
    }
    if (n < 0) {
      const std::string reason = std::strerror(errno);
      socket.Reset();
      return OutcomeUnknown("reading the response", reason);
    }
    beast::error_code ec;
    if (n == 0) {
      // EOF: complete only for a response whose end is the connection's end.
      if (!parser.got_some()) {
        socket.Reset();
        return OutcomeUnknown("reading the response", "the connection closed with no response");
      }
      parser.put_eof(ec);
      if (ec || !parser.is_done()) {
        socket.Reset();
        return OutcomeUnknown("reading the response", "the connection closed mid-response");
      }
      socket.Reset();  // closed by the server: not reusable
      break;
    }
    buffer.erase(0, parsed);
    parsed = 0;
    buffer.append(chunk, static_cast<size_t>(n));
    while (parsed < buffer.size() && !parser.is_done()) {
      const size_t used =
          parser.put(boost::asio::const_buffer(buffer.data() + parsed, buffer.size() - parsed), ec);
      parsed += used;
      if (ec == bhttp::error::need_more) break;
      if (ec) {
        socket.Reset();
        return OutcomeUnknown("reading the response", ec.message());
      }
      if (used == 0) break;
    }
  }
  const bhttp::response<bhttp::string_body>& reply = parser.get();
  ClientResponse response;
  response.status = static_cast<int>(reply.result_int());
  for (const auto& field : reply) {
    response.headers.Add(std::string(Sv(field.name_string())), std::string(Sv(field.value())));
  }
  const bool keep_alive = reply.keep_alive();
  response.body = std::move(parser.release().body());
  // Bytes left over mean a confused peer; only a clean keep-alive connection goes back.
  if (!keep_alive || parsed != buffer.size()) socket.Reset();
  return response;
}

HttpClient::HttpClient(ClientOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}

HttpClient::~HttpClient() {
  std::lock_guard<std::mutex> lock(impl_->pool_mutex);
  impl_->idle.clear();
}

int64_t HttpClient::connections_opened() const { return impl_->opened.load(); }

absl::StatusOr<ClientResponse> HttpClient::Send(const ClientRequest& request) {
  Impl& impl = *impl_;
  absl::Time deadline = absl::Now() + request.timeout.value_or(impl.options.request_timeout);
  if (request.deadline.has_value()) deadline = std::min(deadline, *request.deadline);
  if (deadline <= absl::Now()) return NotSent("deadline_passed", "the deadline has passed");

  Socket socket;
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
      socket = std::move(impl.idle.back());
      impl.idle.pop_back();
    } else {
      ++impl.open_count;
    }
  }
  // The exchange runs on this thread (no hand-off to an io thread and back): every wait in it
  // is a poll bounded by the deadline.
  absl::StatusOr<ClientResponse> response = impl.Exchange(socket, request, deadline);
  impl.Release(std::move(socket));
  return response;
}

}  // namespace emporium::http
