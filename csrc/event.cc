#include "event.h"

namespace pjrt_tt {
namespace {

// Each call hands out an independent copy: the caller destroys every PJRT_Error it gets.
PJRT_Error* CopyError(const PJRT_Event* event) {
  if (!event->error) return nullptr;
  return MakeError(event->error->code(), event->error->message());
}

PJRT_Error* EventDestroy(PJRT_Event_Destroy_Args* args) {
  return Guard("PJRT_Event_Destroy", [&] { delete PJRT_TT_IN(args, event, nullptr); });
}

PJRT_Error* EventIsReady(PJRT_Event_IsReady_Args* args) {
  return Guard("PJRT_Event_IsReady", [&] {
    PJRT_TT_ARG(args, event);
    PJRT_TT_OUT(args, is_ready, true);
  });
}

PJRT_Error* EventError(PJRT_Event_Error_Args* args) {
  PJRT_Error* error = nullptr;
  PJRT_Error* failure =
      Guard("PJRT_Event_Error", [&] { error = CopyError(PJRT_TT_ARG(args, event)); });
  return failure ? failure : error;
}

PJRT_Error* EventAwait(PJRT_Event_Await_Args* args) {
  PJRT_Error* error = nullptr;
  PJRT_Error* failure =
      Guard("PJRT_Event_Await", [&] { error = CopyError(PJRT_TT_ARG(args, event)); });
  return failure ? failure : error;
}

// The event is already complete, so the callback runs right away on this thread.
PJRT_Error* EventOnReady(PJRT_Event_OnReady_Args* args) {
  PJRT_Event* event = nullptr;
  PJRT_Event_OnReadyCallback callback = nullptr;
  void* user_arg = nullptr;
  PJRT_Error* failure = Guard("PJRT_Event_OnReady", [&] {
    event = PJRT_TT_ARG(args, event);
    callback = PJRT_TT_ARG(args, callback);
    user_arg = PJRT_TT_IN(args, user_arg, nullptr);
  });
  if (failure) return failure;
  // Outside Guard: the callback is the framework's code and must run exactly once.
  callback(CopyError(event), user_arg);
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
