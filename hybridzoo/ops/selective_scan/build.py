"""Compiling the C++ kernels of ``csrc/`` and where the compiled library is cached.

The kernels are compiled on first use with ``torch.utils.cpp_extension.load`` (a C++ compiler and
``ninja`` are needed), never at import.  The compiled library is cached on disk, one directory
per build (:func:`kernel_cache_dir`)::

    $TORCH_EXTENSIONS_DIR/hybridzoo_selective_scan_<hash>/      if TORCH_EXTENSIONS_DIR is set
    ~/.cache/torch_extensions/hybridzoo_selective_scan_<hash>/  otherwise (per user; on Linux,
                                                                $XDG_CACHE_HOME if set)

``<hash>`` covers the sources, the host CPU's model and feature flags (the build uses
``-march=native``), and the torch and Python versions, so a changed source or a different machine
gets its own build and later processes only load the library (no compiler needed).  To clear the
cache, delete those directories (``rm -rf ~/.cache/torch_extensions/hybridzoo_selective_scan_*``);
the next call compiles again.  The first compile in a process prints one line to stderr (how long
it took, where it is cached); loading a cached build prints nothing.

The library found there is loaded into the process, so the cache must be private: a cache
directory (or a file in it) that is not owned by the current user or that its group or other
users can write, or a parent directory that others can write without the sticky bit, is refused
before anything is compiled or loaded (:class:`UnsafeCacheError`): the torch backend is used
instead, with a one-time warning that names the directory and the fix.  Directories that this
module creates are created with mode ``0o700``.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import platform
import stat
import sys
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

__all__ = ["UnsafeCacheError", "build_extension", "check_cache_dir", "kernel_cache_dir"]

CSRC = Path(__file__).with_name("csrc")
"""The C++ sources (``*.cpp``) and headers (``*.h``) of the extension."""

NAMESPACE = "hybridzoo_selective_scan"  # the TORCH_LIBRARY namespace of csrc/ops.cpp
_FLAG_SETS: tuple[tuple[list[str], list[str]], ...] = (
    (["-O3", "-march=native", "-fopenmp", "-ffp-contract=fast", "-Wno-psabi"], ["-fopenmp"]),
    (["-O3", "-fopenmp", "-ffp-contract=fast", "-Wno-psabi"], ["-fopenmp"]),
    (["-O3", "-ffp-contract=fast", "-Wno-psabi"], []),
)
_CUDA_NOTICE = "No CUDA runtime is found"  # torch's import-time line on a CUDA wheel without GPU


class UnsafeCacheError(RuntimeError):
    """The kernel cache directory could be written by another user (see the module docstring)."""


def _cpu_fingerprint() -> bytes:
    """The host's CPU model and feature flags (Linux), so that a cache directory shared between
    machines never hands a ``-march=native`` build to a CPU that lacks its instructions."""
    try:
        with open("/proc/cpuinfo", "rb") as f:
            lines = [ln for ln in f.read().splitlines() if ln.startswith((b"model name", b"flags"))]
        return b"\n".join(sorted(set(lines)))
    except OSError:
        return platform.processor().encode() + platform.machine().encode()


def _digest() -> str:
    h = hashlib.sha256()
    for path in sorted(CSRC.iterdir()):
        if path.suffix in (".cpp", ".h"):
            h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    h.update(_cpu_fingerprint())
    h.update(f"{torch.__version__} {sys.version_info[:2]} {platform.machine()}".encode())
    return h.hexdigest()[:12]


def extension_name() -> str:
    """The library's name: ``hybridzoo_selective_scan_<hash>``."""
    return f"{NAMESPACE}_{_digest()}"


def _filtered_stderr_import() -> Any:
    """Imports ``torch.utils.cpp_extension`` without its "No CUDA runtime is found, using
    CUDA_HOME=..." line (printed at import by CUDA wheels on machines without a GPU; the kernels
    here are CPU-only, so it only confuses).  Anything else it writes is passed on."""

    class _DropNotice(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return not record.getMessage().startswith(_CUDA_NOTICE)

    logger = logging.getLogger("torch.utils.cpp_extension")
    drop = _DropNotice()
    logger.addFilter(drop)
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stderr(buffer):  # older torch versions print the notice
            from torch.utils import cpp_extension
    finally:
        logger.removeFilter(drop)
        kept = [ln for ln in buffer.getvalue().splitlines(True) if not ln.startswith(_CUDA_NOTICE)]
        sys.stderr.write("".join(kept))
    return cpp_extension


def _cache_root() -> Path:
    root = os.environ.get("TORCH_EXTENSIONS_DIR")
    if root:
        return Path(root).expanduser().resolve()
    return Path(_filtered_stderr_import().get_default_build_root())


def kernel_cache_dir() -> Path:
    """The directory that holds (or will hold) this machine's build of the kernels."""
    return _cache_root() / extension_name()


def _describe(mode: int) -> str:
    who = [
        w for w, bit in (("its group", stat.S_IWGRP), ("other users", stat.S_IWOTH)) if mode & bit
    ]
    return " and ".join(who)


def check_cache_dir(path: Path) -> None:
    """Raises :class:`UnsafeCacheError` unless ``path`` (a directory, existing or not) can only be
    written by the current user: ``path`` and every entry in it owned by the user and not
    writable by group or others; every existing parent owned by the user or root and writable by
    others only with the sticky bit (as ``/tmp``).  No check where there are no POSIX owners."""
    if not hasattr(os, "getuid"):
        return
    uid = os.getuid()
    fix = (
        "Fix: `chmod go-w {where}` (and make sure it is yours), or set TORCH_EXTENSIONS_DIR to a "
        "directory that only you can write."
    )
    path = Path(path)
    entries = [path, *path.iterdir()] if path.is_dir() else []
    for entry in entries:
        st = entry.stat()
        if st.st_uid != uid:
            raise UnsafeCacheError(
                f"the kernel cache {entry} belongs to uid {st.st_uid}, not to you (uid {uid}): "
                "the compiled library there may have been planted. " + fix.format(where=path)
            )
        if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise UnsafeCacheError(
                f"the kernel cache {entry} is writable by {_describe(st.st_mode)} "
                f"(mode {oct(stat.S_IMODE(st.st_mode))}): another user could replace the compiled "
                "library that would be loaded into this process. " + fix.format(where=entry)
            )
    for parent in path.parents:
        if not parent.exists():
            continue
        st = parent.stat()
        if st.st_uid not in (uid, 0):
            problem = f"belongs to uid {st.st_uid}"
        elif st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not st.st_mode & stat.S_ISVTX:
            problem = (
                f"is writable by {_describe(st.st_mode)} without the sticky bit "
                f"(mode {oct(stat.S_IMODE(st.st_mode))})"
            )
        else:
            continue
        raise UnsafeCacheError(
            f"the kernel cache {path} lies in {parent}, which {problem}: another user could swap "
            "the cache for theirs. " + fix.format(where=parent)
        )


def _make_private_dirs(path: Path) -> None:
    """Creates ``path`` and its missing parents with mode 0o700."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for p in reversed(missing):
        with contextlib.suppress(FileExistsError):
            p.mkdir(mode=0o700)


def _compile(name: str, sources: list[str], directory: Path, cflags: list, ldflags: list) -> None:
    _filtered_stderr_import().load(
        name=name,
        sources=sources,
        build_directory=str(directory),
        extra_cflags=cflags,
        extra_ldflags=ldflags,
        is_python_module=False,
        verbose=False,
    )


#: A build lock older than this (seconds) is left by a killed compile: no build takes this long.
STALE_LOCK_SECONDS = 600.0


def clear_stale_lock(directory: Path, max_age: float = STALE_LOCK_SECONDS) -> bool:
    """Remove the build lock (torch's ``<directory>/lock``) when it is older than ``max_age``
    seconds: a compile killed midway (Ctrl-C during the first build) leaves it behind, and every
    later build would wait on it forever. Says so with a ``RuntimeWarning`` naming the file;
    returns whether a lock was removed. A younger lock (a build in progress) is left alone."""
    lock = directory / "lock"
    try:
        age = time.time() - lock.stat().st_mtime
    except FileNotFoundError:
        return False
    if age < max_age:
        return False
    with contextlib.suppress(FileNotFoundError):
        lock.unlink()
    warnings.warn(
        f"hybridzoo: removed a stale kernel build lock {lock} ({age / 60:.0f} minutes old, left "
        "by an interrupted compile)",
        RuntimeWarning,
        stacklevel=2,
    )
    return True


def compile_cached(
    name: str,
    sources: list[str],
    directory: Path,
    flag_sets: tuple[tuple[list[str], list[str]], ...],
    what: str,
) -> None:
    """Compile ``sources`` as the library ``name`` in ``directory`` (or load its cached build),
    with the first of ``flag_sets`` that works: every compiled kernel of hybridzoo goes this way.

    The cache is checked private before anything is created (a planted parent is refused as is)
    and again once ``directory`` exists (created mode 0700); a stale build lock is removed. The
    first build prints one line to stderr naming ``what`` and ``directory``. Raises
    :class:`UnsafeCacheError` before compiling or loading anything if the cache is not private,
    and ``RuntimeError`` (each flag set's failure in it) if no set of flags works.
    """
    check_cache_dir(directory)
    _make_private_dirs(directory)
    check_cache_dir(directory)
    clear_stale_lock(directory)
    cached = any(directory.glob("*.so"))
    errors = []
    start = time.perf_counter()
    for cflags, ldflags in flag_sets:
        try:
            _compile(name, sources, directory, cflags, ldflags)
        except Exception as exc:  # compiler missing, ninja missing, unsupported flag...
            errors.append(f"{' '.join(cflags)}: {type(exc).__name__}: {exc}")
            continue
        if not cached:
            seconds = time.perf_counter() - start
            print(
                f"hybridzoo: compiled the {what} in {seconds:.1f} s, cached in {directory} "
                "(later processes load the build from there)",
                file=sys.stderr,
                flush=True,
            )
        return
    raise RuntimeError(f"could not compile the {what}:\n" + "\n".join(errors))


def compile_disabled() -> bool:
    """True when ``HYBRIDZOO_NO_COMPILE`` is set to a non-empty value other than ``0``: then no
    kernel is compiled or loaded and the pure-torch backends run."""
    return os.environ.get("HYBRIDZOO_NO_COMPILE", "") not in ("", "0")


def cache_root() -> Path:
    """Where compiled kernels are cached: ``$TORCH_EXTENSIONS_DIR``, or torch's default."""
    return _cache_root()


def build_extension() -> Any:
    """Compiles (or loads the cached build of) the kernels; returns ``torch.ops.<namespace>``
    (see :func:`compile_cached` for the cache checks and the errors)."""
    name = extension_name()
    sources = [str(p) for p in sorted(CSRC.glob("*.cpp"))]
    compile_cached(name, sources, _cache_root() / name, _FLAG_SETS, "selective-scan kernels")
    return getattr(torch.ops, NAMESPACE)


class BuildOnce:
    """Runs ``build`` (returning the compiled ops) at most once per process, thread-safe, and
    remembers the outcome: :attr:`ops`, or None and :attr:`error`, the reason, which a
    ``RuntimeWarning`` says once (``what`` names the kernel, ``hint`` ends the warning)."""

    def __init__(self, build: Callable[[], Any], what: str, hint: str = "") -> None:
        self._build, self._what, self._hint = build, what, hint
        self._lock = threading.Lock()
        self._tried = False
        self.ops: Any = None
        self.error: str | None = None

    def load(self) -> Any:
        """The compiled ops, building them on the first call; None if that is impossible."""
        with self._lock:
            if not self._tried:
                self._tried = True
                try:
                    self.ops = self._build()
                except Exception as exc:
                    self.error = str(exc)
                    reason = self.error if len(self.error) < 600 else self.error[:600] + " [...]"
                    warnings.warn(
                        f"hybridzoo: the compiled {self._what} kernel is unavailable; the "
                        f"pure-torch backend runs instead (slower). Reason: {reason}{self._hint}",
                        RuntimeWarning,
                        stacklevel=3,
                    )
            return self.ops
