"""Argument checks of the kernel family: shapes named by letters, bound on first sight.

Every kernel declares its tensors' layouts (``"B T H K"``); :func:`bind` checks each tensor's
type and rank, binds each letter to the size where it first appears and reports the first
tensor that disagrees, naming the letters and the sizes expected. User errors, never asserts.
"""

from __future__ import annotations

import torch

from hybridzoo.errors import ShapeError

Tensor = torch.Tensor
Opt = torch.Tensor | None
Spec = tuple[str, Opt, str]


def _layout(letters: list[str], sizes: dict[str, int] | None = None) -> str:
    if sizes is None:
        return "[" + ", ".join(letters) + "]"
    return "[" + ", ".join(f"{x}={sizes[x]}" if x in sizes else x for x in letters) + "]"


def bind(*specs: Spec) -> dict[str, int]:
    """Check ``(name, tensor or None, layout)`` triples; return the size of every letter."""
    sizes: dict[str, int] = {}
    for name, t, layout in specs:
        if t is None:
            continue
        letters = layout.split()
        if not isinstance(t, torch.Tensor):
            raise ShapeError(
                f"{name} must be a torch.Tensor {_layout(letters)}, got {type(t).__name__}"
            )
        if t.dim() != len(letters):
            raise ShapeError(
                f"{name} must have {len(letters)} dimensions {_layout(letters)}, "
                f"got shape {tuple(t.shape)}"
            )
        if not t.is_floating_point():
            raise ShapeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
        if any(x in sizes and sizes[x] != n for x, n in zip(letters, t.shape, strict=True)):
            raise ShapeError(
                f"{name} must have shape {_layout(letters, sizes)} (from the other arguments), "
                f"got {tuple(t.shape)}"
            )
        sizes.update(zip(letters, t.shape, strict=True))
    return sizes


def _check_length(sizes: dict[str, int], name: str, t: torch.Tensor) -> None:
    if sizes["T"] < 1:
        raise ShapeError(f"sequence length T must be >= 1, got {name} of shape {tuple(t.shape)}")


def _check_groups(sizes: dict[str, int], heads: str, groups: str, names: str) -> None:
    if sizes[heads] % sizes[groups]:
        raise ShapeError(
            f"the {sizes[groups]} groups of {names} must divide the {sizes[heads]} heads "
            f"({groups} must divide {heads})"
        )


def gla_sizes(
    q: Tensor, k: Tensor, v: Tensor, g: Tensor, bonus: Opt, initial_state: Opt
) -> dict[str, int]:
    """``chunk_gla``'s arguments: q, k, log_decay ``[B, T, H, K]``, v ``[B, T, H, V]``."""
    sizes = bind(
        ("q", q, "B T H K"),
        ("k", k, "B T H K"),
        ("v", v, "B T H V"),
        ("log_decay", g, "B T H K"),
        ("bonus", bonus, "H K"),
        ("initial_state", initial_state, "B H K V"),
    )
    _check_length(sizes, "q", q)
    return sizes


def gla_step_sizes(
    q: Tensor, k: Tensor, v: Tensor, g: Tensor, state: Tensor, bonus: Opt
) -> dict[str, int]:
    """``gla_step``'s arguments: ``[B, H, D]`` inputs, state ``[B, H, K, V]``."""
    return bind(
        ("q_t", q, "B H K"),
        ("k_t", k, "B H K"),
        ("v_t", v, "B H V"),
        ("log_decay_t", g, "B H K"),
        ("state", state, "B H K V"),
        ("bonus", bonus, "H K"),
    )


def simple_gla_sizes(
    q: Tensor, k: Tensor, v: Tensor, g: Tensor, state: Opt, *, step: bool = False
) -> dict[str, int]:
    """``chunk_simple_gla``'s (or, ``step``, ``simple_gla_step``'s) arguments."""
    t = "" if step else "T "
    suffix = "_t" if step else ""
    sizes = bind(
        ("q" + suffix, q, f"B {t}G K"),
        ("k" + suffix, k, f"B {t}G K"),
        ("v" + suffix, v, f"B {t}H V"),
        ("log_decay" + suffix, g, f"B {t}H"),
        ("state" if step else "initial_state", state, "B H K V"),
    )
    if not step:
        _check_length(sizes, "q", q)
    _check_groups(sizes, "H", "G", "q and k")
    return sizes


def ssd_sizes(
    x: Tensor, dt: Tensor, a: Tensor, b: Tensor, c: Tensor, state: Opt, *, step: bool = False
) -> dict[str, int]:
    """``chunk_ssd``'s (or, ``step``, ``ssd_step``'s) arguments."""
    t = "" if step else "T "
    suffix = "_t" if step else ""
    sizes = bind(
        ("x" + suffix, x, f"B {t}H P"),
        ("dt" + suffix, dt, f"B {t}H"),
        ("A", a, "H"),
        ("B" + suffix, b, f"B {t}G N"),
        ("C" + suffix, c, f"B {t}G N"),
        ("state" if step else "initial_state", state, "B H P N"),
    )
    if not step:
        _check_length(sizes, "x", x)
    _check_groups(sizes, "H", "G", "B and C")
    return sizes


def delta_sizes(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    g: Tensor,
    beta: Tensor,
    state: Opt,
    *,
    step: bool = False,
) -> dict[str, int]:
    """``chunk_gated_delta_rule``'s (or, ``step``, ``gated_delta_rule_step``'s) arguments."""
    t = "" if step else "T "
    suffix = "_t" if step else ""
    sizes = bind(
        ("q" + suffix, q, f"B {t}G K"),
        ("k" + suffix, k, f"B {t}G K"),
        ("v" + suffix, v, f"B {t}H V"),
        ("log_decay" + suffix, g, f"B {t}H"),
        ("beta" + suffix, beta, f"B {t}H"),
        ("state" if step else "initial_state", state, "B H K V"),
    )
    if not step:
        _check_length(sizes, "q", q)
    _check_groups(sizes, "H", "G", "q and k")
    return sizes
