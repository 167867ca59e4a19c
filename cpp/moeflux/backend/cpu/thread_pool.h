// ThreadPool: a persistent set of workers owned by a CPU backend, so an op splits its work without
// starting threads. run(n, task) calls task(i, thread) once for every item i in [0, n), on the
// workers and the calling thread (thread 0); which thread runs an item must not change its result.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

namespace moeflux::backend::cpu {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);  // threads - 1 workers; the caller is the last thread
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Runs task(i, thread) for i in [0, n), thread in [0, size()), and returns when all are done.
  // Tasks must not throw; they are called through a const reference.
  template <typename Task>
  void run(std::int64_t n, Task&& task) {
    using Fn = std::remove_reference_t<Task>;
    auto call = [](const void* fn, std::int64_t i, int thread) { (*static_cast<const Fn*>(fn))(i, thread); };
    dispatch(n, {call, std::addressof(task), n});
  }

 private:
  struct Job {
    void (*call)(const void*, std::int64_t, int) = nullptr;
    const void* fn = nullptr;
    std::int64_t n = 0;
  };
  void dispatch(std::int64_t n, const Job& job);
  // Claims and runs items of job `generation` until none are left (or a newer job started).
  void work(const Job& job, std::uint32_t generation, int thread);
  void worker_loop(int thread);

  std::vector<std::jthread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_, finished_;
  bool stop_ = false;
  Job job_;                                // guarded by mutex_
  std::atomic<std::uint32_t> generation_{0};
  // (generation << 32) | next item: a late worker cannot claim an item of a newer job.
  std::atomic<std::uint64_t> ticket_{0};
  std::atomic<std::int64_t> done_{0};      // items of the current job finished
};

}  // namespace moeflux::backend::cpu
