"""An exclusive, non-blocking file lock for writers that must be alone (run files; the project's
activation store and study folders, through ``personas._core.io.exclusive_lock``).

- One holder at a time: an ``flock`` on the lock file. A second holder (another process, or
  another open in this one) gets a :class:`LockHeld` error at once, naming the holder's pid,
  host and start time (written into the lock file) and how to proceed.
- Released: the lock file is removed. A holder checks after locking that the file it locked is
  still the one at the path (else it retries), so the removal cannot let two holders in.
- Never a trap: the kernel drops an ``flock`` when its process dies, so a lock file left by a
  killed process is taken over, with a :class:`StaleLockWarning` naming the dead holder. Where
  ``flock`` is not enforced (some network file systems) the pid and the process start time
  recorded in the file still tell a live holder on this host from a dead one. The file is
  readable and writable by the group when the umask lets the group read (``0o664`` under the
  usual ``022``), and a lock file that is not writable is replaced rather than trusted.

Where ``fcntl`` does not exist (Windows) no lock is taken.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import stat
import time
import warnings
from pathlib import Path

__all__ = ["FileLock", "LockHeld", "StaleLockWarning", "lock_holder", "process_start"]


class LockHeld(RuntimeError):
    """The lock is held by another live holder; ``holder`` is what its lock file says (may be empty)."""

    def __init__(self, message: str, holder: dict):
        super().__init__(message)
        self.holder = holder


class StaleLockWarning(UserWarning):
    """A lock file left by a process that no longer runs was taken over."""


def process_start(pid: int) -> str | None:
    """An identifier of when process ``pid`` started (None if unknown): tells a reused pid from the original."""
    try:
        with open(f"/proc/{int(pid)}/stat", "rb") as fh:  # Linux: field 22, clock ticks since boot
            return "proc:" + fh.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError, ValueError):
        pass
    try:  # elsewhere, psutil when it is installed
        import psutil

        return f"psutil:{psutil.Process(int(pid)).create_time():.3f}"
    except Exception:
        return None


def _alive(holder: dict) -> bool:
    """Whether the holder recorded in a lock file is a running process on this host (same pid and start)."""
    pid = holder.get("pid")
    if not isinstance(pid, int) or holder.get("host") != socket.gethostname():
        return False  # another host: the flock is the only evidence, and it was free
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's
    now, then = process_start(pid), holder.get("process_start")
    return now is None or then is None or now == then


def lock_holder(lock_file: str | os.PathLike) -> dict:
    """What a lock file says of its holder (``pid``, ``host``, ``started``, ``process_start``, ``what``); {} if nothing."""
    try:
        data = json.loads(Path(lock_file).read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _describe(holder: dict) -> str:
    if not holder.get("pid"):
        return "a process that has not yet said which"
    return f"process {holder['pid']} on {holder.get('host', '?')} (holding it since {holder.get('started', '?')})"


def _group_mode(fd: int) -> None:
    """Let the group write the lock file when the umask lets it read (0o644 -> 0o664): group members can take it over."""
    with contextlib.suppress(OSError):  # not our file: its owner decided
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        if mode & stat.S_IRGRP and not mode & stat.S_IWGRP:
            os.fchmod(fd, mode | stat.S_IWGRP)


class FileLock:
    """Hold an exclusive ``flock`` on ``lock_file`` from construction until :meth:`release`.

    Parameters
    ----------
    lock_file : path
        Its folder must exist.
    what : str
        What is locked, for the message (e.g. ``"run file <path>"``).
    advice : str, optional
        How to proceed when it is held (default: wait for the holder, or write somewhere else).

    Raises
    ------
    LockHeld
        (a ``RuntimeError``) when another holder has the lock.
    """

    def __init__(self, lock_file: str | os.PathLike, what: str, advice: str | None = None):
        self.lock_file, self._fd = Path(lock_file), None
        self.what, self.advice = what, advice or "wait for it to finish, or write somewhere else"
        self.taken_over: dict = {}
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return
        while not self._try(fcntl):
            pass

    def _held(self, holder: dict) -> LockHeld:
        return LockHeld(f"{self.what} is being written by another process: {_describe(holder)}, lock file "
                        f"{self.lock_file}; {self.advice}. (A lock left by a killed process is taken over by "
                        "itself: no need to delete it.)", holder)

    def _try(self, fcntl) -> bool:
        """One attempt: True when the lock is ours, False to retry (the file was replaced meanwhile)."""
        try:
            fd, writable = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o666), True
        except PermissionError:  # another user's lock file we may not write: lock it, then replace it
            fd, writable = os.open(self.lock_file, os.O_RDONLY), False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raise self._held(lock_holder(self.lock_file)) from None
        try:
            same = os.stat(self.lock_file).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        old = lock_holder(self.lock_file) if same else {}
        ours = old.get("pid") == os.getpid() and old.get("process_start") == process_start(os.getpid())
        if same and old and not ours and _alive(old):  # the flock is not enforced here, the pid file says held
            os.close(fd)
            raise self._held(old)
        if same and not writable:
            with contextlib.suppress(FileNotFoundError):
                self.lock_file.unlink()  # we hold it: replace it with our own file
            same = False
        if not same:
            os.close(fd)
            return False
        if old and not ours:
            self.taken_over = old
            warnings.warn(f"{self.what}: took over the lock {self.lock_file} left by {_describe(old)}, which no "
                          "longer runs (killed or crashed?); what it was writing may be incomplete",
                          StaleLockWarning, stacklevel=4)
        self._fd = fd
        self._write_holder()
        return True

    def _write_holder(self) -> None:
        holder = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "process_start": process_start(os.getpid()),
                  "what": self.what}
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, (json.dumps(holder) + "\n").encode("utf-8"), 0)
        _group_mode(self._fd)

    def release(self) -> None:
        """Remove the lock file and release the lock (once; later calls do nothing)."""
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.lock_file.unlink()
        os.close(self._fd)  # closing releases the lock
        self._fd = None

    def __enter__(self) -> "FileLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()
