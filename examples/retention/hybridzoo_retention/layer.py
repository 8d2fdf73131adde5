"""Multi-scale retention (RetNet, Sun et al. 2023, "Retentive Network: A Successor to Transformer
for Large Language Models"), as a hybridzoo body.

For each head ``h`` with a fixed decay ``γ_h = 1 - 2^(-5-h)``::

    q_n = rot(x_n W_Q, n) / sqrt(d),   k_m = rot(x_m W_K, m),   v_m = x_m W_V
    o_n = Σ_{m<=n} γ^(n-m) (q_n · k_m) v_m              (parallel form)
        = q_n S_n,   S_n = γ S_{n-1} + k_nᵀ v_n          (recurrent form)
    y_n = (swish(x_n W_G) ⊙ GroupNorm_heads(o_n)) W_O

``rot`` is the rotary part of xPos (RetNet's ``Θ_n = e^{inθ}``): channel pair ``(i, i + d/2)``
rotates by ``n · base^(-2i/d)``. As in the official implementation, xPos's extra length scale is
left out (the decay plays its role), and so are the parallel form's score normalisations (the group
norm is invariant to a per-position scale of each head).

The sequence form is chunkwise (RetNet's "chunkwise recurrent" form): inside a chunk of ``C``
positions the parallel form ``(Q Kᵀ ⊙ D) V`` with ``D_nm = γ^(n-m)`` (the masked entries selected
away, so that a later position never enters an earlier output, not even times zero); across
chunks the state ``S``. Time ``O(L·C)`` and memory ``O(C²)`` per head and chunk; the result does
not depend on ``C`` (up to rounding).

Decoding state: ``(S, pos)`` with ``S: [B, heads, head_dim, value_dim]`` and ``pos`` a 0-dim
int64 tensor (positions seen so far, shared by the batch, for the rotary angles).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from hybridzoo.nn import FeedForward
from hybridzoo.plugin import at_least, resolve_options
from torch import Tensor, nn

from hybridzoo_retention import RetentionOptions
from hybridzoo_retention.formulas import head_log_decays

State = tuple[Tensor, Tensor]

#: Epsilon of the per-head group norm.
NORM_EPS = 1e-5


def rotate_half(x: Tensor) -> Tensor:
    """``[x1, x2] -> [-x2, x1]`` over the last dim (pairs ``(i, i + d/2)`` rotate together)."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def rotary_tables(
    positions: Tensor, head_dim: int, base: float, dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    """``cos, sin`` of shape ``[L, head_dim]`` for float ``positions [L]``."""
    half = head_dim // 2
    exponents = torch.arange(half, device=positions.device, dtype=positions.dtype) / half
    angles = positions[:, None] * (base ** (-exponents))[None, :]  # [L, half]
    angles = torch.cat((angles, angles), dim=-1)  # [L, head_dim]
    return angles.cos().to(dtype), angles.sin().to(dtype)


def chunk_retention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    log_decay: Tensor,
    *,
    chunk_size: int = 64,
    initial_state: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Retention over a sequence, chunk by chunk.

    Inside a chunk, the parallel form ``(Q Kᵀ ⊙ D) V``; between chunks, the state ``S``. Causal
    for any input values: a NaN or inf at position ``s`` leaves every output before ``s``
    bitwise unchanged. A product masked over the whole chunk would not be (``0 · NaN = NaN``):
    the masked weights are selected away (``masked_fill``); when ``v`` holds a non-finite value,
    it is zeroed for the product and ``(0 · v).cumsum`` (zero, or NaN from the first non-finite
    value on) carries it to the outputs it belongs to. (Testing whether ``v`` is finite reads one
    value back from the device.)

    Args:
        q, k: ``[B, heads, T, d_k]`` (q already scaled, both rotated).
        v: ``[B, heads, T, d_v]``.
        log_decay: ``[heads]``, ``log γ_h < 0``.
        chunk_size: positions per chunk ``C``.
        initial_state: ``[B, heads, d_k, d_v]`` or None (zeros).

    Returns:
        ``(o [B, heads, T, d_v], S_T [B, heads, d_k, d_v])``.
    """
    batch, heads, _, d_k = q.shape
    d_v = v.shape[-1]
    state = q.new_zeros(batch, heads, d_k, d_v) if initial_state is None else initial_state
    c_max = min(chunk_size, q.shape[2])
    pos = torch.arange(c_max, device=q.device, dtype=q.dtype)
    lg = log_decay.to(q.dtype)[:, None, None]  # [heads, 1, 1]
    gap = pos[:, None] - pos[None, :]  # [C, C], n - m
    later = gap < 0  # m after n: never enters o_n
    decay = torch.exp(gap.clamp(min=0) * lg)  # [heads, C, C], D_nm = γ^(n-m) where m <= n
    # a non-finite value of v is zeroed for the intra-chunk product, where it would meet the
    # zero weights of earlier outputs; (0 · v).cumsum then carries it to its own and later
    # outputs. Both are skipped when every value is finite (they would change nothing); a
    # finite sum proves that cheaply (an overflowing sum of finite values only takes the
    # longer, equally exact way)
    finite_values = bool(torch.isfinite(v.sum()))
    product_v = v if finite_values else v.nan_to_num(nan=0.0, posinf=0.0, neginf=0.0)
    chunks = zip(*(t.split(c_max, 2) for t in (q, k, v, product_v)), strict=True)
    outs = []
    # split (not indexing in a loop): one backward concatenation instead of one per chunk
    for qc, kc, vc, pc in chunks:
        c = qc.shape[2]
        p = pos[:c, None]  # [c, 1]
        weights = ((qc @ kc.transpose(-1, -2)) * decay[:, :c, :c]).masked_fill(later[:c, :c], 0)
        carried = (qc * torch.exp((p + 1) * lg)) @ state  # [B, heads, c, d_v]
        outs.append(weights @ pc + carried)
        k_to_end = kc * torch.exp((c - 1 - p) * lg)  # [B, heads, c, d_k]
        state = torch.exp(c * lg) * state + k_to_end.transpose(-1, -2) @ vc
    out = torch.cat(outs, dim=2)
    if not finite_values:
        out = out + (0.0 * v).cumsum(2)  # 0, or NaN from the first non-finite value on
    return out, state


class MultiScaleRetention(nn.Module):
    """RetNet's multi-scale retention (a body: no outer norm or residual).

    Args:
        hidden_size: model width ``H``.
        options: the layer's options record (fields and defaults documented there,
            ``hybridzoo layers`` lists them); default its defaults.
        **changes: any of its fields (``MultiScaleRetention(64, num_heads=2, head_dim=8)``).

    Parameter count: :func:`hybridzoo_retention.formulas.retention_param_count`.
    """

    def __init__(
        self, hidden_size: int, options: RetentionOptions | None = None, **changes: Any
    ) -> None:
        super().__init__()
        o = resolve_options(RetentionOptions, options, changes)
        hidden_size = at_least(1).check("hidden_size", hidden_size)
        num_heads, head_dim = o.num_heads, o.head_dim
        value_factor, chunk_size, rope_base = o.value_factor, o.chunk_size, o.rope_base
        self.hidden_size = hidden_size
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.value_dim = value_factor * head_dim
        self.chunk_size = chunk_size
        self.rope_base = float(rope_base)
        d_k, d_v = num_heads * head_dim, num_heads * self.value_dim
        self.q_proj = nn.Linear(hidden_size, d_k, bias=False)
        self.k_proj = nn.Linear(hidden_size, d_k, bias=False)
        self.v_proj = nn.Linear(hidden_size, d_v, bias=False)
        self.g_proj = nn.Linear(hidden_size, d_v, bias=False)
        self.o_proj = nn.Linear(d_v, hidden_size, bias=False)
        self.norm_weight = nn.Parameter(torch.ones(d_v))
        self.norm_bias = nn.Parameter(torch.zeros(d_v))
        # fixed, derived from num_heads (not parameters, not saved): made in each dtype from
        # float64 values, so a float64 module decays exactly like the float64 reference
        self._log_decays = head_log_decays(num_heads)
        self._decay_cache: dict[tuple[torch.device, torch.dtype], Tensor] = {}

    # ------------------------------------------------------------------ helpers
    def log_decay(self, like: Tensor) -> Tensor:
        """``log γ_h`` as a ``[heads]`` tensor on ``like``'s device and dtype."""
        key = (like.device, like.dtype)
        if key not in self._decay_cache:
            self._decay_cache[key] = torch.tensor(
                self._log_decays, dtype=like.dtype, device=like.device
            )
        return self._decay_cache[key]

    def _project(self, x: Tensor, start: Tensor | int) -> tuple[Tensor, Tensor, Tensor]:
        """q, k ``[B, heads, L, head_dim]`` and v ``[B, heads, L, value_dim]`` for ``x [B, L, H]``
        at positions ``start + 0..L-1`` (q scaled by ``head_dim^-1/2``, q and k rotated)."""
        batch, length, _ = x.shape
        q = self.q_proj(x).view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(batch, length, self.num_heads, self.value_dim).transpose(1, 2)
        angle_dtype = torch.promote_types(x.dtype, torch.float32)
        positions = torch.arange(length, device=x.device, dtype=angle_dtype) + start  # [L]
        cos, sin = rotary_tables(positions, self.head_dim, self.rope_base, x.dtype)
        q = (q * cos + rotate_half(q) * sin) * self.head_dim**-0.5
        k = k * cos + rotate_half(k) * sin
        return q, k, v

    def _output(self, o: Tensor, x: Tensor) -> Tensor:
        """Group norm per head, swish gate, output projection: ``o [B, L, heads, value_dim]`` and
        the body's input ``x [B, L, H]`` → ``[B, L, H]``."""
        mean = o.mean(-1, keepdim=True)
        var = o.var(-1, unbiased=False, keepdim=True)
        o = ((o - mean) * torch.rsqrt(var + NORM_EPS)).flatten(-2)  # [B, L, heads·value_dim]
        o = o * self.norm_weight + self.norm_bias
        return self.o_proj(F.silu(self.g_proj(x)) * o)

    # ------------------------------------------------------------------ protocol
    def forward(self, x: Tensor) -> Tensor:
        """``x [B, L, H] -> [B, L, H]`` from a fresh start (position 0)."""
        return self.prefill(x)[0]

    def init_state(self, batch_size: int) -> State:
        """``S`` zeros ``[B, heads, head_dim, value_dim]`` and ``pos`` = 0 (int64)."""
        batch_size = at_least(1).check("batch_size", batch_size)
        weight = self.q_proj.weight
        shape = (batch_size, self.num_heads, self.head_dim, self.value_dim)
        s = torch.zeros(shape, device=weight.device, dtype=weight.dtype)
        return s, torch.zeros((), device=weight.device, dtype=torch.long)

    def step(self, x_t: Tensor, state: State) -> tuple[Tensor, State]:
        """One token ``x_t [B, H] -> y_t [B, H]``; ``state`` is updated in place and returned."""
        s, pos = state
        batch = x_t.shape[0]
        q, k, v = self._project(x_t.unsqueeze(1), pos)  # [B, heads, 1, d]
        s.mul_(torch.exp(self.log_decay(s))[None, :, None, None])
        flat = s.view(batch * self.num_heads, self.head_dim, self.value_dim)
        flat.baddbmm_(  # S += kᵀ v, in place
            k.reshape(batch * self.num_heads, self.head_dim, 1),
            v.reshape(batch * self.num_heads, 1, self.value_dim),
        )
        o = q @ s  # [B, heads, 1, value_dim]
        pos.add_(1)
        return self._output(o.transpose(1, 2), x_t.unsqueeze(1)).squeeze(1), (s, pos)

    def prefill(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """Forward ``x [B, L, H]`` from ``state`` (None = fresh); returns a new state (the given
        one is not modified)."""
        if state is None:
            s0, start = None, 0
        else:
            s0, pos = state
            start = int(pos)
        q, k, v = self._project(x, start)
        o, s = chunk_retention(
            q, k, v, self.log_decay(q), chunk_size=self.chunk_size, initial_state=s0
        )  # o [B, heads, L, value_dim]
        y = self._output(o.transpose(1, 2), x)
        new_pos = torch.full((), start + x.shape[1], device=x.device, dtype=torch.long)
        return y, (s, new_pos)


def make_bodies(o: RetentionOptions, hidden_size: int) -> list[nn.Module]:
    """The layer's two bodies (the spec's factory): retention, then a feed-forward."""
    return [MultiScaleRetention(hidden_size, o), FeedForward(hidden_size, o.ffn_expand_factor)]
