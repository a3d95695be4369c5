// The PJRT profiler extension (PJRT_Extension_Type_Profiler): what jax.profiler and
// torch_xla.debug.profiler sessions call to collect the plugin's spans as an XSpace
// (docs/profiling.md; the Python side is pjrt_tt/runtime/profiler.py).
//
// pjrt_c_api.h (xla-cpu-pjrt 0.0.1, API 0.81) does not ship the extension's headers, so
// the structs are declared here, field for field as in openxla/xla's
// xla/backends/profiler/plugin/profiler_c_api.h (PLUGIN_PROFILER_VERSION 1) and
// xla/pjrt/c/pjrt_c_api_profiler_extension.h (PJRT_API_PROFILER_EXTENSION_VERSION 1), the
// layout jaxlib 0.7.1, jaxlib 0.12 (tests/test_profiler.py) and torch_xla 2.9 (by hand) read.
// The later additions to PLUGIN_Profiler_Api (consume, serialize) are left out: jaxlib 0.7.1
// and torch_xla 2.9 accept only this exact size, and jaxlib 0.12 falls back to collect_data.
#pragma once

#include <cstddef>
#include <cstdint>

#include "pjrt_c_api.h"

extern "C" {

typedef struct PLUGIN_Profiler PLUGIN_Profiler;
typedef struct PLUGIN_Profiler_Error PLUGIN_Profiler_Error;

struct PLUGIN_Profiler_Error_Destroy_Args {
  size_t struct_size;
  void* priv;
  PLUGIN_Profiler_Error* error;
};

struct PLUGIN_Profiler_Error_Message_Args {
  size_t struct_size;
  void* priv;
  const PLUGIN_Profiler_Error* error;
  const char* message;  // out, lives as long as `error`
  size_t message_size;  // out
};

struct PLUGIN_Profiler_Error_GetCode_Args {
  size_t struct_size;
  void* priv;
  const PLUGIN_Profiler_Error* error;
  int code;  // out: an absl status code (the numbers of PJRT_Error_Code)
};

struct PLUGIN_Profiler_Create_Args {
  size_t struct_size;
  const char* options;  // a serialized tensorflow.ProfileOptions
  size_t options_size;
  PLUGIN_Profiler* profiler;  // out
};

struct PLUGIN_Profiler_Destroy_Args {
  size_t struct_size;
  PLUGIN_Profiler* profiler;
};

struct PLUGIN_Profiler_Start_Args {
  size_t struct_size;
  PLUGIN_Profiler* profiler;
};

struct PLUGIN_Profiler_Stop_Args {
  size_t struct_size;
  PLUGIN_Profiler* profiler;
};

// First call with buffer == nullptr: the plugin sets buffer_size_in_bytes and points
// `buffer` at its own copy (jaxlib reads that one); a second call with a caller buffer of
// that size gets the bytes copied into it.
struct PLUGIN_Profiler_CollectData_Args {
  size_t struct_size;
  PLUGIN_Profiler* profiler;
  uint8_t* buffer;              // in/out
  size_t buffer_size_in_bytes;  // out
};

typedef struct PLUGIN_Profiler_Api {
  size_t struct_size;
  void* priv;
  void (*error_destroy)(PLUGIN_Profiler_Error_Destroy_Args*);
  void (*error_message)(PLUGIN_Profiler_Error_Message_Args*);
  PLUGIN_Profiler_Error* (*error_get_code)(PLUGIN_Profiler_Error_GetCode_Args*);
  PLUGIN_Profiler_Error* (*create)(PLUGIN_Profiler_Create_Args*);
  PLUGIN_Profiler_Error* (*destroy)(PLUGIN_Profiler_Destroy_Args*);
  PLUGIN_Profiler_Error* (*start)(PLUGIN_Profiler_Start_Args*);
  PLUGIN_Profiler_Error* (*stop)(PLUGIN_Profiler_Stop_Args*);
  PLUGIN_Profiler_Error* (*collect_data)(PLUGIN_Profiler_CollectData_Args*);
} PLUGIN_Profiler_Api;

typedef struct PJRT_Profiler_Extension {
  PJRT_Extension_Base base;  // struct_size, type = PJRT_Extension_Type_Profiler, next
  PLUGIN_Profiler_Api* profiler_api;
  int64_t traceme_context_id;  // used only when the extension rides on an entry's args
} PJRT_Profiler_Extension;

}  // extern "C"

namespace pjrt_tt {

// The extension for PJRT_Api.extension_start (static: it lives as long as the library).
PJRT_Extension_Base* ProfilerExtension();

}  // namespace pjrt_tt
