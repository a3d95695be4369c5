// The bridge to the Python runtime (pjrt_tt.runtime.bridge, see docs/architecture.md):
// taking the GIL, owning references to Python objects from C++ handles, turning Python
// exceptions into Status, and converting PJRT_NamedValue lists to and from dicts.
//
// The library is dlopen'ed into a running interpreter and does not link libpython;
// every Python symbol resolves from the host process.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common.h"

namespace py = pybind11;

namespace pjrt_tt {

// True once interpreter shutdown has begun; Python must not be touched then.
bool PythonFinalizing();

// Status for the Python exception held by `e` (GIL held). The code is the
// exception's `pjrt_code` attribute when it is a valid absl status code, else
// INTERNAL; the message is str(e), or the type name when that is empty.
Status StatusFromPython(const py::error_already_set& e);

// ------------------------------ The Python runner ------------------------------
// A framework thread that is not a Python thread must never wait for the GIL: the
// thread holding it may be waiting for that very thread. torch_xla does this: its
// `_run_cached_graph` holds the GIL while it waits for the device lock, which its
// worker thread keeps until our Execute returns (DESIGN.md section 5). Python work
// such a thread asks for (an execution, dropping a reference) is queued to one
// runner thread instead, which runs it in order as soon as it gets the GIL; work
// done anywhere else first waits for what was queued before it, so nothing queued
// is ever overtaken.

// True on a thread that has a Python thread state (it may wait for the GIL).
bool IsPythonThread();

// True while the runner has tasks queued or running.
bool RunnerBusy();

// Queues `python` (run holding the GIL) and then `after` (run without it, e.g. to
// complete events, whose callbacks are the framework's). `python` must not throw.
void Enqueue(std::function<void()> python, std::function<void()> after = nullptr);

// Blocks until every task queued before this call has run (letting go of the GIL
// meanwhile when this thread holds it). A no-op on the runner itself.
void DrainQueue();

// Runs `wait` (which must not touch Python) with the GIL released if this thread
// holds it, so whatever is being waited for can take it.
void WithoutGil(const std::function<void()>& wait);

// Runs `body` holding the GIL and returns its result, which must be a plain C++
// value (Python temporaries die inside). Any framework thread may call this, with
// or without the GIL already held (PyGILState_Ensure is reentrant); queued runner
// work is finished first. Python exceptions leave as Status.
template <typename Body>
auto WithPython(Body&& body) -> decltype(body()) {
  if (!Py_IsInitialized())
    Fail(PJRT_Error_Code_FAILED_PRECONDITION, "pjrt_tt must be loaded into a Python process");
  if (PythonFinalizing())
    Fail(PJRT_Error_Code_UNAVAILABLE, "the Python interpreter is shutting down");
  DrainQueue();
  py::gil_scoped_acquire gil;
  try {
    return body();
  } catch (const py::error_already_set& e) {
    throw StatusFromPython(e);
  } catch (...) {
    PyErr_Clear();  // never hand the thread back with a Python error pending
    throw;
  }
}

// The pjrt_tt.runtime.bridge module, imported on first use (GIL held).
py::module_ Bridge();

// An owned reference to a Python object, kept by a C++ handle. It may be dropped
// from any thread: the destructor takes the GIL, and during interpreter shutdown it
// deliberately leaks the object instead of touching Python.
class PyRef {
 public:
  PyRef() = default;
  explicit PyRef(py::object object) : ptr_(object.release().ptr()) {}
  PyRef(PyRef&& other) noexcept : ptr_(std::exchange(other.ptr_, nullptr)) {}
  PyRef& operator=(PyRef&& other) noexcept {
    if (this != &other) {
      Reset();
      ptr_ = std::exchange(other.ptr_, nullptr);
    }
    return *this;
  }
  PyRef(const PyRef&) = delete;
  PyRef& operator=(const PyRef&) = delete;
  ~PyRef() { Reset(); }

  // Borrowed handle; use only with the GIL held.
  py::handle get() const { return ptr_; }
  void Reset() noexcept;

 private:
  PyObject* ptr_ = nullptr;
};

// Deletes a C++ handle that owns PyRefs, taking the GIL once for all of them. Off a
// Python thread, or while queued work may still use the handle, the runner deletes it.
template <typename T>
void DeleteHandle(T* handle) {
  if (handle == nullptr) return;
  if (!Py_IsInitialized() || PythonFinalizing()) {
    delete handle;  // PyRef leaks its objects in this state
  } else if (!IsPythonThread() || RunnerBusy()) {
    Enqueue([handle] { delete handle; });
  } else {
    py::gil_scoped_acquire gil;
    delete handle;
  }
}

// A PJRT_NamedValue array built from a Python dict (GIL held), owning every string
// and list it points to. Values: bool, int, float, str, list/tuple of int.
class NamedValues {
 public:
  // jaxlib 0.7.1 aborts the process when a device attribute is a bool or a float
  // (PjRtCApiDeviceDescription::InitAttributes accepts only string, int64 and
  // int64 list), so with `device_attributes` those become int64 and string.
  static std::unique_ptr<NamedValues> FromDict(py::handle dict, const char* what,
                                               bool device_attributes = false);
  const PJRT_NamedValue* data() const { return values_.empty() ? nullptr : values_.data(); }
  size_t size() const { return values_.size(); }

 private:
  std::deque<std::string> strings_;  // deques: growing never moves the elements
  std::deque<std::vector<int64_t>> lists_;
  std::vector<PJRT_NamedValue> values_;
};

// A Python dict from caller-provided options (GIL held).
py::dict NamedValuesToDict(const PJRT_NamedValue* values, size_t count);

// Python-side sequences to C++ vectors (GIL held).
std::vector<int64_t> ToInt64Vector(py::handle sequence);

}  // namespace pjrt_tt
