#include "executable.h"

#include <algorithm>
#include <cstring>
#include <optional>

#include "buffer.h"
#include "client.h"
#include "event.h"

// Backs the bytes returned by PJRT_LoadedExecutable_GetDeviceAssignment.
struct PJRT_DeviceAssignmentSerialized {
  std::string bytes;
};

// Backs the bytes returned by PJRT_Executable_Serialize (pjrt_tt/runtime/serialized.py).
struct PJRT_SerializedExecutable {
  std::string bytes;
};

namespace pjrt_tt {
namespace {

// ------------------------------ Python metadata -------------------------------

int64_t IntAttr(ExecutableState& s, const char* attr) {
  return WithPython([&] { return py::cast<int64_t>(s.py.get().attr(attr)); });
}

const std::string& StringAttr(ExecutableState& s, Once<std::string>& cache, const char* attr) {
  return cache.Get([&] {
    return WithPython([&] { return std::make_unique<std::string>(py::cast<std::string>(s.py.get().attr(attr))); });
  });
}

const std::vector<PJRT_Buffer_Type>& OutputTypes(ExecutableState& s) {
  return s.output_types.Get([&] {
    auto types = std::make_unique<std::vector<PJRT_Buffer_Type>>();
    for (int64_t t : WithPython([&] { return ToInt64Vector(s.py.get().attr("output_element_types")); }))
      types->push_back(static_cast<PJRT_Buffer_Type>(t));
    return types;
  });
}

const ExecutableState::OutputDims& OutputDims(ExecutableState& s) {
  return s.output_dims.Get([&] {
    return WithPython([&] {
      auto out = std::make_unique<ExecutableState::OutputDims>();
      for (py::handle shape : py::iter(s.py.get().attr("output_dimensions"))) {
        std::vector<int64_t> dims = ToInt64Vector(shape);
        out->flat.insert(out->flat.end(), dims.begin(), dims.end());
        out->sizes.push_back(dims.size());
      }
      return out;
    });
  });
}

const ExecutableState::OutputKinds& OutputKinds(ExecutableState& s) {
  return s.output_kinds.Get([&] {
    auto out = std::make_unique<ExecutableState::OutputKinds>();
    WithPython([&] {
      for (py::handle kind : py::iter(s.py.get().attr("output_memory_kinds")))
        out->kinds.push_back(py::cast<std::string>(kind));
    });
    for (const std::string& kind : out->kinds) {  // after the strings stop moving
      out->data.push_back(kind.data());
      out->sizes.push_back(kind.size());
    }
    return out;
  });
}

const std::vector<PJRT_Device*>& AddressableDevices(ExecutableState& s) {
  return s.addressable_devices.Get([&] {
    return WithPython([&] {
      return std::make_unique<std::vector<PJRT_Device*>>(s.client->DevicesOf(s.py.get().attr("addressable_devices")));
    });
  });
}

// --------------------------------- Compile -----------------------------------

// A loaded-executable handle around the Python LoadedExecutable `py`, its metadata read
// now (GIL held by the caller), as a compile and a deserialization both hand out.
std::shared_ptr<ExecutableState> LoadedState(PJRT_Client* client, py::object py) {
  auto state = std::make_shared<ExecutableState>();
  state->client = client;
  state->num_outputs = py::cast<size_t>(py.attr("num_outputs"));
  state->num_replicas = py::cast<size_t>(py.attr("num_replicas"));
  state->num_partitions = py::cast<size_t>(py.attr("num_partitions"));
  state->donated_inputs = ToInt64Vector(py.attr("donated_inputs"));
  state->py = PyRef(std::move(py));
  return state;
}

// Reads the rest of the metadata (outside the GIL: each asks Python itself) and hands out the handle.
PJRT_LoadedExecutable* NewLoaded(std::shared_ptr<ExecutableState> state) {
  OutputTypes(*state);
  OutputDims(*state);
  OutputKinds(*state);
  AddressableDevices(*state);
  return new PJRT_LoadedExecutable{std::move(state)};
}

PJRT_Error* ClientCompile(PJRT_Client_Compile_Args* args) {
  return Guard("PJRT_Client_Compile", [&] {
    PJRT_TT_REQUIRE_OUT(args, executable);
    PJRT_Client* client = PJRT_TT_ARG(args, client);
    const PJRT_Program* program = PJRT_TT_ARG(args, program);
    const char* code = PJRT_TT_ARG(program, code);
    size_t code_size = PJRT_TT_IN(program, code_size, 0);
    const char* format = PJRT_TT_ARG(program, format);
    size_t format_size = PJRT_TT_IN(program, format_size, 0);
    const char* options = PJRT_TT_IN(args, compile_options, nullptr);
    size_t options_size = options ? PJRT_TT_IN(args, compile_options_size, 0) : 0;
    std::shared_ptr<ExecutableState> state = WithPython([&] {
      return LoadedState(client, client->py.get().attr("compile")(py::bytes(code, code_size),
                                                                  py::str(format, format_size),
                                                                  py::bytes(options ? options : "", options_size)));
    });
    args->executable = NewLoaded(std::move(state));
  });
}

// The bytes are untrusted (a cache file): the runtime checks the header and checksum
// before reading anything else, and every failure is an error, never a crash.
PJRT_Error* DeserializeAndLoad(PJRT_Executable_DeserializeAndLoad_Args* args) {
  return Guard("PJRT_Executable_DeserializeAndLoad", [&] {
    PJRT_TT_REQUIRE_OUT(args, loaded_executable);
    PJRT_Client* client = PJRT_TT_ARG(args, client);
    size_t size = PJRT_TT_IN(args, serialized_executable_size, 0);
    const char* bytes = PJRT_TT_IN(args, serialized_executable, nullptr);
    if (bytes == nullptr && size > 0) Fail(PJRT_Error_Code_INVALID_ARGUMENT, "serialized_executable is null");
    const char* options = PJRT_TT_IN(args, overridden_serialized_compile_options, nullptr);
    size_t options_size = options ? PJRT_TT_IN(args, overridden_serialized_compile_options_size, 0) : 0;
    std::shared_ptr<ExecutableState> state = WithPython([&] {
      py::object override_options = options ? py::object(py::bytes(options, options_size)) : py::object(py::none());
      return LoadedState(client, client->py.get().attr("deserialize")(py::bytes(bytes ? bytes : "", size),
                                                                      override_options));
    });
    args->loaded_executable = NewLoaded(std::move(state));
  });
}

// -------------------------------- Executable ---------------------------------

PJRT_Error* ExecutableDestroy(PJRT_Executable_Destroy_Args* args) {
  return Guard("PJRT_Executable_Destroy", [&] { DeleteHandle(PJRT_TT_IN(args, executable, nullptr)); });
}

PJRT_Error* ExecutableName(PJRT_Executable_Name_Args* args) {
  return Guard("PJRT_Executable_Name", [&] {
    ExecutableState& s = *PJRT_TT_ARG(args, executable)->state;
    const std::string& name = StringAttr(s, s.name, "name");
    PJRT_TT_OUT(args, executable_name, name.data());
    PJRT_TT_OUT(args, executable_name_size, name.size());
  });
}

PJRT_Error* ExecutableNumReplicas(PJRT_Executable_NumReplicas_Args* args) {
  return Guard("PJRT_Executable_NumReplicas", [&] {
    size_t n = PJRT_TT_ARG(args, executable)->state->num_replicas;
    PJRT_TT_OUT(args, num_replicas, n);
  });
}

PJRT_Error* ExecutableNumPartitions(PJRT_Executable_NumPartitions_Args* args) {
  return Guard("PJRT_Executable_NumPartitions", [&] {
    size_t n = PJRT_TT_ARG(args, executable)->state->num_partitions;
    PJRT_TT_OUT(args, num_partitions, n);
  });
}

PJRT_Error* ExecutableNumOutputs(PJRT_Executable_NumOutputs_Args* args) {
  return Guard("PJRT_Executable_NumOutputs", [&] {
    size_t n = PJRT_TT_ARG(args, executable)->state->num_outputs;
    PJRT_TT_OUT(args, num_outputs, n);
  });
}

PJRT_Error* ExecutableSizeOfGeneratedCode(PJRT_Executable_SizeOfGeneratedCodeInBytes_Args* args) {
  return Guard("PJRT_Executable_SizeOfGeneratedCodeInBytes", [&] {
    int64_t n = IntAttr(*PJRT_TT_ARG(args, executable)->state, "size_of_generated_code");
    PJRT_TT_OUT(args, size_in_bytes, n);
  });
}

PJRT_Error* ExecutableGetCostAnalysis(PJRT_Executable_GetCostAnalysis_Args* args) {
  return Guard("PJRT_Executable_GetCostAnalysis", [&] {
    PJRT_TT_ARG(args, executable);  // no cost model: zero properties
    PJRT_TT_OUT(args, num_properties, 0);
    PJRT_TT_OUT(args, properties, nullptr);
  });
}

PJRT_Error* ExecutableOutputMemoryKinds(PJRT_Executable_OutputMemoryKinds_Args* args) {
  return Guard("PJRT_Executable_OutputMemoryKinds", [&] {
    const ExecutableState::OutputKinds& kinds = OutputKinds(*PJRT_TT_ARG(args, executable)->state);
    PJRT_TT_OUT(args, num_outputs, kinds.kinds.size());
    PJRT_TT_OUT(args, memory_kinds, kinds.data.data());
    PJRT_TT_OUT(args, memory_kind_sizes, kinds.sizes.data());
  });
}

PJRT_Error* ExecutableOutputElementTypes(PJRT_Executable_OutputElementTypes_Args* args) {
  return Guard("PJRT_Executable_OutputElementTypes", [&] {
    const std::vector<PJRT_Buffer_Type>& types = OutputTypes(*PJRT_TT_ARG(args, executable)->state);
    // The header types this as non-const; the caller only reads it.
    PJRT_TT_OUT(args, output_types, const_cast<PJRT_Buffer_Type*>(types.data()));
    PJRT_TT_OUT(args, num_output_types, types.size());
  });
}

PJRT_Error* ExecutableOutputDimensions(PJRT_Executable_OutputDimensions_Args* args) {
  return Guard("PJRT_Executable_OutputDimensions", [&] {
    const ExecutableState::OutputDims& dims = OutputDims(*PJRT_TT_ARG(args, executable)->state);
    PJRT_TT_OUT(args, num_outputs, dims.sizes.size());
    PJRT_TT_OUT(args, dims, dims.flat.data());
    PJRT_TT_OUT(args, dim_sizes, dims.sizes.data());
  });
}

PJRT_Error* ExecutableFingerprint(PJRT_Executable_Fingerprint_Args* args) {
  return Guard("PJRT_Executable_Fingerprint", [&] {
    ExecutableState& s = *PJRT_TT_ARG(args, executable)->state;
    const std::string& fingerprint = StringAttr(s, s.fingerprint, "fingerprint");
    PJRT_TT_OUT(args, executable_fingerprint, fingerprint.data());
    PJRT_TT_OUT(args, executable_fingerprint_size, fingerprint.size());
  });
}

PJRT_Error* ExecutableSerialize(PJRT_Executable_Serialize_Args* args) {
  return Guard("PJRT_Executable_Serialize", [&] {
    PJRT_TT_REQUIRE_OUT(args, serialized_executable_deleter);
    ExecutableState& s = *PJRT_TT_ARG(args, executable)->state;
    auto serialized = std::make_unique<PJRT_SerializedExecutable>();
    serialized->bytes = WithPython([&] { return py::cast<std::string>(s.py.get().attr("serialize")()); });
    args->serialized_bytes = serialized->bytes.data();
    args->serialized_bytes_size = serialized->bytes.size();
    args->serialized_executable_deleter = [](PJRT_SerializedExecutable* e) { delete e; };
    args->serialized_executable = serialized.release();
  });
}

// Two-phase: called first with program->code == nullptr to learn code_size, then
// with a caller buffer of at least that size. The format string is ours.
PJRT_Error* ExecutableOptimizedProgram(PJRT_Executable_OptimizedProgram_Args* args) {
  return Guard("PJRT_Executable_OptimizedProgram", [&] {
    ExecutableState& s = *PJRT_TT_ARG(args, executable)->state;
    PJRT_Program* program = PJRT_TT_ARG(args, program);
    const ExecutableState::Program& optimized = s.optimized_program.Get([&] {
      return WithPython([&] {
        py::tuple result = py::cast<py::tuple>(s.py.get().attr("optimized_program")());
        if (result.size() != 2) Fail(PJRT_Error_Code_INTERNAL, "optimized_program() must return (code, format)");
        return std::make_unique<ExecutableState::Program>(
            ExecutableState::Program{py::cast<std::string>(result[0]), py::cast<std::string>(result[1])});
      });
    });
    PJRT_TT_OUT(program, format, optimized.format.data());
    PJRT_TT_OUT(program, format_size, optimized.format.size());
    char* code = PJRT_TT_IN(program, code, nullptr);
    if (code != nullptr) {
      size_t capacity = PJRT_TT_IN(program, code_size, 0);
      if (capacity < optimized.code.size()) {
        Fail(PJRT_Error_Code_INVALID_ARGUMENT, "code_size " + std::to_string(capacity) + " is smaller than the " +
                                                   std::to_string(optimized.code.size()) + " bytes of the program");
      }
      std::memcpy(code, optimized.code.data(), optimized.code.size());
    }
    PJRT_TT_OUT(program, code_size, optimized.code.size());
  });
}

// ----------------------------- LoadedExecutable ------------------------------

PJRT_Error* LoadedDestroy(PJRT_LoadedExecutable_Destroy_Args* args) {
  // Drops our reference; the Python object goes when no handle uses it any more.
  return Guard("PJRT_LoadedExecutable_Destroy", [&] { DeleteHandle(PJRT_TT_IN(args, executable, nullptr)); });
}

PJRT_Error* LoadedGetExecutable(PJRT_LoadedExecutable_GetExecutable_Args* args) {
  return Guard("PJRT_LoadedExecutable_GetExecutable", [&] {
    PJRT_TT_REQUIRE_OUT(args, executable);
    args->executable = new PJRT_Executable{PJRT_TT_ARG(args, loaded_executable)->state};
  });
}

PJRT_Error* LoadedAddressableDevices(PJRT_LoadedExecutable_AddressableDevices_Args* args) {
  return Guard("PJRT_LoadedExecutable_AddressableDevices", [&] {
    const std::vector<PJRT_Device*>& devices = AddressableDevices(*PJRT_TT_ARG(args, executable)->state);
    PJRT_TT_OUT(args, addressable_devices, devices.data());
    PJRT_TT_OUT(args, num_addressable_devices, devices.size());
  });
}

PJRT_Error* LoadedDelete(PJRT_LoadedExecutable_Delete_Args* args) {
  return Guard("PJRT_LoadedExecutable_Delete", [&] {
    ExecutableState& s = *PJRT_TT_ARG(args, executable)->state;
    WithPython([&] { s.py.get().attr("delete")(); });
  });
}

PJRT_Error* LoadedIsDeleted(PJRT_LoadedExecutable_IsDeleted_Args* args) {
  return Guard("PJRT_LoadedExecutable_IsDeleted", [&] {
    ExecutableState& s = *PJRT_TT_ARG(args, executable)->state;
    PJRT_TT_OUT(args, is_deleted, WithPython([&] { return py::cast<bool>(s.py.get().attr("is_deleted")); }));
  });
}

PJRT_Error* LoadedFingerprint(PJRT_LoadedExecutable_Fingerprint_Args* args) {
  return Guard("PJRT_LoadedExecutable_Fingerprint", [&] {
    ExecutableState& s = *PJRT_TT_ARG(args, executable)->state;
    const std::string& fingerprint = StringAttr(s, s.fingerprint, "fingerprint");
    PJRT_TT_OUT(args, executable_fingerprint, fingerprint.data());
    PJRT_TT_OUT(args, executable_fingerprint_size, fingerprint.size());
  });
}

PJRT_Error* LoadedGetDeviceAssignment(PJRT_LoadedExecutable_GetDeviceAssignment_Args* args) {
  return Guard("PJRT_LoadedExecutable_GetDeviceAssignment", [&] {
    PJRT_TT_REQUIRE_OUT(args, serialized_device_assignment_deleter);
    ExecutableState& s = *PJRT_TT_ARG(args, executable)->state;
    auto serialized = std::make_unique<PJRT_DeviceAssignmentSerialized>();
    serialized->bytes =
        WithPython([&] { return py::cast<std::string>(s.py.get().attr("device_assignment_proto")()); });
    args->serialized_bytes = serialized->bytes.data();
    args->serialized_bytes_size = serialized->bytes.size();
    args->serialized_device_assignment_deleter = [](PJRT_DeviceAssignmentSerialized* da) { delete da; };
    args->serialized_device_assignment = serialized.release();
  });
}

// The memory of `device` whose kind is `kind` (its default memory if none is).
PJRT_Memory* MemoryOfKind(PJRT_Device* device, const std::string& kind) {
  for (PJRT_Memory* memory : device->memories)
    if (memory->kind == kind) return memory;
  return device->default_memory;
}

// Output handles for `num_devices` x num_outputs, shaped from the compile-time metadata
// (no Python); `py` is set by FillOutputs once the Python execute returned.
std::vector<std::unique_ptr<PJRT_Buffer>> PendingOutputs(ExecutableState& s, size_t num_devices,
                                                         std::shared_ptr<Completion> ready) {
  const std::vector<PJRT_Buffer_Type>& types = OutputTypes(s);
  const ExecutableState::OutputDims& dims = OutputDims(s);
  const ExecutableState::OutputKinds& kinds = OutputKinds(s);
  const std::vector<PJRT_Device*>& devices = AddressableDevices(s);
  if (num_devices > devices.size())
    Fail(PJRT_Error_Code_INVALID_ARGUMENT, "executing on " + std::to_string(num_devices) +
                                               " devices, the executable has " + std::to_string(devices.size()));
  std::vector<std::unique_ptr<PJRT_Buffer>> outputs;
  outputs.reserve(num_devices * s.num_outputs);
  for (size_t d = 0; d < num_devices; ++d) {
    size_t offset = 0;
    for (size_t o = 0; o < s.num_outputs; ++o) {
      auto out = std::make_unique<PJRT_Buffer>();
      out->client = s.client;
      out->element_type = types.at(o);
      out->dims.assign(dims.flat.begin() + offset, dims.flat.begin() + offset + dims.sizes.at(o));
      offset += dims.sizes[o];
      for (int64_t i = static_cast<int64_t>(out->dims.size()) - 1; i >= 0; --i) out->minor_to_major.push_back(i);
      out->device = devices[d];
      out->memory = MemoryOfKind(devices[d], kinds.kinds.at(o));
      out->ready = ready;
      outputs.push_back(std::move(out));
    }
  }
  return outputs;
}

// Runs the Python execute on `inputs` ([num_devices][num_args]) and hands its Buffers
// ([num_devices][num_outputs]) to `outputs` (GIL held). Donated inputs are marked deleted
// from the executable's metadata, as the runtime deletes them.
void RunExecute(ExecutableState& s, const std::vector<std::vector<PJRT_Buffer*>>& inputs,
                const std::vector<int64_t>& non_donatable, const std::vector<PJRT_Buffer*>& outputs) {
  py::list py_args(inputs.size());
  for (size_t d = 0; d < inputs.size(); ++d) {
    py::list per_device(inputs[d].size());
    for (size_t a = 0; a < inputs[d].size(); ++a) per_device[a] = PyOf(inputs[d][a]);
    py_args[d] = per_device;
  }
  py::list py_non_donatable(non_donatable.size());
  for (size_t i = 0; i < non_donatable.size(); ++i) py_non_donatable[i] = py::int_(non_donatable[i]);
  py::object result = s.py.get().attr("execute")(py_args, py_non_donatable);
  for (int64_t i : s.donated_inputs) {
    if (std::find(non_donatable.begin(), non_donatable.end(), i) != non_donatable.end()) continue;
    for (const auto& device_inputs : inputs)
      if (i >= 0 && static_cast<size_t>(i) < device_inputs.size()) device_inputs[i]->deleted = true;
  }

  const bool check = !s.outputs_checked.load(std::memory_order_relaxed);
  auto require_list = [](py::handle value, const char* what) {
    if (!py::isinstance<py::list>(value) && !py::isinstance<py::tuple>(value)) {
      Fail(PJRT_Error_Code_INTERNAL, std::string("execute() must return ") + what + ", got " +
                                         py::str(py::type::handle_of(value).attr("__name__")).cast<std::string>());
    }
  };
  require_list(result, "a list with one list of Buffers per device");
  if (py::len(result) != inputs.size())
    Fail(PJRT_Error_Code_INTERNAL, "execute() returned " + std::to_string(py::len(result)) +
                                       " output lists for " + std::to_string(inputs.size()) + " devices");
  size_t i = 0;
  for (py::handle per_device : result) {
    require_list(per_device, "one list of Buffers per device");
    if (py::len(per_device) != s.num_outputs)
      Fail(PJRT_Error_Code_INTERNAL, "execute() returned " + std::to_string(py::len(per_device)) +
                                         " outputs, the executable declares " + std::to_string(s.num_outputs));
    for (py::handle out : per_device) {
      PJRT_Buffer* pending = outputs[i++];
      if (check) {  // once per executable: the runtime builds its outputs from the same metadata
        std::unique_ptr<PJRT_Buffer> made = WrapBuffer(s.client, py::reinterpret_borrow<py::object>(out));
        if (made->dims != pending->dims || made->element_type != pending->element_type ||
            made->device != pending->device)
          Fail(PJRT_Error_Code_INTERNAL, "execute() returned an output whose shape, type or device differs "
                                         "from the executable's declared output " + std::to_string(i - 1));
      }
      pending->py = PyRef(py::reinterpret_borrow<py::object>(out));
    }
  }
  if (check) s.outputs_checked.store(true, std::memory_order_relaxed);
}

// Execute called on a thread that is not a Python thread: the outputs are handed out
// now, shaped from the compile-time metadata, and the runner fills them in queue
// order. Inputs and outputs stay valid until then: their handles are deleted
// through the same queue (DeleteHandle).
void ExecuteLater(std::shared_ptr<ExecutableState> state, std::vector<std::vector<PJRT_Buffer*>> inputs,
                  std::vector<int64_t> non_donatable, PJRT_Buffer** const* output_lists,
                  PJRT_Event** complete_events) {
  ExecutableState& s = *state;
  auto completion = std::make_shared<Completion>();
  const size_t num_devices = inputs.size();
  std::vector<std::unique_ptr<PJRT_Buffer>> outputs = PendingOutputs(s, num_devices, completion);
  std::vector<PJRT_Buffer*> raw_outputs;
  for (auto& out : outputs) raw_outputs.push_back(out.get());
  auto error = std::make_shared<std::optional<Status>>(
      Status(PJRT_Error_Code_UNAVAILABLE, "the Python interpreter shut down before the execution ran"));
  Enqueue(
      [state, inputs = std::move(inputs), non_donatable = std::move(non_donatable), raw_outputs, error] {
        try {
          RunExecute(*state, inputs, non_donatable, raw_outputs);
          error->reset();
        } catch (const py::error_already_set& e) {
          *error = StatusFromPython(e);
        } catch (const Status& status) {
          *error = status;
        } catch (const std::exception& e) {
          *error = Status(PJRT_Error_Code_INTERNAL, std::string("PJRT_LoadedExecutable_Execute: ") + e.what());
        }
      },
      [completion, error] { completion->Finish(*error); });
  // Nothing below can fail: hand everything over.
  for (size_t d = 0; d < num_devices; ++d) {
    for (size_t o = 0; o < s.num_outputs; ++o) output_lists[d][o] = outputs[d * s.num_outputs + o].release();
    if (complete_events) complete_events[d] = EventOf(completion);
  }
}

// argument_lists is [num_devices][num_args]; Python gets the same shape as lists of
// Buffers and returns [num_devices][num_outputs] new Buffers.
PJRT_Error* LoadedExecute(PJRT_LoadedExecutable_Execute_Args* args) {
  return Guard("PJRT_LoadedExecutable_Execute", [&] {
    ExecutableState& s = *PJRT_TT_ARG(args, executable)->state;
    const PJRT_ExecuteOptions* options = PJRT_TT_IN(args, options, nullptr);
    std::vector<int64_t> non_donatable;
    if (options != nullptr) {
      const int64_t* indices = PJRT_TT_IN(options, non_donatable_input_indices, nullptr);
      if (indices) non_donatable.assign(indices, indices + PJRT_TT_IN(options, num_non_donatable_input_indices, 0));
    }
    size_t num_devices = PJRT_TT_IN(args, num_devices, 0);
    size_t num_args = PJRT_TT_IN(args, num_args, 0);
    PJRT_Buffer* const* const* argument_lists = PJRT_TT_IN(args, argument_lists, nullptr);
    if (num_args > 0 && argument_lists == nullptr) Fail(PJRT_Error_Code_INVALID_ARGUMENT, "argument_lists is null");
    PJRT_Buffer** const* output_lists = PJRT_TT_ARG(args, output_lists);
    PJRT_Event** complete_events = PJRT_TT_IN(args, device_complete_events, nullptr);

    // Portable execution on one chosen device: the bridge has no device parameter,
    // so only the trivial case (that device is the executable's only one) passes.
    if (PJRT_Device* device = PJRT_TT_IN(args, execute_device, nullptr)) {
      const std::vector<PJRT_Device*>& devices = AddressableDevices(s);
      if (num_devices != 1 || devices.size() != 1 || devices[0] != device) {
        Fail(PJRT_Error_Code_UNIMPLEMENTED,
             "executing on a chosen device (execute_device = " + device->description.to_string +
                 ") is only supported for single-device executables compiled for that device");
      }
    }

    size_t num_outputs = s.num_outputs;
    std::vector<std::vector<PJRT_Buffer*>> inputs(num_devices);
    for (size_t d = 0; d < num_devices; ++d)
      for (size_t a = 0; a < num_args; ++a) inputs[d].push_back(Required(argument_lists[d][a], "argument buffer"));

    if (!IsPythonThread()) {  // a framework worker: never wait for the GIL here
      ExecuteLater(PJRT_TT_ARG(args, executable)->state, std::move(inputs), std::move(non_donatable), output_lists,
                   complete_events);
      return;
    }
    std::vector<std::unique_ptr<PJRT_Buffer>> outputs = PendingOutputs(s, num_devices, nullptr);
    std::vector<PJRT_Buffer*> raw_outputs;
    for (auto& out : outputs) raw_outputs.push_back(out.get());
    WithPython([&] { RunExecute(s, inputs, non_donatable, raw_outputs); });
    // Nothing below can fail: hand everything over.
    for (size_t d = 0; d < num_devices; ++d) {
      for (size_t o = 0; o < num_outputs; ++o) output_lists[d][o] = outputs[d * num_outputs + o].release();
      if (complete_events) complete_events[d] = ReadyEvent();  // execution already finished
    }
  });
}

}  // namespace

void BindExecutable(PJRT_Api& api) {
  api.PJRT_Client_Compile = ClientCompile;
  api.PJRT_Executable_Destroy = ExecutableDestroy;
  api.PJRT_Executable_Name = ExecutableName;
  api.PJRT_Executable_NumReplicas = ExecutableNumReplicas;
  api.PJRT_Executable_NumPartitions = ExecutableNumPartitions;
  api.PJRT_Executable_NumOutputs = ExecutableNumOutputs;
  api.PJRT_Executable_SizeOfGeneratedCodeInBytes = ExecutableSizeOfGeneratedCode;
  api.PJRT_Executable_GetCostAnalysis = ExecutableGetCostAnalysis;
  api.PJRT_Executable_OutputMemoryKinds = ExecutableOutputMemoryKinds;
  api.PJRT_Executable_OutputElementTypes = ExecutableOutputElementTypes;
  api.PJRT_Executable_OutputDimensions = ExecutableOutputDimensions;
  api.PJRT_Executable_Fingerprint = ExecutableFingerprint;
  api.PJRT_Executable_OptimizedProgram = ExecutableOptimizedProgram;
  api.PJRT_Executable_Serialize = ExecutableSerialize;
  api.PJRT_Executable_DeserializeAndLoad = DeserializeAndLoad;
  api.PJRT_LoadedExecutable_Destroy = LoadedDestroy;
  api.PJRT_LoadedExecutable_GetExecutable = LoadedGetExecutable;
  api.PJRT_LoadedExecutable_AddressableDevices = LoadedAddressableDevices;
  api.PJRT_LoadedExecutable_Delete = LoadedDelete;
  api.PJRT_LoadedExecutable_IsDeleted = LoadedIsDeleted;
  api.PJRT_LoadedExecutable_Execute = LoadedExecute;
  api.PJRT_LoadedExecutable_Fingerprint = LoadedFingerprint;
  api.PJRT_LoadedExecutable_GetDeviceAssignment = LoadedGetDeviceAssignment;
}

}  // namespace pjrt_tt
