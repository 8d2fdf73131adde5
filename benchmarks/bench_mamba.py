"""Speed and peak memory of the Mamba-1 mixer against transformers' torch paths (CPU, float32).

Implementations, all with the same weights (our ``MambaMixer(H)`` under seed 0; transformers'
``MambaMixer`` loads its state dict, the names are the same):

- ``ours``: :class:`~hybridzoo_plugins.mamba.layer.MambaMixer` as shipped (``scan_backend="auto"``:
  the compiled kernels where they build);
- ``ours_torch``: the same with ``scan_backend="torch"`` (the pure-torch fallback);
- ``reference``: :func:`~hybridzoo_plugins.mamba.reference.mixer_reference`, the time-step loop;
- ``hf_slow``: transformers' ``MambaMixer`` torch path (its sequential loop);
- ``hf_mambapy``: the same with ``use_mambapy=True`` (mamba.py's parallel scan; needs the
  ``mambapy`` package, otherwise transformers silently runs the loop: then it is skipped).

Modes: ``fwd`` (under ``torch.no_grad()``) and ``fwd+bwd`` (``y.sum().backward()``, gradients of
the input and of every parameter).  Every measurement runs in a fresh child process.

Time: median and minimum of ``--repeat`` runs after a warm-up run (for ``ours``: at the full
length; for the others: at L=64, and from L=1024 on they run ``--slow-repeat`` times, default 1).
On a shared machine medians are noisy: the minima and the ratios are what to read; the 1-minute
load average is recorded with each time.

Peak memory: the resident-set high-water mark of a child started with
``MALLOC_MMAP_THRESHOLD_=131072`` (every tensor then gets its own ``mmap`` and leaves the resident
set when freed): after a warm-up at L=64 the child records ``VmRSS``, resets the peak
(``/proc/self/clear_refs``), runs the call once and reports ``VmHWM - VmRSS``.

Page faults: by default the children run with glibc's defaults, under which every tensor above
32 MiB is a fresh ``mmap`` each call (page faults and zeroing: about a third of ours at L=16384);
``--malloc-reuse`` times with freed blocks kept for reuse instead (see ``MALLOC_REUSE``).

Outputs are compared with ours (max |difference| / max |ours|) on the forward output.
Lengths beyond ``--max-slow-length`` (and, for fwd+bwd of the loops, ``--max-slow-bwd-length``)
are skipped for the slow implementations, whose memory is O(B·L·I·N) and whose backward through
``x[:, t]`` indexing is O(L²).

Step latency: one ``step`` of one mixer at batch 1 (median of ``--step-repeat`` calls), and of a
stack of 6 mixers with residual adds (the mamba part of a 6-layer hybrid).

Packing (``--packing``): the mixer's two kernels (``causal_conv1d`` + ``selective_scan``,
compiled backend) forward+backward on ``[batch, max(--lengths), 2·hidden]`` with N=16, unpacked and
packed (``seq_idx`` of documents of random lengths, mean 512), side by side (issue target: packed
at most 1.2x unpacked).

Targets (at L=4096): ours fwd >= 8x faster than ``hf_slow``; ours fwd+bwd >= 10x faster than the
fastest transformers torch path measured; ours time(L_max)/time(L_min) <= 20 for 16x the length;
6-layer step < 3 ms.

Usage::

    python benchmarks/bench_mamba.py --out bench_mamba.json
    python benchmarks/bench_mamba.py --lengths 1024 4096 --impls ours hf_mambapy --no-memory
    python benchmarks/bench_mamba.py --lengths 4096 --impls ours --no-memory --packing
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

from timing import MALLOC_REUSE, add_options, reset_peak, status_kib, write_json

IMPLS = ("ours", "ours_torch", "reference", "hf_slow", "hf_mambapy")
SLOW = ("reference", "hf_slow", "hf_mambapy")
MODES = ("fwd", "fwd+bwd")
# -- child side ----------------------------------------------------------------------------------


def _build(impl: str, hidden: int) -> tuple[Any, Any]:
    """(module, forward function x -> y) for ``impl``, weights from seed 0."""
    import torch

    from hybridzoo_plugins.mamba.layer import MambaMixer
    from hybridzoo_plugins.mamba.reference import mixer_reference

    torch.manual_seed(0)
    ours = MambaMixer(hidden, scan_backend="torch" if impl == "ours_torch" else "auto")
    if impl in ("ours", "ours_torch"):
        return ours, ours
    if impl == "reference":
        return ours, lambda x: mixer_reference(ours, x)
    import transformers
    from transformers.models.mamba.modeling_mamba import MambaMixer as HFMambaMixer
    from transformers.utils.import_utils import is_mambapy_available

    if impl == "hf_mambapy" and not is_mambapy_available():
        raise RuntimeError("mambapy is not installed: use_mambapy=True would run the slow loop")
    config = transformers.MambaConfig(
        hidden_size=hidden,
        state_size=ours.state_size,
        expand=ours.expand_factor,
        conv_kernel=ours.conv_size,
        time_step_rank=ours.dt_rank,
        num_hidden_layers=1,
        use_mambapy=impl == "hf_mambapy",
    )
    hf = HFMambaMixer(config, layer_idx=0)
    hf.load_state_dict(ours.state_dict())
    hf.eval()  # transformers' training branch only tries the CUDA kernels; same maths
    return hf, hf


def child(args: argparse.Namespace) -> dict:
    """One measurement (``args.measure`` = time | memory) of one implementation, length, mode."""
    import torch

    impl, length, mode, measure = args.impl, args.length, args.mode, args.measure
    module, fn = _build(impl, args.hidden)
    slow = impl != "ours"
    gen = torch.Generator().manual_seed(1)

    def make_input(n: int) -> torch.Tensor:
        x = torch.randn(args.batch, n, args.hidden, generator=gen)
        return x.requires_grad_(mode == "fwd+bwd")

    def run(x: torch.Tensor) -> torch.Tensor:
        if mode == "fwd":
            with torch.no_grad():
                return fn(x)
        module.zero_grad(set_to_none=True)
        x.grad = None
        y = fn(x)
        y.sum().backward()
        return y.detach()

    x = make_input(length)
    record: dict = {"impl": impl, "L": length, "mode": mode, "batch": args.batch}
    record["hidden"] = args.hidden
    if measure == "memory":
        run(make_input(64))
        before = status_kib("VmRSS")
        method = "VmHWM - VmRSS, MALLOC_MMAP_THRESHOLD_=" + os.environ.get(
            "MALLOC_MMAP_THRESHOLD_", "(unset)"
        )
        if not reset_peak():
            method = "clear_refs not writable: lifetime VmHWM (an upper bound)"
        run(x)
        record.update(peak_mib=(status_kib("VmHWM") - before) / 1024, memory_method=method)
        return record
    run(make_input(64) if slow else x)  # warm-up
    repeat = args.slow_repeat if slow and length >= 1024 else args.repeat
    times = []
    y = None
    for _ in range(repeat):
        start = time.perf_counter()
        y = run(x)
        times.append(time.perf_counter() - start)
    record.update(
        time_s=statistics.median(times),
        time_min_s=min(times),
        runs=repeat,
        threads=torch.get_num_threads(),
        load_average_1min=os.getloadavg()[0],
    )
    if impl == "ours":
        from hybridzoo.ops.selective_scan import selective_scan_backend

        record["scan_backend"] = selective_scan_backend()
    if args.save_output and mode == "fwd":
        torch.save(y, args.save_output)
    return record


def step_child(args: argparse.Namespace) -> dict:
    """Latency of ``step`` at batch 1: one mixer, and 6 mixers with residual adds."""
    import torch

    from hybridzoo.ops.selective_scan import selective_scan_backend
    from hybridzoo_plugins.mamba.layer import MambaMixer

    torch.manual_seed(0)
    mixers = [MambaMixer(args.hidden) for _ in range(6)]
    states = [m.init_state(1) for m in mixers]
    x = torch.randn(1, args.hidden)

    def one() -> None:
        mixers[0].step(x, states[0])

    def stack() -> None:
        h = x
        for m, s in zip(mixers, states, strict=True):
            h = h + m.step(h, s)[0]

    out: dict = {"hidden": args.hidden, "threads": torch.get_num_threads()}
    with torch.inference_mode():
        for name, fn in (("one_layer", one), ("six_layers", stack)):
            for _ in range(20):
                fn()
            times = []
            for _ in range(args.step_repeat):
                start = time.perf_counter()
                fn()
                times.append(time.perf_counter() - start)
            times.sort()
            out[f"{name}_median_ms"] = statistics.median(times) * 1e3
            out[f"{name}_p10_ms"] = times[len(times) // 10] * 1e3
    out["load_average_1min"] = os.getloadavg()[0]
    out["scan_backend"] = selective_scan_backend()
    return out


def pack_child(args: argparse.Namespace) -> dict:
    """Packed vs unpacked forward+backward of the mixer's kernels (see the module docstring)."""
    import torch

    from hybridzoo.ops.selective_scan import causal_conv1d, selective_scan

    gen = torch.Generator().manual_seed(0)
    batch, length, inner, state = args.batch, args.length, 2 * args.hidden, 16

    def rnd(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return (torch.randn(*shape, generator=gen) * scale).requires_grad_(True)

    x, z, delta = rnd(batch, length, inner), rnd(batch, length, inner), rnd(batch, length, inner)
    w, b, d, bias = rnd(inner, 4, scale=0.5), rnd(inner), rnd(inner), rnd(inner)
    bc = rnd(batch, length, 2 * state)
    a = (-torch.rand(inner, state, generator=gen) - 0.1).requires_grad_(True)
    rows = []
    for _ in range(batch):  # documents of exponential lengths, mean 512
        cuts = torch.distributions.Exponential(1 / 512).sample((length // 64,)).ceil().cumsum(0)
        starts = torch.zeros(length, dtype=torch.int64)
        starts[cuts[cuts < length].long()] = 1
        rows.append(starts.cumsum(0))
    seq_idx = torch.stack(rows)

    def run(seq: torch.Tensor | None) -> None:
        u, _ = causal_conv1d(x, w, b, seq_idx=seq, backend="compiled")
        y, _ = selective_scan(
            u, delta, a, *bc.split(state, -1), d, z, bias, True, seq_idx=seq, backend="compiled"
        )
        y.sum().backward()

    times: dict[str, list[float]] = {"unpacked": [], "packed": []}
    run(None)
    run(seq_idx)
    for _ in range(args.repeat):  # interleaved, so that load changes hit both alike
        for name, seq in (("unpacked", None), ("packed", seq_idx)):
            start = time.perf_counter()
            run(seq)
            times[name].append(time.perf_counter() - start)
    out = {f"{k}_min_ms": min(v) * 1e3 for k, v in times.items()}
    out.update({f"{k}_median_ms": statistics.median(v) * 1e3 for k, v in times.items()})
    out["packed_over_unpacked"] = out["packed_min_ms"] / out["unpacked_min_ms"]
    out["documents_per_row"] = float((seq_idx[:, -1] + 1).float().mean())
    out.update(batch=batch, L=length, inner=inner, state=state, threads=torch.get_num_threads())
    out["load_average_1min"] = os.getloadavg()[0]
    return out


# -- parent side ---------------------------------------------------------------------------------


def _run_child(extra: list[str], env: dict | None = None) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), *extra]
    proc = subprocess.run(cmd, env=env or dict(os.environ), capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
        return {"error": tail[0][:300]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _skip_reason(impl: str, length: int, mode: str, args: argparse.Namespace) -> str | None:
    if impl in SLOW and length > args.max_slow_length:
        return f"L > --max-slow-length {args.max_slow_length}"
    if impl in ("reference", "hf_slow") and mode == "fwd+bwd" and length > args.max_slow_bwd_length:
        return f"O(L^2) backward: L > --max-slow-bwd-length {args.max_slow_bwd_length}"
    return None


def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 16384])
    parser.add_argument("--impls", nargs="+", default=list(IMPLS), choices=IMPLS)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    add_options(parser, batch=4, hidden=256, repeat=3)
    parser.add_argument(
        "--slow-repeat", type=int, default=1, help="runs of the other paths from L=1024 on"
    )
    add_options(parser, max_slow_length=4096, max_slow_bwd_length=1024, step_repeat=300)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory children")
    parser.add_argument(
        "--packing", action="store_true", help="also time packed vs unpacked kernels"
    )
    parser.add_argument(
        "--malloc-reuse",
        action="store_true",
        help="timing children keep freed big blocks in glibc's heap (no page faults per call)",
    )
    parser.add_argument("--out", default="bench_mamba.json")
    # child-process arguments
    parser.add_argument(
        "--child", choices=["time", "memory", "step", "pack"], help=argparse.SUPPRESS
    )
    parser.add_argument("--impl", help=argparse.SUPPRESS)
    parser.add_argument("--length", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--save-output", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child and args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.child == "step":
        print(json.dumps(step_child(args)))
        return
    if args.child == "pack":
        print(json.dumps(pack_child(args)))
        return
    if args.child:
        args.measure = args.child
        print(json.dumps(child(args)))
        return

    import torch

    common = ["--batch", str(args.batch), "--hidden", str(args.hidden)]
    common += ["--repeat", str(args.repeat), "--threads", str(args.threads)]
    common += ["--slow-repeat", str(args.slow_repeat)]
    memory_env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
    time_env = dict(os.environ)
    if args.malloc_reuse:
        time_env.update(MALLOC_REUSE)
    meta = {
        "benchmark": "mamba",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "threads": args.threads or torch.get_num_threads(),
        "load_average_start": os.getloadavg(),
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "timing_malloc_env": MALLOC_REUSE if args.malloc_reuse else None,
    }
    records: list[dict] = []
    header = (
        f"{'impl':>11} {'L':>6} {'mode':>8} {'median ms':>10} {'min ms':>10} {'peak MiB':>9} "
        f"{'x ours':>7} {'out diff':>9}  note"
    )
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        for length in args.lengths:
            for mode in args.modes:
                ours_path = os.path.join(tmp, f"ours_{length}.pt")
                ours_time = None
                for impl in args.impls:
                    record: dict = {"impl": impl, "L": length, "mode": mode}
                    reason = _skip_reason(impl, length, mode, args)
                    if reason:
                        record["skipped"] = reason
                    else:
                        save = os.path.join(tmp, f"{impl}_{length}.pt")
                        extra = ["--impl", impl, "--length", str(length), "--mode", mode]
                        extra += [*common, "--save-output", save]
                        record.update(_run_child(["--child", "time", *extra], time_env))
                        if not args.no_memory and "error" not in record:
                            mem = _run_child(["--child", "memory", *extra], memory_env)
                            record.update({k: v for k, v in mem.items() if k not in record})
                        if impl == "ours" and "time_min_s" in record:
                            ours_time = record["time_min_s"]
                        if mode == "fwd" and os.path.exists(save) and os.path.exists(ours_path):
                            y, y_ours = torch.load(save), torch.load(ours_path)
                            diff = (y - y_ours).abs().max() / y_ours.abs().max()
                            record["output_rel_diff"] = float(diff)
                    if ours_time and "time_min_s" in record:
                        record["slowdown_vs_ours"] = record["time_min_s"] / ours_time
                    records.append(record)
                    peak = record.get("peak_mib")
                    note = record.get("skipped") or record.get("error") or ""
                    time_s = record.get("time_s")
                    time_min = record.get("time_min_s")
                    print(
                        f"{impl:>11} {length:>6} {mode:>8} "
                        f"{_fmt(time_s and time_s * 1e3):>10} "
                        f"{_fmt(time_min and time_min * 1e3):>10} {_fmt(peak):>9} "
                        f"{_fmt(record.get('slowdown_vs_ours')):>7} "
                        f"{_fmt(record.get('output_rel_diff'), '.1e'):>9}  {note}",
                        flush=True,
                    )
    step_args = ["--hidden", str(args.hidden), "--step-repeat", str(args.step_repeat)]
    step = _run_child(["--child", "step", *step_args, "--threads", str(args.threads)], time_env)
    print(
        f"step (batch 1, H={args.hidden}): one layer {_fmt(step.get('one_layer_median_ms'), '.3f')}"
        f" ms, 6 layers {_fmt(step.get('six_layers_median_ms'), '.3f')} ms (median)"
    )
    packing = None
    if args.packing:
        extra = ["--child", "pack", "--length", str(max(args.lengths)), *common]
        packing = _run_child(extra, time_env)
        print(
            f"packing (kernels fwd+bwd, B={args.batch}, L={max(args.lengths)}, "
            f"{_fmt(packing.get('documents_per_row'))} documents a row): unpacked "
            f"{_fmt(packing.get('unpacked_min_ms'))} ms, packed "
            f"{_fmt(packing.get('packed_min_ms'))} ms (min), ratio "
            f"{_fmt(packing.get('packed_over_unpacked'), '.2f')} (want <= 1.2)"
        )
    targets = _targets(records, step, args.lengths)
    for name, t in targets.items():
        status = "n/a" if t["met"] is None else ("MET" if t["met"] else "NOT MET")
        print(f"target {name}: {_fmt(t['value'], '.2f')} (want {t['want']}) {status}")
    meta["load_average_end"] = os.getloadavg()
    result = {**meta, "records": records, "step": step, "targets": targets}
    write_json(args.out, {**result, "packing": packing})
    print(f"wrote {args.out}")


def _targets(records: list[dict], step: dict, lengths: list[int]) -> dict:
    def best(impl: str, length: int, mode: str) -> float | None:
        for r in records:
            if (r["impl"], r["L"], r["mode"]) == (impl, length, mode) and "time_min_s" in r:
                return r["time_min_s"]
        return None

    def target(value: float | None, want: str, ok: Any) -> dict:
        return {"value": value, "want": want, "met": None if value is None else bool(ok(value))}

    out = {}
    ours_fwd = best("ours", 4096, "fwd")
    hf_fwd = best("hf_slow", 4096, "fwd")
    out["fwd_speedup_vs_hf_slow_L4096"] = target(
        hf_fwd / ours_fwd if hf_fwd and ours_fwd else None, ">= 8", lambda v: v >= 8
    )
    ours_fb = best("ours", 4096, "fwd+bwd")
    hf_fb = [
        t for t in (best("hf_slow", 4096, "fwd+bwd"), best("hf_mambapy", 4096, "fwd+bwd")) if t
    ]
    out["fwdbwd_speedup_vs_fastest_hf_L4096"] = target(
        min(hf_fb) / ours_fb if hf_fb and ours_fb else None, ">= 10", lambda v: v >= 10
    )
    lo, hi = min(lengths), max(lengths)
    for mode in MODES:
        a, b = best("ours", lo, mode), best("ours", hi, mode)
        out[f"scaling_{mode}_L{hi}_over_L{lo}"] = target(
            b / a if a and b and hi == 16 * lo else None, "<= 20", lambda v: v <= 20
        )
    six = step.get("six_layers_median_ms")
    out["six_layer_step_ms"] = target(six, "< 3", lambda v: v < 3)
    return out


if __name__ == "__main__":
    main()
