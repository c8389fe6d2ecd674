"""Writes that lose nothing: whole-folder swaps, atomic files, one writer per output, full-disk errors that say so.

- :func:`replace_folder` stages a complete folder beside the target (same filesystem), flushes it to disk and
  swaps it in at the end: the old folder is renamed aside, the new one renamed in, then the old one deleted. An
  error at any point before the swap removes the staged folder and leaves the target as it was; an error during
  the swap renames the old folder back. A process killed in between leaves a hidden staging or aside folder
  beside the target, which the next write into that target recognises (:func:`recover_folder`): a staging folder
  is deleted, an aside folder is renamed back when the target is missing and deleted otherwise.
- :func:`atomic_file` does the same for one file (a temporary sibling, then ``os.replace``).
- :func:`output_lock` holds an exclusive, non-blocking ``fcntl.flock`` on a hidden lock file beside the target
  (``.<name>.glot-lock``, left in place): a second process writing the same target fails at once with an error
  naming the process that holds it. The lock is re-entrant within a process.
- :func:`disk_error` turns a write failure caused by a full disk (``ENOSPC`` / ``EDQUOT``, also when a library
  reports it in its own exception type) into an ``OSError`` naming the path and saying the disk is full.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

try:  # POSIX advisory locks; elsewhere writers of one target are not serialised
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

__all__ = [
    "ASIDE_TAG",
    "LOCK_SUFFIX",
    "STAGING_TAG",
    "TEMP_TAG",
    "OutputBusyError",
    "atomic_file",
    "check_writable_folder",
    "disk_error",
    "output_lock",
    "recover_folder",
    "remove_stale_temporaries",
    "replace_folder",
]

STAGING_TAG = ".glot-staging-"
ASIDE_TAG = ".glot-old-"
TEMP_TAG = ".glot-tmp-"
LOCK_SUFFIX = ".glot-lock"
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
_held: dict[str, tuple[int, int]] = {}  # lock file -> (open descriptor, depth) of the locks this process holds


class OutputBusyError(ValueError):
    """Another process is writing the same output (the message names it)."""


def _sibling(target: Path, tag: str) -> Path:
    """A hidden sibling of ``target`` unique to this process and call: ``.<name><tag><pid>-<random>``."""
    return target.with_name(f".{target.name}{tag}{os.getpid()}-{uuid.uuid4().hex[:8]}")


def disk_error(error: BaseException, path: str | os.PathLike) -> BaseException:
    """``error`` as an ``OSError(ENOSPC)`` naming ``path`` when a full disk caused it, else ``error`` itself.

    Args:
        error: what a write raised (an ``OSError``, or a library's own type whose message says
            "No space left on device").
        path: the file or folder being written.
    """
    code, text = getattr(error, "errno", None), str(error)
    # numpy reports a short write as "<n> requested and <m> written", without an errno
    short_write = isinstance(error, OSError) and re.search(r"\d+ requested and \d+ written", text) is not None
    if code in _DISK_FULL or short_write or "No space left on device" in text or "Disk quota exceeded" in text:
        return OSError(
            errno.ENOSPC, f"the disk is full (no space left on the device) while writing {str(path)!r}; free some "
            "space and run again (nothing half-written was kept)"
        )
    return error


def check_writable_folder(folder: str | os.PathLike, what: str) -> Path:
    """The nearest existing folder at or above ``folder``, checked to be a folder this process may write in.

    Args:
        folder: a folder that may not exist yet.
        what: how an error names it (e.g. ``"--output 'x.npy'"``).

    Raises:
        ValueError: the nearest existing path is a file, or writing there is denied.
    """
    existing = Path(os.path.abspath(folder))
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"{what} cannot be written: {str(existing)!r} is a file, not a folder")
    denied = not os.access(existing, os.W_OK | os.X_OK)
    if not denied:  # access() says yes to root on a read-only filesystem: try a file
        probe = _sibling(existing / "probe", TEMP_TAG)
        try:
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            os.unlink(probe)
        except OSError:
            denied = True
    if denied:
        raise ValueError(f"{what} cannot be written: the folder {str(existing)!r} is not writable")
    return existing


@contextlib.contextmanager
def output_lock(target: str | os.PathLike) -> Iterator[None]:
    """Hold the exclusive lock of ``target`` (a folder or file that may not exist yet) for the block.

    The lock file ``.<name>.glot-lock`` beside ``target`` is created (with the missing parent folders) and kept.

    Raises:
        OutputBusyError: another process holds the lock (the message names its process id when known).
    """
    target = Path(os.path.abspath(target))
    lock_path = target.with_name(f".{target.name}{LOCK_SUFFIX}")
    key = str(lock_path)
    if key in _held:
        descriptor, depth = _held[key]
        _held[key] = (descriptor, depth + 1)
        try:
            yield
        finally:
            _held[key] = (descriptor, _held[key][1] - 1)
        return
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _acquire(descriptor, target, lock_path)
        _held[key] = (descriptor, 1)
        try:
            yield
        finally:
            del _held[key]
            if fcntl is not None:
                fcntl.flock(descriptor, fcntl.LOCK_UN)
    finally:
        os.close(descriptor)


def _acquire(descriptor: int, target: Path, lock_path: Path) -> None:
    """Take the flock without waiting and record this process id in the lock file."""
    if fcntl is None:  # pragma: no cover - Windows
        return
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(descriptor, 32, 0).decode("ascii", "replace").strip() or "unknown"
        raise OutputBusyError(
            f"{str(target)!r} is being written by another process (pid {holder}, lock {str(lock_path)!r}); wait "
            "for it to finish or choose another output"
        ) from None
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, str(os.getpid()).encode("ascii"), 0)


def recover_folder(target: str | os.PathLike) -> list[Path]:
    """Clean what a writer killed during :func:`replace_folder` left beside ``target``; call under its lock.

    A staging folder is deleted; an aside folder (the old target, renamed away just before the swap) is renamed
    back when ``target`` is missing, deleted otherwise.

    Returns:
        The paths deleted or restored.
    """
    target = Path(os.path.abspath(target))
    if not target.parent.is_dir():
        return []
    handled = []
    for path in sorted(target.parent.glob(f".{target.name}{STAGING_TAG}*")):
        shutil.rmtree(path, ignore_errors=True)
        handled.append(path)
    for path in sorted(target.parent.glob(f".{target.name}{ASIDE_TAG}*")):
        if not target.exists():
            os.rename(path, target)
        else:
            shutil.rmtree(path, ignore_errors=True)
        handled.append(path)
    return handled


@contextlib.contextmanager
def replace_folder(target: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty staging folder; when the block ends without an error, it replaces ``target`` as a whole.

    Holds :func:`output_lock` of ``target`` and runs :func:`recover_folder` first. Everything ``target`` held
    before is gone afterwards (the new folder is exactly what the block wrote).

    Raises:
        OutputBusyError: another process writes ``target``.
        OSError: a full disk (naming the target) or another write failure; ``target`` is then unchanged.
    """
    target = Path(os.path.abspath(target))
    with output_lock(target):
        recover_folder(target)
        staging = _sibling(target, STAGING_TAG)
        staging.mkdir()
        try:
            yield staging
            _flush_tree(staging)
            _swap_in(staging, target)
        except BaseException as error:
            shutil.rmtree(staging, ignore_errors=True)
            converted = disk_error(error, target)
            if converted is error:
                raise
            raise converted from error


def _swap_in(staging: Path, target: Path) -> None:
    """Rename ``target`` aside, ``staging`` in, then delete the old one (renamed back if the second rename fails)."""
    aside = None
    if target.exists() or target.is_symlink():
        aside = _sibling(target, ASIDE_TAG)
        os.rename(target, aside)
    try:
        os.rename(staging, target)
    except BaseException:
        if aside is not None:
            os.rename(aside, target)
        raise
    _fsync_folder(target.parent)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


def _flush_tree(folder: Path) -> None:
    """fsync every file and folder under ``folder`` (the data is on disk before the swap)."""
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            if os.path.islink(path):
                continue
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
        _fsync_folder(Path(root))


def _fsync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):  # some filesystems cannot fsync a folder
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write; it replaces ``path`` when the block ends without an error.

    On an error (or Ctrl-C) the temporary file is removed and ``path`` keeps what it held; a full disk is raised
    as an ``OSError`` naming ``path`` (:func:`disk_error`). Leftover temporary files of a killed writer are
    removed by :func:`remove_stale_temporaries`.
    """
    path = Path(path)
    temporary = _sibling(path, TEMP_TAG)
    try:
        yield temporary
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        converted = disk_error(error, path)
        if converted is error:
            raise
        raise converted from error


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete the temporary siblings :func:`atomic_file` left for ``path`` (call while no writer of it runs)."""
    path = Path(path)
    stale = sorted(path.parent.glob(f".{path.name}{TEMP_TAG}*")) if path.parent.is_dir() else []
    for leftover in stale:
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()
    return stale
