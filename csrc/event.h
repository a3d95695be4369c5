// Events. Most work finishes before its entry returns, so most events are born
// ready; an execution queued for the Python runner (see bridge.h) completes later,
// and every event and buffer waiting on it shares one Completion.
#pragma once

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "common.h"

namespace pjrt_tt {

// Done once, with or without an error; waiters and callbacks learn which.
class Completion {
 public:
  static std::shared_ptr<Completion> Done(std::optional<Status> error = std::nullopt);

  // Marks it done and runs the callbacks registered so far, on this thread.
  void Finish(std::optional<Status> error);
  bool IsDone();
  // Blocks until done. A caller holding the GIL lets go of it meanwhile: the
  // work being waited for may need it.
  void Wait();
  // Only after IsDone() or Wait().
  const std::optional<Status>& error() const { return error_; }
  // Runs `callback` once done: now if it already is, else on the finishing thread.
  void OnDone(std::function<void()> callback);

 private:
  std::mutex mu_;
  std::condition_variable done_cv_;
  bool done_ = false;
  std::optional<Status> error_;  // written once, before done_ is set
  std::vector<std::function<void()>> callbacks_;
};

}  // namespace pjrt_tt

struct PJRT_Event {
  std::shared_ptr<pjrt_tt::Completion> completion;
};

namespace pjrt_tt {

inline PJRT_Event* ReadyEvent() { return new PJRT_Event{Completion::Done()}; }
inline PJRT_Event* FailedEvent(Status error) { return new PJRT_Event{Completion::Done(std::move(error))}; }
inline PJRT_Event* EventOf(std::shared_ptr<Completion> completion) { return new PJRT_Event{std::move(completion)}; }

}  // namespace pjrt_tt
