#include "payments/vault.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "payments/schema.h"
#include "platform/sql/migrations.h"
#include "platform/sql/sqlite_database.h"
#include "platform/sql/sqlite_test_util.h"

namespace emporium::payments {
namespace {

constexpr char kPan[] = "4242424242424242";
constexpr char kAmexPan[] = "378282246310005";

class VaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty());
    auto db = sql::OpenSqlite({.path = dir_.File("payments.db"), .name = "payments"});
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = std::move(*db);
    ASSERT_TRUE(sql::ApplyMigrations(*db_, "payments", PaymentsMigrations()).ok());
  }
  void TearDown() override {
    if (db_) db_->Close();
  }

  absl::StatusOr<PaymentMethod> StoreCard(const Vault& vault, const std::string& pan) {
    auto details = ValidateCard({pan, 12, 2030, pan.size() == 15 ? "1234" : "123", "Ada"}, 2026, 1);
    if (!details.ok()) return details.status();
    absl::StatusOr<PaymentMethod> method;
    absl::Status status = db_->Write([&](sql::Transaction& tx) {
      method = vault.Store(tx, "cus_1", *details, 1000);
      return method.status();
    });
    if (!status.ok()) return status;
    return method;
  }

  absl::StatusOr<std::string> Reveal(const Vault& vault, const std::string& token) {
    absl::StatusOr<std::string> pan = absl::UnknownError("unset");
    absl::Status status = db_->Read([&](sql::Transaction& tx) {
      pan = vault.RevealNumber(tx, token);
      return absl::OkStatus();
    });
    if (!status.ok()) return status;
    return pan;
  }

  sql::TempDir dir_;
  std::unique_ptr<sql::Database> db_;
};

TEST(VaultKeyringTest, ParsesHexAndBase64AndRejectsGarbage) {
  const std::string hex(64, 'a');
  auto ring = VaultKeyring::Parse("k2:" + hex + ", k1:" + std::string(43, 'A') + "=");
  ASSERT_TRUE(ring.ok()) << ring.status();
  EXPECT_EQ(ring->active_key_id(), "k2");
  EXPECT_NE(ring->Find("k1"), nullptr);
  EXPECT_EQ(ring->Find("k3"), nullptr);
  EXPECT_FALSE(VaultKeyring::Parse("").ok());
  EXPECT_FALSE(VaultKeyring::Parse("k1").ok());
  EXPECT_FALSE(VaultKeyring::Parse("k1:abcd").ok());
  EXPECT_FALSE(VaultKeyring::Parse("bad id:" + hex).ok());
  EXPECT_FALSE(VaultKeyring::Parse("k1:" + hex + "\nk1:" + hex).ok());
  auto bad = VaultKeyring::Parse("k1:" + std::string(63, 'b') + "z");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(std::string(bad.status().message()).find("bbbb"), std::string::npos);
  EXPECT_TRUE(VaultKeyring::Parse(VaultKeyring::GenerateEntry("gen")).ok());
}

TEST(VaultKeyringTest, LoadsFromFileAndEnvironment) {
  sql::TempDir dir;
  const std::string path = dir.File("key");
  std::ofstream(path) << VaultKeyring::GenerateEntry("file-key") << "\n";
  auto from_file = VaultKeyring::Load(path);
  ASSERT_TRUE(from_file.ok()) << from_file.status();
  EXPECT_EQ(from_file->active_key_id(), "file-key");
  setenv(kVaultKeyEnvironment, VaultKeyring::GenerateEntry("env-key").c_str(), 1);
  auto from_env = VaultKeyring::Load("");
  unsetenv(kVaultKeyEnvironment);
  ASSERT_TRUE(from_env.ok()) << from_env.status();
  EXPECT_EQ(from_env->active_key_id(), "env-key");
  EXPECT_EQ(VaultKeyring::Load(dir.File("missing")).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(VaultTest, StoresRevealsAndShowsOnlyLast4) {
  Vault vault(*VaultKeyring::Parse(VaultKeyring::GenerateEntry("k1")));
  auto method = StoreCard(vault, kPan);
  ASSERT_TRUE(method.ok()) << method.status();
  EXPECT_TRUE(method->token.starts_with("pm_"));
  EXPECT_EQ(method->token.size(), 35u);
  EXPECT_EQ(method->last4, "4242");
  EXPECT_EQ(method->brand, CardBrand::kVisa);
  auto pan = Reveal(vault, method->token);
  ASSERT_TRUE(pan.ok()) << pan.status();
  EXPECT_EQ(*pan, kPan);
  EXPECT_EQ(Reveal(vault, "pm_missing").status().code(), absl::StatusCode::kNotFound);
  absl::StatusOr<PaymentMethod> found;
  ASSERT_TRUE(db_->Read([&](sql::Transaction& tx) {
                   found = vault.Find(tx, method->token);
                   return found.status();
                 })
                  .ok());
  EXPECT_EQ(found->last4, "4242");
  EXPECT_EQ(found->customer_id, "cus_1");
}

TEST_F(VaultTest, CiphertextIsBoundToItsTokenAndKey) {
  Vault vault(*VaultKeyring::Parse(VaultKeyring::GenerateEntry("k1")));
  auto sealed = vault.Seal("pm_a", kPan);
  ASSERT_TRUE(sealed.ok());
  EXPECT_EQ(vault.Open("pm_b", *sealed).status().code(), absl::StatusCode::kDataLoss);
  SealedCard tampered = *sealed;
  tampered.ciphertext[0] = static_cast<char>(tampered.ciphertext[0] ^ 1);
  EXPECT_EQ(vault.Open("pm_a", tampered).status().code(), absl::StatusCode::kDataLoss);
  SealedCard short_nonce = *sealed;
  short_nonce.nonce.resize(3);
  EXPECT_EQ(vault.Open("pm_a", short_nonce).status().code(), absl::StatusCode::kDataLoss);
  SealedCard other_key = *sealed;
  other_key.key_id = "k9";
  EXPECT_EQ(vault.Open("pm_a", other_key).status().code(), absl::StatusCode::kNotFound);
  Vault stranger(*VaultKeyring::Parse(VaultKeyring::GenerateEntry("k1")));
  EXPECT_EQ(stranger.Open("pm_a", *sealed).status().code(), absl::StatusCode::kDataLoss);
}

TEST_F(VaultTest, RotationReencryptsUnderTheNewKey) {
  const std::string old_entry = VaultKeyring::GenerateEntry("k1");
  Vault old_vault(*VaultKeyring::Parse(old_entry));
  auto visa = StoreCard(old_vault, kPan);
  auto amex = StoreCard(old_vault, kAmexPan);
  ASSERT_TRUE(visa.ok() && amex.ok());
  Vault new_vault(*VaultKeyring::Parse(VaultKeyring::GenerateEntry("k2") + "," + old_entry));
  // Before rotation the new vault still reads old rows through the old key.
  EXPECT_EQ(*Reveal(new_vault, visa->token), kPan);
  absl::StatusOr<int64_t> rotated;
  ASSERT_TRUE(db_->Write([&](sql::Transaction& tx) {
                   rotated = new_vault.Rotate(tx);
                   return rotated.status();
                 })
                  .ok());
  EXPECT_EQ(*rotated, 2);
  // Now rows are under k2 and the old vault (k1 only) cannot read them.
  EXPECT_EQ(*Reveal(new_vault, visa->token), kPan);
  EXPECT_EQ(*Reveal(new_vault, amex->token), kAmexPan);
  EXPECT_EQ(Reveal(old_vault, visa->token).status().code(), absl::StatusCode::kNotFound);
  // A second rotation has nothing to do.
  ASSERT_TRUE(db_->Write([&](sql::Transaction& tx) {
                   rotated = new_vault.Rotate(tx);
                   return rotated.status();
                 })
                  .ok());
  EXPECT_EQ(*rotated, 0);
}

TEST_F(VaultTest, PanAppearsNowhereInTheDatabaseFiles) {
  Vault vault(*VaultKeyring::Parse(VaultKeyring::GenerateEntry("k1")));
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(StoreCard(vault, kPan).ok());
  ASSERT_TRUE(StoreCard(vault, kAmexPan).ok());
  db_->Close();
  db_.reset();
  for (const char* suffix : {"", "-wal", "-shm"}) {
    std::ifstream file(dir_.File("payments.db") + suffix, std::ios::binary);
    if (!file) continue;
    std::stringstream bytes;
    bytes << file.rdbuf();
    const std::string content = bytes.str();
    EXPECT_EQ(content.find(kPan), std::string::npos) << suffix;
    EXPECT_EQ(content.find(kAmexPan), std::string::npos) << suffix;
    EXPECT_EQ(content.find("424242424242"), std::string::npos) << suffix;
  }
}

}  // namespace
}  // namespace emporium::payments
