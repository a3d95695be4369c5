// Buffers: one C handle per Python Buffer. Shape, element type, device and memory
// never change, so they are read once when the handle is made and served from here.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "bridge.h"

struct PJRT_Buffer {
  PJRT_Client* client = nullptr;
  pjrt_tt::PyRef py;
  PJRT_Buffer_Type element_type = PJRT_Buffer_Type_INVALID;  // passed through, never interpreted
  std::vector<int64_t> dims;
  std::vector<int64_t> minor_to_major;  // dense row-major: n-1, ..., 0
  PJRT_Device* device = nullptr;
  PJRT_Memory* memory = nullptr;
};

namespace pjrt_tt {

// A new handle for a Python Buffer of `client` (GIL held).
std::unique_ptr<PJRT_Buffer> WrapBuffer(PJRT_Client* client, py::object py_buffer);

}  // namespace pjrt_tt
