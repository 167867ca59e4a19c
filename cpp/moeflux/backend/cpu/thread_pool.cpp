// ThreadPool: a job is done when all its items are, not when every worker has seen it, so a worker
// the OS has not scheduled never delays the caller (who claims the items itself). Workers poll
// briefly after a job (decode issues many small jobs back to back), then sleep.
#include "moeflux/backend/cpu/thread_pool.h"

#include <chrono>

#include "moeflux/util/error.h"

namespace moeflux::backend::cpu {
namespace {

// Polling time before sleeping: about the gap between two products of a layer.
constexpr std::chrono::microseconds kSpin{100};

inline void pause() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// Polls `ready` for up to kSpin; true once it holds.
template <typename Ready>
bool spin_until(Ready ready) {
  const auto deadline = std::chrono::steady_clock::now() + kSpin;
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      if (ready()) return true;
      pause();
    }
    if (std::chrono::steady_clock::now() > deadline) return ready();
  }
}

}  // namespace

ThreadPool::ThreadPool(int threads) {
  for (int i = 1; i < threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  workers_.clear();  // jthread joins
}

void ThreadPool::work(const Job& job, std::uint32_t generation, int thread) {
  for (;;) {
    std::uint64_t ticket = ticket_.load();
    std::int64_t item = 0;
    do {
      item = static_cast<std::int64_t>(ticket & 0xffffffffu);
      if ((ticket >> 32) != generation || item >= job.n) return;
    } while (!ticket_.compare_exchange_weak(ticket, ticket + 1));
    job.call(job.fn, item, thread);
    if (done_.fetch_add(1) + 1 == job.n) {
      std::lock_guard lock(mutex_);  // so the caller cannot miss the notification
      finished_.notify_one();
    }
  }
}

void ThreadPool::dispatch(std::int64_t n, const Job& job) {
  if (n <= 0) return;
  if (workers_.empty() || n == 1) {
    for (std::int64_t i = 0; i < n; ++i) job.call(job.fn, i, 0);
    return;
  }
  MF_ASSERT(n < (std::int64_t{1} << 32), "a job of ", n, " items");
  std::uint32_t generation = 0;
  {
    std::lock_guard lock(mutex_);
    job_ = job;
    done_.store(0);
    generation = generation_.load() + 1;
    ticket_.store(std::uint64_t{generation} << 32);
    generation_.store(generation);
  }
  wake_.notify_all();
  work(job, generation, 0);
  if (!spin_until([&] { return done_.load() == n; })) {
    std::unique_lock lock(mutex_);
    finished_.wait(lock, [&] { return done_.load() == n; });
  }
}

void ThreadPool::worker_loop(int thread) {
  std::uint32_t seen = 0;
  for (;;) {
    spin_until([&] { return generation_.load() != seen; });
    Job job;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return stop_ || generation_.load() != seen; });
      if (stop_) return;
      seen = generation_.load();
      job = job_;
    }
    work(job, seen, thread);
  }
}

}  // namespace moeflux::backend::cpu
