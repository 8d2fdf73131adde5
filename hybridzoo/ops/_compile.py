"""Compiling a C++ CPU kernel on first use, into a private per-user cache.

A kernel is built with ``torch.utils.cpp_extension.load`` (a C++ compiler and ``ninja``) the
first time it is needed in a process, never at import. The build lives in
``$HYBRIDZOO_KERNEL_CACHE/<name>_<hash>`` (default ``~/.cache/hybridzoo/kernels``), the hash
covering the source, the compiler flags, the host CPU's model and flags and the torch version;
later processes only load the shared library. Because that library is loaded and run, the
cache directory and the kernel's directory in it must belong to the user and not be writable by
group or others: otherwise the kernel is refused (the reason names the directory) and the
pure-torch backend runs. If compiling fails, the reason is kept (:attr:`Kernel.error`) and a
``RuntimeWarning`` says it once per process.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import platform
import stat
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import torch

_NATIVE = ["-march=native", "-mprefer-vector-width=512"]  # AVX-512 where the host has it
_FLAG_SETS: tuple[tuple[list[str], list[str]], ...] = (
    (["-O3", *_NATIVE, "-fopenmp", "-ffp-contract=fast", "-Wno-psabi"], ["-fopenmp"]),
    (["-O3", "-fopenmp", "-ffp-contract=fast", "-Wno-psabi"], ["-fopenmp"]),
    (["-O3", "-ffp-contract=fast", "-Wno-psabi"], []),
)


def cache_root() -> Path:
    """Where compiled kernels are cached: ``$HYBRIDZOO_KERNEL_CACHE`` or
    ``~/.cache/hybridzoo/kernels``."""
    env = os.environ.get("HYBRIDZOO_KERNEL_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "hybridzoo" / "kernels"


def private_directory(path: Path) -> Path:
    """``path``, created (mode 0700) if missing; raises ``PermissionError`` unless it is a
    directory owned by this user and not writable by group or others."""
    if not path.is_dir() and not path.is_symlink():
        if path.exists():
            raise PermissionError(f"kernel cache {path} is not a directory")
        path.mkdir(mode=0o700, parents=True)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode):
        raise PermissionError(f"kernel cache {path} is not a directory (a link or a file)")
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise PermissionError(
            f"kernel cache {path} belongs to another user (uid {info.st_uid}); set "
            "HYBRIDZOO_KERNEL_CACHE to a directory of your own"
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise PermissionError(
            f"kernel cache {path} is writable by group or others (mode "
            f"{stat.S_IMODE(info.st_mode):o}); run `chmod go-w {path}` or set "
            "HYBRIDZOO_KERNEL_CACHE to a private directory"
        )
    return path


def _cpu_fingerprint() -> bytes:
    try:
        with open("/proc/cpuinfo", "rb") as f:
            lines = [ln for ln in f.read().splitlines() if ln.startswith((b"model name", b"flags"))]
        return b"\n".join(sorted(set(lines)))
    except OSError:
        return platform.processor().encode() + platform.machine().encode()


class Kernel:
    """A C++ source compiled at most once per process (thread-safe), remembering the outcome.

    ``namespace`` is the ``TORCH_LIBRARY`` namespace the source registers (``headers``: the
    files it includes, part of the cache key); :meth:`load` returns
    ``torch.ops.<namespace>`` or None (then :attr:`error` says why).
    """

    def __init__(self, source: Path, namespace: str, headers: tuple[Path, ...] = ()) -> None:
        self.source, self.namespace, self.headers = source, namespace, headers
        self._lock = threading.Lock()
        self._tried = False
        self.ops: Any = None
        self.error: str | None = None

    def _build(self) -> Any:
        code = b"".join(p.read_bytes() for p in (self.source, *self.headers))
        flags = repr(_FLAG_SETS).encode()
        digest = hashlib.sha256(code + flags + _cpu_fingerprint() + torch.__version__.encode())
        name = f"{self.namespace}_{digest.hexdigest()[:12]}"
        directory = private_directory(private_directory(cache_root()) / name)
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

    def load(self) -> Any:
        """The compiled ops, compiling them on the first call; None if that is impossible."""
        with self._lock:
            if not self._tried:
                self._tried = True
                try:
                    self.ops = self._build()
                except Exception as exc:
                    self.error = str(exc)
                    warnings.warn(
                        f"hybridzoo: the compiled {self.namespace} kernel is unavailable; the "
                        f"pure-torch backend runs instead (slower). Reason: {self.error[:600]}",
                        RuntimeWarning,
                        stacklevel=3,
                    )
            return self.ops


def compile_disabled() -> bool:
    """True when ``HYBRIDZOO_NO_COMPILE`` is set to a non-empty value other than ``0``."""
    return os.environ.get("HYBRIDZOO_NO_COMPILE", "") not in ("", "0")
