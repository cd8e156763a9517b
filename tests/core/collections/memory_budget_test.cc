#include "core/collections/memory_budget.h"

#include <utility>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace engram::collections {
namespace {

using ::testing::HasSubstr;

std::shared_ptr<MemoryBudget> Budget(uint64_t limit) {
  MemoryBudget::Options options;
  options.limit_bytes = limit;
  return *MemoryBudget::Create(options);
}

TEST(MemoryBudgetTest, RejectsZeroLimit) {
  MemoryBudget::Options options;
  options.limit_bytes = 0;
  EXPECT_EQ(MemoryBudget::Create(options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(MemoryBudgetTest, ReservesUpToTheLimitExactly) {
  auto budget = Budget(100);
  auto a = budget->Reserve(60, "a");
  ASSERT_TRUE(a.ok());
  auto b = budget->Reserve(40, "b");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(budget->reserved_bytes(), 100u);
}

TEST(MemoryBudgetTest, RefusalReservesNothingAndNamesTheRequest) {
  auto budget = Budget(100);
  auto a = budget->Reserve(60, "a");
  auto b = budget->Reserve(41, "upload of x");
  ASSERT_EQ(b.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(b.status().message(), HasSubstr("upload of x needs 41 bytes"));
  EXPECT_THAT(b.status().message(), HasSubstr("40 of the budget's 100"));
  EXPECT_EQ(budget->reserved_bytes(), 60u);
}

TEST(MemoryBudgetTest, DestructionAndReleaseGiveBytesBack) {
  auto budget = Budget(100);
  {
    auto a = budget->Reserve(70, "a");
    EXPECT_EQ(budget->reserved_bytes(), 70u);
  }
  EXPECT_EQ(budget->reserved_bytes(), 0u);
  auto b = budget->Reserve(50, "b");
  b->Release();
  b->Release();  // idempotent
  EXPECT_EQ(budget->reserved_bytes(), 0u);
}

TEST(MemoryBudgetTest, MoveTransfersOwnership) {
  auto budget = Budget(100);
  Reservation outer;
  {
    auto a = budget->Reserve(30, "a");
    outer = std::move(*a);
  }
  EXPECT_EQ(budget->reserved_bytes(), 30u);
  EXPECT_EQ(outer.bytes(), 30u);
  Reservation other = std::move(outer);
  EXPECT_EQ(budget->reserved_bytes(), 30u);
  other = Reservation();
  EXPECT_EQ(budget->reserved_bytes(), 0u);
}

}  // namespace
}  // namespace engram::collections
