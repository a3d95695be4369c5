#include "bridge.h"

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>

namespace pjrt_tt {

bool PythonFinalizing() {
#if PY_VERSION_HEX >= 0x030D0000
  return Py_IsFinalizing();
#else
  return _Py_IsFinalizing();
#endif
}

void PyRef::Reset() noexcept {
  PyObject* object = std::exchange(ptr_, nullptr);
  // Touching Python during shutdown can crash the host; leaking is harmless then.
  if (object == nullptr || !Py_IsInitialized() || PythonFinalizing()) return;
  if (!IsPythonThread()) {
    try {
      Enqueue([object] { Py_DECREF(object); });
    } catch (...) {  // out of memory: leaking is the safe failure
    }
    return;
  }
  py::gil_scoped_acquire gil;
  Py_DECREF(object);
}

// ------------------------------ The Python runner ------------------------------

namespace {

struct Task {
  std::function<void()> python;
  std::function<void()> after;
};

struct RunnerQueue {
  std::mutex mu;
  std::condition_variable has_work;
  std::condition_variable progress;
  std::deque<Task> tasks;
  uint64_t queued = 0;    // tasks ever queued
  uint64_t finished = 0;  // tasks ever finished, in queue order
  bool started = false;
};

// Never destroyed: the runner thread may outlive static destruction at exit.
RunnerQueue& Queue() {
  static RunnerQueue* queue = new RunnerQueue;
  return *queue;
}

thread_local bool on_runner = false;

void RunnerLoop() {
  on_runner = true;
  RunnerQueue& q = Queue();
  for (;;) {
    Task task;
    {
      std::unique_lock<std::mutex> lock(q.mu);
      q.has_work.wait(lock, [&] { return !q.tasks.empty(); });
      task = std::move(q.tasks.front());
      q.tasks.pop_front();
    }
    if (Py_IsInitialized() && !PythonFinalizing()) {
      PyGILState_STATE state = PyGILState_Ensure();
      task.python();
      task.python = nullptr;  // what it captured may own Python objects
      if (PyErr_Occurred()) PyErr_Clear();
      PyGILState_Release(state);
    }
    if (task.after) task.after();
    task.after = nullptr;
    {
      std::lock_guard<std::mutex> lock(q.mu);
      ++q.finished;
    }
    q.progress.notify_all();
  }
}

}  // namespace

bool IsPythonThread() { return on_runner || PyGILState_GetThisThreadState() != nullptr; }

bool RunnerBusy() {
  RunnerQueue& q = Queue();
  std::lock_guard<std::mutex> lock(q.mu);
  return q.finished != q.queued;
}

void Enqueue(std::function<void()> python, std::function<void()> after) {
  RunnerQueue& q = Queue();
  {
    std::lock_guard<std::mutex> lock(q.mu);
    if (!q.started) {
      std::thread(RunnerLoop).detach();
      q.started = true;
    }
    q.tasks.push_back(Task{std::move(python), std::move(after)});
    ++q.queued;
  }
  q.has_work.notify_one();
}

void DrainQueue() {
  if (on_runner) return;
  RunnerQueue& q = Queue();
  uint64_t ticket;
  {
    std::lock_guard<std::mutex> lock(q.mu);
    ticket = q.queued;
    if (q.finished >= ticket) return;
  }
  WithoutGil([&] {
    std::unique_lock<std::mutex> lock(q.mu);
    q.progress.wait(lock, [&] { return q.finished >= ticket; });
  });
}

void WithoutGil(const std::function<void()>& wait) {
  if (!Py_IsInitialized() || !PyGILState_Check()) {
    wait();
    return;
  }
  PyThreadState* saved = PyEval_SaveThread();
  try {
    wait();
  } catch (...) {
    PyEval_RestoreThread(saved);
    throw;
  }
  PyEval_RestoreThread(saved);
}

namespace {

// Reads the exception's `pjrt_code`; anything unusable means INTERNAL.
PJRT_Error_Code CodeOf(const py::object& value) {
  try {
    if (!py::hasattr(value, "pjrt_code")) return PJRT_Error_Code_INTERNAL;
    py::object code = value.attr("pjrt_code");
    if (!py::isinstance<py::int_>(code)) return PJRT_Error_Code_INTERNAL;
    long n = code.cast<long>();
    if (n > PJRT_Error_Code_OK && n <= PJRT_Error_Code_UNAUTHENTICATED) {
      return static_cast<PJRT_Error_Code>(n);
    }
  } catch (const py::error_already_set&) {
  }
  return PJRT_Error_Code_INTERNAL;
}

std::string MessageOf(const py::object& value) {
  std::string message;
  try {
    message = py::str(value).cast<std::string>();
  } catch (const py::error_already_set&) {
  }
  if (message.empty()) {
    try {
      message = py::str(py::type::handle_of(value).attr("__name__")).cast<std::string>();
    } catch (const py::error_already_set&) {
      message = "unprintable Python exception";
    }
  }
  return message;
}

// With PJRT_TT_TRACEBACK=1 the runtime's traceback goes to stderr: the PJRT error
// carries only the message, which is rarely enough to debug a runtime bug.
void MaybePrintTraceback(const py::error_already_set& e) {
  static const bool enabled = std::getenv("PJRT_TT_TRACEBACK") != nullptr;
  if (!enabled) return;
  try {
    py::module_::import("traceback").attr("print_exception")(e.value());
  } catch (const py::error_already_set&) {
  }
}

}  // namespace

Status StatusFromPython(const py::error_already_set& e) {
  MaybePrintTraceback(e);
  return Status(CodeOf(e.value()), MessageOf(e.value()), /*from_python=*/true);
}

py::module_ Bridge() {
  // Imported once and kept for the life of the process (never released: the
  // interpreter owns it in sys.modules anyway).
  static std::atomic<PyObject*> cached{nullptr};
  if (PyObject* module = cached.load()) return py::reinterpret_borrow<py::module_>(module);
  py::module_ module = py::module_::import("pjrt_tt.runtime.bridge");
  PyObject* expected = nullptr;
  if (cached.compare_exchange_strong(expected, module.ptr())) module.inc_ref();
  return module;
}

std::unique_ptr<NamedValues> NamedValues::FromDict(py::handle dict, const char* what,
                                                   bool device_attributes) {
  auto out = std::make_unique<NamedValues>();
  for (auto item : py::cast<py::dict>(dict)) {
    const std::string& name = out->strings_.emplace_back(py::cast<std::string>(item.first));
    py::object value = py::reinterpret_borrow<py::object>(item.second);
    if (device_attributes && py::isinstance<py::bool_>(value)) {
      value = py::int_(value.cast<bool>() ? 1 : 0);
    } else if (device_attributes && py::isinstance<py::float_>(value)) {
      value = py::str(value);
    }
    PJRT_NamedValue nv{};
    nv.struct_size = PJRT_NamedValue_STRUCT_SIZE;
    nv.name = name.data();
    nv.name_size = name.size();
    nv.value_size = 1;
    if (py::isinstance<py::bool_>(value)) {  // before int: bool is an int in Python
      nv.type = PJRT_NamedValue_kBool;
      nv.bool_value = value.cast<bool>();
    } else if (py::isinstance<py::int_>(value)) {
      nv.type = PJRT_NamedValue_kInt64;
      nv.int64_value = value.cast<int64_t>();
    } else if (py::isinstance<py::float_>(value)) {
      nv.type = PJRT_NamedValue_kFloat;
      nv.float_value = value.cast<float>();
    } else if (py::isinstance<py::str>(value)) {
      const std::string& s = out->strings_.emplace_back(value.cast<std::string>());
      nv.type = PJRT_NamedValue_kString;
      nv.string_value = s.data();
      nv.value_size = s.size();
    } else if (py::isinstance<py::list>(value) || py::isinstance<py::tuple>(value)) {
      const std::vector<int64_t>& list = out->lists_.emplace_back(ToInt64Vector(value));
      nv.type = PJRT_NamedValue_kInt64List;
      nv.int64_array_value = list.data();
      nv.value_size = list.size();
    } else {
      Fail(PJRT_Error_Code_INVALID_ARGUMENT,
           std::string(what) + " '" + name + "' has unsupported type " +
               py::str(py::type::handle_of(value).attr("__name__")).cast<std::string>());
    }
    out->values_.push_back(nv);
  }
  return out;
}

py::dict NamedValuesToDict(const PJRT_NamedValue* values, size_t count) {
  py::dict dict;
  for (size_t i = 0; i < count; ++i) {
    const PJRT_NamedValue& nv = values[i];
    py::str name(nv.name, nv.name_size);
    switch (nv.type) {
      case PJRT_NamedValue_kString:
        dict[name] = py::str(nv.string_value, nv.value_size);
        break;
      case PJRT_NamedValue_kInt64:
        dict[name] = py::int_(nv.int64_value);
        break;
      case PJRT_NamedValue_kInt64List: {
        py::list list;
        for (size_t j = 0; j < nv.value_size; ++j) list.append(py::int_(nv.int64_array_value[j]));
        dict[name] = list;
        break;
      }
      case PJRT_NamedValue_kFloat:
        dict[name] = py::float_(nv.float_value);
        break;
      case PJRT_NamedValue_kBool:
        dict[name] = py::bool_(nv.bool_value);
        break;
      default:
        Fail(PJRT_Error_Code_INVALID_ARGUMENT,
             "option '" + std::string(nv.name, nv.name_size) + "' has unknown value type " +
                 std::to_string(static_cast<int>(nv.type)));
    }
  }
  return dict;
}

std::vector<int64_t> ToInt64Vector(py::handle sequence) {
  std::vector<int64_t> out;
  for (py::handle item : py::iter(sequence)) out.push_back(item.cast<int64_t>());
  return out;
}

}  // namespace pjrt_tt
