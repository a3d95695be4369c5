"""torch_xla finds the plugin through the `torch_xla.plugins` entry point group; with
PJRT_DEVICE=TT it loads our PJRT library and `torch_xla.device()` is a TT chip."""
from __future__ import annotations

import os
import pwd

from torch_xla.experimental import plugins

from pjrt_tt.jax_plugin import LIBRARY
from pjrt_tt.torch.options import install_into_torch_xla


def _opaque_to_dynamo() -> None:
    """The runtime's Python runs inside torch calls: a transfer for `.item()` or `print()`
    reaches Buffer.to_host through the shim on the calling thread. Between the graphs of a
    compiled function dynamo's frame hook is live on that thread and would trace the
    runtime's own frames; in dynamo's skip list they run as plain Python. All of pjrt_tt but
    torch/rewrites.py, the model code dynamo must trace into the graph."""
    import pkgutil

    import pjrt_tt
    import pjrt_tt.torch as ours
    from torch._dynamo import trace_rules
    for package, keep in ((pjrt_tt, "torch"), (ours, "rewrites")):
        for module in pkgutil.iter_modules(package.__path__):
            if module.name != keep:
                trace_rules.add(f"{package.__name__}.{module.name}")


def _transposing_properties_release_the_gil() -> None:
    """torch runs the op behind `x.T`, `x.mT`, `x.H` and `x.mH` inside the property getter
    with the GIL held; its methods release it first. In eager mode that op may wait for
    torch_xla's device lock, which a thread inside PJRT_Client_Compile holds while our
    Python compiler waits for the GIL: a deadlock (docs/reliability.md, Concurrency). For
    XLA tensors the four properties run as the method forms they are defined as; every
    other tensor keeps torch's own getter. Dynamo has already read torch's descriptors
    (torch._dynamo is imported above), so compiled graphs record these as before."""
    import warnings

    import torch

    base = torch._C.TensorBase

    def reversed_dims(x):
        if x.dim() not in (0, 2):   # torch's own deprecation warning for numpy_T
            warnings.warn("The use of `x.T` on tensors of dimension other than 2 to reverse their "
                          "shape is deprecated and it will throw an error in a future release. "
                          "Consider `x.mT` to transpose batches of matrices or "
                          "`x.permute(*torch.arange(x.ndim - 1, -1, -1))` to reverse the "
                          "dimensions of a tensor.", UserWarning, stacklevel=3)
        return x.permute(tuple(range(x.dim() - 1, -1, -1)))

    method_forms = {   # name -> (applies to, method form)
        "T": (lambda x: True, reversed_dims),
        "mT": (lambda x: x.dim() >= 2, lambda x: x.transpose(-2, -1)),
        "H": (lambda x: x.dim() == 2, lambda x: x.adjoint()),
        "mH": (lambda x: x.dim() >= 2, lambda x: x.adjoint()),
    }
    for name, (applies, method) in method_forms.items():
        torch_getter = base.__dict__[name].__get__

        def getter(x, torch_getter=torch_getter, applies=applies, method=method):
            if x.is_xla and applies(x):
                return method(x)
            return torch_getter(x)   # other devices, and the shapes torch refuses with its own error

        setattr(torch.Tensor, name, property(getter, doc=base.__dict__[name].__doc__))


_opaque_to_dynamo()
_transposing_properties_release_the_gil()
install_into_torch_xla()   # scripts written for tt-xla call torch_xla.set_custom_compile_options


class TTPlugin(plugins.DevicePlugin):
    def library_path(self) -> str:
        if "HOME" not in os.environ:  # ttnn segfaults on import when HOME is unset
            os.environ["HOME"] = pwd.getpwuid(os.getuid()).pw_dir
        return str(LIBRARY)

    def physical_chip_count(self) -> int:
        return 1   # xmp.spawn starts one process: it drives its share of the chips (docs/multihost.md)

    def _world(self) -> tuple[int, int]:
        """(this process's rank, how many): torchrun's RANK / WORLD_SIZE, else mpirun's."""
        env = os.environ
        size = int(env.get("WORLD_SIZE", env.get("OMPI_COMM_WORLD_SIZE", "1")))
        rank = int(env.get("RANK", env.get("OMPI_COMM_WORLD_RANK", "0")))
        if size > 1:   # torch_xla's coordinator reads these
            env.setdefault("RANK", str(rank))
            env.setdefault("WORLD_SIZE", str(size))
        return rank, size

    def client_create_options(self) -> dict:
        """Several processes: the names jax passes too (torch_xla adds none of its own).
        Called as torch_xla creates the client: the exit hook goes in here (see below)."""
        import atexit
        atexit.register(_finish_executions_before_torch_xla_exits)   # runs before torch_xla's own
        from pjrt_tt.torch import rewrites
        rewrites.install()   # eager torch_xla: models whose module is imported by the first device use
        rank, size = self._world()
        return {"num_nodes": size, "node_id": rank} if size > 1 else {}

    def requires_xla_coordinator(self) -> bool:
        return self._world()[1] > 1   # its key-value store: the processes agree on the system


def _finish_executions_before_torch_xla_exits() -> None:
    """torch_xla's exit hook (`_prepare_to_exit`, registered at its import) waits for the
    device's pending executions holding the GIL, and ours run in Python: a script whose last
    compiled call's results were never read hung at exit forever (measured: a GPT-2 through
    torch.compile). Registered after torch_xla's, this hook runs first and waits for them
    with the GIL released (`_xla_wait_device_ops`); torch_xla's then finds none. Then the
    processes of a multi-process run leave in order (runtime/client.py Client.leave): torch_xla
    never shuts its coordinator's clients down, so process 0, which hosts it, must end last."""
    try:
        import torch_xla

        from pjrt_tt.runtime.client import CLIENTS
        torch_xla._XLAC._xla_wait_device_ops(devices=[])
        for client in CLIENTS:
            client.leave()
    except Exception:   # (at exit: an error here must not hide the script's own)
        pass
