#include "platform/obs/log.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/time.h"
#include "common/clock.h"

namespace emporium::obs {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr const char* kTestPans[] = {"4242424242424242", "4111 1111 1111 1111",
                                     "5555-5555-5555-4444", "378282246310005", "6011111111111117"};

TEST(RedactTest, MasksLuhnValidCardNumbers) {
  EXPECT_EQ(Redact("card 4242424242424242 ok"), "card ************4242 ok");
  EXPECT_EQ(Redact("4111 1111 1111 1111"), "**** **** **** 1111");
  EXPECT_EQ(Redact("pan=5555-5555-5555-4444;"), "pan=****-****-****-4444;");
  EXPECT_EQ(Redact("amex 378282246310005"), "amex ***********0005");
  // A card number followed by another number is still found.
  EXPECT_EQ(Redact("4242424242424242 2 items"), "************4242 2 items");
  EXPECT_EQ(Redact("x4242424242424242y"), "x************4242y");
}

TEST(RedactTest, KeepsNonLuhnDigitRuns) {
  // 1234567890123 fails Luhn: an order number, not a card.
  EXPECT_EQ(Redact("order 1234567890123 shipped"), "order 1234567890123 shipped");
  EXPECT_EQ(Redact("order 4242424242424241"), "order 4242424242424241");
  EXPECT_EQ(Redact("at 2026-01-01 12:00:00 id 42"), "at 2026-01-01 12:00:00 id 42");
  EXPECT_EQ(Redact("short 4242"), "short 4242");
  // Too long to be a card.
  EXPECT_EQ(Redact("12345678901234567890123"), "12345678901234567890123");
  // Small counts separated by spaces are not stitched into a card number.
  EXPECT_EQ(Redact("0 0 0 0 0 0 0 0 0 0 0 0 0 0"), "0 0 0 0 0 0 0 0 0 0 0 0 0 0");
}

TEST(RedactTest, RedactsSensitiveKeyValues) {
  EXPECT_EQ(Redact("login user=bob password=hunter2 ok"), "login user=bob password=[REDACTED] ok");
  EXPECT_EQ(Redact("GET /x?token=abc123&page=2"), "GET /x?token=[REDACTED]&page=2");
  EXPECT_EQ(Redact(R"({"password":"hunter2","user":"bob"})"),
            R"({"password":"[REDACTED]","user":"bob"})");
  EXPECT_EQ(Redact(R"({"cvc": "123", "api_key" : "k\"ey"})"),
            R"({"cvc": "[REDACTED]", "api_key" : "[REDACTED]"})");
  EXPECT_EQ(Redact(R"({"cvv":123,"n":1})"), R"({"cvv":"[REDACTED]","n":1})");
  EXPECT_EQ(Redact("Authorization: Bearer abc.def.ghi\nnext"), "Authorization: [REDACTED]\nnext");
  EXPECT_EQ(Redact("authorization=Bearer xyz rest"), "authorization=[REDACTED] rest");
  EXPECT_EQ(Redact("card[number]=4000000000000002&card[cvc]=314"),
            "card[number]=[REDACTED]&card[cvc]=[REDACTED]");
  EXPECT_EQ(Redact("client_secret=s3cr3t X-Api-Key: k1"),
            "client_secret=[REDACTED] X-Api-Key: [REDACTED]");
  EXPECT_EQ(Redact(R"(body={\"secret\":\"v\"})"), R"(body={\"secret\":\"[REDACTED]\"})");
  // Keys that merely contain a sensitive word are kept.
  EXPECT_EQ(Redact("order_number=42 passwordless=true"), "order_number=42 passwordless=true");
  EXPECT_EQ(Redact("password="), "password=");
}

TEST(RedactTest, HostileInputDoesNotCrash) {
  const std::string inputs[] = {"",       "\"",         "password", "password:\"",
                                "\\",     "token=\\",   "9",        std::string(10'000, '4'),
                                "=:\"\\", "\"token\\\""};
  for (const std::string& input : inputs) (void)Redact(input);
  std::string long_digits;
  for (int i = 0; i < 2000; ++i) long_digits += "4242 ";
  EXPECT_THAT(Redact(long_digits), Not(HasSubstr("4242 4242 4242 4242")));
}

TEST(IsSensitiveKeyTest, Keys) {
  EXPECT_TRUE(IsSensitiveKey("Password"));
  EXPECT_TRUE(IsSensitiveKey("access_token"));
  EXPECT_TRUE(IsSensitiveKey("x-api-key"));
  EXPECT_TRUE(IsSensitiveKey("card_number"));
  EXPECT_FALSE(IsSensitiveKey("order_number"));
  EXPECT_FALSE(IsSensitiveKey("sku"));
}

class LoggerTest : public ::testing::Test {
 protected:
  ManualClock clock_{absl::FromUnixMillis(1'767'225'600'123)};
  MemoryLogSink sink_;
  Logger logger_{"inventory", sink_.sink(), &clock_};
};

TEST_F(LoggerTest, WritesOneJsonObjectPerLine) {
  logger_.Info("reserved", {{"sku", "A-1"}, {"quantity", 3}, {"ratio", 0.5}, {"ok", true}});
  const std::vector<std::string> lines = sink_.lines();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0], R"({"ts":"2026-01-01T00:00:00.123Z","level":"info","context":"inventory",)"
                      R"("msg":"reserved","sku":"A-1","quantity":3,"ratio":0.5,"ok":true})");
  const nlohmann::json parsed = nlohmann::json::parse(lines[0]);
  EXPECT_EQ(parsed["quantity"], 3);
}

TEST_F(LoggerTest, CarriesRequestAndTraceIds) {
  Logger child = logger_.WithIds("req-1", "4bf92f3577b34da6a3ce929d0e0e4736");
  child.Warn("slow", {{"msg", "collides"}});
  const nlohmann::json parsed = nlohmann::json::parse(sink_.lines().at(0));
  EXPECT_EQ(parsed["level"], "warn");
  EXPECT_EQ(parsed["request_id"], "req-1");
  EXPECT_EQ(parsed["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_EQ(parsed["msg"], "slow");
  EXPECT_EQ(parsed["field_msg"], "collides");
}

TEST_F(LoggerTest, LevelsFilter) {
  logger_.SetLevel(LogLevel::kWarn);
  logger_.Debug("d");
  logger_.Info("i");
  logger_.Warn("w");
  logger_.Error("e");
  ASSERT_EQ(sink_.lines().size(), 2u);
  EXPECT_EQ(logger_.level(), LogLevel::kWarn);
  EXPECT_FALSE(logger_.Enabled(LogLevel::kInfo));
  logger_.SetLevel(LogLevel::kDebug);
  logger_.Debug("d");
  EXPECT_EQ(nlohmann::json::parse(sink_.lines().back())["level"], "debug");
  logger_.SetLevel(LogLevel::kOff);
  logger_.Error("e");
  EXPECT_EQ(sink_.lines().size(), 3u);
}

TEST_F(LoggerTest, TestCardNumbersNeverReachTheOutput) {
  for (const char* pan : kTestPans) {
    logger_.Info(std::string("charging card ") + pan,
                 {{"card", pan}, {"number", pan}, {"note", std::string("pan=") + pan}});
    logger_.Error("decline", {{"body", std::string(R"({"card":{"number":")") + pan + "\"}}"}});
  }
  const std::string text = sink_.text();
  for (const char* pan : kTestPans) {
    std::string digits;
    for (const char* c = pan; *c != '\0'; ++c) {
      if (*c >= '0' && *c <= '9') digits += *c;
    }
    EXPECT_THAT(text, Not(HasSubstr(pan)));
    EXPECT_THAT(text, Not(HasSubstr(digits)));
    EXPECT_THAT(text, Not(HasSubstr(digits.substr(0, 6))));  // not even the BIN
  }
  for (const std::string& line : sink_.lines()) {
    EXPECT_TRUE(nlohmann::json::accept(line)) << line;
  }
}

TEST_F(LoggerTest, SecretsAndSensitiveFieldsAreRedacted) {
  logger_.Info("login password=hunter2", {{"password", "hunter2"}, {"token", 12345}});
  const nlohmann::json parsed = nlohmann::json::parse(sink_.lines().at(0));
  EXPECT_EQ(parsed["msg"], "login password=[REDACTED]");
  EXPECT_EQ(parsed["password"], "[REDACTED]");
  EXPECT_EQ(parsed["token"], "[REDACTED]");
  EXPECT_THAT(sink_.text(), Not(HasSubstr("hunter2")));
}

TEST_F(LoggerTest, KeepsOrderNumbers) {
  logger_.Info("order 1234567890123 placed", {{"order_number", "1234567890123"}});
  EXPECT_THAT(sink_.text(), HasSubstr("order 1234567890123 placed"));
}

TEST_F(LoggerTest, HostileStringsStayValidJson) {
  logger_.Info("quote\" backslash\\ newline\n tab\t ctrl\x01 bad utf8 \xff\xfe end",
               {{"path", "/a\"b\n\xc3"}});
  const std::vector<std::string> lines = sink_.lines();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].find('\n'), std::string::npos);
  const nlohmann::json parsed = nlohmann::json::parse(lines[0]);
  EXPECT_THAT(parsed["msg"].get<std::string>(), HasSubstr("quote\" backslash\\ newline\n"));
}

TEST_F(LoggerTest, ConcurrentLoggingKeepsLinesWhole) {
  constexpr int kThreads = 4;
  constexpr int kLines = 200;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([this, t] {
      for (int i = 0; i < kLines; ++i) logger_.Info("line", {{"t", t}, {"i", i}});
    });
  }
  for (auto& thread : threads) thread.join();
  const std::vector<std::string> lines = sink_.lines();
  ASSERT_EQ(lines.size(), static_cast<size_t>(kThreads * kLines));
  for (const std::string& line : lines) EXPECT_TRUE(nlohmann::json::accept(line));
}

TEST(LogLevelTest, ParseAndName) {
  EXPECT_EQ(ParseLogLevel("DEBUG"), LogLevel::kDebug);
  EXPECT_EQ(ParseLogLevel("warning"), LogLevel::kWarn);
  EXPECT_EQ(ParseLogLevel("off"), LogLevel::kOff);
  EXPECT_EQ(ParseLogLevel("loud"), std::nullopt);
  EXPECT_EQ(LogLevelName(LogLevel::kError), "error");
}

TEST(InitLoggingTest, FileSinkAndFailure) {
  const std::string path = ::testing::TempDir() + "/emporium_log_test.jsonl";
  std::remove(path.c_str());
  ASSERT_TRUE(InitLogging({LogLevel::kDebug, path}).ok());
  EXPECT_EQ(DefaultLogLevel(), LogLevel::kDebug);
  {
    Logger logger("http");
    logger.Debug("hello", {{"status", 200}});
    logger.Flush();
  }
  std::FILE* file = std::fopen(path.c_str(), "r");
  ASSERT_NE(file, nullptr);
  char buffer[512] = {};
  const size_t read = std::fread(buffer, 1, sizeof(buffer) - 1, file);
  std::fclose(file);
  const nlohmann::json parsed = nlohmann::json::parse(std::string(buffer, read));
  EXPECT_EQ(parsed["context"], "http");
  EXPECT_EQ(parsed["status"], 200);

  EXPECT_FALSE(InitLogging({LogLevel::kInfo, "/dev/null/not-a-dir/y.log"}).ok());
  EXPECT_EQ(DefaultLogLevel(), LogLevel::kDebug);  // unchanged on failure
  ASSERT_TRUE(InitLogging({}).ok());
  std::remove(path.c_str());
}

}  // namespace
}  // namespace emporium::obs
