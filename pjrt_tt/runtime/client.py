"""Client, devices and memories: the system as PJRT presents it."""
from __future__ import annotations

import numpy as np

from pjrt_tt import __version__, dtypes, targets
from pjrt_tt.compiler import Compiler
from pjrt_tt.errors import InvalidArgument
from pjrt_tt.runtime.deadline import DEFAULT_SECONDS, Deadline
from pjrt_tt.runtime.processes import agree, check_tt_run_binding, outlive_local_peers
from pjrt_tt.runtime.profiler import RECORDER
from pjrt_tt.settings import Settings
from pjrt_tt.systems import Processes
from pjrt_tt.targets.conformance import ConformanceCheck

PLATFORM_NAME = "tt"
PLATFORM_VERSION = f"pjrt-tt {__version__}"


class Memory:
    kind = "device"
    kind_id = 0

    def __init__(self, index: int, device: "Device"):
        self.index, self.id = index, device.id   # index: position in client.memories (this process's)
        self.devices = [device]
        self.debug_string = f"TT_DRAM_{device.id}"
        self.to_string = f"TtMemory(id={self.id}, kind=device, device={device.id})"


class Device:
    """Chip `index` of the system (the same id in every process). Another process's chip is
    listed but not addressable: no memory, no chip handle here."""

    def __init__(self, client: "Client", index: int, chip, process_index: int, local_hardware_id: int,
                 memory_index: int | None):
        system = client.target.system
        rows, cols = system.mesh_shape
        self.client, self.index, self.id, self.chip = client, index, index, chip
        self.process_index = process_index
        self.local_hardware_id = local_hardware_id   # its position among its own process's chips
        self.is_addressable = memory_index is not None
        self.kind = system.arch.name
        self.coords = (index // cols, index % cols)
        self.debug_string = f"TT_{index}({self.kind})"
        self.to_string = (f"TtDevice(id={index}, kind={self.kind}, coords={list(self.coords)}, "
                          f"system={system.name}, target={client.target.name})")
        self.attributes = {
            "coords": list(self.coords),
            "arch": system.arch.name,
            "system": system.name,
            "target": client.target.name,
            "dram_bytes": system.arch.dram_bytes,
            "num_cores": system.arch.compute_grid[0] * system.arch.compute_grid[1],
        }
        self.memory = Memory(memory_index, self) if self.is_addressable else None
        self.memories = [self.memory] if self.is_addressable else []
        self.default_memory = self.memory

    def memory_stats(self) -> dict[str, int]:
        stats = {"bytes_limit": self.client.target.system.arch.dram_bytes}
        stats.update(self.client.target.memory_stats(self.index))
        return stats


CLIENTS: list["Client"] = []   # every client made in this process (tests inspect them)


class Client:
    def __init__(self, options: dict | None = None, store=None, peers=None):
        """`options`: PJRT create options (ours, and the framework's `num_nodes` / `node_id`
        in a multi-process run); `store`: the framework's key-value store as (get, put);
        `peers()`: the framework's view of each process (a peer that died fails the
        collectives waiting for it)."""
        self.settings = Settings.load(options)
        self.processes = processes = Processes.from_options(options)
        name, system = targets.choose(self.settings.target, self.settings.system)
        check_tt_run_binding(processes, system)
        self.target = targets.open_target(name, system, self.settings.sim_dram_mb, processes, peers)
        self.peers = agree(processes, store, {"system": system.name, "target": name, "count": processes.count})
        timeout = self.settings.execute_timeout_s
        self.deadline = Deadline(DEFAULT_SECONDS[name] if timeout is None else timeout)   # device calls
        self.platform_name = PLATFORM_NAME
        self.platform_version = f"{PLATFORM_VERSION} ({name}, {system.name})"
        self.process_index = processes.index
        n, mine = system.num_chips, processes.chips_of(processes.index, system.num_chips)
        self.devices = [Device(self, i, chip, processes.owner(i, n), i % processes.chips_per_process(n),
                               i - mine.start if i in mine else None)
                        for i, chip in enumerate(self.target.chips)]
        self.addressable_devices = [d for d in self.devices if d.is_addressable]
        self.memories = [d.memory for d in self.addressable_devices]
        # Every new program also runs once on real ttnn (mock): a program the sim accepts is
        # one real ttnn accepts.
        check = ConformanceCheck(system, processes) if self.settings.check_with_mock else None
        self.recorder = RECORDER   # profiler sessions are process-wide (runtime/profiler.py)
        self.compiler = Compiler(self.settings, check, self.recorder)
        CLIENTS.append(self)

    def leave(self) -> None:
        """At exit, once this process's last program has run: the processes' last fence, and
        process 0 ends after the others on its host (runtime/processes.py says why)."""
        self.target.leave()
        outlive_local_peers(self.processes, self.peers)

    def lookup_device(self, device_id: int) -> Device:
        if not 0 <= device_id < len(self.devices):
            raise InvalidArgument(f"no TT device with id {device_id} (this system has {len(self.devices)})")
        return self.devices[device_id]

    def lookup_addressable_device(self, local_hardware_id: int) -> Device:
        if not 0 <= local_hardware_id < len(self.addressable_devices):
            raise InvalidArgument(f"no TT device with local hardware id {local_hardware_id} in process "
                                  f"{self.process_index} (it drives {len(self.addressable_devices)})")
        return self.addressable_devices[local_hardware_id]

    def default_device_assignment(self, num_replicas: int, num_partitions: int) -> list[int]:
        needed = num_replicas * num_partitions
        if needed > len(self.devices):
            raise InvalidArgument(f"a program for {needed} devices cannot run on "
                                  f"{self.target.system.name}, which has {len(self.devices)}")
        return list(range(needed))

    def buffer_from_host(self, address: int, element_type: int, dims, byte_strides, device, memory):
        from pjrt_tt.runtime.buffer import Buffer, host_view
        element = dtypes.from_pjrt(element_type).check_supported("a transfer to the TT device")
        device = memory.devices[0] if memory is not None else device
        if not device.is_addressable:
            raise InvalidArgument(f"TT device {device.id} is driven by process {device.process_index}, not by this "
                                  f"process ({self.process_index}): transfer to one of its own devices")
        # A view, not a copy: the target makes the one copy the device needs (or refuses the
        # transfer first when it does not fit), all before this returns.
        return Buffer.from_host(self, device, element, host_view(address, element.numpy, tuple(dims), byte_strides))

    def compile(self, code: bytes, fmt: str, compile_options: bytes):
        from pjrt_tt.runtime.executable import LoadedExecutable
        return LoadedExecutable.build(self, code, fmt, compile_options)


    def deserialize(self, data: bytes, compile_options: bytes | None):
        """PJRT_Executable_DeserializeAndLoad: `compile_options` overrides the serialized ones."""
        from pjrt_tt.runtime.executable import LoadedExecutable
        return LoadedExecutable.load(self, data, compile_options)
