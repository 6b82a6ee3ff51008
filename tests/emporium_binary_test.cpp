// The real `emporium` binary as an operator runs it: starts on port 0, answers hostile requests
// with the right status and the one error shape while it keeps serving, and stops cleanly on
// SIGTERM. A bad configuration stops start-up with a message naming the setting.
#include <signal.h>
#include <sys/wait.h>

#include <fstream>
#include <sstream>

#include "common/json.h"
#include "emporium_process.h"
#include "gtest/gtest.h"
#include "test_support.h"

namespace emporium {
namespace {

using testing::EmporiumProcess;
using testing::RawConnection;
using testing::TempDir;
using testing::WaitFor;

std::string StatusLine(const std::string& response) {
  return response.substr(0, response.find("\r\n"));
}

std::string BodyOf(const std::string& response) {
  size_t at = response.find("\r\n\r\n");
  return at == std::string::npos ? "" : response.substr(at + 4);
}

class EmporiumBinaryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    process_ = std::make_unique<EmporiumProcess>(
        dir_.path(), std::vector<std::string>{
                         "serve", "--port", "0", "--data-dir", dir_.path() + "/data", "--port-file",
                         dir_.path() + "/port", "--set", "server.header_timeout_ms=300", "--set",
                         "server.body_limit_bytes=4096", "--set", "log.level=warn"});
    ASSERT_TRUE(WaitFor([&] { return process_->ReadPort() != 0; })) << process_->Log();
    port_ = process_->ReadPort();
  }

  std::string Exchange(const std::string& request) {
    RawConnection connection(port_);
    EXPECT_TRUE(connection.connected());
    EXPECT_TRUE(connection.Send(request));
    return connection.ReadUntilClosed();
  }

  void ExpectStillServing() {
    std::string response =
        Exchange("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    EXPECT_EQ(StatusLine(response), "HTTP/1.1 200 OK") << response;
  }

  TempDir dir_;
  std::unique_ptr<EmporiumProcess> process_;
  uint16_t port_ = 0;
};

TEST_F(EmporiumBinaryTest, ServesHealthAndEchoesRequestIds) {
  std::string response = Exchange(
      "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Request-Id: my-request-1\r\n"
      "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n"
      "Connection: close\r\n\r\n");
  EXPECT_EQ(StatusLine(response), "HTTP/1.1 200 OK");
  EXPECT_NE(response.find("X-Request-Id: my-request-1"), std::string::npos) << response;
  EXPECT_NE(response.find("traceparent: 00-0af7651916cd43dd8448eb211c80319c-"), std::string::npos);
}

TEST_F(EmporiumBinaryTest, HostileRequestsGetTheRightStatusAndTheServerKeepsServing) {
  struct Case {
    std::string name;
    std::string request;
    std::string status_line;
  };
  const std::string big_body(8192, 'x');
  std::vector<Case> cases = {
      {"garbage request line", "HELLO\r\n\r\n", "HTTP/1.1 400"},
      {"unknown route", "GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
       "HTTP/1.1 404"},
      {"wrong method",
       "PUT /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
       "HTTP/1.1 405"},
      {"oversize body",
       "POST /api/v1/admin/dead-letters/c/1/replay HTTP/1.1\r\nHost: x\r\n"
       "Content-Type: application/json\r\nContent-Length: 8192\r\nConnection: close\r\n\r\n" +
           big_body,
       "HTTP/1.1 413"},
      {"wrong content type",
       "POST /api/v1/admin/dead-letters/c/1/replay HTTP/1.1\r\nHost: x\r\n"
       "Content-Type: text/plain\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
       "HTTP/1.1 415"},
  };
  for (const Case& test_case : cases) {
    SCOPED_TRACE(test_case.name);
    std::string response = Exchange(test_case.request);
    // Reason phrases vary between HTTP revisions; the status code is the contract.
    EXPECT_EQ(StatusLine(response).substr(0, 12), test_case.status_line) << response;
    absl::StatusOr<Json> body = ParseJson(BodyOf(response));
    ASSERT_TRUE(body.ok()) << response;
    ASSERT_TRUE(body->contains("error")) << response;
    for (const char* field : {"type", "code", "message", "param"}) {
      EXPECT_TRUE((*body)["error"].contains(field)) << field << " in " << response;
    }
    ExpectStillServing();
  }
}

TEST_F(EmporiumBinaryTest, APartialRequestLeftOpenIsDisconnected) {
  RawConnection slow(port_);
  ASSERT_TRUE(slow.Send("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "));
  // The header timeout is 300 ms; the server must hang up on its own.
  EXPECT_TRUE(WaitFor([&] { return slow.PeerClosed(); }, std::chrono::seconds(5)));
  ExpectStillServing();
}

TEST_F(EmporiumBinaryTest, StopsCleanlyOnSigterm) {
  ExpectStillServing();
  process_->Signal(SIGTERM);
  EXPECT_EQ(process_->WaitExit(std::chrono::seconds(15)), 0) << process_->Log();
  RawConnection after(port_);
  EXPECT_FALSE(after.connected()) << "the listener must be closed after shutdown";
}

TEST(EmporiumCommandTest, ABadSettingStopsStartUpNamingIt) {
  TempDir dir;
  EmporiumProcess process(dir.path(),
                          {"serve", "--data-dir", dir.path(), "--set", "server.port=99999"});
  EXPECT_EQ(process.WaitExit(std::chrono::seconds(10)), 1);
  EXPECT_NE(process.Log().find("server.port"), std::string::npos) << process.Log();
}

TEST(EmporiumCommandTest, VersionAndMigrate) {
  TempDir dir;
  EmporiumProcess version(dir.path(), {"version"});
  EXPECT_EQ(version.WaitExit(std::chrono::seconds(10)), 0);
  EXPECT_NE(version.Log().find("emporium "), std::string::npos);

  TempDir data;
  EmporiumProcess migrate(data.path(), {"migrate", "--data-dir", data.path() + "/db"});
  EXPECT_EQ(migrate.WaitExit(std::chrono::seconds(20)), 0) << migrate.Log();
  EXPECT_NE(migrate.Log().find("migrations applied"), std::string::npos) << migrate.Log();
}

}  // namespace
}  // namespace emporium
