"""File writing that never leaves a half-written file behind, and never replaces a file posediff did not write.

Every command that writes a folder (``posediff predict``, ``train``, ``bench``, ``data synthcrowd``) writes it
through :class:`OutputFolder`: the folder's manifest ``.posediff.json`` lists the files posediff wrote there,
before it writes them, so that a file the manifest does not cover (the user's own) is refused by name and never
replaced or deleted, and the hidden temporary file of a write that was killed half-way is removed the next time
a command writes the folder. Commands that write one file (``--out FILE``) replace only a file of posediff's
own format (:func:`check_output_file`).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

__all__ = ["atomic_path", "check_output_file", "write_json", "save_result", "read_safetensors", "OutputFolder",
           "remove_temporaries_of", "MANIFEST"]

MANIFEST = ".posediff.json"
_FOLDER_FORMAT = "posediff.folder/1"
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.[A-Za-z0-9_]{8}\.tmp$")  # atomic_path's mkstemp(prefix=".NAME.")


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


def check_output_file(path: str | os.PathLike, flag: str, inputs: tuple = (), kind: str = "safetensors") -> Path:
    """``path`` checked as a file a command will write, before it does any work: not a folder, not one of its
    ``inputs`` (which it would replace with its own output), and, if it exists, a file of posediff's own (a
    ``kind="safetensors"`` file whose metadata ``format`` is posediff's, or a ``kind="npz"`` pose or mocap bank), never
    a file of the user's. Raises ``ValueError`` naming ``flag``."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{flag} {path}: is a folder; expected the file to write")
    for other in inputs:
        if other is not None and Path(other).exists() and path.exists() and path.samefile(other):
            raise ValueError(f"{flag} {path}: is also this command's input; write the output elsewhere")
    if (path.exists() or path.is_symlink()) and not _posediff_file(path, kind):
        raise ValueError(f"{flag} {path}: holds a file posediff did not write (not a posediff {kind} file); "
                         f"pass another {flag}, or move the file away")
    return path


def _posediff_file(path: Path, kind: str) -> bool:
    """Whether the existing ``path`` is a file posediff wrote: a safetensors file with a posediff ``format``, or
    an .npz pose or mocap bank."""
    if path.is_symlink() or not path.is_file():
        return False
    if kind == "npz":
        import numpy as np

        try:
            with np.load(path) as f:
                return ({"keypoints", "boxes", "image_ids", "source"} <= set(f.files)  # a pose bank
                        or {"pose_mm", "root_mm", "clip_index", "source"} <= set(f.files))  # a mocap bank
        except Exception:  # not an npz at all  # noqa: BLE001
            return False
    try:
        meta, _ = read_safetensors(path, "a posediff file", tensors=False)
    except ValueError:
        return False
    return str(meta.get("format", "")).startswith("posediff.")


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


class OutputFolder:
    """A folder a command writes into, which owns only what posediff wrote there.

    Its manifest (``.posediff.json``) lists the files (paths relative to the folder) posediff wrote there.
    :meth:`claim` adds names to it before they are written, so that even a write killed half-way leaves only
    files the manifest lists; a file it does not list was not written by posediff and is refused by name
    (:meth:`check`), never replaced or deleted.

    Args:
        path: the folder (created by the first :meth:`claim`, not before).
        flag: how the user named it (``"--out"``, ``"out="``), for messages.
        adopt: for a folder without a manifest, the files an earlier posediff, which wrote none, made there
            (read from that command's own index: a run's ``last.json``, predict's ``images.json``), or ``[]``
            when it did not make the folder. They are recorded with the first :meth:`claim`.
    """

    def __init__(self, path: str | os.PathLike, flag: str = "--out",
                 adopt: Callable[[Path], Iterable[str]] | None = None):
        self.path = Path(path)
        self.flag = flag
        if self.path.is_symlink() and not self.path.exists():
            raise ValueError(f"{flag} {self.path}: is a broken link; expected a folder")
        if self.path.exists() and not self.path.is_dir():
            raise ValueError(f"{flag} {self.path}: is a file; expected a folder to write into")
        self.names: set[str] = set()
        if not self._load() and adopt is not None and self.path.is_dir():
            self.names = {n for n in adopt(self.path) if (self.path / n).is_file()}

    def _load(self) -> bool:
        """Read the manifest as it is on disk now (another writer, a training run under the bench, may have
        added to it); returns whether there is one."""
        manifest = self.path / MANIFEST
        if not manifest.is_file():
            return False
        try:
            names = json.loads(manifest.read_text())["files"]
            if not all(isinstance(n, str) for n in names):
                raise TypeError("entries must be strings")
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{manifest}: cannot read the list of the files posediff wrote in this folder "
                             f"({err}); pass another {self.flag}") from err
        self.names = set(names)
        return True

    def owns(self, name: str) -> bool:
        """Whether the file ``name`` (relative to the folder) is posediff's."""
        return name in self.names

    def _foreign(self, names: Iterable[str]) -> list[str]:
        """The existing files among ``names`` that posediff did not write. On a file system that ignores case
        (macOS, Windows) the file that stands under a name is found by listing its folder."""
        found = []
        for name in names:
            p = self.path / name
            if not (p.exists() or p.is_symlink()):
                continue
            if name in self.names:
                continue
            try:
                standing = [e for e in os.listdir(p.parent) if e.casefold() == p.name.casefold()]
            except OSError:
                standing = [p.name]
            parent = Path(name).parent.as_posix()
            rel = [e if parent == "." else f"{parent}/{e}" for e in standing]
            if not any(r in self.names for r in rel) or p.is_symlink():
                found.append(name)
        return found

    def check(self, names: Iterable[str] = ()) -> None:
        """Refuse, before any work, to write ``names`` where a file posediff did not write stands."""
        foreign = self._foreign(names)
        if foreign:
            more = f" (and {len(foreign) - 1} more)" if len(foreign) > 1 else ""
            raise ValueError(f"{self.flag} {self.path}: holds {foreign[0]}{more}, which posediff did not write (its "
                             f"{MANIFEST} does not list it), and this command would replace it; pass another "
                             f"{self.flag}, or move the file away")

    def claim(self, names: Iterable[str] = ()) -> OutputFolder:
        """Check ``names`` (:meth:`check`), then record them in the manifest, creating the folder, before anything is
        written; temporary files that killed writes left beside files posediff owns are removed."""
        names = list(names)
        self._load()  # a manifest on disk is the record; without one, the names adopted stand
        self.check(names)
        self.names |= set(names)
        self._save()
        self.remove_temporaries()
        return self

    def release(self, names: Iterable[str]) -> None:
        """Drop ``names`` from the manifest (files no longer there)."""
        names = set(names)
        if not names:
            return
        self._load()
        self.names -= names
        self._save()

    def remove(self, name: str, keep: Iterable[str | os.PathLike] = ()) -> bool:
        """Delete the file ``name`` if posediff wrote it and it is none of ``keep`` (a command's inputs), and drop
        it from the manifest; returns whether it was deleted."""
        p = self.path / name
        if not self.owns(name) or not p.is_file() or p.is_symlink():
            return False
        for other in keep:
            with contextlib.suppress(OSError):
                if Path(other).exists() and p.samefile(other):
                    return False
        p.unlink()
        self.release([name])
        return True

    def remove_temporaries(self) -> list[str]:
        """Delete the temporary files (``.NAME.<8 random characters>.tmp``) that an :func:`atomic_path` write killed
        half-way left beside a file posediff owns here (only the folders of its files are looked at); returns them."""
        removed = []
        folders = {Path(n).parent for n in self.names} | {Path(".")}
        for folder in sorted(folders):
            for p in sorted((self.path / folder).glob(".*.tmp")):
                m = _TEMPORARY.match(p.name)
                target = (folder / m["name"]).as_posix() if m else None
                if target is not None and p.is_file() and (target == MANIFEST or self.owns(target)):
                    with contextlib.suppress(FileNotFoundError):
                        p.unlink()
                    removed.append((folder / p.name).as_posix())
        return removed

    def _save(self) -> None:
        write_json(dict(format=_FOLDER_FORMAT, files=sorted(self.names)), self.path / MANIFEST)


def remove_temporaries_of(path: str | os.PathLike) -> list[Path]:
    """Delete the temporary files a killed :func:`atomic_path` write of ``path`` left beside it."""
    path = Path(path)
    gone = []
    for p in sorted(path.parent.glob(f".{glob.escape(path.name)}.*.tmp")) if path.parent.is_dir() else []:
        m = _TEMPORARY.match(p.name)
        if m and m["name"] == path.name and p.is_file():
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
            gone.append(p)
    return gone

