"""JAX discovers the plugin through the `jax_plugins` entry point group."""
from __future__ import annotations

import contextvars
import os
import pwd
import sys
from pathlib import Path

LIBRARY = Path(__file__).resolve().parent / "libpjrt_tt.so"

# Primitives emitted for the tt platform as a `stablehlo.composite` named "tt.<name>" whose
# decomposition is jax's own lowering. jax lowers them to chlo ops, which serialising the
# module (VHLO) expands into dozens of polynomial ops per element; a composite survives
# serialisation, and the lowering turns it into the one ttnn op (pjrt_tt/lower/composite.py).
COMPOSITE_PRIMITIVES = {"erf": "erf", "erfc": "erfc", "erf_inv": "erfinv"}
_decomposing = contextvars.ContextVar("pjrt_tt_decomposing", default=False)


def _as_composite(prim, name: str):
    from jax import lax
    from jax._src.interpreters import mlir
    default = mlir._lowerings[prim].rule

    def rule(ctx, *args, **params):
        if _decomposing.get():   # the decomposition body: jax's own lowering
            return default(ctx, *args, **params)
        token = _decomposing.set(True)
        try:
            fn = lax.composite(lambda *xs: prim.bind(*xs, **params), name=f"tt.{name}")
            return mlir.lower_fun(fn, multiple_results=False)(ctx, *args)
        finally:
            _decomposing.reset(token)
    return rule


def _register_composites() -> None:
    from jax._src.interpreters import mlir
    from jax._src.lax import special
    for attr, name in COMPOSITE_PRIMITIVES.items():
        prim = getattr(special, f"{attr}_p")
        # not cacheable: jax's lowering cache would hand the decomposition's chlo lowering
        # (same primitive, avals, params) to the next use outside it
        mlir.register_lowering(prim, _as_composite(prim, name), platform="tt", cacheable=False)


def _register_logistic() -> None:
    """jax lowers logistic (jax.nn.sigmoid) to 1 / (1 + exp(-x)) on every platform (a TODO in
    jax about XLA's LogisticOp numerics on its own backends); ttnn.sigmoid (Accurate mode by
    default) is the op to use, so emit stablehlo.logistic, lowered to it (lower/elementwise.py)."""
    import numpy as np
    from jax._src import dtypes
    from jax._src.interpreters import mlir
    from jax._src.lax import lax as lax_internal
    from jax._src.lib.mlir.dialects import hlo
    default = mlir._lowerings[lax_internal.logistic_p].rule

    def rule(ctx, x, accuracy=None):
        if accuracy is not None or not dtypes.issubdtype(ctx.avals_in[0].dtype, np.floating):
            return default(ctx, x, accuracy=accuracy)   # complex, or a requested accuracy
        return lax_internal._nary_lower_hlo(hlo.logistic, ctx, x)
    mlir.register_lowering(lax_internal.logistic_p, rule, platform="tt")


def _ir_type(ctx, aval):
    """The MLIR type of `aval` (jax 0.12 asks for the module context, 0.7.1 does not)."""
    import inspect
    from jax._src.interpreters import mlir
    if len(inspect.signature(mlir.aval_to_ir_type).parameters) > 1:
        return mlir.aval_to_ir_type(ctx.module_context, aval)
    return mlir.aval_to_ir_type(aval)


def _register_eigh() -> None:
    """jax has no eigh lowering for a platform without its own kernels (only cpu / gpu / tpu
    register one). Emit what it emits for small matrices on TPU, and torch_xla for any: the
    custom call "Eigh" (XLA's Jacobi eigensolver: "lower,sort,max_sweeps,tol"), lowered by
    pjrt_tt/lower/factorizations.py. TPU's larger-matrix road (QDWH) runs on matmuls, which
    are TF32 on the card."""
    from jax._src.interpreters import mlir
    from jax._src.lax import linalg

    def rule(ctx, operand, *, lower, sort_eigenvalues, subset_by_index, **_):
        n = ctx.avals_in[0].shape[-1]
        if subset_by_index is not None and tuple(subset_by_index) != (0, n):
            raise NotImplementedError("eigh with subset_by_index on tt (all eigenvalues only)")
        v_aval, w_aval = ctx.avals_out
        op = mlir.custom_call("Eigh", result_types=[_ir_type(ctx, v_aval), _ir_type(ctx, w_aval)], operands=[operand],
                              backend_config=f"{int(lower)},{int(sort_eigenvalues)},100,1e-6", api_version=1)
        return op.results
    mlir.register_lowering(linalg.eigh_p, rule, platform="tt")


def _register_callbacks() -> None:
    """jax.debug.print / debug.callback, pure_callback and io_callback on tt. jax's rules for
    them (effects, tokens, the wrappers that put arguments on the CPU) end in
    `callback.emit_python_callback`, which emits XLA's host-callback custom calls for cpu /
    gpu / tpu only: on tt it emits `custom_call @pjrt_tt.python_callback` instead (the
    callable registered in pjrt_tt/host_callbacks.py, its index the backend_config), which
    the executor runs on the host between ttnn ops. Every other platform is left to jax."""
    import inspect

    import numpy as np
    from jax._src import callback, debugging, dtypes
    from jax._src.interpreters import mlir
    from pjrt_tt import host_callbacks

    emit = callback.emit_python_callback
    if getattr(emit, "pjrt_tt", False):
        return

    def _devices(ctx) -> int:
        """How many devices the module runs on: jit's sharding context says, shard_map's mesh,
        pmap's replicas."""
        context = ctx.module_context.axis_context
        if hasattr(context, "num_devices"):
            return context.num_devices
        if hasattr(context, "mesh"):
            return context.mesh.size
        env = getattr(context, "axis_env", None)
        return env.nreps if env is not None else 2

    def emit_python_callback(ctx, fn, token, operands, operand_avals, result_avals, *, has_side_effect,
                             partitioned=False, sharding=None, **kwargs):
        if tuple(ctx.module_context.platforms) != ("tt",):
            return emit(ctx, fn, token, operands, operand_avals, result_avals, has_side_effect=has_side_effect,
                        partitioned=partitioned, sharding=sharding, **kwargs)
        if partitioned or _devices(ctx) != 1:
            raise NotImplementedError("a Python callback (jax.debug.print, pure_callback, io_callback) in a "
                                      "sharded program on tt: pjrt-tt runs callbacks in single-device programs "
                                      "only so far; call it outside the sharded function")

        def checked(*args):
            """jax's result contract, checked as XLA:CPU's callback does: never a silent cast."""
            out = fn(*args)
            if len(out) != len(result_avals):
                raise RuntimeError(f"Mismatched number of outputs from callback. Expected: {len(result_avals)}, "
                                   f"Actual: {len(out)}")
            out = tuple(dtypes.canonicalize_value(np.asarray(a)) for a in out)   # (1.0 is float32 without x64)
            for i, (a, aval) in enumerate(zip(out, result_avals)):
                if a.shape != aval.shape or a.dtype != aval.dtype:
                    raise RuntimeError(f"Incorrect output {'shape' if a.shape != aval.shape else 'dtype'} for "
                                       f"return value #{i}: Expected: {aval.shape} {aval.dtype}, Actual: "
                                       f"{a.shape} {a.dtype}")
            return out

        types = [_ir_type(ctx, a) for a in result_avals]
        if token is not None:
            operands, types = [token, *operands], [mlir.token_type(), *types]
        op = mlir.custom_call(host_callbacks.TARGET, result_types=types, operands=list(operands),
                              backend_config=str(host_callbacks.register(checked)), has_side_effect=has_side_effect,
                              api_version=1)
        if sharding is not None and token is None:   # (one device: where it runs; kept as jax writes it)
            if len(inspect.signature(mlir.set_sharding).parameters) > 2:
                mlir.set_sharding(ctx.module_context, op, sharding)
            else:   # jax 0.7.1
                mlir.set_sharding(op, sharding)
        results = list(op.results)
        if token is not None:
            token, *results = results
        return results, token, None

    emit_python_callback.pjrt_tt = True
    callback.emit_python_callback = emit_python_callback
    rules = [(debugging.debug_callback_p, debugging.debug_callback_lowering),
             (callback.pure_callback_p, callback.pure_callback_lowering),
             (callback.io_callback_p, callback.io_callback_lowering)]
    if hasattr(debugging, "debug_print_p"):   # jax 0.12: debug.print is its own primitive
        rules.append((debugging.debug_print_p, debugging.debug_print_lowering_rule))
    for prim, rule in rules:
        mlir.register_lowering(prim, rule, platform="tt")


class ProgramCaches:
    """pjrt-tt's program caches (one per client) as jax's cache management sees them, so
    `jax.clear_caches()` empties them too. jax holds registered caches weakly: the module
    keeps the one instance alive."""

    @staticmethod
    def _compilers() -> list:
        if "pjrt_tt.runtime.client" not in sys.modules:
            return []   # no client was made: no cache to clear (and nothing imported for it)
        from pjrt_tt.runtime.client import CLIENTS
        return [c.compiler for c in CLIENTS]

    def cache_clear(self) -> None:
        for compiler in self._compilers():
            compiler.clear_cache()

    def cache_info(self) -> dict:
        caches = [c._cache for c in self._compilers()]
        return {"hits": sum(c.hits for c in caches), "misses": sum(c.misses for c in caches),
                "evictions": sum(c.evictions for c in caches), "currsize": sum(len(c) for c in caches),
                "maxsize": sum(c.capacity for c in caches)}

    def cache_keys(self) -> list[str]:
        return [key for c in self._compilers() for key in c._cache]


PROGRAM_CACHES = ProgramCaches()


class _ListedPlatform:
    """A tt backend as jax's persistent-cache gate sees it: one of the platforms it lists."""

    def __init__(self, backend):
        self._backend = backend

    platform = "cpu"

    def __getattr__(self, name):
        return getattr(self._backend, name)


def _join_persistent_cache() -> None:
    """jax uses its persistent compilation cache (`jax_compilation_cache_dir`) only on a fixed
    list of platforms (`compilation_cache.is_cache_used`: tpu, gpu, cpu, neuron, in jax 0.7.1
    and 0.12 alike) and a plugin cannot declare that it serializes; ours do (PJRT_Executable_
    Serialize, runtime/serialized.py), so tt passes that gate as a listed platform. jax's own
    key still names the platform `tt` and our platform version; nothing else changes."""
    from jax._src import compilation_cache
    original = compilation_cache.is_cache_used
    if getattr(original, "pjrt_tt", False):
        return

    def is_cache_used(backend) -> bool:
        return original(_ListedPlatform(backend) if getattr(backend, "platform", None) == "tt" else backend)
    is_cache_used.pjrt_tt = True
    compilation_cache.is_cache_used = is_cache_used


def initialize() -> None:
    from jax._src import xla_bridge
    if "HOME" not in os.environ:  # ttnn segfaults on import when HOME is unset
        os.environ["HOME"] = pwd.getpwuid(os.getuid()).pw_dir
    xla_bridge.register_plugin("tt", priority=500, library_path=str(LIBRARY))
    # jax 0.7.1 keeps a fixed list of platforms whose executables honour donation; ours
    # do (donated inputs are freed at execution), so join it.
    from jax._src.interpreters import mlir
    if "tt" not in mlir._platforms_with_donation:
        mlir._platforms_with_donation.append("tt")
    _register_composites()
    _register_logistic()
    _register_eigh()
    _register_callbacks()
    _join_persistent_cache()
    from jax._src import util
    util.register_cache(PROGRAM_CACHES, "pjrt-tt program cache (pjrt_tt.compiler.ProgramCache)")
