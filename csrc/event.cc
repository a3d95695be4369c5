#include "event.h"

#include "bridge.h"

namespace pjrt_tt {

std::shared_ptr<Completion> Completion::Done(std::optional<Status> error) {
  auto completion = std::make_shared<Completion>();
  completion->done_ = true;
  completion->error_ = std::move(error);
  return completion;
}

void Completion::Finish(std::optional<Status> error) {
  std::vector<std::function<void()>> callbacks;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (done_) return;
    error_ = std::move(error);
    done_ = true;
    callbacks.swap(callbacks_);
  }
  done_cv_.notify_all();
  for (auto& callback : callbacks) callback();
}

bool Completion::IsDone() {
  std::lock_guard<std::mutex> lock(mu_);
  return done_;
}

void Completion::Wait() {
  if (IsDone()) return;
  WithoutGil([&] {
    std::unique_lock<std::mutex> lock(mu_);
    done_cv_.wait(lock, [&] { return done_; });
  });
}

void Completion::OnDone(std::function<void()> callback) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!done_) {
      callbacks_.push_back(std::move(callback));
      return;
    }
  }
  callback();
}

namespace {

// Each call hands out an independent copy: the caller destroys every PJRT_Error it gets.
PJRT_Error* CopyError(const std::optional<Status>& error) {
  if (!error) return nullptr;
  return MakeError(error->code(), error->message());
}

PJRT_Error* EventDestroy(PJRT_Event_Destroy_Args* args) {
  return Guard("PJRT_Event_Destroy", [&] { delete PJRT_TT_IN(args, event, nullptr); });
}

PJRT_Error* EventIsReady(PJRT_Event_IsReady_Args* args) {
  return Guard("PJRT_Event_IsReady", [&] {
    PJRT_TT_OUT(args, is_ready, PJRT_TT_ARG(args, event)->completion->IsDone());
  });
}

// The header asks callers to check IsReady first; waiting keeps a careless caller correct.
PJRT_Error* EventError(PJRT_Event_Error_Args* args) {
  PJRT_Error* error = nullptr;
  PJRT_Error* failure = Guard("PJRT_Event_Error", [&] {
    Completion& completion = *PJRT_TT_ARG(args, event)->completion;
    completion.Wait();
    error = CopyError(completion.error());
  });
  return failure ? failure : error;
}

PJRT_Error* EventAwait(PJRT_Event_Await_Args* args) {
  PJRT_Error* error = nullptr;
  PJRT_Error* failure = Guard("PJRT_Event_Await", [&] {
    Completion& completion = *PJRT_TT_ARG(args, event)->completion;
    completion.Wait();
    error = CopyError(completion.error());
  });
  return failure ? failure : error;
}

// The callback is the framework's code and runs exactly once: here when the event is
// already complete, else on the thread that completes it (the Python runner, after
// it has let go of the GIL).
PJRT_Error* EventOnReady(PJRT_Event_OnReady_Args* args) {
  std::shared_ptr<Completion> completion;
  PJRT_Event_OnReadyCallback callback = nullptr;
  void* user_arg = nullptr;
  PJRT_Error* failure = Guard("PJRT_Event_OnReady", [&] {
    completion = PJRT_TT_ARG(args, event)->completion;
    callback = PJRT_TT_ARG(args, callback);
    user_arg = PJRT_TT_IN(args, user_arg, nullptr);
  });
  if (failure) return failure;
  Completion* raw = completion.get();
  completion->OnDone([raw, callback, user_arg, keep = completion] { callback(CopyError(raw->error()), user_arg); });
  return nullptr;
}

}  // namespace

void BindEvent(PJRT_Api& api) {
  api.PJRT_Event_Destroy = EventDestroy;
  api.PJRT_Event_IsReady = EventIsReady;
  api.PJRT_Event_Error = EventError;
  api.PJRT_Event_Await = EventAwait;
  api.PJRT_Event_OnReady = EventOnReady;
}

}  // namespace pjrt_tt
