"""The compiled kernels' transcendental functions (csrc/vec_math.h) to a few ulp, whole range.

Each function runs elementwise through the extension's test-only op ``vec_math`` on a dense grid
over the range where it varies, on random bit patterns (every finite magnitude, both signs) and on
the edges (±0, subnormals, the exp cut-offs and their neighbours, ±max, ±inf, NaN).  References:
float64 for the float32 kernels, numpy's 80-bit long double for the float64 ones.  Where the true
result is a normal number above the exp flush threshold (2^-125 in float32, 2^-1021 in float64)
the error is at most ``ULP[fn]`` units in the last place; below it the result may be flushed
(|result| below the threshold).  NaN stays NaN; the infinities map as documented.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scan_cases import require_compiled

from hybridzoo.ops.selective_scan.fused import load_extension

# Max error in ulp allowed per function (measured: 0.9, 2.9, 4.4, 2.4, 2.7 at most).
ULP = {"exp": 1.5, "log1p": 4.0, "softplus": 5.0, "sigmoid": 3.0, "silu": 3.5}
FLUSH = {torch.float32: 2.0**-125, torch.float64: 2.0**-1021}
EXP_CUTS = {  # exp is flushed to 0 below the first, +inf above the second (vec_math.h)
    torch.float32: (-86.64339757, 88.72283905),
    torch.float64: (-707.7032713517042, 709.782712893384),
}
NUMPY = {torch.float32: np.float32, torch.float64: np.float64}


def reference(fn: str, x: np.ndarray) -> np.ndarray:
    """``fn`` in numpy long double (x already long double)."""
    with np.errstate(all="ignore"):
        if fn == "exp":
            return np.exp(x)
        if fn == "log1p":
            return np.log1p(x)
        if fn == "softplus":
            return np.logaddexp(x, np.zeros_like(x))
        sigmoid = 1 / (1 + np.exp(-x))
        return sigmoid if fn == "sigmoid" else x * sigmoid


def edges(dtype: torch.dtype) -> torch.Tensor:
    """±0, ±tiny, ±subnormal, ±max, ±inf, NaN, ±1, and the exp cut-offs with their neighbours."""
    info = torch.finfo(dtype)
    lo, hi = EXP_CUTS[dtype]
    base = [0.0, info.tiny, info.tiny / 8, info.max, 1.0, lo, hi, -lo, -hi]
    base = torch.tensor(base, dtype=dtype)
    near = torch.cat([torch.nextafter(base, base + 1), torch.nextafter(base, base - 1)])
    infinities = torch.tensor([float("inf"), -float("inf")], dtype=dtype)
    return torch.cat([base, -base, near, -near, infinities])


def sample(fn: str, dtype: torch.dtype) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    if fn == "log1p":  # defined on [0, 1]
        grid = torch.linspace(0, 1, 1 << 18, dtype=dtype)
        tiny = torch.finfo(dtype).tiny
        special = torch.tensor([0.0, 1.0, tiny, tiny / 8], dtype=dtype)
        near = torch.nextafter(special, special + 1).clamp(0, 1)
        return torch.cat([grid, torch.rand(1 << 16, generator=g, dtype=dtype), special, near])
    lo, hi = EXP_CUTS[dtype]
    dense = torch.linspace(1.01 * lo, 1.01 * hi, 1 << 18, dtype=torch.float64).to(dtype)
    # random bit patterns: every exponent equally likely, both signs
    top = 2**31 - 1 if dtype == torch.float32 else 2**63 - 1
    bits = torch.randint(0, top, (1 << 16,), generator=g, dtype=torch.int64)
    bits = bits.to(torch.int32) if dtype == torch.float32 else bits
    sign = torch.randint(0, 2, (1 << 16,), generator=g).to(dtype) * 2 - 1
    anything = bits.view(dtype) * sign
    return torch.cat([dense, anything[torch.isfinite(anything)], edges(dtype)])


@pytest.fixture(scope="module")
def ops():
    require_compiled()
    return load_extension()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("fn", list(ULP))
def test_within_a_few_ulp(ops, fn, dtype):
    if dtype == torch.float64 and np.finfo(np.longdouble).nmant < 60:
        pytest.skip("numpy's long double is not wider than float64 here: no float64 reference")
    x = sample(fn, dtype)
    got = ops.vec_math(x, fn).numpy().astype(np.longdouble)
    xl = x.numpy().astype(np.longdouble)
    ref = reference(fn, xl)
    if dtype == torch.float32:
        with np.errstate(over="ignore"):
            ref = ref.astype(np.float64).astype(np.longdouble)
    nan = np.isnan(ref)
    assert np.array_equal(np.isnan(got), nan), f"{fn}: NaN where the reference has none, or not"
    with np.errstate(over="ignore"):
        rounded = ref.astype(NUMPY[dtype])  # overflows to inf where the kernel's dtype does
    inf = np.isinf(rounded)
    assert np.array_equal(got[inf], rounded[inf]), f"{fn}: infinities differ"
    finite = ~nan & ~inf
    # silu(x) = x sigmoid(x) inherits the flush of sigmoid(x) below 2^-125, scaled by |x|
    flush = FLUSH[dtype] * (np.maximum(np.abs(xl), 1) if fn == "silu" else np.ones_like(xl))
    tiny = finite & (np.abs(ref) < flush)
    assert (np.abs(got[tiny]) < flush[tiny]).all(), f"{fn}: a tiny result came out large"
    normal = finite & ~tiny
    magnitude = np.abs(rounded[normal])
    spacing = (magnitude - np.nextafter(magnitude, 0)).astype(np.longdouble)  # ulp, max included
    errors = np.abs(got[normal] - ref[normal]) / spacing
    worst = int(errors.argmax())
    assert errors[worst] <= ULP[fn], (
        f"{fn}({x.numpy()[normal][worst]!r}) = {got[normal][worst]!r}: "
        f"{float(errors[worst]):.2f} ulp from {ref[normal][worst]!r} (allowed {ULP[fn]})"
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_documented_edges(ops, dtype):
    lo, hi = EXP_CUTS[dtype]
    inf = float("inf")
    x = torch.tensor([-inf, inf, float("nan"), lo, hi], dtype=dtype)
    exp = ops.vec_math(x, "exp")
    below = ops.vec_math(torch.nextafter(x[3:4], x[3:4] - 1), "exp")
    above = ops.vec_math(torch.nextafter(x[4:5], x[4:5] + 1), "exp")
    assert exp[0] == 0 and exp[1] == inf and exp[2].isnan() and exp[3] > 0
    assert below == 0 and above == inf  # flushed below the cut-off; overflow above ln(max)
    softplus = ops.vec_math(x[:3], "softplus")
    assert softplus[0] == 0 and softplus[1] == inf and softplus[2].isnan()
    sigmoid = ops.vec_math(x[:3], "sigmoid")
    assert sigmoid[0] == 0 and sigmoid[1] == 1 and sigmoid[2].isnan()
