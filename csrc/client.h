// The client: owns the Python Client and one C handle per Python Device and Memory.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "bridge.h"
#include "device.h"

struct PJRT_Client {
  pjrt_tt::PyRef py;
  std::string platform_name;
  std::string platform_version;
  int process_index = 0;

  // The framework's last word on each process (task id -> PJRT_ProcessState), shared with
  // the Python client's `peers` callable, which may outlive this handle.
  struct PeerStates {
    std::mutex mu;
    std::map<int, int> states;
  };
  std::shared_ptr<PeerStates> peers = std::make_shared<PeerStates>();

  // Position i holds the handle of the Python object whose `index` is i.
  std::vector<std::unique_ptr<PJRT_Device>> device_storage;
  std::vector<std::unique_ptr<PJRT_Memory>> memory_storage;

  std::vector<PJRT_Device*> devices;              // all, as client.devices
  std::vector<PJRT_Device*> addressable_devices;  // as client.addressable_devices
  std::vector<PJRT_Memory*> memories;             // as client.memories

  // The handle of a Python Device / Memory of this client, found by its `index`
  // attribute (GIL held).
  PJRT_Device* DeviceOf(py::handle py_device) const;
  PJRT_Memory* MemoryOf(py::handle py_memory) const;
  std::vector<PJRT_Device*> DevicesOf(py::handle py_devices) const;
};
