// The CPU backend's thread pool: every item of every job runs exactly once, on a thread index in
// range, across many back-to-back jobs (late workers must not run items of a newer job).
#include <atomic>
#include <vector>

#include <gtest/gtest.h>

#include "moeflux/backend/cpu/thread_pool.h"

namespace moeflux::test {
namespace {

using backend::cpu::ThreadPool;

TEST(ThreadPool, EveryItemRunsOnceAcrossManyJobs) {
  for (const int threads : {1, 2, 5}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.size(), threads);
    for (int job = 0; job < 2000; ++job) {
      const std::int64_t n = job % 7 == 0 ? 0 : 1 + job % 37;
      std::vector<std::atomic<int>> runs(static_cast<std::size_t>(n));
      std::atomic<int> bad_thread{0};
      pool.run(n, [&](std::int64_t i, int thread) {
        runs[static_cast<std::size_t>(i)].fetch_add(1);
        if (thread < 0 || thread >= threads) bad_thread.fetch_add(1);
      });
      for (std::int64_t i = 0; i < n; ++i) ASSERT_EQ(runs[static_cast<std::size_t>(i)].load(), 1) << job << ":" << i;
      ASSERT_EQ(bad_thread.load(), 0);
    }
  }
}

}  // namespace
}  // namespace moeflux::test
