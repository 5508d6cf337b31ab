"""Silence converters that print from C++ (TF Lite, onnx2tf, NNCF): redirect file descriptors 1 and 2."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from typing import Iterator


@contextlib.contextmanager
def silenced() -> Iterator[None]:
    """Discard everything written to stdout/stderr inside the block, by Python or native code."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = []
    try:
        with open(os.devnull, "w") as null:
            for fd in (1, 2):
                saved.append((fd, os.dup(fd)))
                os.dup2(null.fileno(), fd)
    except OSError:  # no real descriptors (e.g. an embedding host): fall back to Python-level redirection
        saved = []
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        for fd, copy in saved:
            os.dup2(copy, fd)
            os.close(copy)
