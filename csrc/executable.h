// Executables. PJRT_LoadedExecutable_GetExecutable hands out a separate
// PJRT_Executable that the caller destroys on its own; both handles share one
// ExecutableState, which keeps the Python LoadedExecutable and the metadata
// returned to the caller alive as long as either handle lives.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "bridge.h"

namespace pjrt_tt {

struct ExecutableState {
  struct OutputDims {
    std::vector<int64_t> flat;  // all outputs' dims, concatenated
    std::vector<size_t> sizes;  // rank of each output
  };
  struct OutputKinds {
    std::vector<std::string> kinds;
    std::vector<const char*> data;
    std::vector<size_t> sizes;
  };
  struct Program {
    std::string code;
    std::string format;
  };

  PJRT_Client* client = nullptr;
  PyRef py;
  // Read at compile time: framework worker threads ask for them while executing,
  // where waiting for the GIL could deadlock (see the runner in bridge.h).
  size_t num_outputs = 0;
  size_t num_replicas = 0;
  size_t num_partitions = 0;
  std::vector<int64_t> donated_inputs;  // argument indices an execution consumes (unless non-donatable)
  // The first execution checks that the Python outputs match the declared metadata; later
  // ones hand out handles built from that metadata without asking Python (the lean path).
  std::atomic<bool> outputs_checked{false};
  // Metadata is asked of Python on first use, then cached (see Once in common.h);
  // what an execution needs is filled at compile time.
  Once<std::string> name;
  Once<std::string> fingerprint;
  Once<std::vector<PJRT_Buffer_Type>> output_types;
  Once<OutputDims> output_dims;
  Once<OutputKinds> output_kinds;
  Once<Program> optimized_program;
  Once<std::vector<PJRT_Device*>> addressable_devices;
};

}  // namespace pjrt_tt

struct PJRT_Executable {
  std::shared_ptr<pjrt_tt::ExecutableState> state;
};

struct PJRT_LoadedExecutable {
  std::shared_ptr<pjrt_tt::ExecutableState> state;
};
