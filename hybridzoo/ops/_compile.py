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

import hashlib
from pathlib import Path
from typing import Any

import torch

from hybridzoo.ops.selective_scan.build import (
    BuildOnce,
    cache_root,
    compile_cached,
    compile_disabled,
    extension_name,
)

__all__ = ["Kernel", "cache_root", "compile_disabled"]

_NATIVE = ["-march=native", "-mprefer-vector-width=512"]  # AVX-512 where the host has it
_FLAG_SETS: tuple[tuple[list[str], list[str]], ...] = (
    (["-O3", *_NATIVE, "-fopenmp", "-ffp-contract=fast", "-Wno-psabi"], ["-fopenmp"]),
    (["-O3", "-fopenmp", "-ffp-contract=fast", "-Wno-psabi"], ["-fopenmp"]),
    (["-O3", "-ffp-contract=fast", "-Wno-psabi"], []),
)


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
        what = f"{self.namespace} kernel"
        compile_cached(name, [str(self.source)], cache_root() / name, _FLAG_SETS, what)
        return getattr(torch.ops, self.namespace)
