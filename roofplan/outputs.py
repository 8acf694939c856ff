"""Safe writes of user-named outputs (``--out``): all or nothing, never through a planted link.

* :func:`write_file` writes one file (a calibration overlay, a sweep table or plot) through a temporary created with
  ``O_CREAT | O_EXCL | O_NOFOLLOW`` under a random name in the target's directory, then renamed
  over the target. A symlink planted at any name roofplan might use is never followed (the rename
  replaces a link at the target itself instead of writing where it points), and a write that
  fails (full disk, ``ulimit -f``) leaves the previous file intact.
* :func:`write_tree` writes a set of files (launch scripts and ``plan.json``) into a directory as a
  whole or not at all: every file is first written into a fresh private staging directory; a new
  target directory is then the staging directory renamed into place (one atomic rename), an
  existing one receives the staged files by rename while its directory lock (``flock``) is held,
  so two runs writing into one ``--out`` cannot leave plan.json of one plan next to launch files
  of the other.

Failures are :class:`~roofplan.errors.InputError` (exit 2) naming ``out``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path

from roofplan.errors import InputError


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _write_new(dir_fd_path: Path, name: str, text: str, mode: int) -> Path:
    """Create ``dir/name`` exclusively (no link followed) and write ``text``; returns its path."""
    path = dir_fd_path / name
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(path, mode & ~_umask())
    except BaseException:
        with contextlib.suppress(OSError):
            path.unlink()
        raise
    return path


def write_file(
    path: str | os.PathLike, text: str | bytes, *, executable: bool = False, field: str = "out"
) -> str:
    """Write ``text`` (or bytes: a Parquet table, a PNG) to ``path`` atomically (see the module
    doc); returns the path written."""
    target = Path(path)
    tmp: str | None = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # mkstemp opens with O_CREAT | O_EXCL | O_NOFOLLOW under a random name: nothing planted is used
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name[:100]}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(text if isinstance(text, bytes) else text.encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, (0o777 if executable else 0o666) & ~_umask())
        os.replace(tmp, target)
        tmp = None
    except OSError as exc:
        raise InputError(field, str(path), f"a writable file path ({exc.strerror or exc})") from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    return str(target)


@contextlib.contextmanager
def _locked(directory: Path):
    """An exclusive ``flock`` on the directory itself (no lock file is written)."""
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _stage(parent: Path, prefix: str, files: Mapping[str, str], exe: set[str]) -> Path:
    staging = Path(tempfile.mkdtemp(dir=parent, prefix=prefix))
    try:
        for name, text in files.items():
            if Path(name).name != name or name in (".", ".."):
                raise InputError("out", name, "a plain file name (no directories)")
            _write_new(staging, name, text, 0o777 if name in exe else 0o666)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return staging


def write_tree(
    out_dir: str | os.PathLike, files: Mapping[str, str], executable: Iterable[str] = ()
) -> list[str]:
    """Write ``files`` (name -> text) into ``out_dir`` as a whole or not at all; scripts named in
    ``executable`` get +x. Returns the paths written."""
    d = Path(out_dir)
    exe = set(executable)
    staging: Path | None = None
    try:
        if d.exists() and not d.is_dir():
            raise InputError("out", str(out_dir), "a directory (or a path that does not exist yet)")
        if not d.exists():
            d.parent.mkdir(parents=True, exist_ok=True)
            staging = _stage(d.parent, f".{d.name[:100]}.", files, exe)
            os.chmod(staging, 0o777 & ~_umask())
            try:
                os.rename(staging, d)  # the whole directory appears at once
                staging = None
                return [str(d / name) for name in files]
            except OSError:
                if not d.is_dir():  # not "another run created it meanwhile"
                    raise
                shutil.rmtree(staging, ignore_errors=True)
                staging = None
        staging = _stage(d, ".roofplan-", files, exe)
        with _locked(d):
            for name in files:
                os.replace(staging / name, d / name)
        return [str(d / name) for name in files]
    except OSError as exc:
        raise InputError("out", str(out_dir), f"a writable directory ({exc.strerror or exc})") from None
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
