// Devices, their descriptions, and memories. All are created once, when the client
// is created, from client.devices / client.memories; they live as long as the
// client, so every string and array they hand out is cached here.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "bridge.h"

struct PJRT_DeviceDescription {
  int id = 0;
  int process_index = 0;
  std::string kind;
  std::string debug_string;
  std::string to_string;
  std::unique_ptr<pjrt_tt::NamedValues> attributes;
};

struct PJRT_Device {
  PJRT_Client* client = nullptr;
  pjrt_tt::PyRef py;
  PJRT_DeviceDescription description;
  bool is_addressable = false;
  int local_hardware_id = -1;
  std::vector<PJRT_Memory*> memories;  // addressable devices only
  PJRT_Memory* default_memory = nullptr;
};

struct PJRT_Memory {
  PJRT_Client* client = nullptr;
  pjrt_tt::PyRef py;
  int id = 0;
  std::string kind;
  int kind_id = 0;
  std::string debug_string;
  std::string to_string;
  std::vector<PJRT_Device*> devices;
};

namespace pjrt_tt {

// Creates the device and memory handles of `client` from its Python object
// (GIL held). Called once by PJRT_Client_Create.
void CreateDevicesAndMemories(PJRT_Client* client, py::handle py_client);

}  // namespace pjrt_tt
