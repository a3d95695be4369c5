// The profiler extension: a PLUGIN_Profiler is a handle on one pjrt_tt.runtime.profiler
// Session (Python), which records the plugin's spans while it is started and serializes
// them as an XSpace when collected. Misuse (unknown or destroyed handles, collecting a
// running session, starting twice) returns an error; nothing here aborts.
#include "profiler.h"

#include <cstring>
#include <mutex>
#include <string>
#include <unordered_set>

#include "bridge.h"
#include "common.h"

struct PLUGIN_Profiler_Error {
  int code;  // an absl status code, numbered as PJRT_Error_Code
  std::string message;
};

struct PLUGIN_Profiler {
  pjrt_tt::PyRef session;  // a pjrt_tt.runtime.profiler.Session
  std::mutex mu;           // guards the two fields below
  bool collected = false;
  std::string data;  // the serialized XSpace collect_data hands out (lives with the handle)
};

namespace pjrt_tt {
namespace {

// Live handles: a destroyed or made-up pointer is refused instead of followed.
struct Handles {
  std::mutex mu;
  std::unordered_set<PLUGIN_Profiler*> live;
};

Handles& LiveHandles() {
  static Handles* handles = new Handles;  // never destroyed: used until the process ends
  return *handles;
}

PLUGIN_Profiler* Lookup(PLUGIN_Profiler* profiler) {
  if (profiler == nullptr) Fail(PJRT_Error_Code_INVALID_ARGUMENT, "profiler is null");
  Handles& handles = LiveHandles();
  std::lock_guard<std::mutex> lock(handles.mu);
  if (handles.live.count(profiler) == 0)
    Fail(PJRT_Error_Code_INVALID_ARGUMENT, "profiler is not a live pjrt-tt profiler (destroyed already?)");
  return profiler;
}

template <typename Args>
Args* NonNull(Args* args) {
  if (args == nullptr) Fail(PJRT_Error_Code_INVALID_ARGUMENT, "args is null");
  return args;
}

// Guard() for the profiler's entries, whose errors are PLUGIN_Profiler_Errors. The
// frameworks leave struct_size unset in the create/destroy/start/stop/collect_data args
// (xla's PluginTracer does not fill it), so those entries cannot check it.
template <typename Body>
PLUGIN_Profiler_Error* ProfilerGuard(const char* entry, Body&& body) noexcept {
  PJRT_Error* error = Guard(entry, std::forward<Body>(body));
  if (error == nullptr) return nullptr;
  PLUGIN_Profiler_Error* out = nullptr;
  try {
    out = new PLUGIN_Profiler_Error{static_cast<int>(error->code), std::move(error->message)};
  } catch (...) {  // out of memory: no message to give
  }
  delete error;
  return out;
}

void ErrorDestroy(PLUGIN_Profiler_Error_Destroy_Args* args) {
  if (args != nullptr) delete PJRT_TT_IN(args, error, nullptr);
}

void ErrorMessage(PLUGIN_Profiler_Error_Message_Args* args) {
  if (args == nullptr) return;
  const PLUGIN_Profiler_Error* error = PJRT_TT_IN(args, error, nullptr);
  if (error == nullptr) return;
  PJRT_TT_OUT(args, message, error->message.data());
  PJRT_TT_OUT(args, message_size, error->message.size());
}

PLUGIN_Profiler_Error* ErrorGetCode(PLUGIN_Profiler_Error_GetCode_Args* args) {
  return ProfilerGuard("PLUGIN_Profiler_Error_GetCode", [&] {
    NonNull(args);
    const PLUGIN_Profiler_Error* error = PJRT_TT_ARG(args, error);
    PJRT_TT_OUT(args, code, error->code);
  });
}

PLUGIN_Profiler_Error* Create(PLUGIN_Profiler_Create_Args* args) {
  return ProfilerGuard("PLUGIN_Profiler_Create", [&] {
    NonNull(args);
    if (args->options == nullptr && args->options_size != 0)
      Fail(PJRT_Error_Code_INVALID_ARGUMENT, "options is null but options_size is not 0");
    auto profiler = std::make_unique<PLUGIN_Profiler>();
    profiler->session = WithPython([&] {
      py::bytes options(args->options == nullptr ? "" : args->options, args->options_size);
      return PyRef(Bridge().attr("profiler_session")(options));
    });
    Handles& handles = LiveHandles();
    std::lock_guard<std::mutex> lock(handles.mu);
    handles.live.insert(profiler.get());
    args->profiler = profiler.release();
  });
}

PLUGIN_Profiler_Error* Destroy(PLUGIN_Profiler_Destroy_Args* args) {
  return ProfilerGuard("PLUGIN_Profiler_Destroy", [&] {
    PLUGIN_Profiler* profiler = Lookup(NonNull(args)->profiler);
    {
      Handles& handles = LiveHandles();
      std::lock_guard<std::mutex> lock(handles.mu);
      handles.live.erase(profiler);
    }
    // A session destroyed while started must stop recording; at interpreter shutdown
    // there is nothing left to record into, and Python must not be touched.
    if (Py_IsInitialized() && !PythonFinalizing()) {
      try {
        WithPython([&] { py::handle(profiler->session.get()).attr("close")(); });
      } catch (...) {
        DeleteHandle(profiler);
        throw;
      }
    }
    DeleteHandle(profiler);
  });
}

PLUGIN_Profiler_Error* Start(PLUGIN_Profiler_Start_Args* args) {
  return ProfilerGuard("PLUGIN_Profiler_Start", [&] {
    PLUGIN_Profiler* profiler = Lookup(NonNull(args)->profiler);
    WithPython([&] { py::handle(profiler->session.get()).attr("start")(); });
    std::lock_guard<std::mutex> lock(profiler->mu);
    profiler->collected = false;  // a restarted session collects anew
    profiler->data.clear();
  });
}

PLUGIN_Profiler_Error* Stop(PLUGIN_Profiler_Stop_Args* args) {
  return ProfilerGuard("PLUGIN_Profiler_Stop", [&] {
    PLUGIN_Profiler* profiler = Lookup(NonNull(args)->profiler);
    WithPython([&] { py::handle(profiler->session.get()).attr("stop")(); });
  });
}

PLUGIN_Profiler_Error* CollectData(PLUGIN_Profiler_CollectData_Args* args) {
  return ProfilerGuard("PLUGIN_Profiler_CollectData", [&] {
    PLUGIN_Profiler* profiler = Lookup(NonNull(args)->profiler);
    if (args->buffer == nullptr) {
      std::string data = WithPython(
          [&] { return py::cast<std::string>(py::handle(profiler->session.get()).attr("collect")()); });
      std::lock_guard<std::mutex> lock(profiler->mu);
      profiler->data = std::move(data);
      profiler->collected = true;
      args->buffer = reinterpret_cast<uint8_t*>(profiler->data.data());
      args->buffer_size_in_bytes = profiler->data.size();
      return;
    }
    std::lock_guard<std::mutex> lock(profiler->mu);
    if (!profiler->collected)
      Fail(PJRT_Error_Code_FAILED_PRECONDITION,
           "call collect_data with a null buffer first: it gives the size the buffer must have");
    if (args->buffer != reinterpret_cast<uint8_t*>(profiler->data.data()))
      std::memcpy(args->buffer, profiler->data.data(), profiler->data.size());
    args->buffer_size_in_bytes = profiler->data.size();
  });
}

}  // namespace

PJRT_Extension_Base* ProfilerExtension() {
  static PLUGIN_Profiler_Api api = [] {
    PLUGIN_Profiler_Api a{};
    a.struct_size = sizeof(PLUGIN_Profiler_Api);
    a.priv = nullptr;
    a.error_destroy = ErrorDestroy;
    a.error_message = ErrorMessage;
    a.error_get_code = ErrorGetCode;
    a.create = Create;
    a.destroy = Destroy;
    a.start = Start;
    a.stop = Stop;
    a.collect_data = CollectData;
    return a;
  }();
  static PJRT_Profiler_Extension extension = [] {
    PJRT_Profiler_Extension e{};
    e.base.struct_size = sizeof(PJRT_Profiler_Extension);
    e.base.type = PJRT_Extension_Type_Profiler;
    e.base.next = nullptr;
    e.profiler_api = &api;
    e.traceme_context_id = 0;
    return e;
  }();
  return &extension.base;
}

}  // namespace pjrt_tt
