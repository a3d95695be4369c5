// The PJRT_Api function table (GetPjrtApi), plugin and error entries, and the
// UNIMPLEMENTED stubs that fill every slot we do not support.
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "bridge.h"
#include "common.h"
#include "profiler.h"

namespace pjrt_tt {

bool TraceEnabled() {
  static const bool enabled = std::getenv("PJRT_TT_TRACE") != nullptr;
  return enabled;
}

void TraceEntry(const char* entry) { std::fprintf(stderr, "pjrt_tt: %s\n", entry); }

namespace {

// ---------------------------------- Errors -----------------------------------

void ErrorDestroy(PJRT_Error_Destroy_Args* args) { delete PJRT_TT_IN(args, error, nullptr); }

void ErrorMessage(PJRT_Error_Message_Args* args) {
  const PJRT_Error* error = PJRT_TT_IN(args, error, nullptr);
  if (error == nullptr) return;
  PJRT_TT_OUT(args, message, error->message.data());
  PJRT_TT_OUT(args, message_size, error->message.size());
}

PJRT_Error* ErrorGetCode(PJRT_Error_GetCode_Args* args) {
  return Guard("PJRT_Error_GetCode", [&] { PJRT_TT_OUT(args, code, PJRT_TT_ARG(args, error)->code); });
}

// ---------------------------------- Plugin -----------------------------------

// Imports the runtime's bridge module; fails clearly outside a Python process.
PJRT_Error* PluginInitialize(PJRT_Plugin_Initialize_Args*) {
  return Guard("PJRT_Plugin_Initialize", [&] { WithPython([] { Bridge(); }); });
}

PJRT_Error* PluginAttributes(PJRT_Plugin_Attributes_Args* args) {
  return Guard("PJRT_Plugin_Attributes", [&] {
    static Once<NamedValues> attributes;  // "lifetime of the process", says the header
    const NamedValues& values = attributes.Get([] {
      return WithPython(
          [] { return NamedValues::FromDict(Bridge().attr("plugin_attributes")(), "plugin attribute"); });
    });
    PJRT_TT_OUT(args, attributes, values.data());
    PJRT_TT_OUT(args, num_attributes, values.size());
  });
}

// ------------------------------ Unimplemented --------------------------------

#define PJRT_TT_UNIMPLEMENTED(entry)                                                        \
  api.entry = [](entry##_Args*) -> PJRT_Error* {                                            \
    if (TraceEnabled()) TraceEntry(#entry);                                                 \
    return MakeError(PJRT_Error_Code_UNIMPLEMENTED, #entry " is not implemented by pjrt-tt"); \
  };

void BindUnimplemented(PJRT_Api& api) {
  PJRT_TT_UNIMPLEMENTED(PJRT_Client_TopologyDescription)
  PJRT_TT_UNIMPLEMENTED(PJRT_Client_CreateViewOfDeviceBuffer)
  PJRT_TT_UNIMPLEMENTED(PJRT_Client_CreateBuffersForAsyncHostToDevice)
  PJRT_TT_UNIMPLEMENTED(PJRT_Client_CreateUninitializedBuffer)
  PJRT_TT_UNIMPLEMENTED(PJRT_Client_CreateAliasBuffer)
  PJRT_TT_UNIMPLEMENTED(PJRT_Client_FulfillAliasBuffer)
  PJRT_TT_UNIMPLEMENTED(PJRT_Client_DmaMap)
  PJRT_TT_UNIMPLEMENTED(PJRT_Client_DmaUnmap)
  PJRT_TT_UNIMPLEMENTED(PJRT_Executable_GetCompiledMemoryStats)
  PJRT_TT_UNIMPLEMENTED(PJRT_ExecuteContext_Create)
  PJRT_TT_UNIMPLEMENTED(PJRT_ExecuteContext_Destroy)
  PJRT_TT_UNIMPLEMENTED(PJRT_Buffer_IncreaseExternalReferenceCount)
  PJRT_TT_UNIMPLEMENTED(PJRT_Buffer_DecreaseExternalReferenceCount)
  PJRT_TT_UNIMPLEMENTED(PJRT_Buffer_OpaqueDeviceMemoryDataPointer)
  PJRT_TT_UNIMPLEMENTED(PJRT_Buffer_CopyRawToHost)
  PJRT_TT_UNIMPLEMENTED(PJRT_CopyToDeviceStream_Destroy)
  PJRT_TT_UNIMPLEMENTED(PJRT_CopyToDeviceStream_AddChunk)
  PJRT_TT_UNIMPLEMENTED(PJRT_CopyToDeviceStream_TotalBytes)
  PJRT_TT_UNIMPLEMENTED(PJRT_CopyToDeviceStream_GranuleSize)
  PJRT_TT_UNIMPLEMENTED(PJRT_CopyToDeviceStream_CurrentBytes)
  PJRT_TT_UNIMPLEMENTED(PJRT_TopologyDescription_Create)
  PJRT_TT_UNIMPLEMENTED(PJRT_TopologyDescription_Destroy)
  PJRT_TT_UNIMPLEMENTED(PJRT_TopologyDescription_PlatformName)
  PJRT_TT_UNIMPLEMENTED(PJRT_TopologyDescription_PlatformVersion)
  PJRT_TT_UNIMPLEMENTED(PJRT_TopologyDescription_GetDeviceDescriptions)
  PJRT_TT_UNIMPLEMENTED(PJRT_TopologyDescription_Serialize)
  PJRT_TT_UNIMPLEMENTED(PJRT_TopologyDescription_Deserialize)
  PJRT_TT_UNIMPLEMENTED(PJRT_TopologyDescription_Attributes)
  PJRT_TT_UNIMPLEMENTED(PJRT_Compile)
  PJRT_TT_UNIMPLEMENTED(PJRT_AsyncHostToDeviceTransferManager_Destroy)
  PJRT_TT_UNIMPLEMENTED(PJRT_AsyncHostToDeviceTransferManager_TransferData)
  PJRT_TT_UNIMPLEMENTED(PJRT_AsyncHostToDeviceTransferManager_RetrieveBuffer)
  PJRT_TT_UNIMPLEMENTED(PJRT_AsyncHostToDeviceTransferManager_Device)
  PJRT_TT_UNIMPLEMENTED(PJRT_AsyncHostToDeviceTransferManager_BufferCount)
  PJRT_TT_UNIMPLEMENTED(PJRT_AsyncHostToDeviceTransferManager_BufferSize)
  PJRT_TT_UNIMPLEMENTED(PJRT_AsyncHostToDeviceTransferManager_SetBufferError)
  PJRT_TT_UNIMPLEMENTED(PJRT_AsyncHostToDeviceTransferManager_AddMetadata)
}

#undef PJRT_TT_UNIMPLEMENTED

// Safety net for a slot the lists above missed (e.g. after a header upgrade):
// every slot takes one args pointer and returns PJRT_Error*, so a generic stub fits.
PJRT_Error* UnknownEntry(void*) {
  return MakeError(PJRT_Error_Code_UNIMPLEMENTED, "this PJRT entry is not implemented by pjrt-tt");
}

PJRT_Api MakeApi() {
  PJRT_Api api{};
  api.struct_size = PJRT_Api_STRUCT_SIZE;
  api.extension_start = ProfilerExtension();
  api.pjrt_api_version.struct_size = PJRT_Api_Version_STRUCT_SIZE;
  api.pjrt_api_version.extension_start = nullptr;
  api.pjrt_api_version.major_version = PJRT_API_MAJOR;
  api.pjrt_api_version.minor_version = PJRT_API_MINOR;

  api.PJRT_Error_Destroy = ErrorDestroy;
  api.PJRT_Error_Message = ErrorMessage;
  api.PJRT_Error_GetCode = ErrorGetCode;
  api.PJRT_Plugin_Initialize = PluginInitialize;
  api.PJRT_Plugin_Attributes = PluginAttributes;
  BindEvent(api);
  BindClient(api);
  BindDevice(api);
  BindBuffer(api);
  BindExecutable(api);
  BindUnimplemented(api);

  // The function pointers follow pjrt_api_version back to back; no slot stays null.
  using Entry = PJRT_Error* (*)(void*);
  char* base = reinterpret_cast<char*>(&api);
  for (size_t offset = offsetof(PJRT_Api, PJRT_Error_Destroy); offset + sizeof(Entry) <= sizeof(PJRT_Api);
       offset += sizeof(Entry)) {
    Entry slot;
    std::memcpy(&slot, base + offset, sizeof(slot));
    if (slot == nullptr) {
      slot = UnknownEntry;
      std::memcpy(base + offset, &slot, sizeof(slot));
      std::fprintf(stderr, "pjrt_tt: PJRT_Api slot at offset %zu had no entry\n", offset);
    }
  }
  return api;
}

}  // namespace
}  // namespace pjrt_tt

extern "C" __attribute__((visibility("default"))) const PJRT_Api* GetPjrtApi() {
  static const PJRT_Api api = pjrt_tt::MakeApi();
  return &api;
}
