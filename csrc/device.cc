#include "client.h"
#include "device.h"

namespace pjrt_tt {

void CreateDevicesAndMemories(PJRT_Client* client, py::handle py_client) {
  // First pass: one handle per Python object, in `index` order, with its scalar
  // and string attributes read once.
  for (py::handle py_device : py::iter(py_client.attr("devices"))) {
    auto device = std::make_unique<PJRT_Device>();
    device->client = client;
    device->py = PyRef(py::reinterpret_borrow<py::object>(py_device));
    PJRT_DeviceDescription& d = device->description;
    d.id = py::cast<int>(py_device.attr("id"));
    d.process_index = py::cast<int>(py_device.attr("process_index"));
    d.kind = py::cast<std::string>(py_device.attr("kind"));
    d.debug_string = py::cast<std::string>(py_device.attr("debug_string"));
    d.to_string = py::cast<std::string>(py_device.attr("to_string"));
    d.attributes = NamedValues::FromDict(py_device.attr("attributes"), "device attribute",
                                          /*device_attributes=*/true);
    device->is_addressable = py::cast<bool>(py_device.attr("is_addressable"));
    device->local_hardware_id = py::cast<int>(py_device.attr("local_hardware_id"));
    client->devices.push_back(device.get());
    client->device_storage.push_back(std::move(device));
  }
  for (py::handle py_memory : py::iter(py_client.attr("memories"))) {
    auto memory = std::make_unique<PJRT_Memory>();
    memory->client = client;
    memory->py = PyRef(py::reinterpret_borrow<py::object>(py_memory));
    memory->id = py::cast<int>(py_memory.attr("id"));
    memory->kind = py::cast<std::string>(py_memory.attr("kind"));
    memory->kind_id = py::cast<int>(py_memory.attr("kind_id"));
    memory->debug_string = py::cast<std::string>(py_memory.attr("debug_string"));
    memory->to_string = py::cast<std::string>(py_memory.attr("to_string"));
    client->memories.push_back(memory.get());
    client->memory_storage.push_back(std::move(memory));
  }
  // Second pass: the links between them, now that every handle exists. The shim
  // relies on `index` being the position in these lists; check it once here.
  for (size_t i = 0; i < client->devices.size(); ++i) {
    if (client->DeviceOf(client->devices[i]->py.get()) != client->devices[i])
      Fail(PJRT_Error_Code_INTERNAL, "client.devices[" + std::to_string(i) + "].index != " + std::to_string(i));
  }
  for (size_t i = 0; i < client->memories.size(); ++i) {
    PJRT_Memory* memory = client->memories[i];
    if (client->MemoryOf(memory->py.get()) != memory)
      Fail(PJRT_Error_Code_INTERNAL, "client.memories[" + std::to_string(i) + "].index != " + std::to_string(i));
    memory->devices = client->DevicesOf(memory->py.get().attr("devices"));
  }
  client->addressable_devices = client->DevicesOf(py_client.attr("addressable_devices"));
  for (PJRT_Device* device : client->addressable_devices) {
    // Only addressable devices have memories the client knows (client.memories).
    py::handle py_device = device->py.get();
    for (py::handle m : py::iter(py_device.attr("memories"))) device->memories.push_back(client->MemoryOf(m));
    py::object default_memory = py_device.attr("default_memory");
    if (!default_memory.is_none()) device->default_memory = client->MemoryOf(default_memory);
  }
}

namespace {

// ----------------------------- DeviceDescription -----------------------------

PJRT_Error* DescriptionId(PJRT_DeviceDescription_Id_Args* args) {
  return Guard("PJRT_DeviceDescription_Id", [&] {
    PJRT_TT_OUT(args, id, PJRT_TT_ARG(args, device_description)->id);
  });
}

PJRT_Error* DescriptionProcessIndex(PJRT_DeviceDescription_ProcessIndex_Args* args) {
  return Guard("PJRT_DeviceDescription_ProcessIndex", [&] {
    PJRT_TT_OUT(args, process_index, PJRT_TT_ARG(args, device_description)->process_index);
  });
}

PJRT_Error* DescriptionAttributes(PJRT_DeviceDescription_Attributes_Args* args) {
  return Guard("PJRT_DeviceDescription_Attributes", [&] {
    const NamedValues& attributes = *PJRT_TT_ARG(args, device_description)->attributes;
    PJRT_TT_OUT(args, attributes, attributes.data());
    PJRT_TT_OUT(args, num_attributes, attributes.size());
  });
}

PJRT_Error* DescriptionKind(PJRT_DeviceDescription_Kind_Args* args) {
  return Guard("PJRT_DeviceDescription_Kind", [&] {
    const std::string& s = PJRT_TT_ARG(args, device_description)->kind;
    PJRT_TT_OUT(args, device_kind, s.data());
    PJRT_TT_OUT(args, device_kind_size, s.size());
  });
}

PJRT_Error* DescriptionDebugString(PJRT_DeviceDescription_DebugString_Args* args) {
  return Guard("PJRT_DeviceDescription_DebugString", [&] {
    const std::string& s = PJRT_TT_ARG(args, device_description)->debug_string;
    PJRT_TT_OUT(args, debug_string, s.data());
    PJRT_TT_OUT(args, debug_string_size, s.size());
  });
}

PJRT_Error* DescriptionToString(PJRT_DeviceDescription_ToString_Args* args) {
  return Guard("PJRT_DeviceDescription_ToString", [&] {
    const std::string& s = PJRT_TT_ARG(args, device_description)->to_string;
    PJRT_TT_OUT(args, to_string, s.data());
    PJRT_TT_OUT(args, to_string_size, s.size());
  });
}

// ---------------------------------- Device -----------------------------------

PJRT_Error* DeviceGetDescription(PJRT_Device_GetDescription_Args* args) {
  return Guard("PJRT_Device_GetDescription", [&] {
    PJRT_TT_OUT(args, device_description, &PJRT_TT_ARG(args, device)->description);
  });
}

PJRT_Error* DeviceIsAddressable(PJRT_Device_IsAddressable_Args* args) {
  return Guard("PJRT_Device_IsAddressable", [&] {
    PJRT_TT_OUT(args, is_addressable, PJRT_TT_ARG(args, device)->is_addressable);
  });
}

PJRT_Error* DeviceLocalHardwareId(PJRT_Device_LocalHardwareId_Args* args) {
  return Guard("PJRT_Device_LocalHardwareId", [&] {
    PJRT_TT_OUT(args, local_hardware_id, PJRT_TT_ARG(args, device)->local_hardware_id);
  });
}

PJRT_Error* DeviceAddressableMemories(PJRT_Device_AddressableMemories_Args* args) {
  return Guard("PJRT_Device_AddressableMemories", [&] {
    PJRT_Device* device = PJRT_TT_ARG(args, device);
    PJRT_TT_OUT(args, memories, device->memories.data());
    PJRT_TT_OUT(args, num_memories, device->memories.size());
  });
}

PJRT_Error* DeviceDefaultMemory(PJRT_Device_DefaultMemory_Args* args) {
  return Guard("PJRT_Device_DefaultMemory", [&] {
    PJRT_Device* device = PJRT_TT_ARG(args, device);
    if (device->default_memory == nullptr)
      Fail(PJRT_Error_Code_NOT_FOUND, device->description.to_string + " has no default memory");
    PJRT_TT_OUT(args, memory, device->default_memory);
  });
}

// Every statistic except bytes_in_use is optional: *_is_set says whether the
// runtime reported it.
PJRT_Error* DeviceMemoryStats(PJRT_Device_MemoryStats_Args* args) {
  return Guard("PJRT_Device_MemoryStats", [&] {
    PJRT_Device* device = PJRT_TT_ARG(args, device);
    std::vector<std::pair<std::string, int64_t>> stats = WithPython([&] {
      std::vector<std::pair<std::string, int64_t>> out;
      py::dict d = py::cast<py::dict>(device->py.get().attr("memory_stats")());
      for (auto item : d) out.emplace_back(py::cast<std::string>(item.first), py::cast<int64_t>(item.second));
      return out;
    });
    auto find = [&](const char* key) -> const int64_t* {
      for (const auto& [name, value] : stats)
        if (name == key) return &value;
      return nullptr;
    };
    const int64_t* in_use = find("bytes_in_use");
    PJRT_TT_OUT(args, bytes_in_use, in_use ? *in_use : 0);
#define PJRT_TT_STAT(name)                          \
  if (const int64_t* v = find(#name)) {             \
    PJRT_TT_OUT(args, name, *v);                    \
    PJRT_TT_OUT(args, name##_is_set, true);         \
  } else {                                          \
    PJRT_TT_OUT(args, name##_is_set, false);        \
  }
    PJRT_TT_STAT(peak_bytes_in_use)
    PJRT_TT_STAT(num_allocs)
    PJRT_TT_STAT(largest_alloc_size)
    PJRT_TT_STAT(bytes_limit)
    PJRT_TT_STAT(bytes_reserved)
    PJRT_TT_STAT(peak_bytes_reserved)
    PJRT_TT_STAT(bytes_reservable_limit)
    PJRT_TT_STAT(largest_free_block_bytes)
    PJRT_TT_STAT(pool_bytes)
    PJRT_TT_STAT(peak_pool_bytes)
#undef PJRT_TT_STAT
  });
}

// ---------------------------------- Memory -----------------------------------

PJRT_Error* MemoryId(PJRT_Memory_Id_Args* args) {
  return Guard("PJRT_Memory_Id", [&] { PJRT_TT_OUT(args, id, PJRT_TT_ARG(args, memory)->id); });
}

PJRT_Error* MemoryKind(PJRT_Memory_Kind_Args* args) {
  return Guard("PJRT_Memory_Kind", [&] {
    const std::string& s = PJRT_TT_ARG(args, memory)->kind;
    PJRT_TT_OUT(args, kind, s.data());
    PJRT_TT_OUT(args, kind_size, s.size());
  });
}

PJRT_Error* MemoryKindId(PJRT_Memory_Kind_Id_Args* args) {
  return Guard("PJRT_Memory_Kind_Id", [&] {
    PJRT_TT_OUT(args, kind_id, PJRT_TT_ARG(args, memory)->kind_id);
  });
}

PJRT_Error* MemoryDebugString(PJRT_Memory_DebugString_Args* args) {
  return Guard("PJRT_Memory_DebugString", [&] {
    const std::string& s = PJRT_TT_ARG(args, memory)->debug_string;
    PJRT_TT_OUT(args, debug_string, s.data());
    PJRT_TT_OUT(args, debug_string_size, s.size());
  });
}

PJRT_Error* MemoryToString(PJRT_Memory_ToString_Args* args) {
  return Guard("PJRT_Memory_ToString", [&] {
    const std::string& s = PJRT_TT_ARG(args, memory)->to_string;
    PJRT_TT_OUT(args, to_string, s.data());
    PJRT_TT_OUT(args, to_string_size, s.size());
  });
}

PJRT_Error* MemoryAddressableByDevices(PJRT_Memory_AddressableByDevices_Args* args) {
  return Guard("PJRT_Memory_AddressableByDevices", [&] {
    PJRT_Memory* memory = PJRT_TT_ARG(args, memory);
    PJRT_TT_OUT(args, devices, memory->devices.data());
    PJRT_TT_OUT(args, num_devices, memory->devices.size());
  });
}

}  // namespace

void BindDevice(PJRT_Api& api) {
  api.PJRT_DeviceDescription_Id = DescriptionId;
  api.PJRT_DeviceDescription_ProcessIndex = DescriptionProcessIndex;
  api.PJRT_DeviceDescription_Attributes = DescriptionAttributes;
  api.PJRT_DeviceDescription_Kind = DescriptionKind;
  api.PJRT_DeviceDescription_DebugString = DescriptionDebugString;
  api.PJRT_DeviceDescription_ToString = DescriptionToString;
  api.PJRT_Device_GetDescription = DeviceGetDescription;
  api.PJRT_Device_IsAddressable = DeviceIsAddressable;
  api.PJRT_Device_LocalHardwareId = DeviceLocalHardwareId;
  api.PJRT_Device_AddressableMemories = DeviceAddressableMemories;
  api.PJRT_Device_DefaultMemory = DeviceDefaultMemory;
  api.PJRT_Device_MemoryStats = DeviceMemoryStats;
  api.PJRT_Memory_Id = MemoryId;
  api.PJRT_Memory_Kind = MemoryKind;
  api.PJRT_Memory_Kind_Id = MemoryKindId;
  api.PJRT_Memory_DebugString = MemoryDebugString;
  api.PJRT_Memory_ToString = MemoryToString;
  api.PJRT_Memory_AddressableByDevices = MemoryAddressableByDevices;
}

}  // namespace pjrt_tt
