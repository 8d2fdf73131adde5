"""Compiling a C++ CPU kernel of the linear-recurrence family on first use, into the same private
per-user cache as the selective-scan kernels (:mod:`hybridzoo.ops.selective_scan.build`).

A kernel is built with ``torch.utils.cpp_extension.load`` (a C++ compiler and ``ninja``) the
first time it is needed in a process, never at import, into
``<cache>/<namespace>_<hash>`` where ``<cache>`` is ``$TORCH_EXTENSIONS_DIR`` or torch's default
(``~/.cache/torch_extensions/...``) and the hash covers the sources, the compiler flags, the host
CPU's model and flags and the torch version; later processes only load the shared library.
Because that library is loaded and run, the directory must be private: the selective scan's
:func:`~hybridzoo.ops.selective_scan.build.check_cache_dir` refuses it otherwise (the reason names
the directory and the fix) and the pure-torch backend runs. If compiling fails, the reason is
kept (:attr:`Kernel.error`) and a ``RuntimeWarning`` says it once per process.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from hybridzoo.ops.selective_scan.build import (
    BuildOnce,
    check_cache_dir,
    clear_stale_lock,
    extension_name,
    kernel_cache_dir,
)

_NATIVE = ["-march=native", "-mprefer-vector-width=512"]  # AVX-512 where the host has it
_FLAG_SETS: tuple[tuple[list[str], list[str]], ...] = (
    (["-O3", *_NATIVE, "-fopenmp", "-ffp-contract=fast", "-Wno-psabi"], ["-fopenmp"]),
    (["-O3", "-fopenmp", "-ffp-contract=fast", "-Wno-psabi"], ["-fopenmp"]),
    (["-O3", "-ffp-contract=fast", "-Wno-psabi"], []),
)


def cache_root() -> Path:
    """Where compiled kernels are cached (shared with the selective-scan kernels)."""
    return kernel_cache_dir().parent


def _private_directory(path: Path) -> Path:
    """``path``, created with mode 0700 if missing, after the cache checks (before and after)."""
    check_cache_dir(path)
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for p in reversed(missing):
        with contextlib.suppress(FileExistsError):
            p.mkdir(mode=0o700)
    check_cache_dir(path)
    clear_stale_lock(path)
    return path


class Kernel(BuildOnce):
    """A C++ source compiled at most once per process (thread-safe), remembering the outcome.

    ``namespace`` is the ``TORCH_LIBRARY`` namespace the source registers (``headers``: the
    files it includes, part of the cache key); :meth:`load` returns
    ``torch.ops.<namespace>`` or None (then :attr:`error` says why).
    """

    def __init__(self, source: Path, namespace: str, headers: tuple[Path, ...] = ()) -> None:
        super().__init__(self._compile, namespace)
        self.source, self.namespace, self.headers = source, namespace, headers

    def _compile(self) -> Any:
        code = b"".join(p.read_bytes() for p in (self.source, *self.headers))
        flags = repr(_FLAG_SETS).encode()
        # the selective scan's build name already covers the host CPU, torch and Python
        host = extension_name().encode()
        digest = hashlib.sha256(code + flags + host)
        name = f"{self.namespace}_{digest.hexdigest()[:12]}"
        directory = _private_directory(cache_root() / name)
        with contextlib.redirect_stdout(sys.stderr):
            logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
            from torch.utils.cpp_extension import load
        fresh = not any(directory.glob("*.so"))
        start = time.perf_counter()
        errors = []
        for cflags, ldflags in _FLAG_SETS:
            try:
                load(
                    name=name,
                    sources=[str(self.source)],
                    extra_cflags=cflags,
                    extra_ldflags=ldflags,
                    build_directory=str(directory),
                    is_python_module=False,
                    verbose=False,
                )
            except Exception as exc:  # compiler or ninja missing, unsupported flag...
                errors.append(f"{' '.join(cflags)}: {type(exc).__name__}: {exc}")
                continue
            if fresh:
                print(
                    f"hybridzoo: compiled the {self.namespace} kernel in "
                    f"{time.perf_counter() - start:.0f} s (cached in {directory})",
                    file=sys.stderr,
                )
            return getattr(torch.ops, self.namespace)
        raise RuntimeError(f"could not compile {self.source.name}:\n" + "\n".join(errors))


def compile_disabled() -> bool:
    """True when ``HYBRIDZOO_NO_COMPILE`` is set to a non-empty value other than ``0``."""
    return os.environ.get("HYBRIDZOO_NO_COMPILE", "") not in ("", "0")
