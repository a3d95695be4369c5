"""Loaded executables: a compiled ttnn program bound to the device(s) it runs on."""
from __future__ import annotations

import re

import numpy as np

from pjrt_tt.errors import InvalidArgument, Unimplemented
from pjrt_tt.lower.registry import device_type
from pjrt_tt.runtime.buffer import Buffer


def parse_compile_options(blob: bytes):
    from jax._src.lib import _jax
    return _jax.CompileOptions.ParseFromString(blob)


class LoadedExecutable:
    @classmethod
    def build(cls, client, code: bytes, fmt: str, compile_options: bytes) -> "LoadedExecutable":
        options = parse_compile_options(compile_options) if compile_options else None
        replicas = options.num_replicas if options else 1
        partitions = options.num_partitions if options else 1
        if replicas * partitions != 1:
            raise Unimplemented(f"programs for {replicas} replicas x {partitions} partitions "
                                f"(multi-chip SPMD) are not supported yet; run on one TT device")
        device_id = 0
        build_options = options.executable_build_options if options else None
        if build_options is not None and build_options.device_assignment is not None:
            device_id = assignment_ids(build_options.device_assignment)[0][0]
        device = client.lookup_device(device_id)
        return cls(client, client.compiler.compile(code, fmt), device)

    def __init__(self, client, compiled, device):
        self.client, self.compiled, self.device = client, compiled, device
        program = compiled.program
        self.program = program
        self.name = program.name
        self.num_replicas = 1
        self.num_partitions = 1
        self.num_outputs = len(program.outputs)
        self.output_element_types = [h.element.pjrt for h in program.output_host_types]
        self.output_dimensions = [tuple(h.shape) for h in program.output_host_types]
        self.output_memory_kinds = ["device"] * self.num_outputs
        self.fingerprint = compiled.fingerprint
        self.size_of_generated_code = len(program.ops)
        self.addressable_devices = [device]
        self.is_deleted = False
        target = client.target
        self._bound = target.bind(program, device.chip)
        self._constants = [target.upload(c.data, c.value.type, device.chip) for c in program.constants]

    def optimized_program(self) -> tuple[bytes, str]:
        return self.compiled.code, self.compiled.format

    def device_assignment_proto(self) -> bytes:
        from jax._src.lib import _jax
        return _jax.DeviceAssignment.create(np.array([[self.device.id]])).serialize()

    def execute(self, argument_lists, non_donatable_input_indices) -> list[list[Buffer]]:
        if self.is_deleted:
            raise InvalidArgument(f"executable {self.name} was deleted")
        if len(argument_lists) != 1:
            raise InvalidArgument(f"{self.name} runs on one device; got arguments for {len(argument_lists)}")
        args = argument_lists[0]
        program = self.program
        if len(args) != len(program.inputs):
            raise InvalidArgument(f"{self.name} takes {len(program.inputs)} arguments, got {len(args)}")
        tensors = []
        for i, (buf, want) in enumerate(zip(args, program.input_host_types)):
            if buf.host != want:
                raise InvalidArgument(f"argument {i} of {self.name} is {buf.host}, expected {want}")
            tensors.append(buf.live_tensor(f"argument {i} of {self.name}"))
        outputs = self._bound.run(tensors, self._constants)
        keep = set(non_donatable_input_indices or ())
        for i in program.donated_inputs:
            if i not in keep:
                args[i].delete()
        return [[Buffer(self.device, h, t) for h, t in zip(program.output_host_types, outputs)]]

    def delete(self) -> None:
        if not self.is_deleted:
            for t in self._constants:
                self.client.target.free(t)
            self._constants = []
            self.is_deleted = True

    def __del__(self):
        try:
            self.delete()
        except Exception:
            pass


def assignment_ids(assignment) -> list[list[int]]:
    """A jaxlib DeviceAssignment as [computation][replica] device ids (from its text form,
    the only accessor jaxlib 0.7.1 offers besides the serialized proto)."""
    return [[int(d) for d in ids.split()]
            for ids in re.findall(r"Computation\d+\{([\d ]*)\}", str(assignment))]
