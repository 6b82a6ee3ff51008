// The inventory API's error answers for commands that had no effect.
#include "inventory/api.h"

#include <string>

#include "absl/status/status.h"
#include "common/errors.h"
#include "gtest/gtest.h"
#include "inventory/shard_engine.h"

namespace emporium::inventory {
namespace {

TEST(CommandErrorResponseTest, FullQueueIs503WithRetryAfter) {
  const absl::Status full =
      WithErrorCode(absl::UnavailableError("inventory shard 0 queue is full"), kQueueFullCode);
  ASSERT_TRUE(IsQueueFull(full));
  const http::Response response = CommandErrorResponse(full);
  EXPECT_EQ(response.status, 503);
  EXPECT_EQ(response.headers.Get("Retry-After"), std::to_string(kQueueFullRetryAfterSeconds));
  EXPECT_NE(response.body.find(kQueueFullCode), std::string::npos) << response.body;
}

TEST(CommandErrorResponseTest, OtherFailuresKeepTheCanonicalMappingWithoutRetryAfter) {
  const http::Response unavailable =
      CommandErrorResponse(absl::UnavailableError("inventory batch not committed: disk"));
  EXPECT_EQ(unavailable.status, 503);
  EXPECT_FALSE(unavailable.headers.Has("Retry-After"));
  const http::Response cross_shard =
      CommandErrorResponse(absl::FailedPreconditionError("reservation lines span shards"));
  EXPECT_EQ(cross_shard.status, 409);
  EXPECT_FALSE(cross_shard.headers.Has("Retry-After"));
  // Another Unavailable carrying some other code is not a full queue.
  EXPECT_FALSE(IsQueueFull(WithErrorCode(absl::UnavailableError("x"), "other")));
  EXPECT_FALSE(IsQueueFull(WithErrorCode(absl::ResourceExhaustedError("x"), kQueueFullCode)));
}

}  // namespace
}  // namespace emporium::inventory
