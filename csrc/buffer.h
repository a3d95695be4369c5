// Buffers: one C handle per Python Buffer. Shape, element type, device and memory
// never change, so they are read once when the handle is made and served from here.
// An output of an execution queued for the Python runner exists before its Python
// Buffer does: `ready` completes when the runner has set `py` (or failed).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "bridge.h"
#include "event.h"

struct PJRT_Buffer {
  PJRT_Client* client = nullptr;
  pjrt_tt::PyRef py;
  PJRT_Buffer_Type element_type = PJRT_Buffer_Type_INVALID;  // passed through, never interpreted
  std::vector<int64_t> dims;
  std::vector<int64_t> minor_to_major;  // dense row-major: n-1, ..., 0
  PJRT_Device* device = nullptr;
  PJRT_Memory* memory = nullptr;
  std::shared_ptr<pjrt_tt::Completion> ready;  // null: `py` was set at creation
  // Kept here, not asked of Python: torch_xla asks while it holds its device lock,
  // where waiting for the GIL (or the runner) can deadlock. Set by Delete and by
  // executions that donate the buffer.
  std::atomic<bool> deleted{false};
};

namespace pjrt_tt {

// A new handle for a Python Buffer of `client` (GIL held).
std::unique_ptr<PJRT_Buffer> WrapBuffer(PJRT_Client* client, py::object py_buffer);

// The Python Buffer behind `buffer` (GIL held, runner queue drained, as WithPython
// does); a queued execution that failed to make it raises its error here.
py::handle PyOf(const PJRT_Buffer* buffer);

}  // namespace pjrt_tt
