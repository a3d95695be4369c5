#include "client.h"

#include <cstdio>

namespace pjrt_tt {
namespace {

template <typename Handle>
Handle* ByIndex(const std::vector<std::unique_ptr<Handle>>& storage, py::handle object,
                const char* kind) {
  if (object.is_none()) Fail(PJRT_Error_Code_INTERNAL, std::string("the runtime returned None for a ") + kind);
  long index = py::cast<long>(object.attr("index"));
  if (index < 0 || static_cast<size_t>(index) >= storage.size()) {
    Fail(PJRT_Error_Code_INTERNAL, std::string("the runtime returned a ") + kind + " with index " +
                                       std::to_string(index) + ", but the client has " +
                                       std::to_string(storage.size()));
  }
  return storage[index].get();
}

// ------------------------- The framework's key-value store ---------------------------
// In a multi-process run (jax.distributed, torch_xla's coordinator) the framework hands
// PJRT_Client_Create a key-value store shared by every process; the Python client agrees
// on the topology through it (pjrt_tt/runtime/processes.py). The callbacks are called
// without the GIL: they block on the framework's coordination service.

// Our PJRT_Error for a callback to return; the args take a pointer to the function pointer.
PJRT_Error* CallbackError(PJRT_Error_Code code, const char* message, size_t message_size) {
  return new PJRT_Error{code, std::string(message ? message : "", message ? message_size : 0)};
}
PJRT_CallbackError callback_error = CallbackError;

void RaiseCallbackError(PJRT_Error* error, const std::string& what) {
  std::unique_ptr<PJRT_Error> owned(error);
  Fail(owned->code, what + ": " + owned->message);
}

struct KeyValueStore {
  PJRT_KeyValueGetCallback get = nullptr;
  void* get_arg = nullptr;
  PJRT_KeyValuePutCallback put = nullptr;
  void* put_arg = nullptr;

  std::string Get(const std::string& key, int timeout_ms) const {
    PJRT_KeyValueGetCallback_Args a{};
    a.struct_size = PJRT_KeyValueGetCallback_Args_STRUCT_SIZE;
    a.key = key.data();
    a.key_size = key.size();
    a.timeout_in_ms = timeout_ms;
    a.callback_error = &callback_error;
    a.user_arg = get_arg;
    PJRT_Error* error = nullptr;
    WithoutGil([&] { error = get(&a); });
    if (error != nullptr) RaiseCallbackError(error, "the framework's key-value store could not get '" + key + "'");
    std::string value(a.value ? a.value : "", a.value ? a.value_size : 0);
    if (a.value != nullptr && a.value_deleter_callback != nullptr) a.value_deleter_callback(a.value);
    return value;
  }

  void Put(const std::string& key, const std::string& value) const {
    PJRT_KeyValuePutCallback_Args a{};
    a.struct_size = PJRT_KeyValuePutCallback_Args_STRUCT_SIZE;
    a.key = key.data();
    a.key_size = key.size();
    a.value = value.data();
    a.value_size = value.size();
    a.callback_error = &callback_error;
    a.user_arg = put_arg;
    PJRT_Error* error = nullptr;
    WithoutGil([&] { error = put(&a); });
    if (error != nullptr) RaiseCallbackError(error, "the framework's key-value store could not put '" + key + "'");
  }
};

// (get, put) as Python callables, or None when the framework gave no store. Only a
// multi-process framework fills the callback fields: jax leaves them uninitialised
// otherwise, so they are read only when the options say there are several processes.
py::object KeyValueStoreOf(const PJRT_Client_Create_Args* args, const py::dict& options) {
  bool several = options.contains("num_nodes") && py::cast<int64_t>(options["num_nodes"]) > 1;
  if (!several || !PJRT_TT_FITS(args, kv_put_user_arg) || args->kv_get_callback == nullptr ||
      args->kv_put_callback == nullptr)
    return py::none();
  auto store = std::make_shared<KeyValueStore>();
  store->get = args->kv_get_callback;
  store->get_arg = args->kv_get_user_arg;
  store->put = args->kv_put_callback;
  store->put_arg = args->kv_put_user_arg;
  py::cpp_function get([store](const std::string& key, int timeout_ms) {
    try {
      return py::bytes(store->Get(key, timeout_ms));
    } catch (const Status& s) {
      throw std::runtime_error(s.message());
    }
  });
  py::cpp_function put([store](const std::string& key, const std::string& value) {
    try {
      store->Put(key, value);
    } catch (const Status& s) {
      throw std::runtime_error(s.message());
    }
  });
  return py::make_tuple(get, put);
}

// The framework's last word on each process, for the Python client to read: a dict task
// id -> PJRT_ProcessState (2 disconnected, 4 error), or None when there is one process.
py::object PeersOf(const std::shared_ptr<PJRT_Client::PeerStates>& peers, const py::object& store) {
  if (store.is_none()) return py::none();
  return py::cpp_function([peers] {
    py::dict out;
    std::lock_guard<std::mutex> lock(peers->mu);
    for (const auto& [task, state] : peers->states) out[py::int_(task)] = state;
    return out;
  });
}

PJRT_Error* ClientCreate(PJRT_Client_Create_Args* args) {
  return Guard("PJRT_Client_Create", [&] {
    PJRT_TT_REQUIRE_OUT(args, client);
    const PJRT_NamedValue* options = PJRT_TT_IN(args, create_options, nullptr);
    size_t num_options = options ? PJRT_TT_IN(args, num_options, 0) : 0;
    args->client = WithPython([&] {
      std::unique_ptr<PJRT_Client, void (*)(PJRT_Client*)> client(new PJRT_Client,
                                                                   DeleteHandle<PJRT_Client>);
      py::dict py_options = NamedValuesToDict(options, num_options);
      py::object store = KeyValueStoreOf(args, py_options);
      py::object py_client = Bridge().attr("create_client")(py_options, store, PeersOf(client->peers, store));
      client->platform_name = py::cast<std::string>(py_client.attr("platform_name"));
      client->platform_version = py::cast<std::string>(py_client.attr("platform_version"));
      client->process_index = py::cast<int>(py_client.attr("process_index"));
      CreateDevicesAndMemories(client.get(), py_client);
      client->py = PyRef(std::move(py_client));
      return client.release();
    });
  });
}

PJRT_Error* ClientDestroy(PJRT_Client_Destroy_Args* args) {
  return Guard("PJRT_Client_Destroy", [&] { DeleteHandle(PJRT_TT_IN(args, client, nullptr)); });
}

PJRT_Error* ClientPlatformName(PJRT_Client_PlatformName_Args* args) {
  return Guard("PJRT_Client_PlatformName", [&] {
    PJRT_Client* client = PJRT_TT_ARG(args, client);
    PJRT_TT_OUT(args, platform_name, client->platform_name.data());
    PJRT_TT_OUT(args, platform_name_size, client->platform_name.size());
  });
}

PJRT_Error* ClientPlatformVersion(PJRT_Client_PlatformVersion_Args* args) {
  return Guard("PJRT_Client_PlatformVersion", [&] {
    PJRT_Client* client = PJRT_TT_ARG(args, client);
    PJRT_TT_OUT(args, platform_version, client->platform_version.data());
    PJRT_TT_OUT(args, platform_version_size, client->platform_version.size());
  });
}

// The framework's view of every process (jax's coordination service, polled from a thread
// of its own, also while the interpreter shuts down). jax aborts the process on any error
// here, so this never fails and never touches Python: it keeps the states and says once on
// stderr when a peer process is disconnected or failed; a collective waiting for that
// peer's data then fails naming it (pjrt_tt/targets/sim/exchange.py).
PJRT_Error* ClientUpdateGlobalProcessInfo(PJRT_Client_UpdateGlobalProcessInfo_Args* args) {
  PJRT_Client* client = args == nullptr ? nullptr : PJRT_TT_IN(args, client, nullptr);
  size_t n = client == nullptr ? 0 : PJRT_TT_IN(args, num_process_infos, 0);
  PJRT_ProcessInfo* infos = n ? PJRT_TT_IN(args, process_infos, nullptr) : nullptr;
  if (infos == nullptr) return nullptr;
  std::lock_guard<std::mutex> lock(client->peers->mu);
  for (size_t i = 0; i < n; ++i) {
    const PJRT_ProcessInfo& p = infos[i];
    int task = PJRT_TT_IN(&p, task_id, -1);
    int state = static_cast<int>(PJRT_TT_IN(&p, state, PJRT_ProcessState_kUnspecified));
    int& known = client->peers->states[task];
    bool gone = state == PJRT_ProcessState_kDisconnected || state == PJRT_ProcessState_kError;
    if (gone && known != state) {
      std::string message;
      if (PJRT_TT_FITS(&p, error_message_size) && p.error_message != nullptr)
        message.assign(p.error_message, p.error_message_size);
      std::fprintf(stderr, "pjrt-tt: process %d of this run is %s%s%s\n", task,
                   state == PJRT_ProcessState_kError ? "in error" : "disconnected", message.empty() ? "" : ": ",
                   message.c_str());
    }
    known = state;
  }
  return nullptr;
}

PJRT_Error* ClientProcessIndex(PJRT_Client_ProcessIndex_Args* args) {
  return Guard("PJRT_Client_ProcessIndex", [&] {
    PJRT_TT_OUT(args, process_index, PJRT_TT_ARG(args, client)->process_index);
  });
}

PJRT_Error* ClientDevices(PJRT_Client_Devices_Args* args) {
  return Guard("PJRT_Client_Devices", [&] {
    PJRT_Client* client = PJRT_TT_ARG(args, client);
    PJRT_TT_OUT(args, devices, client->devices.data());
    PJRT_TT_OUT(args, num_devices, client->devices.size());
  });
}

PJRT_Error* ClientAddressableDevices(PJRT_Client_AddressableDevices_Args* args) {
  return Guard("PJRT_Client_AddressableDevices", [&] {
    PJRT_Client* client = PJRT_TT_ARG(args, client);
    PJRT_TT_OUT(args, addressable_devices, client->addressable_devices.data());
    PJRT_TT_OUT(args, num_addressable_devices, client->addressable_devices.size());
  });
}

PJRT_Error* ClientAddressableMemories(PJRT_Client_AddressableMemories_Args* args) {
  return Guard("PJRT_Client_AddressableMemories", [&] {
    PJRT_Client* client = PJRT_TT_ARG(args, client);
    PJRT_TT_OUT(args, addressable_memories, client->memories.data());
    PJRT_TT_OUT(args, num_addressable_memories, client->memories.size());
  });
}

PJRT_Error* ClientLookupDevice(PJRT_Client_LookupDevice_Args* args) {
  return Guard("PJRT_Client_LookupDevice", [&] {
    PJRT_Client* client = PJRT_TT_ARG(args, client);
    int id = PJRT_TT_IN(args, id, 0);
    PJRT_Device* device = WithPython(
        [&] { return client->DeviceOf(client->py.get().attr("lookup_device")(id)); });
    PJRT_TT_OUT(args, device, device);
  });
}

PJRT_Error* ClientLookupAddressableDevice(PJRT_Client_LookupAddressableDevice_Args* args) {
  return Guard("PJRT_Client_LookupAddressableDevice", [&] {
    PJRT_Client* client = PJRT_TT_ARG(args, client);
    int local_hardware_id = PJRT_TT_IN(args, local_hardware_id, 0);
    PJRT_Device* device = WithPython([&] {
      return client->DeviceOf(client->py.get().attr("lookup_addressable_device")(local_hardware_id));
    });
    PJRT_TT_OUT(args, addressable_device, device);
  });
}

PJRT_Error* ClientDefaultDeviceAssignment(PJRT_Client_DefaultDeviceAssignment_Args* args) {
  return Guard("PJRT_Client_DefaultDeviceAssignment", [&] {
    PJRT_Client* client = PJRT_TT_ARG(args, client);
    int replicas = PJRT_TT_IN(args, num_replicas, 0);
    int partitions = PJRT_TT_IN(args, num_partitions, 0);
    int* out = PJRT_TT_ARG(args, default_assignment);
    size_t capacity = PJRT_TT_IN(args, default_assignment_size, 0);
    size_t needed = static_cast<size_t>(replicas) * static_cast<size_t>(partitions);
    if (replicas < 0 || partitions < 0 || capacity < needed) {
      Fail(PJRT_Error_Code_INVALID_ARGUMENT,
           "default_assignment_size " + std::to_string(capacity) + " is smaller than " +
               std::to_string(replicas) + " replicas x " + std::to_string(partitions) + " partitions");
    }
    std::vector<int64_t> ids = WithPython([&] {
      return ToInt64Vector(client->py.get().attr("default_device_assignment")(replicas, partitions));
    });
    if (ids.size() != needed) {
      Fail(PJRT_Error_Code_INTERNAL, "default_device_assignment returned " + std::to_string(ids.size()) +
                                         " device ids, expected " + std::to_string(needed));
    }
    for (size_t i = 0; i < needed; ++i) out[i] = static_cast<int>(ids[i]);
  });
}

}  // namespace

}  // namespace pjrt_tt

PJRT_Device* PJRT_Client::DeviceOf(py::handle py_device) const {
  return pjrt_tt::ByIndex(device_storage, py_device, "Device");
}

PJRT_Memory* PJRT_Client::MemoryOf(py::handle py_memory) const {
  return pjrt_tt::ByIndex(memory_storage, py_memory, "Memory");
}

std::vector<PJRT_Device*> PJRT_Client::DevicesOf(py::handle py_devices) const {
  std::vector<PJRT_Device*> out;
  for (py::handle d : py::iter(py_devices)) out.push_back(DeviceOf(d));
  return out;
}

namespace pjrt_tt {

void BindClient(PJRT_Api& api) {
  api.PJRT_Client_Create = ClientCreate;
  api.PJRT_Client_Destroy = ClientDestroy;
  api.PJRT_Client_PlatformName = ClientPlatformName;
  api.PJRT_Client_ProcessIndex = ClientProcessIndex;
  api.PJRT_Client_UpdateGlobalProcessInfo = ClientUpdateGlobalProcessInfo;
  api.PJRT_Client_PlatformVersion = ClientPlatformVersion;
  api.PJRT_Client_Devices = ClientDevices;
  api.PJRT_Client_AddressableDevices = ClientAddressableDevices;
  api.PJRT_Client_LookupDevice = ClientLookupDevice;
  api.PJRT_Client_LookupAddressableDevice = ClientLookupAddressableDevice;
  api.PJRT_Client_AddressableMemories = ClientAddressableMemories;
  api.PJRT_Client_DefaultDeviceAssignment = ClientDefaultDeviceAssignment;
  // PJRT_Client_Compile lives in executable.cc, PJRT_Client_BufferFromHostBuffer in
  // buffer.cc: each file owns the code that creates its kind of object.
}

}  // namespace pjrt_tt
