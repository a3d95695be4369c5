"""Loaded executables: a compiled ttnn program bound to the device(s) it runs on."""
from __future__ import annotations

import numpy as np

from pjrt_tt.dtypes import DEVICE_NUMPY
from pjrt_tt.errors import InvalidArgument, Unimplemented
from pjrt_tt.ingest import assignment_ids, parse_compile_options
from pjrt_tt.perf.profile import profiler_for
from pjrt_tt.runtime import serialized
from pjrt_tt.runtime.buffer import Buffer
from pjrt_tt.runtime.profiler import DEVICE_PLANE
from pjrt_tt.targets.trace import TracedProgram, trace_refusal


class LoadedExecutable:
    profiler = None   # times the first runs when a profile is asked for (pjrt_tt/perf/profile.py)

    @classmethod
    def build(cls, client, code: bytes, fmt: str, compile_options: bytes) -> "LoadedExecutable":
        options = parse_compile_options(compile_options)
        devices = _assigned_devices(client, options)   # (refused before any lowering)
        return cls._bind(client, client.compiler.compile(code, fmt, options), options, compile_options, devices)

    @classmethod
    def load(cls, client, data: bytes, compile_options: bytes | None) -> "LoadedExecutable":
        """An executable from `serialize()`'s bytes (PJRT_Executable_DeserializeAndLoad), on the
        devices of `compile_options` (those it was compiled with when None). Nothing is lowered:
        the program is read back, checked to be ours, for this system and these settings."""
        target = client.target
        entry = serialized.read(data, target.name, target.system.name)
        if compile_options is None:
            compile_options = entry.compile_options
        options = parse_compile_options(compile_options)
        devices = _assigned_devices(client, options)
        return cls._bind(client, client.compiler.load(entry.compiled, options), options, compile_options, devices)

    @classmethod
    def _bind(cls, client, compiled, options, compile_options: bytes, devices) -> "LoadedExecutable":
        target = client.target
        if len(devices) > 1:
            if compiled.trace:
                raise Unimplemented("enable_trace: Metal trace of SPMD (multi-device) programs is not implemented "
                                    "yet; compile without enable_trace")
            exe = MeshExecutable(client, compiled, devices)
        else:
            exe = cls(client, compiled, devices[0], compiled.trace)
        exe.compile_options = compile_options
        exe.profiler = profiler_for(options, target.system.name, target.name, len(devices),   # perf profile
                                    trace=compiled.trace)
        return exe

    def serialize(self) -> bytes:
        """PJRT_Executable_Serialize: the program and what loading it needs (runtime/serialized.py)."""
        target = self.client.target
        return serialized.write(self.compiled, self.compile_options, target.name, target.system.name)

    def __init__(self, client, compiled, device, trace: bool = False):
        self._describe(client, compiled, [device])
        self._optimized_mlir = None
        target = client.target
        if trace and (why := trace_refusal(self.program)) is not None:
            raise InvalidArgument(f"enable_trace: program {self.name} cannot run as a Metal trace: {why}; "
                                  f"compile it without enable_trace")
        self._bound = target.bind(self.program, device.chip, trace)
        self._constants = [target.upload(c.data, c.value.type, device.chip) for c in self.program.constants]
        # const-eval (passes/const_eval.py): blocks reading inputs are kept with the argument
        # buffers; a block of constants only is made at the first run and kept here
        inputs = {v.id: i for i, v in enumerate(self.program.inputs)}
        consts = {c.value.id: i for i, c in enumerate(self.program.constants)}
        self._prepare_from = [[(inputs.get(v.id), consts.get(v.id)) for v in p.sources] for p in self.program.prepare]
        self._const_prepared: dict[int, tuple] = {}

    def _describe(self, client, compiled, devices) -> None:
        """What PJRT asks of any executable: its program's name, outputs and devices."""
        program = compiled.program
        self.client, self.compiled, self.program = client, compiled, program
        self.devices, self.device = devices, devices[0]
        self.addressable_devices = [d for d in devices if d.is_addressable]   # (this process's)
        self.name = program.name
        self.num_replicas, self.num_partitions = 1, len(devices)
        self.num_outputs = program.framework_outputs   # (without the guards' outputs)
        self.output_element_types = [h.element.pjrt for h in program.output_host_types[:self.num_outputs]]
        self.output_dimensions = [tuple(h.shape) for h in program.output_host_types[:self.num_outputs]]
        self.output_memory_kinds = ["device"] * self.num_outputs
        self.donated_inputs = list(program.donated_inputs)   # the shim marks these deleted after a run
        self.fingerprint = compiled.fingerprint
        self.size_of_generated_code = len(program.ops)
        self.is_deleted = False
        self._ranges = ArgumentRanges(program)
        self._what = f"program {self.name}"   # names a device call that did not return (deadline)

    def optimized_program(self) -> tuple[bytes, str]:
        code, fmt = self.compiled.code, self.compiled.format
        if fmt == "hlo":  # torch_xla reads it back as "mlir" (it rejects "hlo"); convert once
            if self._optimized_mlir is None:
                from jax._src.lib import _jax
                self._optimized_mlir = bytes(_jax.mlir.hlo_to_stablehlo(code))
            code, fmt = self._optimized_mlir, "mlir"
        return code, fmt

    def device_assignment_proto(self) -> bytes:
        from jax._src.lib import _jax
        return _jax.DeviceAssignment.create(np.array([[self.device.id]])).serialize()

    def execute(self, argument_lists, non_donatable_input_indices) -> list[list[Buffer]]:
        recorder = self.client.recorder
        if not recorder.active:   # no profiler session: the only cost of profiling here
            return self._execute(argument_lists, non_donatable_input_indices)
        return self._execute_recorded(recorder, argument_lists, non_donatable_input_indices)

    def _execute_recorded(self, recorder, argument_lists, non_donatable_input_indices):
        """execute() with profiler spans: the run on each device's plane, and (unless the
        session said tt_op_spans=False) each ttnn call on the first device's."""
        bound = self._bound_program()
        first = DEVICE_PLANE.format(self.devices[0].id)
        timed = recorder.op_spans and bound is not None and bound.timer is None
        if timed:
            bound.timer = recorder.op_timer(first, self.name)
        start = recorder.now()
        try:
            return self._execute(argument_lists, non_donatable_input_indices)
        finally:
            end = recorder.now()
            if timed:
                bound.timer = None
            stats = {"target": self.client.target.name, "devices": len(self.devices)}
            for d in self.devices:
                recorder.add(DEVICE_PLANE.format(d.id), "TT programs", self.name, start, end, stats)

    def _bound_program(self):
        """The BoundProgram (targets/executor.py) a run goes through, for the per-op timer."""
        bound = getattr(self._bound, "bound", self._bound)   # mock/device wrap it
        return bound if hasattr(bound, "timer") else None

    def _execute(self, argument_lists, non_donatable_input_indices) -> list[list[Buffer]]:
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
            if buf.host is not want:
                check_argument(program, self.name, i, buf, want, "")
            tensor = buf.tensor if not want.words else buf.as_words()
            tensors.append(tensor if tensor is not None else buf.live_tensor(f"argument {i} of {self.name}"))
        bounds = self._ranges.check(argument_lists, self.name)
        deadline = self.client.deadline
        prepared = deadline.call(f"const-eval of program {self.name}", self._prepared, args) \
            if self._prepare_from else None
        if self.profiler is not None and self.profiler.active:   # perf profile (mock/device wrap the bound program)
            outputs = deadline.call(self._what, self.profiler.run, program,
                                    getattr(self._bound, "bound", self._bound),
                                    lambda: self._bound.run(tensors, self._constants, prepared))
        else:
            outputs = deadline.call(self._what, self._bound.run, tensors, self._constants, prepared)
        if program.donated_inputs:
            keep = set(non_donatable_input_indices or ())
            for i in program.donated_inputs:
                if i not in keep:
                    args[i].delete()
        device = self.device
        if not program.output_ranges and not program.guards:
            return [[Buffer(device, h, t) for h, t in zip(program.output_host_types, outputs)]]
        results = [[Buffer(device, h, t, bound) for h, t, bound in zip(program.output_host_types, outputs, bounds)]]
        check_guards(program, self.name, results)
        return results

    def _prepared(self, args) -> list:
        """The const-eval results of this run: from each argument buffer's cache (made on a
        miss), and the constants' (made once)."""
        out = []
        for k, sources in enumerate(self._prepare_from):
            bufs = [args[i] for i, _ in sources if i is not None]
            if bufs:
                def make(tensors, k=k, sources=sources):
                    it = iter(tensors)
                    return self._bound.prepare(k, [next(it) if i is not None else self._constants[c]
                                                   for i, c in sources])
                out += bufs[0].prepared((self.fingerprint, k), make, bufs[1:])
            else:
                if k not in self._const_prepared:
                    self._const_prepared[k] = self._bound.prepare(k, [self._constants[c] for _, c in sources])
                out += self._const_prepared[k][0]
        return out

    def delete(self) -> None:
        if not self.is_deleted:
            traced = getattr(self._bound, "bound", None)   # a TracedProgram, or mock/device's _OnChip around one
            for runner in (self._bound, traced):
                if self.client.deadline.wedged is None and isinstance(runner, TracedProgram):
                    runner.release()
            for t in self._constants if self.client.deadline.wedged is None else ():   # (see Buffer.delete)
                self.client.target.free(t)
            for _, owners in self._const_prepared.values() if self.client.deadline.wedged is None else ():
                for t in owners:
                    self.client.target.free(t)
            self._constants, self._const_prepared = [], {}
            self.is_deleted = True

    def __del__(self):
        try:
            self.delete()
        except Exception:
            pass


class MeshExecutable(LoadedExecutable):
    """An SPMD program: one per-device ttnn program run on a mesh of the assigned chips
    (partition p at row p // C, column p % C of the R x C mesh the compiler chose). When
    several processes share the mesh, each runs it with its own devices' arguments (the
    framework calls every process's Execute) and gets its own devices' results."""

    def __init__(self, client, compiled, devices):
        self._describe(client, compiled, devices)
        program, target = self.program, client.target
        self.mesh_shape = compiled.mesh_shape
        self._runner, self._constants = None, []
        if self.addressable_devices:   # (a program of other processes' devices only: never run here)
            self._runner = target.mesh_runner(program, [d.chip for d in devices], self.mesh_shape)
            self._constants = [self._runner.upload(c.data, c.value.type) for c in program.constants]

    def optimized_program(self) -> tuple[bytes, str]:
        return self.compiled.optimized

    def device_assignment_proto(self) -> bytes:
        from jax._src.lib import _jax
        return _jax.DeviceAssignment.create(np.array([[d.id for d in self.devices]])).serialize()

    def _bound_program(self):
        bound = self._runner.bound if self._runner is not None else None
        return bound if hasattr(bound, "timer") else None

    def _execute(self, argument_lists, non_donatable_input_indices) -> list[list[Buffer]]:
        if self.is_deleted:
            raise InvalidArgument(f"executable {self.name} was deleted")
        local = self.addressable_devices
        if len(argument_lists) != len(local):
            n, mine = len(self.devices), len(local)
            here = f" ({mine} of them in this process)" if mine != n else ""
            raise InvalidArgument(f"{self.name} runs on {n} devices{here}; got arguments for {len(argument_lists)}")
        if self._runner is None:   # none of its devices is this process's: nothing runs here
            return []
        program, runner = self.program, self._runner
        position = {d.id: p for p, d in enumerate(self.devices)}
        for p, args in enumerate(argument_lists):   # all checked before any mesh copy is made
            if len(args) != len(program.inputs):
                raise InvalidArgument(f"{self.name} takes {len(program.inputs)} arguments, got {len(args)}")
            for i, (buf, want) in enumerate(zip(args, program.input_host_types)):
                if buf.host is not want:
                    check_argument(program, self.name, i, buf, want, f" on device {p}")
        bounds = self._ranges.check(argument_lists, self.name)
        tensors = []
        for i in range(len(program.inputs)):
            shards, bufs = [None] * len(self.devices), []   # (None: another process's device)
            words = program.input_host_types[i].words
            for device, args in zip(local, argument_lists):
                buf = args[i]
                if buf.device is not device:   # the framework put it elsewhere: move it
                    buf = buf.copy_to_device(device)
                shards[position[device.id]] = buf.as_words() if words \
                    else buf.live_tensor(f"argument {i} of {self.name}")
                # (a narrowed buffer read as words gave a copy in another form: it keeps its own)
                bufs.append(buf if not words or buf.host.words else None)
            tensors.append(runner.combine(shards))
            views = runner.adopt(tensors[-1])   # a mesh copy made through the host: from now on
            for buf, view in zip(bufs, views):   # the buffers are views of it
                if buf is not None:
                    buf.hold(view)
        deadline = self.client.deadline
        try:
            if self.profiler is not None and self.profiler.active:   # perf profile
                outputs = deadline.call(f"program {self.name}", self.profiler.run, program, runner.bound,
                                        lambda: runner.run(tensors, self._constants))
            else:
                outputs = deadline.call(f"program {self.name}", runner.run, tensors, self._constants)
        finally:
            for t in tensors:   # the mesh copies made of the arguments, if any
                runner.release(t)
        keep = set(non_donatable_input_indices or ())
        for i in program.donated_inputs:
            if i not in keep:
                for args in argument_lists:
                    args[i].delete()
        per_device = [runner.split(t) for t in outputs]
        results = [[Buffer(d, h, shards[position[d.id]], bound) for h, shards, bound in zip(program.output_host_types,
                                                                                             per_device, bounds)]
                   for d in local]
        check_guards(program, self.name, results)
        return results

    def delete(self) -> None:
        if not self.is_deleted:
            for t in self._constants if self.client.deadline.wedged is None else ():   # (see Buffer.delete)
                self._runner.free(t)
            self._constants = []
            self.is_deleted = True


def _assigned_devices(client, options) -> list:
    """The devices a program compiled with `options` runs on: partition p on the p-th."""
    n = options.num_replicas * options.num_partitions if options else 1
    if n > len(client.devices):
        raise InvalidArgument(f"a program for {n} devices cannot run on {client.target.system.name}, "
                              f"which has {len(client.devices)} TT devices")
    build_options = options.executable_build_options if options else None
    ids = list(range(n))
    if build_options is not None and build_options.device_assignment is not None:
        ids = [d for per_partition in assignment_ids(build_options.device_assignment) for d in per_partition]
        if n == 1:
            ids = ids[:1]
    return [client.lookup_device(i) for i in ids]


class ArgumentRanges:
    """The values a program's 64-bit integer arguments may hold: those its 32-bit arithmetic
    was proven exact for at compile time (ingest/narrow64.py), and, for a call whose arguments
    lie outside them, the ranges proven again for what that call holds (kept, so the steps of a
    growing position counter are proven once per power of two). Never a silent wrap."""
    KEPT = 16   # re-proven ranges kept per executable (the oldest go first)

    def __init__(self, program):
        self.program = program
        known = list(program.output_ranges)
        # (argument ranges, output bounds) that hold, newest last
        self.proven = [(program.input_ranges, known + [None] * (len(program.outputs) - len(known)))]

    def check(self, argument_lists: list, name: str) -> list:
        """The bounds of this call's outputs; raises InvalidArgument naming the first argument
        whose values no proof covers."""
        program = self.program
        if not program.input_ranges:
            return self.proven[0][1]
        wanted = [i for i, r in enumerate(program.input_ranges) if r is not None]
        for ranges, bounds in reversed(self.proven):   # the known bounds first: no device read
            if all(_within(a[i].value_range, ranges[i]) for i in wanted for a in argument_lists):
                return bounds
        held = {i: _hull([a[i].measured_range() for a in argument_lists]) for i in wanted}
        for ranges, bounds in reversed(self.proven):
            if all(_within(held[i], ranges[i]) for i in wanted):
                return bounds
        if program.range_source:
            from pjrt_tt.ingest import reprove_ranges
            guards = tuple((lo, hi) for _, lo, hi in program.guards)
            for widen in (_rounded, lambda r: r):   # a power-of-two range first: fewer proofs
                ranges = tuple(widen(held[i]) if i in held else None for i in range(len(program.input_ranges)))
                outs = reprove_ranges(program.range_source, ranges, guards)
                if outs is not None:
                    bounds = list(outs) + [None] * (len(program.outputs) - len(outs))
                    self.proven = [self.proven[0]] + self.proven[1:][-(self.KEPT - 1):] + [(ranges, bounds)]
                    return bounds
        i = next(i for i in wanted if not _within(held[i], program.input_ranges[i]))
        where = f" on {len(argument_lists)} devices" if len(argument_lists) > 1 else ""
        raise _out_of_range(program, name, i, argument_lists[0][i], held[i], where)


def _out_of_range(program, name: str, i: int, buf, held: tuple, where: str) -> InvalidArgument:
    ranges, dtype = program.input_ranges, buf.host.element.numpy.name
    want = ranges[i] if i < len(ranges) and ranges[i] is not None else _carrier_range(buf.host.element)
    return InvalidArgument(
        f"argument {i} of {name}{where} is {dtype} with values in [{held[0]}, {held[1]}], but the "
        f"program is exact only for values in [{want[0]}, {want[1]}]: the chip has no 64-bit integers, and "
        f"the program's {dtype} arithmetic ({program.range_limit or 'on this argument'}) runs in 32 bits, "
        f"where larger values could overflow. Keep the values in that range, or compute this part on the CPU")


def _carrier_range(element) -> tuple[int, int]:
    info = np.iinfo(DEVICE_NUMPY[element.device])
    return int(info.min), int(info.max)


def check_argument(program, name: str, i: int, buf, want, where: str) -> None:
    """Argument i's buffer against the type the program reads. A 64-bit integer buffer held
    narrowed goes to an argument read as words (Buffer.as_words); one held as words (its
    values do not fit the 32-bit carrier) is refused by an argument read narrowed."""
    held = buf.host
    if held == want:
        buf.host = want   # equal: the next call compares identities
    elif held.words == want.words or (held.element, held.shape) != (want.element, want.shape):
        shard = " its shard" if where else ""
        raise InvalidArgument(f"argument {i} of {name}{where} is {held}, expected{shard} {want}")
    elif held.words:
        raise _out_of_range(program, name, i, buf, buf.value_range, where)


def _within(r, want) -> bool:
    return r is not None and want[0] <= r[0] and r[1] <= want[1]


def _hull(ranges: list) -> tuple[int, int]:
    return min(r[0] for r in ranges), max(r[1] for r in ranges)


def _rounded(r: tuple[int, int]) -> tuple[int, int]:
    """[lo, hi] widened to [-2^a, 2^b - 1] (0 stays the bound of non-negative values)."""
    lo, hi = r
    return (-(1 << (-lo - 1).bit_length()) if lo < 0 else 0, (1 << max(hi, 0).bit_length()) - 1)


def check_guards(program, name: str, results: list) -> None:
    """Values the program could not bound at compile time (a float converted to a 64-bit
    integer) must lie in the range it assumed for them (narrow64 guards): each device's last
    2 * len(guards) buffers are their float operands' min and max, read here and removed
    from `results`. Outside: all outputs freed and an error naming the op, never a wrap."""
    k = 2 * len(program.guards)
    if not k:
        return
    bad = None
    for bufs in results:
        checks = bufs[len(bufs) - k:]
        del bufs[len(bufs) - k:]
        values = [float(b.numpy()) for b in checks]
        for b in checks:
            b.delete()
        for (what, lo, hi), low, high in zip(program.guards, values[0::2], values[1::2]):
            if bad is None and not (lo - 1 < low and high < hi + 1):   # (NaN fails too)
                bad = (what, lo, hi, low, high)
    if bad is not None:
        for bufs in results:
            for b in bufs:
                b.delete()
        what, lo, hi, low, high = bad
        raise InvalidArgument(
            f"{what} in {name} converts floats in [{low:.9g}, {high:.9g}] to 64-bit integers, but the "
            f"program is exact only for results in [{lo}, {hi}] (checked at run time): the chip has no "
            f"64-bit integers and computes them in 32 bits, where larger values could overflow. Keep "
            f"the values in that range, or compute this part on the CPU")
