"""An exclusive, non-blocking file lock for writers that must be alone (run files; the project's activation store).

A second holder (another process, or another open in this one) gets a ``RuntimeError``
at once instead of writing beside the first. The lock file is removed on release; a
holder checks after locking that the file it locked is still the one at the path
(else it retries), so the removal cannot let two holders in. Where ``fcntl`` does not
exist (Windows) no lock is taken.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path

__all__ = ["FileLock"]


class FileLock:
    """Hold an exclusive ``flock`` on ``lock_file`` from construction until :meth:`release`.

    Parameters
    ----------
    lock_file : path
        Its folder must exist.
    what : str
        What is locked, for the message (e.g. ``"run file <path>"``).

    Raises
    ------
    RuntimeError
        When another holder has the lock.
    """

    def __init__(self, lock_file: str | os.PathLike, what: str):
        self.lock_file, self._fd = Path(lock_file), None
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return
        while True:
            fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                raise RuntimeError(
                    f"{what} is being written by another process (lock {self.lock_file} is held); "
                    "wait for it to finish, or write somewhere else"
                ) from None
            try:
                same = os.stat(self.lock_file).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:  # else the previous holder removed the file we locked: lock the new one
                self._fd = fd
                return
            os.close(fd)

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
