"""The `mock` target: the real `ttnn` package in its mock-cluster mode.

ttnn 0.81 can run against a *mock cluster*: a YAML cluster descriptor named by
``TT_METAL_MOCK_CLUSTER_DESC_PATH`` replaces the PCIe driver.  Host-side
validation, the allocator, the program cache and the mesh / CCL plumbing are
the real ones; device reads return zeros.  Opening a device still JIT-builds
firmware and kernels with the SFPI RISC-V compiler, which is normally
downloaded from GitHub; we substitute ``mock_toolchain/riscv-tt-elf-g++``, a
small shell script over GNU binutils (Debian ``binutils-riscv64-unknown-elf``)
that produces stub ELF files ttnn accepts (nothing ever executes them).

Use::

    from pjrt_tt.targets import mock
    ttnn, dev = mock.open("n150")        # a ttnn.MeshDevice, shape (1, 1)
    ...                                  # call ttnn.* as on hardware
    mock.close(dev)

``prepare_environment(system)`` only sets things up (no ttnn import).  ttnn
reads the variables lazily, when its cluster is first created (first device
open, or first TILE / bfloat8_b host conversion), so importing ttnn earlier is
fine as long as nothing created the cluster yet.  One process can mock only
one system (the cluster is created once), and holds at most one open device:
`open` hands out the same device again (reference counted) until the last
`close`.

Everything lives under a cache directory keyed by the ttnn version:
``$PJRT_TT_MOCK_CACHE`` or ``$XDG_CACHE_HOME/pjrt_tt/mock`` or
``~/.cache/pjrt_tt/mock``, then ``ttnn-<version>/``:

    root/       TT_METAL_RUNTIME_ROOT: symlinks into the installed ttnn package,
                plus runtime/sfpi/compiler/bin/riscv-tt-elf-g++ (the stand-in)
    clusters/   generated cluster descriptors, one per system name
    jit/        TT_METAL_CACHE (JIT build outputs; reused across runs)
    logs/       TT_METAL_LOGS_PATH (ttnn writes generated/ there, not in cwd)

jax/jaxlib 0.7.1 and ttnn 0.81.1 coexist in one process (either import order,
jitted CPU computations before and after the mock device opened), so this
target runs in-process.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import importlib.metadata
import importlib.util
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from pjrt_tt.ttnn_facts import L1_SMALL_SIZE

__all__ = [
    "SYSTEMS",
    "MockUnavailable",
    "prepare_environment",
    "open",
    "close",
    "cluster_descriptor_yaml",
]

_TOOLCHAIN_DIR = Path(__file__).resolve().parent / "mock_toolchain"
_COMPILER_NAME = "riscv-tt-elf-g++"
_BINUTILS = ("riscv64-unknown-elf-as", "riscv64-unknown-elf-ld")
_DEBIAN_PACKAGE = "binutils-riscv64-unknown-elf"


class MockUnavailable(RuntimeError):
    """The mock target cannot run here (missing tool, unsupported system, ...)."""


# ---------------------------------------------------------------------------
# Systems
# ---------------------------------------------------------------------------

# Board "UPI" codes: UMD derives the board type from bits 36.. of a board id
# (n150 0x18, n300 0x14, p150 0x40-0x42, p300 0x44-0x46, Wormhole UBB 0x35).
_UPI = {"n150": 0x18, "n300": 0x14, "p150": 0x40, "p300": 0x45, "ubb": 0x35}


@dataclass(frozen=True)
class System:
    name: str
    arch: str  # cluster descriptor spelling: wormhole_b0 | blackhole
    board: str  # board type of every board: n150 n300 p150 p300 ubb
    mesh_shape: tuple[int, int]  # (rows, cols) of chips, as ttnn.open_mesh_device takes it
    chips_per_board: int
    description: str

    @property
    def num_chips(self) -> int:
        return self.mesh_shape[0] * self.mesh_shape[1]


# Names and mesh shapes match pjrt_tt.systems (checked by tests/test_mock_target.py);
# p150x4 is extra (a 2x2 Blackhole mesh that tt-metal also tests).
SYSTEMS: dict[str, System] = {
    s.name: s
    for s in [
        System("n150", "wormhole_b0", "n150", (1, 1), 1, "1 Wormhole chip"),
        System("n300", "wormhole_b0", "n300", (1, 2), 2, "2 Wormhole chips on one board; chip 1 reached over ethernet"),
        System("p150", "blackhole", "p150", (1, 1), 1, "1 Blackhole chip"),
        System("p300", "blackhole", "p300", (1, 2), 2, "2 Blackhole chips on one board"),
        System("t3k", "wormhole_b0", "n300", (2, 4), 2, "8 Wormhole chips on 4 n300 boards"),
        System("p150x4", "blackhole", "p150", (2, 2), 1, "4 Blackhole p150 cards"),
        System("galaxy", "wormhole_b0", "ubb", (4, 8), 32, "32 Wormhole chips on one UBB (4 trays of 8)"),
    ]
}


def _system(name: str) -> System:
    try:
        return SYSTEMS[name]
    except KeyError:
        raise MockUnavailable(
            f"unknown system {name!r} for the mock target; known: {', '.join(SYSTEMS)}"
        ) from None


# Harvesting per chip.  Real boards (tt-metal's descriptors of real
# machines): Wormhole n150 one Tensix row harvested, n300 two, galaxy (UBB)
# none; Blackhole p150 no Tensix column, p300 two columns per chip;
# Blackhole ethernet channels 5 and 8 and one of the two PCIe cores are
# always harvested.  The masks decide the compute grid ttnn reports
# (n150 8x8, p150 13x10, p300 11x10, galaxy 8x9).
# Deviation: n300/t3k chips are mocked with ONE harvested row.  With the real
# two, ttnn 0.81.1 reports an 8x8 grid but rejects typecast, matmul and
# reductions on the mock ("WorkUnitSpec 'main' targets node (0,7), which is
# out of bounds. The compute worker grid on this device is 8x7"); the
# reported grid is 8x8 either way.
_TENSIX_HARVEST = {"n150": (0x20,), "n300": (0x20,), "ubb": (0,), "p150": (0,), "p300": (0x2080, 0x110)}


def _harvesting(system: System, chip: int) -> dict[str, int | bool]:
    masks = _TENSIX_HARVEST[system.board]
    mask = masks[chip % len(masks)]
    if system.arch == "blackhole":
        return {
            "noc_translation": True,
            "harvest_mask": mask,
            "dram_harvesting_mask": 0,
            "eth_harvesting_mask": 0x120,
            # a p150 always has PCIe core (11, 0) harvested; a p300's second chip the other one
            "pcie_harvesting_mask": 0x1 if system.board == "p300" and chip % 2 else 0x2,
            "l2cpu_harvesting_mask": 0,
        }
    return {"noc_translation": True, "harvest_mask": mask}


# Ethernet channels used for each direction of a link between grid neighbours:
# direction -> (channels on the west/north chip, channels on the east/south
# chip).  Every chip thus uses disjoint channel sets per side.  Wormhole has
# 16 channels (0-15); a Blackhole p150/p300 has 12 usable logical channels
# (0-11; "No core coordinate found at location: (0, 12, ETH, LOGICAL)").  Galaxy chips
# are joined by 4 links per side, the others by 2.
_LINKS = {
    "wormhole_b0": {"east": ((14, 15), (6, 7)), "south": ((8, 9), (0, 1))},
    "blackhole": {"east": ((2, 3), (9, 10)), "south": ((6, 7), (0, 1))},
    "ubb": {"east": ((8, 9, 10, 11), (4, 5, 6, 7)), "south": ((12, 13, 14, 15), (0, 1, 2, 3))},
}

# Wormhole galaxy (UBB): tt-metal derives a chip's (tray, asic) position from
# its PCIe bus id (high nibble: tray 1-4 = 0xC0, 0x80, 0x00, 0x40; low
# nibble: asic 1-8) and pins the four mesh corners to asic 1 of trays 1-4
# (NW, NE, SW, SE).  We lay the 4x8 grid out as four 2x4 trays (quadrants)
# with asic 1 at each tray's outer corner.
_UBB_TRAY_BUS = (0xC0, 0x80, 0x00, 0x40)


def _ubb_bus_id(rows: int, cols: int, r: int, c: int) -> int:
    half_r, half_c = rows // 2, cols // 2
    tray = 2 * (r >= half_r) + (c >= half_c)  # 0..3: NW, NE, SW, SE quadrant
    # position inside the tray, counted from the tray's outer corner
    lr = r if r < half_r else rows - 1 - r
    lc = c if c < half_c else cols - 1 - c
    asic = 1 + lr * half_c + lc
    return _UBB_TRAY_BUS[tray] | asic


def cluster_descriptor_yaml(system_name: str) -> str:
    """The mock cluster descriptor (UMD YAML) for a named system.

    Chips are numbered row-major over ``mesh_shape``; neighbours in the grid
    are joined by ethernet links.  Boards: an n300 holds a PCIe chip and the
    chip beside it; a p300 two chips side by side, both with PCIe; a galaxy
    is one UBB board of 32 chips, all with PCIe.
    """
    s = _system(system_name)
    rows, cols = s.mesh_shape
    n = s.num_chips
    chip = lambda r, c: r * cols + c  # noqa: E731
    ubb = s.board == "ubb"

    if s.name == "t3k":
        # As in a real T3000: each n300 pairs a PCIe chip in a middle column
        # with the chip beside it in an outer column, so PCIe chips have 3
        # neighbours and the others 2 (how tt-metal recognises a T3K).
        boards = [[chip(r, 1), chip(r, 0)] for r in range(rows)] + [[chip(r, 2), chip(r, 3)] for r in range(rows)]
    else:
        flat = list(range(n))
        boards = [flat[i:i + s.chips_per_board] for i in range(0, n, s.chips_per_board)]
    board_of = {c: b for b, chips in enumerate(boards) for c in chips}

    def mmio(c: int) -> bool:
        if s.board == "n300":
            return boards[board_of[c]][0] == c  # the first chip of an n300 board has PCIe
        return True

    links = []
    for r in range(rows):
        for c in range(cols):
            for direction, (dr, dc) in (("east", (0, 1)), ("south", (1, 0))):
                r2, c2 = r + dr, c + dc
                if r2 >= rows or c2 >= cols:
                    continue
                a_ch, b_ch = _LINKS["ubb" if ubb else s.arch][direction]
                for ca, cb in zip(a_ch, b_ch):
                    links.append((chip(r, c), ca, chip(r2, c2), cb))

    upi = _UPI[s.board]
    board_ids = [(upi << 36) | (0x1000 + b) for b in range(len(boards))]
    out = ["# generated by pjrt_tt.targets.mock for system " + s.name, "arch:"]
    out += [f"  {c}: {s.arch}" for c in range(n)]
    out.append("chips:")
    # Wormhole ethernet coordinates [x, y, rack, shelf] (used to route to
    # chips without PCIe); none for Blackhole and galaxy.
    if s.arch == "wormhole_b0" and not ubb:
        out += [f"  {chip(r, c)}: [{c}, {r}, 0, 0]" for r in range(rows) for c in range(cols)]
    else:
        out[-1] += " {}"
    out.append("chip_unique_ids:")
    out += [f"  {c}: {0x7000_0000 + c}" for c in range(n)]
    if links:
        out.append("ethernet_connections:")
        for a, ca, b, cb in links:
            out += ["  -", f"    - chip: {a}", f"      chan: {ca}", f"    - chip: {b}", f"      chan: {cb}"]
    else:
        out.append("ethernet_connections: []")
    out.append("ethernet_connections_to_remote_devices: []")
    out.append("chips_with_mmio:")
    mmio_chips = [c for c in range(n) if mmio(c)]
    out += [f"  - {c}: {i}" for i, c in enumerate(mmio_chips)]  # chip: PCIe device index
    out.append("harvesting:")
    for c in range(n):
        out.append(f"  {c}:")
        out += [f"    {k}: {str(v).lower() if isinstance(v, bool) else v}" for k, v in _harvesting(s, c).items()]
    if ubb:
        out.append("chip_to_bus_id:")
        out += [f'  {chip(r, c)}: "0x{_ubb_bus_id(rows, cols, r, c):02x}"' for r in range(rows) for c in range(cols)]
    out.append("chip_to_boardtype:")
    out += [f"  {c}: {s.board}" for c in range(n)]
    out.append("boards:")
    for b, chips in enumerate(boards):
        out += ["  -", f"    - board_id: {board_ids[b]}", f"    - board_type: {s.board}", "    - chips:"]
        out += [f"        - {c}" for c in chips]
    if not ubb:
        out.append("asic_locations:")
        out += [f"  {c}: {boards[board_of[c]].index(c)}" for c in range(n)]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------
# Environment
# ---------------------------------------------------------------------------

_prepared: dict[str, str] | None = None  # env of the first prepare in this process
_prepared_system: str | None = None


def _ttnn_package() -> tuple[Path, str]:
    spec = importlib.util.find_spec("ttnn")  # does not import the package
    if spec is None or not spec.origin:
        raise MockUnavailable("the mock target needs the `ttnn` package (pip install ttnn==0.81.1)")
    try:
        version = importlib.metadata.version("ttnn")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return Path(spec.origin).resolve().parent, version


def _cache_base() -> Path:
    if os.environ.get("PJRT_TT_MOCK_CACHE"):
        return Path(os.environ["PJRT_TT_MOCK_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path(os.environ.get("HOME") or Path.home()) / ".cache"
    return base / "pjrt_tt" / "mock"


def check_toolchain() -> None:
    """Raise MockUnavailable when GNU binutils for RISC-V are missing."""
    for var, tool in zip(("PJRT_TT_RISCV_AS", "PJRT_TT_RISCV_LD"), _BINUTILS):
        path = os.environ.get(var) or tool
        if shutil.which(path) is None:
            raise MockUnavailable(
                f"the mock target needs `{tool}` (GNU binutils for RISC-V), which is not on PATH; "
                f"install the Debian/Ubuntu package `{_DEBIAN_PACKAGE}` "
                f"(apt-get install {_DEBIAN_PACKAGE}), or set {var} to its path"
            )


def _symlink(target: Path, link: Path) -> None:
    if link.is_symlink() and os.readlink(link) == str(target):
        return
    if link.is_symlink() or link.exists():
        if link.is_dir() and not link.is_symlink():
            shutil.rmtree(link)
        else:
            link.unlink()
    link.symlink_to(target)


def _write_if_changed(path: Path, data: bytes, mode: int | None = None) -> None:
    if not (path.exists() and path.read_bytes() == data):
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    if mode is not None and (path.stat().st_mode & 0o777) != mode:
        path.chmod(mode)


def _build_root(pkg: Path, root: Path) -> None:
    """The runtime root: every entry of the ttnn package, except that runtime/
    is a real directory so that runtime/sfpi can hold our compiler."""
    root.mkdir(parents=True, exist_ok=True)
    for entry in pkg.iterdir():
        if entry.name in ("runtime", "__pycache__"):
            continue
        _symlink(entry, root / entry.name)
    runtime = root / "runtime"
    if runtime.is_symlink():
        runtime.unlink()
    runtime.mkdir(exist_ok=True)
    if (pkg / "runtime").is_dir():
        for entry in (pkg / "runtime").iterdir():
            if entry.name != "sfpi":
                _symlink(entry, runtime / entry.name)
    bindir = runtime / "sfpi" / "compiler" / "bin"
    bindir.mkdir(parents=True, exist_ok=True)
    _write_if_changed(bindir / _COMPILER_NAME, (_TOOLCHAIN_DIR / _COMPILER_NAME).read_bytes(), 0o755)


def prepare_environment(system: str = "n150", *, quiet: bool = True) -> dict[str, str]:
    """Build (idempotently) the runtime root and cluster descriptor for
    `system` and set the environment ttnn reads.  Returns the variables set.

    Must run before ttnn creates its cluster (see the module docstring).
    Safe to call again with the same system; a different system in the same
    process raises MockUnavailable.  Raises MockUnavailable, naming the Debian
    package, when the RISC-V binutils are missing.
    """
    global _prepared, _prepared_system
    _system(system)
    if _prepared is not None:
        if _prepared_system != system:
            raise MockUnavailable(
                f"this process already mocks system {_prepared_system!r}; ttnn creates its "
                f"cluster once per process, so {system!r} needs a new process"
            )
        os.environ.update(_prepared)
        return dict(_prepared)
    check_toolchain()
    if "HOME" not in os.environ:  # `import ttnn` segfaults without HOME
        os.environ["HOME"] = str(Path.home())
    pkg, version = _ttnn_package()
    base = _cache_base() / f"ttnn-{version}"
    base.mkdir(parents=True, exist_ok=True)
    with _locked(base / ".lock"):
        _build_root(pkg, base / "root")
        clusters = base / "clusters"
        clusters.mkdir(exist_ok=True)
        desc = clusters / f"{system}.yaml"
        _write_if_changed(desc, cluster_descriptor_yaml(system).encode())
        (base / "jit").mkdir(exist_ok=True)
        (base / "logs").mkdir(exist_ok=True)
    env = {
        "TT_METAL_MOCK_CLUSTER_DESC_PATH": str(desc),
        "TT_METAL_RUNTIME_ROOT": str(base / "root"),
        "TT_METAL_CACHE": str(base / "jit"),
        "TT_METAL_LOGS_PATH": str(base / "logs"),
    }
    # ttnn reads these lazily (when its cluster is first created), so importing
    # ttnn earlier is fine; but values set by someone else would be ignored
    # once that cluster exists, so refuse to change them silently.
    clash = {k for k, v in env.items() if os.environ.get(k) not in (None, v)}
    if clash and "ttnn" in sys.modules:
        raise MockUnavailable(
            "ttnn is already imported with a different mock setup "
            f"({', '.join(sorted(clash))} differ); run the mock target in a fresh process"
        )
    if quiet:
        env.setdefault("TT_METAL_LOGGER_LEVEL", os.environ.get("TT_METAL_LOGGER_LEVEL", "error"))
    os.environ.update(env)
    _prepared, _prepared_system = env, system
    return dict(env)


@contextlib.contextmanager
def _locked(path: Path):
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# ---------------------------------------------------------------------------
# Devices
# ---------------------------------------------------------------------------



@dataclass
class _Open:
    system: str
    shape: tuple[int, int]
    device: object
    fabric: bool
    refs: int


_open_device: _Open | None = None  # the process's open mock device, shared by open()/close()


def open(system: str = "n150", *, mesh_shape: tuple[int, int] | None = None,
         fabric: bool | None = None, l1_small_size: int = L1_SMALL_SIZE):
    """Open the mock system; returns ``(ttnn_module, mesh_device)``.

    The device is always a ``ttnn.MeshDevice`` (``ttnn.open_device`` returns one
    too, 1x1): the system's full mesh unless `mesh_shape` is given (e.g. (1, 8)
    for t3k).  `fabric` (default: on for multi-chip) sets
    ``ttnn.FabricConfig.FABRIC_1D`` first, which CCL ops (all_gather,
    reduce_scatter, all_reduce) need.

    One device per process: opening the same system and shape again returns
    the device already open (reference counted; each `open` needs a `close`).
    A different shape while one is open raises MockUnavailable.
    """
    global _open_device
    prepare_environment(system)
    import ttnn  # noqa: PLC0415  (after the environment is set)

    s = SYSTEMS[system]
    shape = tuple(mesh_shape or s.mesh_shape)
    if _open_device is not None:
        if _open_device.shape != shape:
            raise MockUnavailable(
                f"a mock {_open_device.system} device of shape {_open_device.shape} is already open "
                f"in this process; close it before opening shape {shape}"
            )
        _open_device.refs += 1
        return ttnn, _open_device.device
    if shape[0] * shape[1] > s.num_chips:
        raise MockUnavailable(f"mesh {shape} does not fit the {s.num_chips} chips of {system} ({s.description})")
    if fabric is None:
        fabric = shape[0] * shape[1] > 1
    if fabric:
        ttnn.set_fabric_config(ttnn.FabricConfig.FABRIC_1D)
    try:
        device = ttnn.open_mesh_device(ttnn.MeshShape(*shape), l1_small_size=l1_small_size)
    except Exception as e:
        if fabric:
            _reset_fabric(ttnn)
        raise MockUnavailable(f"could not open mock {system} ({s.description}) as mesh {shape}: {e}") from e
    _open_device = _Open(system, shape, device, fabric, 1)
    if not _atexit_registered:
        atexit.register(_close_at_exit)
        _atexit_registered.append(True)
    return ttnn, device


_atexit_registered: list[bool] = []


def _close_at_exit() -> None:
    """Close a device still open at interpreter exit (else nanobind reports
    the MeshDevice and its bindings as leaked)."""
    global _open_device
    if _open_device is not None:
        _open_device.refs = 1
        with contextlib.suppress(Exception):
            close(_open_device.device)


def close(device) -> None:
    """Release a device from `open`; the last release closes it (and turns the
    fabric off again)."""
    global _open_device
    import ttnn  # noqa: PLC0415

    if _open_device is None or _open_device.device is not device:
        ttnn.close_mesh_device(device)  # not ours: just close it
        return
    _open_device.refs -= 1
    if _open_device.refs > 0:
        return
    fabric = _open_device.fabric
    _open_device = None
    ttnn.close_mesh_device(device)
    if fabric:
        _reset_fabric(ttnn)


def _reset_fabric(ttnn) -> None:
    with contextlib.suppress(Exception):
        ttnn.set_fabric_config(ttnn.FabricConfig.DISABLED)
