"""File writing that never leaves a half-written file behind."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

__all__ = ["atomic_path", "check_output_file", "write_json", "save_result", "read_safetensors"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    If the body raises, the temporary file is removed and ``path`` keeps its previous content.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)  # mkstemp (and some writers) create 0600; results should read like any file
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def check_output_file(path: str | os.PathLike, flag: str, inputs: tuple = ()) -> Path:
    """``path`` checked as a file a command will write, before it does any work: not a folder, and not one of
    its ``inputs`` (which it would replace with its own output). Raises ``ValueError`` naming ``flag``."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{flag} {path}: is a folder; expected the file to write")
    for other in inputs:
        if other is not None and Path(other).exists() and path.exists() and path.samefile(other):
            raise ValueError(f"{flag} {path}: is also this command's input; write the output elsewhere")
    return path


def write_json(obj, path: str | os.PathLike, indent: int | None = 1) -> None:
    """Write ``obj`` as JSON atomically."""
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(obj, f, indent=indent)
        f.write("\n")


def save_result(result: dict, path: str | os.PathLike | None) -> dict:
    """A benchmark's JSON: written atomically when ``path`` is given (and said so); returns ``result``."""
    if path:
        write_json(result, path)
        print(f"wrote {path}")
    return result


def read_safetensors(path: str | os.PathLike, what: str, tensors: bool = True) -> tuple[dict, dict]:
    """(metadata, tensors or ``{}``) of a ``.safetensors`` file; a missing or unreadable file gets an error that
    names it and ``what`` was expected there."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no file {path} (expected {what})")
    try:
        with safe_open(str(path), framework="pt") as f:
            return (f.metadata() or {}), ({k: f.get_tensor(k) for k in f.keys()} if tensors else {})  # noqa: SIM118
    except Exception as err:  # safetensors raises its own error types
        raise ValueError(f"{path}: not a safetensors file ({err}); expected {what}") from err
