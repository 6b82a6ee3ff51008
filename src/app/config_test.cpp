#include "app/config.h"

#include "common/errors.h"
#include "gtest/gtest.h"

namespace emporium::app {
namespace {

TEST(ConfigTest, DefaultsServeLocallyOnPort8080) {
  absl::StatusOr<Config> config = LoadConfig({});
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->server.host, "127.0.0.1");
  EXPECT_EQ(config->server.port, 8080);
  EXPECT_EQ(config->data_dir, "./data");
  EXPECT_EQ(config->server.body_limit_bytes, 1 << 20);
}

TEST(ConfigTest, LayersOverrideInOrderFileEnvironmentFlags) {
  ConfigSources sources;
  sources.toml_text = R"(
[server]
port = 9000
host = "0.0.0.0"
[storage]
data_dir = "/var/lib/emporium"
[log]
level = "debug"
)";
  sources.environment = {
      {"EMPORIUM_SERVER_PORT", "9100"}, {"EMPORIUM_CONFIG", "ignored.toml"}, {"OTHER", "x"}};
  sources.overrides = {"log.level=warn"};
  absl::StatusOr<Config> config = LoadConfig(sources);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->server.port, 9100);
  EXPECT_EQ(config->server.host, "0.0.0.0");
  EXPECT_EQ(config->data_dir, "/var/lib/emporium");
  EXPECT_EQ(config->log_level, "warn");
}

TEST(ConfigTest, UnknownKeysAndBadValuesNameTheSetting) {
  ConfigSources unknown;
  unknown.toml_text = "[server]\nprot = 1\n";
  absl::StatusOr<Config> config = LoadConfig(unknown);
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(ErrorParam(config.status()), "server.prot");

  ConfigSources out_of_range;
  out_of_range.environment = {{"EMPORIUM_SERVER_PORT", "70000"}};
  config = LoadConfig(out_of_range);
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.status().message().find("EMPORIUM_SERVER_PORT"), absl::string_view::npos);

  ConfigSources typo_in_known_section;
  typo_in_known_section.environment = {{"EMPORIUM_SERVER_PROT", "1"}};
  config = LoadConfig(typo_in_known_section);
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(ErrorParam(config.status()), "server.prot");

  ConfigSources not_a_number;
  not_a_number.overrides = {"server.port=80a"};
  EXPECT_FALSE(LoadConfig(not_a_number).ok());

  ConfigSources bad_level;
  bad_level.overrides = {"log.level=loud"};
  EXPECT_FALSE(LoadConfig(bad_level).ok());

  ConfigSources no_equals;
  no_equals.overrides = {"server.port"};
  EXPECT_FALSE(LoadConfig(no_equals).ok());
}

TEST(ConfigTest, MalformedTomlIsAnErrorWithItsLine) {
  ConfigSources sources;
  sources.toml_text = "[server\nport = 1\n";
  absl::StatusOr<Config> config = LoadConfig(sources);
  ASSERT_FALSE(config.ok());
  EXPECT_NE(config.status().message().find("line 1"), absl::string_view::npos) << config.status();
}

TEST(ConfigTest, InventoryShardQueueCapacityIsBounded) {
  EXPECT_EQ(LoadConfig(ConfigSources{})->inventory.shard_queue_capacity, 65536);
  ConfigSources sources;
  sources.toml_text = "[inventory]\nshard_queue_capacity = 1024\n";
  absl::StatusOr<Config> config = LoadConfig(sources);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->inventory.shard_queue_capacity, 1024);
  ConfigSources too_small;
  too_small.overrides = {"inventory.shard_queue_capacity=0"};
  config = LoadConfig(too_small);
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(ErrorParam(config.status()), "inventory.shard_queue_capacity");
}

TEST(ConfigTest, InventoryBatchLingerIsBounded) {
  EXPECT_EQ(LoadConfig(ConfigSources{})->inventory.batch_linger_us, 200);
  ConfigSources sources;
  sources.toml_text = "[inventory]\nbatch_linger_us = 0\n";
  absl::StatusOr<Config> config = LoadConfig(sources);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->inventory.batch_linger_us, 0);
  ConfigSources too_long;
  too_long.overrides = {"inventory.batch_linger_us=100001"};
  config = LoadConfig(too_long);
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(ErrorParam(config.status()), "inventory.batch_linger_us");
}

TEST(ConfigTest, InventorySettledRetentionIsBounded) {
  EXPECT_EQ(LoadConfig(ConfigSources{})->inventory.settled_retention_s, 600);
  ConfigSources sources;
  sources.toml_text = "[inventory]\nsettled_retention_s = 0\n";
  absl::StatusOr<Config> config = LoadConfig(sources);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->inventory.settled_retention_s, 0);
  ConfigSources too_long;
  too_long.overrides = {"inventory.settled_retention_s=604801"};  // a week and a second
  config = LoadConfig(too_long);
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(ErrorParam(config.status()), "inventory.settled_retention_s");
}

TEST(ConfigTest, DeferredSyncIsOnByDefaultAndTakesZeroOrOne) {
  EXPECT_EQ(LoadConfig(ConfigSources{})->database_deferred_sync, 1);
  ConfigSources off;
  off.toml_text = "[storage]\ndeferred_sync = 0\n";
  absl::StatusOr<Config> config = LoadConfig(off);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->database_deferred_sync, 0);
  ConfigSources two;
  two.overrides = {"storage.deferred_sync=2"};
  config = LoadConfig(two);
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(ErrorParam(config.status()), "storage.deferred_sync");
}

TEST(ConfigTest, WriterCacheIsBoundedInMebibytes) {
  EXPECT_EQ(LoadConfig(ConfigSources{})->database_writer_cache_mib, 64);
  ConfigSources sources;
  sources.toml_text = "[storage]\nwriter_cache_mib = 8\n";
  absl::StatusOr<Config> config = LoadConfig(sources);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->database_writer_cache_mib, 8);
  ConfigSources zero;
  zero.overrides = {"storage.writer_cache_mib=0"};
  config = LoadConfig(zero);
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(ErrorParam(config.status()), "storage.writer_cache_mib");
}

TEST(ConfigTest, EverySettingIsListedWithItsDefault) {
  bool has_port = false;
  for (const SettingInfo& setting : Settings()) {
    EXPECT_FALSE(setting.description.empty()) << setting.key;
    if (setting.key == "server.port") has_port = setting.default_value == "8080";
  }
  EXPECT_TRUE(has_port);
}

}  // namespace
}  // namespace emporium::app
