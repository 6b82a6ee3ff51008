#include "platform/http/server.h"

// <utility> must precede Asio's coroutine headers in Boost 1.74 (awaitable.hpp uses
// std::exchange without including it).
#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "boost/asio/co_spawn.hpp"
#include "boost/asio/detached.hpp"
#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/redirect_error.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/use_awaitable.hpp"
#include "boost/asio/write.hpp"
#include "boost/beast/core.hpp"
#include "boost/beast/http.hpp"
#include "common/thread_name.h"
#include "fmt/format.h"
#include "platform/http/trace_context.h"
#include "platform/obs/metrics.h"

namespace emporium::http {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using ReusePort = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;
using SteadyClock = std::chrono::steady_clock;

constexpr size_t kRequestIdLengthMax = 128;
constexpr size_t kReadChunkBytes = 4096;
constexpr auto kAcceptErrorBackoff = std::chrono::milliseconds(20);
// A streamed response: bytes written but not yet sent before the stream is cut off (a client
// that does not read), and how often an idle stream checks whether the server is draining.
constexpr size_t kStreamQueuedBytesMax = 1 << 20;
constexpr auto kStreamPollInterval = std::chrono::milliseconds(250);

std::chrono::steady_clock::duration ToChrono(absl::Duration duration) {
  return std::chrono::nanoseconds(absl::ToInt64Nanoseconds(duration));
}

beast::string_view Bv(std::string_view text) { return {text.data(), text.size()}; }
std::string_view Sv(beast::string_view text) { return {text.data(), text.size()}; }

bool SaneRequestId(std::string_view id) {
  if (id.empty() || id.size() > kRequestIdLengthMax) return false;
  for (char c : id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.';
    if (!ok) return false;
  }
  return true;
}

// Bounded label values: an attacker-chosen method must not create new series.
std::string_view MethodLabel(std::string_view method) {
  for (std::string_view known : {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}) {
    if (method == known) return known;
  }
  return "OTHER";
}

// The server's own error answers (it never leaks details).
Response ServerError(int status, std::string_view code, std::string_view message) {
  return ErrorResponse(status, ErrorTypeFor(status), code, message);
}

bool IsJsonContentType(const Response& response) {
  std::optional<std::string_view> type = response.headers.Get("Content-Type");
  return type.has_value() && type->substr(0, 16) == "application/json";
}

// Fields the server writes itself on an ordinary response; a handler's own are dropped (as
// Beast's set/content_length/keep_alive replaced them).
bool ServerOwnedField(std::string_view name) {
  return EqualsIgnoreCase(name, "Server") || EqualsIgnoreCase(name, "X-Request-Id") ||
         EqualsIgnoreCase(name, "traceparent") || EqualsIgnoreCase(name, "Content-Length") ||
         EqualsIgnoreCase(name, "Connection") || EqualsIgnoreCase(name, "Transfer-Encoding");
}

void AppendField(std::string& out, std::string_view name, std::string_view value) {
  out.append(name);
  out.append(": ");
  out.append(value);
  out.append("\r\n");
}

void AppendNumber(std::string& out, uint64_t value) {
  char digits[24];
  const std::to_chars_result end = std::to_chars(std::begin(digits), std::end(digits), value);
  out.append(digits, end.ptr);
}

// State shared by a waiting connection and the handler's Responder, which may run on any
// thread and outlive the connection.
struct Exchange {
  std::mutex mutex;
  bool in_dispatch = true;  // still inside Router::Dispatch on the io thread
  bool finished = false;    // the connection stopped waiting; answers are dropped
  std::optional<Response> response;
  asio::steady_timer* timer = nullptr;  // valid while !finished; touched only on the io thread
  Request request;
};

// Lets other threads post to a worker's io_context only while it exists: an answer or a stream
// write from a handler's thread can race Shutdown, which destroys the io_contexts. Shutdown
// closes the gate first; a post either completes before that or is skipped.
class PostGate {
 public:
  explicit PostGate(asio::io_context::executor_type executor) : executor_(executor) {}
  template <typename Handler>
  void Post(Handler&& handler) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (open_) asio::post(executor_, std::forward<Handler>(handler));
  }
  void Close() {
    std::lock_guard<std::mutex> lock(mutex_);
    open_ = false;
  }

 private:
  asio::io_context::executor_type executor_;
  std::mutex mutex_;
  bool open_ = true;
};

// Marks the exchange finished when the waiting coroutine frame goes away for any reason
// (normal completion, or destruction by a stopped io_context).
struct ExchangeGuard {
  std::shared_ptr<Exchange> exchange;
  ~ExchangeGuard() {
    std::lock_guard<std::mutex> lock(exchange->mutex);
    exchange->finished = true;
    exchange->timer = nullptr;
  }
};

// The writing end of a streamed response, shared by the connection's coroutine (which sends)
// and the producer (any thread). The coroutine's timer is woken by Write/Close through a post
// to the io thread, so it is only ever touched there.
class ServerBodyStream final : public BodyStream,
                               public std::enable_shared_from_this<ServerBodyStream> {
 public:
  explicit ServerBodyStream(std::shared_ptr<PostGate> gate) : gate_(std::move(gate)) {}

  bool Write(std::string bytes) override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (closed_) return false;
      if (queued_bytes_ + bytes.size() > kStreamQueuedBytesMax) {
        closed_ = true;  // the client does not keep up: end the stream rather than buffer
        cut_off_ = true;
      } else {
        queued_bytes_ += bytes.size();
        queue_.push_back(std::move(bytes));
      }
    }
    Wake();
    return !cut_off();
  }

  void Close() override {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (closed_) return;
      closed_ = true;
    }
    Wake();
  }

  bool closed() const override {
    std::lock_guard<std::mutex> lock(mutex_);
    return closed_;
  }

  // io thread: the chunks to send now, and whether the stream ends after them.
  std::deque<std::string> Take(bool& last) {
    std::lock_guard<std::mutex> lock(mutex_);
    std::deque<std::string> out;
    out.swap(queue_);
    queued_bytes_ = 0;
    last = closed_;
    return out;
  }
  // io thread: the sender is gone (finished, failed or destroyed); writes fail from now on.
  void Detach() {
    std::lock_guard<std::mutex> lock(mutex_);
    closed_ = true;
    timer_ = nullptr;
    queue_.clear();
  }
  void SetTimer(asio::steady_timer* timer) {
    std::lock_guard<std::mutex> lock(mutex_);
    timer_ = timer;
  }

 private:
  bool cut_off() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return cut_off_;
  }
  void Wake() {
    std::weak_ptr<ServerBodyStream> weak = weak_from_this();
    gate_->Post([weak] {
      std::shared_ptr<ServerBodyStream> self = weak.lock();
      if (!self) return;
      std::lock_guard<std::mutex> lock(self->mutex_);
      if (self->timer_ != nullptr) self->timer_->cancel();
    });
  }

  std::shared_ptr<PostGate> gate_;
  mutable std::mutex mutex_;
  std::deque<std::string> queue_;
  size_t queued_bytes_ = 0;
  bool closed_ = false;
  bool cut_off_ = false;
  asio::steady_timer* timer_ = nullptr;  // valid while the sender waits on it
};

// Detaches the stream when the sending coroutine frame goes away for any reason.
struct StreamGuard {
  std::shared_ptr<ServerBodyStream> stream;
  ~StreamGuard() { stream->Detach(); }
};

struct Connection {
  explicit Connection(tcp::socket socket) : stream(std::move(socket)) {}
  beast::tcp_stream stream;
  bool busy = false;         // a request is being read past its headers, handled or answered
  std::string header_block;  // the response status line and fields, reused per response
};

// Metric series cached per io thread, so the hot path takes no registry lock: one lookup per
// request by "<method>\n<route>", then the status among the few that route answered with.
struct RouteSeries {
  obs::Histogram* duration = nullptr;
  std::vector<std::pair<int, obs::Counter*>> by_status;  // at most 500 (statuses 100..599)
};
struct SeriesCache {
  std::unordered_map<std::string, RouteSeries> routes;
  std::string key;  // scratch for the lookup key, reused so a hit allocates nothing
};

struct Worker {
  asio::io_context io{1};
  std::shared_ptr<PostGate> gate = std::make_shared<PostGate>(io.get_executor());
  std::optional<tcp::acceptor> acceptor;
  std::unordered_set<Connection*> connections;  // io thread only
  SeriesCache series;                           // io thread only
  std::thread thread;
};

}  // namespace

struct HttpServer::Impl {
  Impl(ServerOptions server_options, const Router& server_router)
      : options(std::move(server_options)), router(server_router) {}

  ServerOptions options;
  const Router& router;
  std::vector<std::unique_ptr<Worker>> workers;
  std::atomic<uint16_t> bound_port{0};
  std::atomic<bool> draining{false};
  std::atomic<int> connections_active{0};
  obs::Gauge* in_flight = nullptr;

  std::mutex state_mutex;
  std::condition_variable state_changed;
  bool started = false;
  bool stopped = false;
  int workers_running = 0;

  absl::Status Bind(Worker& worker, const asio::ip::address& address, uint16_t port);
  asio::awaitable<void> Accept(Worker& worker);
  asio::awaitable<void> Serve(Worker& worker, tcp::socket socket);
  // Sends a streamed response's body (chunked) until the producer closes it, the client leaves,
  // a write fails or the server drains. Returns the body bytes sent.
  asio::awaitable<size_t> SendStream(Worker& worker, Connection& connection, Response& response);
  asio::awaitable<Response> Handle(Worker& worker, Exchange& exchange,
                                   std::shared_ptr<Exchange> shared);
  void Record(Worker& worker, std::string_view method, std::string_view route, int status,
              double seconds);
  // After a response went out: its metrics and, when hooked, its access-log entry.
  void Finish(Worker& worker, const Request& request, int status,
              SteadyClock::time_point request_started, size_t body_bytes,
              const TraceContext& trace);
  void RunWorker(Worker& worker);
};

HttpServer::HttpServer(ServerOptions options, const Router& router)
    : impl_(std::make_unique<Impl>(std::move(options), router)) {}

HttpServer::~HttpServer() { Shutdown(absl::ZeroDuration()); }

uint16_t HttpServer::port() const { return impl_->bound_port.load(); }

absl::Status HttpServer::Impl::Bind(Worker& worker, const asio::ip::address& address,
                                    uint16_t port) {
  beast::error_code ec;
  tcp::endpoint endpoint(address, port);
  worker.acceptor.emplace(worker.io);
  tcp::acceptor& acceptor = *worker.acceptor;
  acceptor.open(endpoint.protocol(), ec);
  if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.set_option(ReusePort(true), ec);
  if (!ec) acceptor.bind(endpoint, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return absl::UnavailableError(
        fmt::format("cannot listen on {}:{}: {}", options.host, port, ec.message()));
  }
  return absl::OkStatus();
}

absl::Status HttpServer::Start() {
  Impl& impl = *impl_;
  {
    std::lock_guard<std::mutex> lock(impl.state_mutex);
    if (impl.started) return absl::FailedPreconditionError("server already started");
    impl.started = true;
  }
  beast::error_code ec;
  asio::ip::address address = asio::ip::make_address(impl.options.host, ec);
  if (ec) {
    std::lock_guard<std::mutex> lock(impl.state_mutex);
    impl.stopped = true;
    impl.state_changed.notify_all();
    return absl::InvalidArgumentError(fmt::format("bad listen host '{}'", impl.options.host));
  }
  int threads = impl.options.io_threads > 0
                    ? impl.options.io_threads
                    : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  uint16_t port = impl.options.port;
  for (int i = 0; i < threads; ++i) {
    auto worker = std::make_unique<Worker>();
    absl::Status bound = impl.Bind(*worker, address, port);
    if (!bound.ok()) {
      impl.workers.clear();
      std::lock_guard<std::mutex> lock(impl.state_mutex);
      impl.stopped = true;
      impl.state_changed.notify_all();
      return bound;
    }
    // The first acceptor resolves port 0; the others join the chosen port.
    if (i == 0) port = worker->acceptor->local_endpoint().port();
    impl.workers.push_back(std::move(worker));
  }
  impl.bound_port = port;
  if (impl.options.metrics != nullptr) {
    impl.in_flight = &impl.options.metrics->GetGauge("emporium_http_requests_in_flight",
                                                     "HTTP requests being handled right now.");
  }
  {
    std::lock_guard<std::mutex> lock(impl.state_mutex);
    impl.workers_running = static_cast<int>(impl.workers.size());
  }
  for (auto& worker : impl.workers) {
    asio::co_spawn(worker->io, impl.Accept(*worker), asio::detached);
    Worker* raw = worker.get();
    worker->thread = std::thread([&impl, raw] {
      SetCurrentThreadName("http-io");
      impl.RunWorker(*raw);
    });
  }
  return absl::OkStatus();
}

void HttpServer::Impl::RunWorker(Worker& worker) {
  // run() returns once the acceptor is closed and every connection has ended.
  while (true) {
    try {
      worker.io.run();
      break;
    } catch (const std::exception& error) {
      std::fprintf(stderr, "HttpServer: io thread caught: %s\n", error.what());
    }
  }
  std::lock_guard<std::mutex> lock(state_mutex);
  --workers_running;
  state_changed.notify_all();
}

void HttpServer::Shutdown(absl::Duration drain_timeout) {
  Impl& impl = *impl_;
  {
    std::lock_guard<std::mutex> lock(impl.state_mutex);
    if (!impl.started || impl.stopped || impl.draining.load()) return;
    impl.draining = true;
  }
  for (auto& worker : impl.workers) {
    Worker* raw = worker.get();
    asio::post(raw->io, [raw] {
      beast::error_code ignored;
      if (raw->acceptor.has_value()) raw->acceptor->close(ignored);
      for (Connection* connection : raw->connections) {
        if (!connection->busy) connection->stream.cancel();
      }
    });
  }
  {
    std::unique_lock<std::mutex> lock(impl.state_mutex);
    impl.state_changed.wait_for(lock, ToChrono(drain_timeout),
                                [&] { return impl.workers_running == 0; });
  }
  for (auto& worker : impl.workers) worker->io.stop();
  for (auto& worker : impl.workers) {
    if (worker->thread.joinable()) worker->thread.join();
  }
  // Destroying the io_contexts destroys any suspended connection, which drops late answers;
  // answers and stream writes arriving from other threads after this post nothing.
  for (auto& worker : impl.workers) worker->gate->Close();
  impl.workers.clear();
  std::lock_guard<std::mutex> lock(impl.state_mutex);
  impl.stopped = true;
  impl.state_changed.notify_all();
}

void HttpServer::Wait() {
  Impl& impl = *impl_;
  std::unique_lock<std::mutex> lock(impl.state_mutex);
  impl.state_changed.wait(lock, [&] { return !impl.started || impl.stopped; });
}

asio::awaitable<void> HttpServer::Impl::Accept(Worker& worker) {
  asio::steady_timer backoff(worker.io);
  while (true) {
    tcp::socket socket(worker.io);
    beast::error_code ec;
    co_await worker.acceptor->async_accept(socket, asio::redirect_error(asio::use_awaitable, ec));
    if (draining.load() || !worker.acceptor->is_open()) co_return;
    if (ec) {
      // EMFILE and friends: back off briefly instead of spinning.
      backoff.expires_after(kAcceptErrorBackoff);
      co_await backoff.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    if (connections_active.load() >= options.connections_max) {
      socket.close(ec);
      continue;
    }
    ++connections_active;
    asio::co_spawn(worker.io, Serve(worker, std::move(socket)), [](std::exception_ptr error) {
      if (error == nullptr) return;
      try {
        std::rethrow_exception(error);
      } catch (const std::exception& caught) {
        std::fprintf(stderr, "HttpServer: connection ended by exception: %s\n", caught.what());
      } catch (...) {
        std::fprintf(stderr, "HttpServer: connection ended by unknown exception\n");
      }
    });
  }
}

void HttpServer::Impl::Finish(Worker& worker, const Request& request, int status,
                              SteadyClock::time_point request_started, size_t body_bytes,
                              const TraceContext& trace) {
  const std::string_view route =
      request.route.empty() ? std::string_view("unmatched") : std::string_view(request.route);
  const SteadyClock::duration elapsed = SteadyClock::now() - request_started;
  Record(worker, request.method, route, status, std::chrono::duration<double>(elapsed).count());
  if (!options.access_log) return;
  AccessLogEntry entry;
  entry.method = request.method;
  entry.path = request.path;
  entry.route = std::string(route);
  entry.status = status;
  entry.duration = absl::FromChrono(elapsed);
  entry.bytes = body_bytes;
  entry.request_id = request.request_id;
  entry.trace_id = trace.TraceIdHex();
  entry.remote_address = request.remote_address;
  try {
    options.access_log(entry);
  } catch (...) {
    std::fprintf(stderr, "HttpServer: access-log hook threw\n");
  }
}

void HttpServer::Impl::Record(Worker& worker, std::string_view method, std::string_view route,
                              int status, double seconds) {
  if (options.metrics == nullptr) return;
  std::string_view method_label = MethodLabel(method);
  SeriesCache& cache = worker.series;
  cache.key.clear();
  cache.key.append(method_label);
  cache.key.push_back('\n');
  cache.key.append(route);
  auto found = cache.routes.find(cache.key);
  if (found == cache.routes.end()) {
    RouteSeries series;
    series.duration = &options.metrics->GetHistogram(
        "emporium_http_request_duration_seconds", "HTTP request latency in seconds.",
        {{"method", std::string(method_label)}, {"route", std::string(route)}});
    found = cache.routes.emplace(cache.key, std::move(series)).first;
  }
  RouteSeries& series = found->second;
  obs::Counter* counter = nullptr;
  for (const auto& [known_status, known_counter] : series.by_status) {
    if (known_status == status) counter = known_counter;
  }
  if (counter == nullptr) {
    counter =
        &options.metrics->GetCounter("emporium_http_requests_total", "HTTP requests answered.",
                                     {{"method", std::string(method_label)},
                                      {"route", std::string(route)},
                                      {"status", fmt::format("{}", status)}});
    series.by_status.emplace_back(status, counter);
  }
  counter->Increment();
  series.duration->Observe(seconds);
}

asio::awaitable<Response> HttpServer::Impl::Handle(Worker& worker, Exchange& exchange,
                                                   std::shared_ptr<Exchange> shared) {
  asio::steady_timer timer(worker.io);
  timer.expires_after(ToChrono(options.request_timeout));
  exchange.timer = &timer;
  ExchangeGuard guard{shared};
  Responder respond = [shared, gate = worker.gate](Response response) {
    std::lock_guard<std::mutex> lock(shared->mutex);
    if (shared->finished || shared->response.has_value()) return;
    shared->response = std::move(response);
    if (shared->in_dispatch) return;  // the connection checks right after Dispatch returns
    gate->Post([shared] {
      std::lock_guard<std::mutex> inner(shared->mutex);
      if (shared->timer != nullptr) shared->timer->cancel();
    });
  };
  if (in_flight != nullptr) in_flight->Add(1);
  router.Dispatch(exchange.request, std::move(respond));
  bool answered = false;
  {
    std::lock_guard<std::mutex> lock(exchange.mutex);
    exchange.in_dispatch = false;
    answered = exchange.response.has_value();
  }
  if (!answered) {
    beast::error_code ec;
    co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  std::optional<Response> response;
  {
    std::lock_guard<std::mutex> lock(exchange.mutex);
    exchange.finished = true;
    exchange.timer = nullptr;
    response = std::move(exchange.response);
  }
  if (in_flight != nullptr) in_flight->Add(-1);
  if (!response.has_value()) {
    co_return ServerError(504, "deadline_exceeded", "The request did not complete in time.");
  }
  co_return std::move(*response);
}

asio::awaitable<size_t> HttpServer::Impl::SendStream(Worker& worker, Connection& connection,
                                                     Response& response) {
  auto stream = std::make_shared<ServerBodyStream>(worker.gate);
  StreamGuard guard{stream};
  asio::steady_timer wake(worker.io);
  stream->SetTimer(&wake);
  if (response.shared_body != nullptr) {
    if (!response.shared_body->empty()) stream->Write(*response.shared_body);
  } else if (!response.body.empty()) {
    stream->Write(std::move(response.body));
  }
  StreamStart start = std::move(response.stream);
  try {
    start(stream);
  } catch (...) {
    std::fprintf(stderr, "HttpServer: stream start threw\n");
    stream->Close();
  }
  size_t sent = 0;
  beast::error_code ec;
  while (true) {
    if (draining.load()) stream->Close();
    bool last = false;
    std::deque<std::string> chunks = stream->Take(last);
    for (const std::string& chunk : chunks) {
      if (chunk.empty()) continue;  // an empty chunk would end the body
      connection.stream.expires_after(ToChrono(options.write_timeout));
      co_await asio::async_write(connection.stream, bhttp::make_chunk(asio::buffer(chunk)),
                                 asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return sent;
      sent += chunk.size();
    }
    if (last) break;
    // No co_await between Take and this wait: a Write posted meanwhile cancels the wait.
    wake.expires_after(kStreamPollInterval);
    co_await wake.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  connection.stream.expires_after(ToChrono(options.write_timeout));
  co_await asio::async_write(connection.stream, bhttp::make_chunk_last(),
                             asio::redirect_error(asio::use_awaitable, ec));
  co_return sent;
}

asio::awaitable<void> HttpServer::Impl::Serve(Worker& worker, tcp::socket socket) {
  Connection connection(std::move(socket));
  worker.connections.insert(&connection);
  struct Cleanup {
    Impl& impl;
    Worker& worker;
    Connection& connection;
    ~Cleanup() {
      worker.connections.erase(&connection);
      --impl.connections_active;
    }
  } cleanup{*this, worker, connection};

  beast::error_code ec;
  connection.stream.socket().set_option(tcp::no_delay(true), ec);
  std::string remote_address;
  tcp::endpoint remote = connection.stream.socket().remote_endpoint(ec);
  if (!ec) remote_address = fmt::format("{}:{}", remote.address().to_string(), remote.port());

  beast::flat_buffer buffer;
  bool first_request = true;
  while (!draining.load()) {
    connection.busy = false;
    if (buffer.size() == 0) {
      // A new connection must start talking within the header timeout; a kept-alive one may
      // stay quiet for the idle timeout.
      connection.stream.expires_after(
          ToChrono(first_request ? std::min(options.header_timeout, options.idle_timeout)
                                 : options.idle_timeout));
      size_t read = co_await connection.stream.async_read_some(
          buffer.prepare(kReadChunkBytes), asio::redirect_error(asio::use_awaitable, ec));
      if (ec) break;
      buffer.commit(read);
    }
    first_request = false;

    bhttp::request_parser<bhttp::string_body> parser;
    parser.header_limit(static_cast<uint32_t>(options.header_bytes_max));
    parser.body_limit(options.body_bytes_max);
    connection.stream.expires_after(ToChrono(options.header_timeout));
    co_await bhttp::async_read_header(connection.stream, buffer, parser,
                                      asio::redirect_error(asio::use_awaitable, ec));
    connection.busy = true;
    if (!ec && !parser.is_done()) {
      auto expect = parser.get().find(bhttp::field::expect);
      if (expect != parser.get().end() && EqualsIgnoreCase(Sv(expect->value()), "100-continue")) {
        static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
        connection.stream.expires_after(ToChrono(options.write_timeout));
        co_await asio::async_write(connection.stream,
                                   asio::buffer(kContinue.data(), kContinue.size()),
                                   asio::redirect_error(asio::use_awaitable, ec));
      }
      if (!ec) {
        connection.stream.expires_after(ToChrono(options.body_timeout));
        co_await bhttp::async_read(connection.stream, buffer, parser,
                                   asio::redirect_error(asio::use_awaitable, ec));
      }
    }
    SteadyClock::time_point request_started = SteadyClock::now();

    auto shared = std::make_shared<Exchange>();
    Request& request = shared->request;
    std::optional<Response> early;  // an answer the server gives without the router
    bool close_after = false;
    if (ec) {
      if (ec == beast::error::timeout || ec == bhttp::error::end_of_stream ||
          ec == asio::error::eof || ec == asio::error::operation_aborted ||
          ec == asio::error::connection_reset || ec == bhttp::error::partial_message) {
        break;  // the peer left or stalled: nothing to answer
      }
      close_after = true;
      if (ec == bhttp::error::body_limit) {
        early =
            ServerError(413, "payload_too_large",
                        fmt::format("The request body exceeds {} bytes.", options.body_bytes_max));
      } else if (ec == bhttp::error::header_limit) {
        early = ServerError(431, "headers_too_large", "The request headers are too large.");
      } else {
        early = ServerError(400, "malformed_request", "The request is not valid HTTP/1.1.");
      }
    }

    const bhttp::request<bhttp::string_body>& message = parser.get();
    if (!early.has_value()) {
      request.method = std::string(Sv(message.method_string()));
      for (char& c : request.method)
        c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      request.target = std::string(Sv(message.target()));
      for (const auto& field : message) {
        request.headers.Add(std::string(Sv(field.name_string())), std::string(Sv(field.value())));
      }
      request.body = std::move(parser.get().body());
    }
    std::string_view target = request.target;
    size_t question = target.find('?');
    if (!early.has_value()) {
      std::optional<std::string> path =
          PercentDecode(target.substr(0, question), PlusSign::kLiteral);
      if (target.empty() || target[0] != '/' || !path.has_value()) {
        early = ServerError(400, "invalid_path", "The request target is not a valid path.");
        close_after = true;
      } else {
        request.path = std::move(*path);
        if (question != std::string_view::npos) request.query = target.substr(question + 1);
      }
    }

    std::optional<std::string_view> incoming_id = request.Header("X-Request-Id");
    request.request_id = incoming_id.has_value() && SaneRequestId(*incoming_id)
                             ? std::string(*incoming_id)
                             : RandomHex128();
    std::optional<std::string_view> incoming_trace = request.Header("traceparent");
    std::optional<TraceContext> trace;
    if (incoming_trace.has_value()) trace = ParseTraceparent(*incoming_trace);
    if (trace.has_value()) {
      request.traceparent = std::string(*incoming_trace);
    } else {
      trace = NewTraceContext();
      request.traceparent = FormatTraceparent(*trace);
    }
    request.remote_address = remote_address;
    request.deadline = absl::Now() + options.request_timeout;
    request.shared_body_accepted = true;  // sent below straight from Response::shared_body

    // Plain statements around co_await: GCC 12 mishandles temporaries of a co_await inside a
    // conditional expression.
    Response response;
    if (early.has_value()) {
      response = std::move(*early);
    } else {
      response = co_await Handle(worker, *shared, shared);
    }
    if (response.status < 100 || response.status > 599) {
      response = ServerError(500, "internal", "An internal error occurred.");
    }
    if (response.status >= 400 && (response.BodyView().empty() || !IsJsonContentType(response))) {
      Response shaped = ErrorResponse(WithHttpStatus(
          absl::UnknownError(std::string(ReasonPhrase(response.status))), response.status));
      shaped.headers = std::move(response.headers);
      shaped.headers.Set("Content-Type", "application/json");
      response = std::move(shaped);
    }

    bool head = request.method == "HEAD";
    bool keep_alive = !close_after && !draining.load() && message.keep_alive();
    const bool streamed =
        static_cast<bool>(response.stream) && response.status >= 200 && response.status < 300;
    if (streamed) {
      // Headers now (chunked, no Content-Length), the body as the producer writes it; the
      // connection closes afterwards.
      bhttp::response<bhttp::empty_body> header;
      header.version(message.version() == 10 ? 10 : 11);
      header.result(static_cast<unsigned>(response.status));
      header.reason(Bv(ReasonPhrase(response.status)));
      for (const Headers::Entry& entry : response.headers.entries()) {
        header.insert(Bv(entry.first), Bv(entry.second));
      }
      header.set(bhttp::field::server, "emporium");
      header.set("X-Request-Id", Bv(request.request_id));
      header.set("traceparent", Bv(request.traceparent));
      header.keep_alive(false);
      if (!head) header.chunked(true);
      bhttp::response_serializer<bhttp::empty_body> serializer(header);
      connection.stream.expires_after(ToChrono(options.write_timeout));
      co_await bhttp::async_write_header(connection.stream, serializer,
                                         asio::redirect_error(asio::use_awaitable, ec));
      size_t streamed_bytes = 0;
      if (!ec && !head) streamed_bytes = co_await SendStream(worker, connection, response);
      Finish(worker, request, response.status, request_started, streamed_bytes, *trace);
      break;
    }
    // The status line and header block are written by hand into a buffer the connection
    // reuses, and sent with the body in one gather write (no per-field allocations).
    const std::string_view body = response.BodyView();
    const size_t body_bytes = body.size();
    bool bodiless_status =
        response.status < 200 || response.status == 204 || response.status == 304;
    std::string& header_block = connection.header_block;
    header_block.clear();
    header_block.append(message.version() == 10 ? "HTTP/1.0 " : "HTTP/1.1 ");
    AppendNumber(header_block, static_cast<uint64_t>(response.status));
    header_block.push_back(' ');
    header_block.append(ReasonPhrase(response.status));
    header_block.append("\r\n");
    for (const Headers::Entry& entry : response.headers.entries()) {
      if (ServerOwnedField(entry.first)) continue;
      AppendField(header_block, entry.first, entry.second);
    }
    AppendField(header_block, "Server", "emporium");
    AppendField(header_block, "X-Request-Id", request.request_id);
    AppendField(header_block, "traceparent", request.traceparent);
    if (!bodiless_status) {
      header_block.append("Content-Length: ");
      AppendNumber(header_block, body_bytes);
      header_block.append("\r\n");
    }
    if (message.version() == 10) {
      if (keep_alive) AppendField(header_block, "Connection", "keep-alive");
    } else if (!keep_alive) {
      AppendField(header_block, "Connection", "close");
    }
    header_block.append("\r\n");
    const bool send_body = !head && !bodiless_status && body_bytes > 0;
    const std::array<asio::const_buffer, 2> wire = {
        asio::buffer(header_block),
        send_body ? asio::buffer(body.data(), body.size()) : asio::const_buffer()};

    connection.stream.expires_after(ToChrono(options.write_timeout));
    co_await asio::async_write(connection.stream, wire,
                               asio::redirect_error(asio::use_awaitable, ec));
    bool write_failed = static_cast<bool>(ec);

    Finish(worker, request, response.status, request_started,
           head || bodiless_status ? 0 : body_bytes, *trace);
    if (write_failed || !keep_alive) break;
  }
  connection.stream.socket().shutdown(tcp::socket::shutdown_send, ec);
  connection.stream.close();
}

}  // namespace emporium::http
