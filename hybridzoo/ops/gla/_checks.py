"""Argument checks shared by the gated-linear-recurrence functions (user errors, never asserts)."""

from __future__ import annotations

import torch


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the recurrence runs in: float64 stays float64, everything else runs in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def check_sequence_args(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    log_decay: torch.Tensor,
    bonus: torch.Tensor | None,
    initial_state: torch.Tensor | None,
) -> tuple[int, int, int, int, int]:
    """Validate the sequence form's shapes; return ``(B, T, H, K, V)``."""
    for name, t in (("q", q), ("k", k), ("v", v), ("log_decay", log_decay)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(
                f"{name} must have 4 dimensions [B, T, H, D], got shape {tuple(t.shape)}"
            )
        if not t.is_floating_point():
            raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
    b, t_len, h, d_k = q.shape
    if t_len < 1:
        raise ValueError(f"sequence length T must be >= 1, got q of shape {tuple(q.shape)}")
    for name, t in (("k", k), ("log_decay", log_decay)):
        if t.shape != q.shape:
            raise ValueError(
                f"{name} must have the shape of q {tuple(q.shape)} [B, T, H, K], "
                f"got {tuple(t.shape)}"
            )
    if v.shape[:3] != q.shape[:3]:
        raise ValueError(
            f"v must have shape [B, T, H, V] = [{b}, {t_len}, {h}, V] matching q, "
            f"got {tuple(v.shape)}"
        )
    d_v = v.shape[3]
    _check_bonus_state(bonus, initial_state, b, h, d_k, d_v)
    return b, t_len, h, d_k, d_v


def check_step_args(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    log_decay: torch.Tensor,
    state: torch.Tensor,
    bonus: torch.Tensor | None,
) -> None:
    """Validate the single-step form's shapes (``[B, H, K]`` inputs, ``[B, H, K, V]`` state)."""
    for name, t in (("q_t", q), ("k_t", k), ("v_t", v), ("log_decay_t", log_decay)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 3:
            raise ValueError(f"{name} must have 3 dimensions [B, H, D], got {tuple(t.shape)}")
    if not isinstance(state, torch.Tensor):
        raise TypeError(f"state must be a torch.Tensor, got {type(state).__name__}")
    b, h, d_k = q.shape
    d_v = v.shape[2]
    for name, t in (("k_t", k), ("log_decay_t", log_decay)):
        if t.shape != q.shape:
            raise ValueError(f"{name} must have the shape of q_t {tuple(q.shape)}, got {t.shape}")
    if v.shape[:2] != q.shape[:2]:
        raise ValueError(f"v_t must have shape [{b}, {h}, V] matching q_t, got {tuple(v.shape)}")
    if state.shape != (b, h, d_k, d_v):
        raise ValueError(
            f"state must have shape [B, H, K, V] = {(b, h, d_k, d_v)}, got {tuple(state.shape)}"
        )
    _check_bonus_state(bonus, None, b, h, d_k, d_v)


def _check_bonus_state(
    bonus: torch.Tensor | None,
    initial_state: torch.Tensor | None,
    b: int,
    h: int,
    d_k: int,
    d_v: int,
) -> None:
    if bonus is not None and tuple(bonus.shape) != (h, d_k):
        raise ValueError(f"bonus must have shape [H, K] = {(h, d_k)}, got {tuple(bonus.shape)}")
    if initial_state is not None and tuple(initial_state.shape) != (b, h, d_k, d_v):
        raise ValueError(
            f"initial_state must have shape [B, H, K, V] = {(b, h, d_k, d_v)}, "
            f"got {tuple(initial_state.shape)}"
        )


def resolve_scale(scale: float | None, d_k: int) -> float:
    """``scale`` or the default ``K ** -0.5``."""
    if scale is None:
        return d_k**-0.5
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise TypeError(f"scale must be a float or None, got {type(scale).__name__}")
    return float(scale)
