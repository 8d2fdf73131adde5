"""Closed formulas of the ``moe`` layer (no torch): parameters (all, and used per token) and
width scaling. (A positionwise layer has no state: the core counts none.)"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:  # pragma: no cover
    from hybridzoo_plugins.moe import MoEOptions


def _shared(o: MoEOptions, hidden_size: int) -> int:
    """The shared SwiGLU expert ``3·S·H`` and its gate ``H`` (if any)."""
    return 3 * o.shared_expert_size * hidden_size + (hidden_size if o.shared_expert_gate else 0)


def param_count(o: MoEOptions, hidden_size: int) -> int:
    """Every parameter, no biases: the router ``E·H``, E SwiGLU experts of inner width ``I``
    (gate and up ``2·I·H``, down ``I·H``: ``3·I·H`` each), and the shared expert ``3·S·H``
    (plus ``H`` for its gate)."""
    experts = o.num_experts * 3 * o.expert_size * hidden_size
    return o.num_experts * hidden_size + experts + _shared(o, hidden_size)


def active_param_count(o: MoEOptions, hidden_size: int) -> int:
    """Parameters one token uses: the router, its ``top_k`` experts and the shared expert."""
    experts = o.top_k * 3 * o.expert_size * hidden_size
    return o.num_experts * hidden_size + experts + _shared(o, hidden_size)


def scale_options(o: MoEOptions, hidden_size: int, *, seq_len: int | None = None) -> MoEOptions:
    """Expert widths follow the model width: ``2·hidden_size`` (512 at the default width 256);
    a shared expert, when there is one, as well."""
    width = 2 * hidden_size
    return attrs.evolve(o, expert_size=width, shared_expert_size=o.shared_expert_size and width)
