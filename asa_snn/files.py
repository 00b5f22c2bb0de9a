"""Output folders and files that are never half-written, never someone else's, never followed out.

The rule (README "Command line"): an output folder is new, empty, or written by asa-snn before
(it holds the empty file :data:`OUTPUT_MARKER`); anything else stops the command with an error
naming it. Commands that produce a whole folder at the end stage it beside its place and move it
in at once (:func:`staged_folder`). ``train`` writes piece by piece, so it marks the folder when it
claims it (:func:`claim_folder`), holds a lock on it for the run (:func:`folder_lock`), and writes
every file through a temporary file in the same folder that ``os.replace`` puts in place
(:func:`atomic_write`): a symbolic link of that name is replaced, never followed.

Temporary files and folders carry the id of the process that made them (``<pid>-<host hash>``),
so the next run can remove the leftovers of a process that was killed (:func:`remove_stale`):

    .<name>.<pid>-<host>.<token>.tmp        a file being written (``.<name>.<pid>.tmp``: older runs)
    .<name>.staging.<pid>-<host>.<token>    a folder being staged beside output folder <name>
    .<name>.old.<pid>-<host>.<token>        the previous <name>, moved aside while it is replaced
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from asa_snn.errors import AsaSnnError

OUTPUT_MARKER = ".asa-snn-output"
"""Empty file inside every folder asa-snn writes: only such folders are replaced."""

LOCK_FILE = ".asa-snn.lock"
"""The lock file :func:`folder_lock` holds (``flock``) in a folder written piece by piece."""

HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]
"""This machine in temporary names: the first 8 hex digits of sha256(host name)."""

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)

_TEMP_FILE = re.compile(r"\.(?P<name>.+?)\.(?P<pid>\d+)(?:-(?P<host>[0-9a-f]{8}))?(?:\.[0-9a-f]{8})?\.tmp")
_TEMP_FOLDER = re.compile(
    r"\.(?P<name>.+?)\.(?P<kind>staging|old)\.(?P<pid>\d+)-(?P<host>[0-9a-f]{8})\.[0-9a-f]{8}"
)


def owner_tag() -> str:
    """``<pid>-<host hash>``: the part of a temporary name that says which process made it."""
    return f"{os.getpid()}-{HOST}"


def temp_path(path: str | Path) -> Path:
    """A fresh temporary name beside ``path``: ``.<name>.<pid>-<host>.<random>.tmp``."""
    path = Path(path)
    return path.with_name(f".{path.name}.{owner_tag()}.{secrets.token_hex(4)}.tmp")


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (a process of another user counts)."""
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, ValueError):
        return False
    return True


def _stale(match: re.Match[str]) -> bool:
    """A leftover of a process of this machine that no longer runs (another host's: never)."""
    host = match["host"]
    return (host is None or host == HOST) and not _alive(int(match["pid"]))


def remove_stale(folder: str | Path, name: str | None = None) -> list[str]:
    """Remove the leftovers of killed asa-snn processes in ``folder`` (module docstring: temporary
    files, staging folders, folders moved aside); with ``name`` only those of output ``name``.

    Only entries whose process id is no longer alive on this machine are touched. A folder moved
    aside by a process killed before the new output was in place is moved back when ``name`` is
    missing, so the previous output is not lost. Best effort: what cannot be removed stays.

    Returns:
        The names removed (or restored).
    """
    folder = Path(folder)
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    removed = []
    for entry in entries:
        file_match = _TEMP_FILE.fullmatch(entry.name)
        folder_match = _TEMP_FOLDER.fullmatch(entry.name)
        match = folder_match or file_match
        if match is None or (name is not None and match["name"] != name) or not _stale(match):
            continue
        try:
            if folder_match is not None and entry.is_dir(follow_symlinks=False):
                previous = Path(entry.path) / "previous"
                target = folder / folder_match["name"]
                if folder_match["kind"] == "old" and previous.is_dir() and not os.path.lexists(target):
                    os.replace(previous, target)
                shutil.rmtree(entry.path)
            elif file_match is not None and not entry.is_dir(follow_symlinks=False):
                os.unlink(entry.path)
            else:
                continue
        except OSError:
            continue
        removed.append(entry.name)
    return removed


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort: not every file system allows it)."""
    try:
        handle = os.open(folder, os.O_RDONLY | _CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(temp)`` on a new temporary file beside ``path``, flush it to disk and
    ``os.replace`` it onto ``path``.

    Readers see the old file or the new one, never a part: the replace is atomic and the data is
    on disk (fsync) before it. A symbolic link at ``path`` is replaced by the file, not followed.
    If ``write`` raises (or Ctrl-C interrupts it), the temporary file is removed and ``path`` is
    left untouched.

    Returns:
        ``path``.
    """
    path = Path(path)
    temp = temp_path(path)
    try:
        os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o666))
        write(temp)
        handle = os.open(temp, os.O_RDONLY | _NOFOLLOW | _CLOEXEC)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)
        os.replace(temp, path)
        _fsync_folder(path.parent)
    finally:
        if os.path.lexists(temp):
            os.unlink(temp)
    return path


def write_bytes(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` (text is UTF-8) to ``path`` atomically (:func:`atomic_write`)."""
    payload = data.encode() if isinstance(data, str) else data
    return atomic_write(path, lambda temp: temp.write_bytes(payload))


def write_json(document: dict[str, Any], path: str | Path) -> Path:
    """Write ``document`` as JSON to ``path`` via a temporary file in the same folder (atomically;
    a symbolic link at ``path`` is replaced, not followed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_bytes(path, json.dumps(document, indent=2))


def replace_folder(staging: Path, target: Path) -> None:
    """Move the complete folder ``staging`` to ``target``, replacing any folder already there.

    The old ``target`` is first renamed aside and deleted only after the new one is in place, so
    at every moment ``target`` is either the old complete folder or the new complete one.
    ``staging`` must be on the same file system (make it beside ``target``).
    """
    if not os.path.lexists(target):
        os.replace(staging, target)
        return
    aside = target.parent / f".{target.name}.old.{owner_tag()}.{secrets.token_hex(4)}"
    aside.mkdir()
    os.replace(target, aside / "previous")
    os.replace(staging, target)
    shutil.rmtree(aside)


def _foreign(target: Path) -> str:
    return (
        f"output folder {target}: exists and is not an asa-snn output folder (no {OUTPUT_MARKER}); "
        "expected a new or empty folder, or one asa-snn wrote before"
    )


def is_output_folder(target: str | Path) -> bool:
    """Whether ``target`` may be written: absent, an empty folder, or one holding :data:`OUTPUT_MARKER`."""
    target = Path(target)
    if not os.path.lexists(target):
        return True
    if not target.is_dir():
        return False
    marker = target / OUTPUT_MARKER
    return (marker.is_file() and not marker.is_symlink()) or not any(target.iterdir())


def check_output_folder(target: str | Path) -> None:
    """Raise :class:`AsaSnnError` naming ``target`` unless :func:`is_output_folder`.

    Call it before long work, so that a mistyped ``--out`` stops the command at once.
    """
    if not is_output_folder(target):
        raise AsaSnnError(_foreign(Path(target)))


@contextmanager
def staged_folder(target: str | Path) -> Iterator[Path]:
    """Yield an empty staging folder beside ``target``; on success it replaces ``target``.

    Everything written into the staging folder appears at ``target`` at once when the block ends
    without an exception (:func:`replace_folder`); on an exception the staging folder is deleted
    and ``target`` is left as it was. An existing ``target`` is replaced only if it is empty or was
    written here before (it holds :data:`OUTPUT_MARKER`); any other folder raises
    :class:`AsaSnnError` before work starts, so a mistyped ``--out`` cannot wipe a user's files.
    Leftovers of killed earlier runs beside ``target`` are removed first (:func:`remove_stale`).
    """
    target = Path(target)
    check_output_folder(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(target.parent, target.name)
    staging = target.parent / f".{target.name}.staging.{owner_tag()}.{secrets.token_hex(4)}"
    staging.mkdir()
    try:
        (staging / OUTPUT_MARKER).touch()
        yield staging
        check_output_folder(target)  # it may have changed while the work ran
        replace_folder(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def claim_folder(target: str | Path, adopt: Callable[[Path], bool] | None = None) -> Path:
    """Make ``target`` an asa-snn output folder to write piece by piece: create it (or accept an
    empty folder, or one asa-snn wrote) and put :data:`OUTPUT_MARKER` in it.

    Args:
        target: the folder.
        adopt: called for a folder without the marker that is not empty; True accepts it (e.g.
            a training run of an asa-snn version that wrote no marker).

    Raises:
        AsaSnnError: ``target`` is a file, or a folder holding files asa-snn did not write.
    """
    target = Path(target)
    if not is_output_folder(target) and not (target.is_dir() and adopt is not None and adopt(target)):
        raise AsaSnnError(_foreign(target))
    target.mkdir(parents=True, exist_ok=True)
    marker = target / OUTPUT_MARKER
    if marker.is_symlink():
        marker.unlink()
    os.close(os.open(marker, os.O_WRONLY | os.O_CREAT | _NOFOLLOW | _CLOEXEC, 0o666))
    return target


def _holder(handle: int) -> str:
    """Who holds the lock, from the lock file's text (pid, host, start time)."""
    try:
        text = os.pread(handle, 4096, 0).decode("utf-8", "replace")
        info = json.loads(text)
        return f"pid {info['pid']} on host {info['host']}, started {info['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that has not written its details yet"


@contextmanager
def folder_lock(folder: str | Path, command: str = "train") -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``folder``/:data:`LOCK_FILE` while the block runs.

    The lock file records who holds it (pid, host, start time). The lock ends with the process
    that holds it, however it ends, so a killed run never leaves a stale lock.

    Raises:
        AsaSnnError: another process holds the lock (one line naming the folder and the holder).
    """
    path = Path(folder) / LOCK_FILE
    try:
        handle = os.open(path, os.O_RDWR | os.O_CREAT | _NOFOLLOW | _CLOEXEC, 0o666)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise AsaSnnError(f"{path}: is a symbolic link; expected asa-snn's lock file") from exc
        raise
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise AsaSnnError(
                f"output folder {folder}: another asa-snn {command} is writing it ({_holder(handle)}); "
                "wait for it to finish or choose another --out"
            ) from exc
        started = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        info = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": started})
        os.ftruncate(handle, 0)
        os.pwrite(handle, info.encode() + b"\n", 0)
        try:
            yield
        finally:
            os.ftruncate(handle, 0)
    finally:
        os.close(handle)


def clear_folder(folder: str | Path, keep: tuple[str, ...] = (OUTPUT_MARKER, LOCK_FILE)) -> None:
    """Delete everything in the asa-snn output folder ``folder`` but ``keep`` (links themselves,
    never what they point to)."""
    for entry in os.scandir(folder):
        if entry.name in keep:
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)
