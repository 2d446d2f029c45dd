"""Small C helpers built with the host's C compiler on first use and cached.

    lib_path = shared_library(Path(__file__).with_name("trampoline.c"), include_dirs=[jax.ffi.include_dir()])

The cache key covers the source text, the include folders' headers that the source names
and anything in `key`, so a new jaxlib (new headers) or an edited source builds a new file;
an old one is never loaded by mistake. Files are written under a temporary name and
renamed, so a concurrent build or a killed one never leaves a half-written library behind.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterable

from .errors import XchipError


class NativeBuildError(XchipError):
    """The C compiler is missing or rejected a helper's source."""


def native_cache_dir() -> Path:
    from .targets.host import cache_dir
    return cache_dir() / "native"


def c_compiler() -> str:
    cc = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if not cc:
        raise NativeBuildError("no C compiler found (set CC, or install gcc): xchip builds a small C helper "
                               "on first use")
    return cc


def shared_library(source: Path, *, include_dirs: Iterable[str | Path] = (), key: str = "",
                   flags: Iterable[str] = ()) -> Path:
    """The shared library built from the C file `source`, from the cache or built now."""
    include_dirs = [Path(d) for d in include_dirs]
    flags = ["-O2", "-fPIC", "-shared", "-std=c11", "-Wall", *flags]
    text = source.read_text()
    digest = hashlib.sha256()
    for part in (text, key, " ".join(flags), *(str(d) for d in include_dirs)):
        digest.update(part.encode() + b"\0")
    for d in include_dirs:   # the headers themselves: a new jaxlib can change them at the same path
        for header in sorted(d.rglob("*.h")):
            if header.name in text:
                digest.update(header.read_bytes())
    folder = native_cache_dir()
    path = folder / f"{source.stem}-{digest.hexdigest()[:16]}.so"
    if path.exists():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=folder)
    os.close(fd)
    try:
        cmd = [c_compiler(), *flags, *(f"-I{d}" for d in include_dirs), str(source), "-o", tmp]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise NativeBuildError(f"building {source.name} failed ({' '.join(cmd)}):\n{done.stderr.strip()}")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
