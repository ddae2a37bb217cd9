"""Where derived data is cached, how cache keys are made, and atomic writes.

- Location: ``$NPFACE_CACHE`` if set, else ``~/.cache/npface``. Never beside
  the data (datasets may be read-only and shared).
- Keys: a SHA-256 of a canonical JSON description of everything the cached
  result depends on (file list with sizes and modification times, crop
  parameters, format version), so a changed input never reuses a stale entry.
- Writes are atomic: the content goes to a uniquely named temporary file in
  the same folder, then ``os.replace`` renames it over the final name. A
  reader sees either no file or a complete one, never a half-written one,
  and two processes building the same entry at once both succeed.
"""
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

CACHE_ENV = "NPFACE_CACHE"


def cache_dir(create: bool = True) -> Path:
    """The cache folder: ``$NPFACE_CACHE`` if set (and non-empty), else ``~/.cache/npface``."""
    env = os.environ.get(CACHE_ENV)
    root = Path(env).expanduser() if env else Path.home() / ".cache" / "npface"
    if create:
        root.mkdir(parents=True, exist_ok=True)
    return root


def cache_key(description: Any) -> str:
    """Hex SHA-256 of ``description`` serialised as canonical JSON (sorted keys, no spaces).

    ``description`` must be JSON-serialisable (dicts, lists, str, int, float,
    bool, None); tuples serialise as lists.
    """
    text = json.dumps(description, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` to fill a temporary file beside ``path``, then rename it to ``path``.

    The temporary name is unique (``<name>.tmp-<random>``), in the same folder
    so the rename is atomic on POSIX. Before the rename the file's contents are
    flushed to disk (a crash leaves the old file or the new one, never a torn
    one) and it gets the permissions of a file opened normally, 0666 minus the
    umask (``mkstemp`` creates it private). If ``write`` raises, the temporary
    file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=path.name + ".tmp-", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def check_writable(path) -> Path:
    """``path`` if ``atomic_write`` can write it, else ValueError "cannot write <path>: <reason>", one line.

    Checked before a command spends minutes or hours on what it will write: ``path`` must not be a
    folder, its nearest existing ancestor must be one (``atomic_write`` creates the folders below
    it), and a file must be creatable there, which is tried for real rather than predicted from
    permission bits (a read-only file system, or /proc for root): a temporary file named as
    ``atomic_write`` names its own (so a name too long for the file system fails here too), removed
    at once. Nothing is left behind: missing folders are not created here.
    """
    path = Path(path)
    if os.path.isdir(path):                           # os.path's tests answer False where Path's raise OSError
        raise ValueError(f"cannot write {path}: it is a folder")
    ancestor = path.parent
    while not os.path.lexists(ancestor) and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not os.path.isdir(ancestor):                   # a file, or a link to nothing
        raise ValueError(f"cannot write {path}: {ancestor} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=path.name + ".tmp-", dir=ancestor)
    except OSError as e:
        raise ValueError(f"cannot write {path}: cannot create files in {ancestor} ({e.strerror})") from None
    os.close(fd)
    try:
        os.unlink(probe)
    except OSError as e:
        raise ValueError(f"cannot write {path}: cannot replace files in {ancestor} ({e.strerror})") from None
    return path


def atomic_write_npz(path: Path, arrays: dict) -> Path:
    """Write ``arrays`` ({name: array}) to ``path`` as an .npz, atomically (a name given to np.savez would
    get '.npz' appended, so it writes through an open file)."""
    import numpy as np

    def write(tmp):
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)

    return atomic_write(path, write)


def read_npz(path: Path, complaint: str) -> dict:
    """{name: array} of every array in the .npz at ``path``, opened without pickle.

    A file that is not a readable .npz (truncated, not a zip, a pickled array)
    raises ValueError "<path>: <complaint>: <reason>", one line, whatever NumPy
    or zipfile raised.
    """
    import zipfile

    import numpy as np
    try:
        with open(path, "rb") as fh:
            if fh.read(2) != b"PK":                  # what np.load cannot read as an archive it tries as pickle
                raise ValueError("not a .npz (zip) archive")
        with np.load(path, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise ValueError(f"{path}: {complaint}: {e}") from None


def atomic_write_text(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
