"""The two supported JAX releases (docs/versions.md): the MLIR-bindings differences behind
ingest/mlir_compat.py, the replica-group forms XLA's partitioner writes, and the versions the
plugin reports. This file runs in both environments of `make test` (jax 0.12 and 0.7.1)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxlib.mlir import ir
from jaxlib.mlir.dialects import stablehlo

from conftest import assert_close
from pjrt_tt.ingest import new_context
from pjrt_tt.ingest.mlir_compat import attribute_values, defining_op, mesh_axes_replica_groups, users
from pjrt_tt.spmd.prepare import replica_groups

SUPPORTED = {"0.7.1": "1.", "0.12.0.1": "2."}   # jax version -> numpy major it is tested with


def test_environment_is_a_supported_pair():
    assert jax.__version__ in SUPPORTED, f"jax {jax.__version__} is not a tested release"
    assert np.__version__.startswith(SUPPORTED[jax.__version__]), (jax.__version__, np.__version__)


def _module(text: str) -> ir.Module:
    return ir.Module.parse(text)


def test_compat_reads_owners_users_and_attributes():
    with new_context():
        m = _module('func.func @main(%a: tensor<4xf32>) -> tensor<4xf32> attributes {foo = "x"} {\n'
                    '  %c = stablehlo.constant dense<1.0> : tensor<4xf32>\n'
                    '  %0 = stablehlo.add %a, %c : tensor<4xf32>\n'
                    '  %1 = stablehlo.multiply %0, %0 : tensor<4xf32>\n'
                    '  return %1 : tensor<4xf32>\n}')
        main = m.body.operations[0]
        block = main.regions[0].blocks[0]
        const, add, mul = list(block.operations)[:3]
        assert defining_op(add.operands[0]) is None                      # a block argument
        src = defining_op(add.operands[1])
        assert isinstance(src, ir.Operation) and src.name == "stablehlo.constant"
        assert [u.name for u in users(add.results[0])] == ["stablehlo.multiply"] * 2
        assert all(isinstance(u, ir.Operation) for u in users(block.arguments[0]))
        assert sorted(a.value for a in attribute_values(main) if isinstance(a, ir.StringAttr)) == ["main", "x"]
        assert isinstance(block.arguments[0].type, ir.RankedTensorType)
        assert mesh_axes_replica_groups(ir.Attribute.parse("dense<[[0, 1]]> : tensor<1x2xi64>")) is None


_MESH_AXES = hasattr(stablehlo, "ReplicaGroupMeshAxesAttr")


@pytest.mark.skipif(not _MESH_AXES, reason="jaxlib 0.7.1's partitioner writes dense replica groups only")
@pytest.mark.parametrize("axes,device_ids,want", [
    (["y"], None, [[0, 1, 2, 3], [4, 5, 6, 7]]),
    (["x"], None, [[0, 4], [1, 5], [2, 6], [3, 7]]),
    (["y", "x"], None, [[0, 4, 1, 5, 2, 6, 3, 7]]),
    (["y"], [7, 6, 5, 4, 3, 2, 1, 0], [[7, 6, 5, 4], [3, 2, 1, 0]]),
])
def test_mesh_axes_replica_groups(axes, device_ids, want):
    """jaxlib 0.12 writes a collective's groups as axes of an sdy mesh: the devices that
    differ only along those axes, ordered by them."""
    ids = "" if device_ids is None else f", device_ids=[{', '.join(map(str, device_ids))}]"
    refs = ", ".join(f'#stablehlo.axis_ref<name = "{a}">' for a in axes)
    with new_context():
        m = _module(f'sdy.mesh @mesh = <["x"=2, "y"=4]{ids}>\n'
                    'func.func @main(%a: tensor<4xf32>) -> tensor<4xf32> {\n'
                    '  %0 = "stablehlo.all_reduce"(%a) <{channel_handle = #stablehlo.channel_handle<handle = 1, type = 0>, '
                    f'replica_groups = #stablehlo.replica_group_mesh_axes<mesh = @mesh, axes = [{refs}]>, '
                    'use_global_device_ids}> ({\n'
                    '  ^bb0(%x: tensor<f32>, %y: tensor<f32>):\n'
                    '    %s = stablehlo.add %x, %y : tensor<f32>\n'
                    '    stablehlo.return %s : tensor<f32>\n'
                    '  }) : (tensor<4xf32>) -> tensor<4xf32>\n'
                    '  return %0 : tensor<4xf32>\n}')
        op = list(m.body.operations[1].regions[0].blocks[0].operations)[0].operation
        assert mesh_axes_replica_groups(op.attributes["replica_groups"]) == ("mesh", [(a, None) for a in axes])
        assert replica_groups(op) == want


def test_plugin_reports_the_installed_stablehlo_versions():
    from pjrt_tt.runtime.bridge import plugin_attributes
    attrs = plugin_attributes()
    assert attrs["stablehlo_current_version"] == [int(x) for x in stablehlo.get_current_version().split(".")]
    assert attrs["stablehlo_minimum_version"] == [int(x) for x in stablehlo.get_minimum_version().split(".")]


def test_jit_and_grad_match_cpu(tt, cpu):
    """The plugin's whole road under the installed jax: a jitted MLP step with its gradient."""
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((8, 16), np.float32), rng.standard_normal((16, 4), np.float32)
    f = jax.jit(jax.value_and_grad(lambda w, x: jnp.sum(jnp.tanh(x @ w) ** 2)))
    got = f(jax.device_put(w, tt), jax.device_put(x, tt))
    want = f(jax.device_put(w, cpu), jax.device_put(x, cpu))
    for g, r in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        assert_close(np.asarray(g), np.asarray(r), kind="matmul")
