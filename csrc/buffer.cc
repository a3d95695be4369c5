#include "buffer.h"

#include <optional>

#include "client.h"
#include "event.h"

namespace pjrt_tt {

std::unique_ptr<PJRT_Buffer> WrapBuffer(PJRT_Client* client, py::object py_buffer) {
  auto buffer = std::make_unique<PJRT_Buffer>();
  buffer->client = client;
  buffer->element_type = static_cast<PJRT_Buffer_Type>(py::cast<int>(py_buffer.attr("element_type")));
  buffer->dims = ToInt64Vector(py_buffer.attr("dims"));
  for (int64_t i = static_cast<int64_t>(buffer->dims.size()) - 1; i >= 0; --i)
    buffer->minor_to_major.push_back(i);
  buffer->device = client->DeviceOf(py_buffer.attr("device"));
  buffer->memory = client->MemoryOf(py_buffer.attr("memory"));
  buffer->py = PyRef(std::move(py_buffer));
  return buffer;
}

py::handle PyOf(const PJRT_Buffer* buffer) {
  if (buffer->ready && buffer->ready->IsDone() && buffer->ready->error()) throw *buffer->ready->error();
  if (!buffer->py.get()) Fail(PJRT_Error_Code_INTERNAL, "the buffer's contents were never computed");
  return buffer->py.get();
}

namespace {

// Whether `layout` is dense row-major for `dims`, the only layout the runtime
// speaks. Checking a strides layout needs the element size, taken from the dense
// byte size when known (`dense_bytes`); the shim never decodes element types.
bool IsDenseRowMajor(const PJRT_Buffer_MemoryLayout* layout, const std::vector<int64_t>& dims,
                     std::optional<int64_t> dense_bytes) {
  const size_t n = dims.size();
  if (layout->type == PJRT_Buffer_MemoryLayout_Type_Tiled) {
    const PJRT_Buffer_MemoryLayout_Tiled& tiled = layout->tiled;
    if (tiled.num_tiles != 0 || tiled.minor_to_major_size != n) return false;
    for (size_t i = 0; i < n; ++i)
      if (tiled.minor_to_major[i] != static_cast<int64_t>(n - 1 - i)) return false;
    return true;
  }
  if (layout->type == PJRT_Buffer_MemoryLayout_Type_Strides) {
    const PJRT_Buffer_MemoryLayout_Strides& strides = layout->strides;
    if (strides.num_byte_strides != n) return false;
    int64_t elements = 1;
    for (int64_t d : dims) elements *= d;
    if (elements == 0 || n == 0) return true;  // nothing to lay out
    if (!dense_bytes || *dense_bytes % elements != 0) return false;
    int64_t expected = *dense_bytes / elements;
    for (size_t i = n; i-- > 0;) {
      if (dims[i] != 1 && strides.byte_strides[i] != expected) return false;
      expected *= dims[i];
    }
    return true;
  }
  return false;
}

// The caller's shape, checked where it enters: the runtime reads host memory through
// it, so a negative, overflowing or inconsistent shape must never get that far.
constexpr size_t kMaxHostRank = 64;

void CheckHostShape(const std::vector<int64_t>& dims, const int64_t* strides, size_t num_strides,
                    const void* data) {
  int64_t elements = 1, extent = 16;  // extent: the bytes of the nonzero dims at 16 B per element
  for (size_t i = 0; i < dims.size(); ++i) {
    if (dims[i] < 0)
      Fail(PJRT_Error_Code_INVALID_ARGUMENT, "dimension " + std::to_string(i) + " of the host buffer is " +
                                                 std::to_string(dims[i]) + "; dimensions must be >= 0");
    if (dims[i] != 0 && __builtin_mul_overflow(extent, dims[i], &extent))
      Fail(PJRT_Error_Code_INVALID_ARGUMENT, "the host buffer's dimensions overflow 64 bits");
    elements *= dims[i];  // cannot overflow: |elements| <= extent
  }
  if (num_strides != 0 && num_strides != dims.size())
    Fail(PJRT_Error_Code_INVALID_ARGUMENT, "num_byte_strides is " + std::to_string(num_strides) +
                                               " for a host buffer of " + std::to_string(dims.size()) + " dims");
  if (elements > 0 && data == nullptr)
    Fail(PJRT_Error_Code_INVALID_ARGUMENT, "data is null for a host buffer of " + std::to_string(elements) +
                                               " elements");
}

PJRT_Error* BufferFromHostBuffer(PJRT_Client_BufferFromHostBuffer_Args* args) {
  return Guard("PJRT_Client_BufferFromHostBuffer", [&] {
    PJRT_TT_REQUIRE_OUT(args, buffer);
    PJRT_Client* client = PJRT_TT_ARG(args, client);
    const void* data = PJRT_TT_IN(args, data, nullptr);
    int type = PJRT_TT_IN(args, type, PJRT_Buffer_Type_INVALID);
    const int64_t* dims_ptr = PJRT_TT_IN(args, dims, nullptr);
    size_t num_dims = dims_ptr ? PJRT_TT_IN(args, num_dims, 0) : 0;
    const int64_t* strides = PJRT_TT_IN(args, byte_strides, nullptr);
    size_t num_strides = strides ? PJRT_TT_IN(args, num_byte_strides, 0) : 0;
    if (num_dims > kMaxHostRank || num_strides > kMaxHostRank)  // before reading that many
      Fail(PJRT_Error_Code_INVALID_ARGUMENT, "a host buffer of " + std::to_string(num_dims) + " dims and " +
                                                 std::to_string(num_strides) + " byte strides (at most " +
                                                 std::to_string(kMaxHostRank) + ")");
    std::vector<int64_t> dims(dims_ptr, dims_ptr + num_dims);
    CheckHostShape(dims, strides, num_strides, data);
    PJRT_Device* device = PJRT_TT_IN(args, device, nullptr);
    PJRT_Memory* memory = PJRT_TT_IN(args, memory, nullptr);
    const PJRT_Buffer_MemoryLayout* device_layout = PJRT_TT_IN(args, device_layout, nullptr);
    if (device_layout && !IsDenseRowMajor(device_layout, dims, std::nullopt))
      Fail(PJRT_Error_Code_UNIMPLEMENTED, "only dense row-major device layouts are supported");
    if (!device && !memory) Fail(PJRT_Error_Code_INVALID_ARGUMENT, "neither device nor memory is set");
    if (!device && memory->devices.empty())
      Fail(PJRT_Error_Code_INVALID_ARGUMENT, memory->to_string + " is addressable by no device");
    if (!device) device = memory->devices.front();

    // Every host-buffer semantics is honoured by copying: Python copies the data
    // before it returns, so the host buffer is free as soon as we return.
    std::unique_ptr<PJRT_Buffer> buffer = WithPython([&] {
      py::object py_strides = py::none();
      if (num_strides > 0) {
        py::tuple t(num_strides);
        for (size_t i = 0; i < num_strides; ++i) t[i] = py::int_(strides[i]);
        py_strides = t;
      }
      py::tuple py_dims(dims.size());
      for (size_t i = 0; i < dims.size(); ++i) py_dims[i] = py::int_(dims[i]);
      py::handle py_memory = memory ? memory->py.get() : py::handle(Py_None);
      py::object py_buffer = client->py.get().attr("buffer_from_host")(
          py::int_(reinterpret_cast<uintptr_t>(data)), type, py_dims, py_strides, device->py.get(), py_memory);
      return WrapBuffer(client, std::move(py_buffer));
    });
    PJRT_TT_OUT(args, done_with_host_buffer, ReadyEvent());
    args->buffer = buffer.release();
  });
}

PJRT_Error* BufferDestroy(PJRT_Buffer_Destroy_Args* args) {
  // Drops our reference only. The runtime frees device memory when the last
  // reference to the Python Buffer goes, which stays correct even if it hands the
  // same Buffer object out twice (e.g. an output aliasing an input).
  return Guard("PJRT_Buffer_Destroy", [&] { DeleteHandle(PJRT_TT_IN(args, buffer, nullptr)); });
}

PJRT_Error* BufferElementType(PJRT_Buffer_ElementType_Args* args) {
  return Guard("PJRT_Buffer_ElementType", [&] {
    PJRT_TT_OUT(args, type, PJRT_TT_ARG(args, buffer)->element_type);
  });
}

PJRT_Error* BufferDimensions(PJRT_Buffer_Dimensions_Args* args) {
  return Guard("PJRT_Buffer_Dimensions", [&] {
    PJRT_Buffer* buffer = PJRT_TT_ARG(args, buffer);
    PJRT_TT_OUT(args, dims, buffer->dims.data());
    PJRT_TT_OUT(args, num_dims, buffer->dims.size());
  });
}

PJRT_Error* BufferUnpaddedDimensions(PJRT_Buffer_UnpaddedDimensions_Args* args) {
  return Guard("PJRT_Buffer_UnpaddedDimensions", [&] {
    PJRT_Buffer* buffer = PJRT_TT_ARG(args, buffer);  // shapes are static: unpadded == padded
    PJRT_TT_OUT(args, unpadded_dims, buffer->dims.data());
    PJRT_TT_OUT(args, num_dims, buffer->dims.size());
  });
}

PJRT_Error* BufferDynamicDimensionIndices(PJRT_Buffer_DynamicDimensionIndices_Args* args) {
  return Guard("PJRT_Buffer_DynamicDimensionIndices", [&] {
    PJRT_TT_ARG(args, buffer);
    PJRT_TT_OUT(args, dynamic_dim_indices, nullptr);
    PJRT_TT_OUT(args, num_dynamic_dims, 0);
  });
}

PJRT_Error* BufferGetMemoryLayout(PJRT_Buffer_GetMemoryLayout_Args* args) {
  return Guard("PJRT_Buffer_GetMemoryLayout", [&] {
    PJRT_Buffer* buffer = PJRT_TT_ARG(args, buffer);
    if (!PJRT_TT_FITS(args, layout)) return;
    PJRT_Buffer_MemoryLayout layout{};
    layout.struct_size = PJRT_Buffer_MemoryLayout_STRUCT_SIZE;
    layout.type = PJRT_Buffer_MemoryLayout_Type_Tiled;
    layout.tiled.struct_size = PJRT_Buffer_MemoryLayout_Tiled_STRUCT_SIZE;
    layout.tiled.minor_to_major = buffer->minor_to_major.data();
    layout.tiled.minor_to_major_size = buffer->minor_to_major.size();
    layout.tiled.num_tiles = 0;  // no tiling visible to the framework
    args->layout = layout;
  });
}

PJRT_Error* BufferOnDeviceSizeInBytes(PJRT_Buffer_OnDeviceSizeInBytes_Args* args) {
  return Guard("PJRT_Buffer_OnDeviceSizeInBytes", [&] {
    PJRT_Buffer* buffer = PJRT_TT_ARG(args, buffer);
    size_t size = WithPython([&] { return py::cast<size_t>(PyOf(buffer).attr("on_device_size")); });
    PJRT_TT_OUT(args, on_device_size_in_bytes, size);
  });
}

PJRT_Error* BufferUnsafePointer(PJRT_Buffer_UnsafePointer_Args* args) {
  return Guard("PJRT_Buffer_UnsafePointer", [&] {
    PJRT_Buffer* buffer = PJRT_TT_ARG(args, buffer);
    uintptr_t address = WithPython([&] { return py::cast<uintptr_t>(PyOf(buffer).attr("unsafe_pointer")); });
    PJRT_TT_OUT(args, buffer_pointer, address);
  });
}

PJRT_Error* BufferDevice(PJRT_Buffer_Device_Args* args) {
  return Guard("PJRT_Buffer_Device", [&] { PJRT_TT_OUT(args, device, PJRT_TT_ARG(args, buffer)->device); });
}

PJRT_Error* BufferMemory(PJRT_Buffer_Memory_Args* args) {
  return Guard("PJRT_Buffer_Memory", [&] { PJRT_TT_OUT(args, memory, PJRT_TT_ARG(args, buffer)->memory); });
}

PJRT_Error* BufferDelete(PJRT_Buffer_Delete_Args* args) {
  return Guard("PJRT_Buffer_Delete", [&] {
    PJRT_Buffer* buffer = PJRT_TT_ARG(args, buffer);
    WithPython([&] { PyOf(buffer).attr("delete")(); });
    buffer->deleted = true;
  });
}

bool IsDeleted(PJRT_Buffer* buffer) { return buffer->deleted; }

PJRT_Error* BufferIsDeleted(PJRT_Buffer_IsDeleted_Args* args) {
  return Guard("PJRT_Buffer_IsDeleted", [&] {
    PJRT_TT_OUT(args, is_deleted, IsDeleted(PJRT_TT_ARG(args, buffer)));
  });
}

PJRT_Error* BufferCopyToDevice(PJRT_Buffer_CopyToDevice_Args* args) {
  return Guard("PJRT_Buffer_CopyToDevice", [&] {
    PJRT_TT_REQUIRE_OUT(args, dst_buffer);
    PJRT_Buffer* buffer = PJRT_TT_ARG(args, buffer);
    PJRT_Device* device = PJRT_TT_ARG(args, dst_device);
    args->dst_buffer = WithPython([&] {
      return WrapBuffer(buffer->client, PyOf(buffer).attr("copy_to_device")(device->py.get()));
    }).release();
  });
}

PJRT_Error* BufferCopyToMemory(PJRT_Buffer_CopyToMemory_Args* args) {
  return Guard("PJRT_Buffer_CopyToMemory", [&] {
    PJRT_TT_REQUIRE_OUT(args, dst_buffer);
    PJRT_Buffer* buffer = PJRT_TT_ARG(args, buffer);
    PJRT_Memory* memory = PJRT_TT_ARG(args, dst_memory);
    args->dst_buffer = WithPython([&] {
      return WrapBuffer(buffer->client, PyOf(buffer).attr("copy_to_memory")(memory->py.get()));
    }).release();
  });
}

// Two-phase: with dst == nullptr only the needed size is reported.
PJRT_Error* BufferToHostBuffer(PJRT_Buffer_ToHostBuffer_Args* args) {
  return Guard("PJRT_Buffer_ToHostBuffer", [&] {
    PJRT_Buffer* buffer = PJRT_TT_ARG(args, src);
    const PJRT_Buffer_MemoryLayout* host_layout = PJRT_TT_IN(args, host_layout, nullptr);
    void* dst = PJRT_TT_IN(args, dst, nullptr);
    int64_t needed = WithPython([&] { return py::cast<int64_t>(PyOf(buffer).attr("host_size")()); });
    if (host_layout && !IsDenseRowMajor(host_layout, buffer->dims, needed))
      Fail(PJRT_Error_Code_UNIMPLEMENTED, "only dense row-major host layouts are supported");
    if (dst == nullptr) {
      PJRT_TT_OUT(args, dst_size, static_cast<size_t>(needed));
      return;
    }
    size_t capacity = PJRT_TT_IN(args, dst_size, 0);
    if (capacity < static_cast<size_t>(needed)) {
      Fail(PJRT_Error_Code_INVALID_ARGUMENT, "dst_size " + std::to_string(capacity) + " is smaller than the " +
                                                 std::to_string(needed) + " bytes needed");
    }
    WithPython([&] {
      PyOf(buffer).attr("to_host")(py::int_(reinterpret_cast<uintptr_t>(dst)), needed);
    });
    PJRT_TT_OUT(args, event, ReadyEvent());  // the copy is already complete
  });
}

PJRT_Error* BufferIsOnCpu(PJRT_Buffer_IsOnCpu_Args* args) {
  return Guard("PJRT_Buffer_IsOnCpu", [&] {
    PJRT_TT_ARG(args, buffer);
    PJRT_TT_OUT(args, is_on_cpu, false);
  });
}

// Data is ready as soon as a buffer exists, or when the execution queued to make it
// has run; a deleted or donated buffer gets an
// error event, as the header asks.
PJRT_Error* BufferReadyEvent(PJRT_Buffer_ReadyEvent_Args* args) {
  return Guard("PJRT_Buffer_ReadyEvent", [&] {
    PJRT_TT_REQUIRE_OUT(args, event);
    PJRT_Buffer* buffer = PJRT_TT_ARG(args, buffer);
    if (buffer->ready && !buffer->ready->IsDone()) {  // a queued execution's output
      args->event = EventOf(buffer->ready);
      return;
    }
    args->event = IsDeleted(buffer) ? FailedEvent(Status(PJRT_Error_Code_FAILED_PRECONDITION,
                                                         "the buffer has been deleted or donated"))
                                    : ReadyEvent();
  });
}

}  // namespace

void BindBuffer(PJRT_Api& api) {
  api.PJRT_Client_BufferFromHostBuffer = BufferFromHostBuffer;
  api.PJRT_Buffer_Destroy = BufferDestroy;
  api.PJRT_Buffer_ElementType = BufferElementType;
  api.PJRT_Buffer_Dimensions = BufferDimensions;
  api.PJRT_Buffer_UnpaddedDimensions = BufferUnpaddedDimensions;
  api.PJRT_Buffer_DynamicDimensionIndices = BufferDynamicDimensionIndices;
  api.PJRT_Buffer_GetMemoryLayout = BufferGetMemoryLayout;
  api.PJRT_Buffer_OnDeviceSizeInBytes = BufferOnDeviceSizeInBytes;
  api.PJRT_Buffer_UnsafePointer = BufferUnsafePointer;
  api.PJRT_Buffer_Device = BufferDevice;
  api.PJRT_Buffer_Memory = BufferMemory;
  api.PJRT_Buffer_Delete = BufferDelete;
  api.PJRT_Buffer_IsDeleted = BufferIsDeleted;
  api.PJRT_Buffer_CopyToDevice = BufferCopyToDevice;
  api.PJRT_Buffer_CopyToMemory = BufferCopyToMemory;
  api.PJRT_Buffer_ToHostBuffer = BufferToHostBuffer;
  api.PJRT_Buffer_IsOnCpu = BufferIsOnCpu;
  api.PJRT_Buffer_ReadyEvent = BufferReadyEvent;
}

}  // namespace pjrt_tt
