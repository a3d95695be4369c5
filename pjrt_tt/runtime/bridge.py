"""The entry points the C++ shim calls (see docs/architecture.md)."""
from __future__ import annotations

from jaxlib.mlir.dialects import stablehlo

from pjrt_tt.runtime.client import Client
from pjrt_tt.runtime.profiler import RECORDER, Session


def plugin_attributes() -> dict:
    # The StableHLO versions we read: jax serialises its portable artifact for these.
    return {
        "stablehlo_current_version": [int(x) for x in stablehlo.get_current_version().split(".")],
        "stablehlo_minimum_version": [int(x) for x in stablehlo.get_minimum_version().split(".")],
        "xla_version": 2,
    }


def create_client(options: dict, store=None, peers=None) -> Client:
    """PJRT_Client_Create; `store`: the framework's key-value store as (get, put), or None;
    `peers()`: the framework's last word on each process ({task id: PJRT_ProcessState})."""
    return Client(options, store, peers)


def profiler_session(options: bytes) -> Session:
    """PLUGIN_Profiler_Create: `options` is a serialized tensorflow.ProfileOptions."""
    return Session(RECORDER, options)
