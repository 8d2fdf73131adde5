"""Vector maths of the selective-scan kernels: hand-written (csrc/vec_math.h) vs at::vec.

Compiles ``benchmarks/vec_math_bench.cpp`` (it includes the kernels' ``vec_math.h`` and ATen's
``Vectorized``, with the kernels' flags: ``-O3 -march=native``) and measures, on one thread:

- accuracy: the largest error in ulp against numpy's long double over a dense grid (exp on the
  range where its result is a normal number, softplus and sigmoid on [-60, 60]);
- speed: nanoseconds per element of each function over 2^20 elements (best of ``--repeat``), and
  per update of a mini selective scan (softplus of the step, then per state index an exp, an
  update and a readout: the kernels' inner loop), float32 and float64.

Implementations: ``ours`` (vec_math.h), ``aten`` (``Vectorized::exp()``/``log1p()``: Sleef,
1 ulp, out-of-line calls), ``aten_u20`` (``Vectorized::exp_u20()``, inline, float32 only; the
float64 one is ``exp()``).  Rule: ATen's is kept unless ours is more than 10% faster, and only
a variant within a few ulp counts.

Usage::

    python benchmarks/bench_vec_math.py --out benchmarks/results/vec_math.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
CSRC = HERE.parent / "hybridzoo" / "ops" / "selective_scan" / "csrc"
IMPLS = {0: "ours", 1: "aten", 2: "aten_u20"}
FUNCTIONS = {0: "exp", 1: "softplus", 2: "sigmoid"}


def _load(build_dir: str):
    from torch.utils.cpp_extension import load

    load(
        name="hybridzoo_vec_math_bench",
        sources=[str(HERE / "vec_math_bench.cpp")],
        extra_include_paths=[str(CSRC)],
        extra_cflags=["-O3", "-march=native", "-ffp-contract=fast", "-Wno-psabi"],
        build_directory=build_dir,
        is_python_module=False,
        verbose=False,
    )
    return torch.ops.hybridzoo_vec_math_bench


def _reference(fn: str, x: np.ndarray) -> np.ndarray:
    if fn == "exp":
        return np.exp(x)
    if fn == "softplus":
        return np.logaddexp(x, np.zeros_like(x))
    return 1 / (1 + np.exp(-x))


def _max_ulp(got: np.ndarray, ref: np.ndarray, dtype: type) -> float:
    got = got.astype(np.longdouble)
    magnitude = np.abs(ref.astype(dtype))
    keep = np.isfinite(magnitude) & (magnitude >= 4 * np.finfo(dtype).tiny)
    spacing = (magnitude[keep] - np.nextafter(magnitude[keep], 0)).astype(np.longdouble)
    return float((np.abs(got[keep] - ref[keep]) / spacing).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--state", type=int, default=16, help="N of the mini scan")
    parser.add_argument("--out", default="bench_vec_math.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as build_dir:
        ops = _load(build_dir)
        records = []
        print(f"{'dtype':>8} {'function':>9} {'impl':>9} {'max ulp':>8} {'ns/elem':>8}")
        for dtype, np_dtype in ((torch.float32, np.float32), (torch.float64, np.float64)):
            lo, hi = (-87.0, 88.7) if dtype == torch.float32 else (-707.0, 709.7)
            for fi, fn in FUNCTIONS.items():
                a, b = (lo, hi) if fn == "exp" else (-60.0, 60.0)
                x = torch.linspace(a, b, 1 << 20, dtype=dtype)
                ref = _reference(fn, x.numpy().astype(np.longdouble))
                for ii, impl in IMPLS.items():
                    ulp = _max_ulp(ops.vapply(x, ii, fi).numpy(), ref, np_dtype)
                    ns = ops.vbench(x, ii, fi, args.repeat)
                    records.append(
                        {"dtype": str(dtype), "fn": fn, "impl": impl, "ulp": ulp, "ns": ns}
                    )
                    print(f"{str(dtype)[6:]:>8} {fn:>9} {impl:>9} {ulp:8.2f} {ns:8.3f}")
        print(f"\nmini scan (N={args.state}): ns per update, and relative to ours")
        for dbl in (False, True):
            times = {impl: ops.scan_bench(ii, 1 << 14, args.state, args.repeat, dbl)
                     for ii, impl in IMPLS.items()}  # fmt: skip
            for impl, ns in times.items():
                ratio = ns / times["ours"]
                name = "float64" if dbl else "float32"
                records.append({"dtype": name, "fn": "mini_scan", "impl": impl, "ns": ns})
                print(f"{name:>8} {impl:>9} {ns:8.3f} ns  {ratio:5.2f}x")
    meta = {
        "benchmark": "vec_math",
        "torch": torch.__version__,
        "processor": platform.processor(),
        "load_average": os.getloadavg(),
        "threads": 1,
    }
    with open(args.out, "w") as f:
        json.dump({**meta, "records": records}, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
