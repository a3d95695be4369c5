"""Model code that cannot run on a chip as written, run in a form that can, same values.

Hugging Face's sparse mixture-of-experts blocks (Mixtral, Qwen3-MoE) route tokens with
data-dependent shapes: `expert_hit = (...).nonzero()`, a Python loop over it, `torch.where`
on a mask, `index_add_` of the rows each expert got. Dynamo breaks the graph there and
torch_xla runs `aten::nonzero` and `aten::_local_scalar_dense` on the host (18 of them per
call of a 2-layer Mixtral), splitting the model into programs with transfers between.

The form here runs every expert on every token and keeps each token's result only where the
router chose that expert, summing the experts in index order as `index_add_` does: static
shapes, one program, the same values (a token's terms are the same products added in the
same order; an expert that was not chosen adds an exact 0 through a select, so an inf or NaN
it computes never reaches the token). It costs num_experts / top_k times the expert FLOPs,
the trade tt-metal's hand-written Mixtral makes too (each chip runs its expert on every
token, masked by the router).

The rewrite applies where the block runs for the chip: under torch.compile (dynamo tracing,
whatever the tensors' device) or on XLA tensors (eager torch_xla); eager CPU runs the
original. `install()` patches the classes of the modules already imported; the backend calls
it when torch.compile looks it up (the model's module is imported by then) and on every graph.
"""
from __future__ import annotations

import sys

import torch
import torch.nn.functional as F

# (module, class) of the blocks routed with data-dependent shapes that share Mixtral's form
SPARSE_MOE_BLOCKS = (("transformers.models.mixtral.modeling_mixtral", "MixtralSparseMoeBlock"),
                     ("transformers.models.qwen3_moe.modeling_qwen3_moe", "Qwen3MoeSparseMoeBlock"))

_ORIGINAL: dict[type, object] = {}   # patched class -> its own forward


def install() -> None:
    for module_name, class_name in SPARSE_MOE_BLOCKS:
        cls = getattr(sys.modules.get(module_name), class_name, None)
        if cls is not None and cls not in _ORIGINAL:
            _ORIGINAL[cls] = cls.forward
            cls.forward = _sparse_moe_forward


def _for_the_chip(x: torch.Tensor) -> bool:
    return torch.compiler.is_compiling() or x.device.type == "xla"


def _sparse_moe_forward(self, hidden_states: torch.Tensor):
    if not _for_the_chip(hidden_states):
        return _ORIGINAL[type(self)](self, hidden_states)
    batch_size, sequence_length, hidden_dim = hidden_states.shape
    jitter = getattr(self, "jitter_noise", 0)
    if self.training and jitter > 0:
        hidden_states *= torch.empty_like(hidden_states).uniform_(1.0 - jitter, 1.0 + jitter)
    x = hidden_states.view(-1, hidden_dim)
    router_logits = self.gate(x)
    routing_weights = F.softmax(router_logits, dim=1, dtype=torch.float)
    routing_weights, selected_experts = torch.topk(routing_weights, self.top_k, dim=-1)
    if getattr(self, "norm_topk_prob", True):   # (Mixtral always normalizes)
        routing_weights /= routing_weights.sum(dim=-1, keepdim=True)
    routing_weights = routing_weights.to(x.dtype)
    out = torch.zeros_like(x)
    for e, expert in enumerate(self.experts):
        chose = selected_experts == e                                   # [tokens, top_k]: at most one slot
        weight = torch.where(chose, routing_weights, 0).sum(dim=-1, keepdim=True)   # that slot's weight, exact
        out = out + torch.where(chose.any(dim=-1, keepdim=True), expert(x) * weight, 0)
    return out.reshape(batch_size, sequence_length, hidden_dim), router_logits
