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
Spec = tuple[str, Opt, "str | tuple[str, ...]"]


def _layout(letters: list[str], sizes: dict[str, int] | None = None) -> str:
    if sizes is None:
        return "[" + ", ".join(letters) + "]"
    return "[" + ", ".join(f"{x}={sizes[x]}" if x in sizes else x for x in letters) + "]"


def bind(*specs: Spec) -> dict[str, int]:
    """Check ``(name, tensor or None, layout)`` triples (a layout ``"B T H"`` or its letters);
    return the size of every letter."""
    sizes: dict[str, int] = {}
    for name, t, layout in specs:
        if t is None:
            continue
        letters = layout.split() if isinstance(layout, str) else layout
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


LAYOUTS: dict[str, tuple[tuple[str, str], ...]] = {
    "chunk_gla": (
        ("q", "B T G K"), ("k", "B T G K"), ("v", "B T H V"), ("log_decay", "B T H K"),
        ("bonus", "H K"), ("initial_state", "B H K V"),
    ),
    "chunk_gla, scalar decay": (
        ("q", "B T G K"), ("k", "B T G K"), ("v", "B T H V"), ("log_decay", "B T H"),
        ("bonus", "H K"), ("initial_state", "B H K V"),
    ),
    "chunk_ssd": (
        ("x", "B T H P"), ("dt", "B T H"), ("A", "H"), ("B", "B T G N"), ("C", "B T G N"),
        ("initial_state", "B H P N"),
    ),
    "chunk_gated_delta_rule": (
        ("q", "B T G K"), ("k", "B T G K"), ("v", "B T H V"), ("log_decay", "B T H"),
        ("beta", "B T H"), ("initial_state", "B H K V"),
    ),
}  # fmt: skip
"""Each kernel's tensor arguments, in order, with their layouts (the step functions take the
same without ``T``: names get ``_t``, and ``initial_state`` is the ``state`` updated in place)."""


def _forms(kernel: str, step: bool) -> tuple[tuple[tuple[str, tuple[str, ...]], ...], str]:
    """``kernel``'s ``(name, letters)`` in the sequence or the one-token form, and the names of
    its tensors grouped by ``G``."""
    out = []
    for name, layout in LAYOUTS[kernel]:
        letters = tuple(layout.split())
        if step and "T" in letters:
            name, letters = name + "_t", tuple(x for x in letters if x != "T")
        elif step and name == "initial_state":
            name = "state"
        out.append((name, letters))
    grouped = " and ".join(name for name, layout in LAYOUTS[kernel] if "G" in layout.split())
    return tuple(out), grouped


_FORMS = {(kernel, step): _forms(kernel, step) for kernel in LAYOUTS for step in (False, True)}
"""Every kernel's argument layouts, split once (the step functions check theirs every token)."""


def sizes(kernel: str, *tensors: Opt, step: bool = False) -> dict[str, int]:
    """Check ``kernel``'s tensor arguments (in :data:`LAYOUTS` order, None for an absent optional
    one) for the sequence form or, ``step``, the one-token form; return every letter's size."""
    forms, grouped = _FORMS[kernel, step]
    n = bind(*((name, t, letters) for (name, letters), t in zip(forms, tensors, strict=True)))
    if not step and n["T"] < 1:
        raise ShapeError(
            f"sequence length T must be >= 1, got {forms[0][0]} of shape {tuple(tensors[0].shape)}"
        )
    if grouped and n["H"] % n["G"]:
        raise ShapeError(
            f"the {n['G']} groups of {grouped} must divide the {n['H']} heads (G must divide H)"
        )
    return n


def gla_layout(log_decay: object, *, step: bool = False) -> str:
    """The :data:`LAYOUTS` entry of :func:`~hybridzoo.ops.chunk_gla` (or, ``step``,
    :func:`~hybridzoo.ops.gla_step`) for this ``log_decay``: a decay per key channel
    ``[B, T, H, K]`` or one per head ``[B, T, H]`` (without ``T`` for a step)."""
    if not isinstance(log_decay, torch.Tensor):
        return "chunk_gla"  # bind names the type
    per_key, per_head = (3, 2) if step else (4, 3)
    if log_decay.dim() == per_key:
        return "chunk_gla"
    if log_decay.dim() == per_head:
        return "chunk_gla, scalar decay"
    t = "" if step else "T, "
    raise ShapeError(
        f"log_decay{'_t' if step else ''} must be [B, {t}H, K] (a decay per key channel) or "
        f"[B, {t}H] (one per head), got shape {tuple(log_decay.shape)}"
    )
