"""One writer at a time for a store or a run directory.

:class:`DirectoryLock` holds an exclusive ``fcntl.flock`` on a lock file (by default
``DIRECTORY/.tellus.lock``) and writes its holder's details into it as JSON::

    {"pid": 1234, "hostname": "gpu-7", "started": "2026-12-02T01:02:03+00:00",
     "purpose": "tellus train atmosphere", "command": "tellus train atmosphere ...",
     "pid_namespace": "pid:[4026531836]"}

A second process that wants the same directory refuses at once with a one-line
:class:`~tellus.data.errors.LockedError` that names the holder. The OS drops a flock when
its holder dies, however it dies, so a lock file left by a killed process is detected (the
file is there, its flock is free) and taken over with one warning line. A normal release
removes the file.

:func:`store_lock` locks a Zarr store being built through a file *beside* it
(``STORE.lock``), not inside: zarr warns about every file in a store that is not part of
its hierarchy, builders create stores under a temporary name and rename them into place,
and a store directory that exists too early reads as "not a store under construction" to
:func:`tellus.data.writing.create_store`.

Within one process the lock is re-entrant (a builder that calls another builder of the same
store does not lock itself out), and a child made with ``os.fork`` (multiprocessing
workers) drops its copy, so an orphaned worker never keeps a dead run's lock.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import logging
import os
import shlex
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tellus.data.errors import LockedError

__all__ = ["LOCK_NAME", "DirectoryLock", "LockedError", "store_lock"]

log = logging.getLogger(__name__)

LOCK_NAME = ".tellus.lock"

# Lock files held by this process: realpath -> the DirectoryLock that owns the flock.
_HELD: dict[str, DirectoryLock] = {}
_HELD_GUARD = threading.Lock()


def _forget_in_child() -> None:
    global _HELD_GUARD
    _HELD_GUARD = threading.Lock()  # another thread may have held it at the fork
    # A flock belongs to the open file; the parent keeps its own descriptor, so closing the
    # child's copy keeps the parent's lock and lets it go when the parent dies.
    for lock in _HELD.values():
        if lock._fd is not None:
            with contextlib.suppress(OSError):
                os.close(lock._fd)
            lock._fd = None
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


def _pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    try:  # a killed child its parent has not reaped yet is a zombie: not running
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def _read_record(fd: int) -> dict[str, Any] | None:
    raw = os.pread(fd, 1 << 16, 0)
    if not raw.strip():
        return None
    try:
        record = json.loads(raw)
    except ValueError:
        return {"unreadable": raw[:200].decode(errors="replace")}
    return record if isinstance(record, dict) else {"unreadable": str(record)[:200]}


def _describe(record: dict[str, Any] | None) -> str:
    if record is None:
        return "another process (it has not written its details yet)"
    if "unreadable" in record:
        return f"another process (lock file reads {record['unreadable']!r})"
    return (
        f"pid {record.get('pid', '?')} on host {record.get('hostname', '?')} "
        f"({record.get('purpose', '?')}, since {record.get('started', '?')})"
    )


class DirectoryLock:
    """An exclusive, crash-safe lock on ``directory`` for one process at a time.

    Use as a context manager (or :meth:`acquire` / :meth:`release`)::

        with DirectoryLock("runs/atmosphere", "tellus train atmosphere"):
            ...

    Args:
      directory: what is locked; it names the lock in messages. Created (with parents)
        when the lock file is inside it.
      purpose: a few words on what the holder is doing; shown to whoever is refused.
      lock_file: the lock file (default ``directory/.tellus.lock``).

    Raises (on acquiring):
      LockedError: another live process holds it; the one-line message names its pid,
        host, purpose and start time.
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        purpose: str,
        *,
        lock_file: str | os.PathLike | None = None,
    ):
        self.directory = Path(directory)
        self.purpose = purpose
        self.lock_file = Path(lock_file) if lock_file is not None else self.directory / LOCK_NAME
        self._fd: int | None = None
        self._owner_pid: int | None = None
        self._nested = False

    # -- public -------------------------------------------------------------------------

    @property
    def held(self) -> bool:
        """Whether this object holds the lock (directly or nested in this process)."""
        return self._nested or (self._fd is not None and self._owner_pid == os.getpid())

    def holder(self) -> dict[str, Any] | None:
        """The details the current holder wrote, or None when the lock file is absent."""
        try:
            fd = os.open(self.lock_file, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            return _read_record(fd)
        finally:
            os.close(fd)

    def acquire(self) -> DirectoryLock:
        if self.held:
            raise RuntimeError(f"{self.lock_file} is already held by this DirectoryLock")
        key = os.path.join(os.path.realpath(self.lock_file.parent), self.lock_file.name)
        with _HELD_GUARD:
            owner = _HELD.get(key)
            if owner is not None and owner.held:
                self._nested = True
                return self
            self.lock_file.parent.mkdir(parents=True, exist_ok=True)
            for _ in range(20):
                if self._try_acquire():
                    _HELD[key] = self
                    return self
            raise LockedError(
                f"{self.directory}: could not take {self.lock_file}, it keeps being replaced "
                "by other processes",
                directory=self.directory,
            )

    def release(self) -> None:
        if self._nested:
            self._nested = False
            return
        if self._fd is None:
            return
        key = os.path.join(os.path.realpath(self.lock_file.parent), self.lock_file.name)
        with _HELD_GUARD:
            fd, self._fd = self._fd, None
            if self._owner_pid == os.getpid():
                # Remove the file while still holding the flock: a process that opened it
                # meanwhile finds, once it gets the flock, that the path is gone (or another
                # file) and starts over, so two holders never coexist.
                if _same_file(fd, self.lock_file):
                    with contextlib.suppress(FileNotFoundError):
                        self.lock_file.unlink()
                if _HELD.get(key) is self:
                    del _HELD[key]
            os.close(fd)

    def __enter__(self) -> DirectoryLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"DirectoryLock({str(self.directory)!r}, {self.purpose!r}, held={self.held})"

    # -- internals ----------------------------------------------------------------------

    def _record(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "hostname": socket.gethostname(),
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "purpose": self.purpose,
            "command": shlex.join(sys.argv) if sys.argv and sys.argv[0] else sys.executable,
            "pid_namespace": _pid_namespace(),
            "directory": str(self.directory.absolute()),
        }

    def _refuse(self, record: dict[str, Any] | None, hint: str = "") -> LockedError:
        return LockedError(
            f"{self.directory} is in use by {_describe(record)}; wait for it or stop it{hint}",
            directory=self.directory,
            holder=record,
        )

    def _dead_on_this_host(self, record: dict[str, Any] | None) -> bool:
        """Whether ``record`` names a process of this host (and pid namespace) that is gone."""
        if not record or "pid" not in record:
            return False
        if record.get("hostname") != socket.gethostname():
            return False
        if record.get("pid_namespace") != _pid_namespace():
            return False
        try:
            return not _pid_alive(int(record["pid"]))
        except (TypeError, ValueError):
            return False

    def _try_acquire(self) -> bool:
        """One attempt: True when locked, False to try again, LockedError when busy."""
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            flock = True
        except BlockingIOError:
            flock = False
        except OSError as e:
            if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                os.close(fd)
                raise
            flock = None  # this file system has no flock: go by the holder's details alone
        try:
            if flock is False:
                record = self._wait_for_record(fd)
                if self._dead_on_this_host(record):
                    # Its holder is gone but a descendant still has the file open: replace it.
                    log.warning(
                        "%s: taking over the lock left by %s, which is no longer running",
                        self.directory,
                        _describe(record),
                    )
                    if _same_file(fd, self.lock_file):
                        with contextlib.suppress(FileNotFoundError):
                            self.lock_file.unlink()
                    os.close(fd)
                    return False
                raise self._refuse(record)
            if not _same_file(fd, self.lock_file):
                os.close(fd)  # released (removed) or replaced between our open and flock
                return False
            previous = _read_record(fd)
            if flock is None and previous is not None and not self._dead_on_this_host(previous):
                raise self._refuse(
                    previous, f" (no flock on this file system: delete {self.lock_file} if not)"
                )
            if previous is not None:
                log.warning(
                    "%s: taking over the lock left by %s, which is no longer running",
                    self.directory,
                    _describe(previous),
                )
            data = json.dumps(self._record()).encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
            os.fsync(fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            raise
        self._fd, self._owner_pid = fd, os.getpid()
        return True

    @staticmethod
    def _wait_for_record(fd: int, timeout: float = 1.0) -> dict[str, Any] | None:
        """The holder's details; a holder that has just taken the lock writes them within
        milliseconds, so an empty or half-written file is read again for up to ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            record = _read_record(fd)
            complete = record is not None and "unreadable" not in record
            if complete or time.monotonic() > deadline:
                return record
            time.sleep(0.02)


def store_lock(store: str | os.PathLike, purpose: str) -> contextlib.AbstractContextManager:
    """A :class:`DirectoryLock` on a Zarr store being built, through ``STORE.lock`` beside it.

    Remote stores (fsspec URLs) have no flock: for them this locks nothing.
    """
    text = str(store)
    if text.startswith("file://"):
        text = text.removeprefix("file://")
    elif "://" in text:
        return contextlib.nullcontext()
    path = Path(text.rstrip("/") or "/")
    return DirectoryLock(path, purpose, lock_file=path.parent / f"{path.name}.lock")
