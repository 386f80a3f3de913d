"""Writing files so that a crash or a full disk never leaves a half-written one behind, and one writer per run
directory."""

import errno
import os
import re
import shutil
import threading
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock; runs there are not protected from each other
    fcntl = None  # type: ignore[assignment]

_TEMP_NAME = re.compile(r"\..+\.(\d+)\.\d+\.tmp")  # what _temp_path makes: .NAME.PID.THREAD.tmp


def _temp_path(path: Path) -> Path:
    # One temporary name per thread: the TUI may save the plot while the training thread saves it too.
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")


@contextmanager
def atomic_write(path: str | Path):
    """Yield a binary file beside `path`; once the block succeeds, flush and fsync it and rename it over `path`.

    Readers see either the old file or the complete new one. On any error the temporary file is removed
    and `path` is left untouched.
    """
    path = Path(path)
    tmp = _temp_path(path)
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)  # make the rename itself survive a power cut


def atomic_link(src: str | Path, dst: str | Path) -> None:
    """Make `dst` hold what `src` holds now, atomically, without writing it again: a hard link to the same data.

    Later atomic writes to `src` replace its name, not its data, so `dst` keeps this version. Where the
    filesystem has no hard links, `dst` becomes a copy.
    """
    src, dst = Path(src), Path(dst)
    tmp = _temp_path(dst)
    try:
        os.link(src, tmp)
    except OSError:
        with atomic_write(dst) as f, open(src, "rb") as original:
            shutil.copyfileobj(original, f)
        return
    try:
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(dst.parent)


def remove_leftover_temp_files(directory: str | Path) -> None:
    """Delete the temporary files that another process, killed mid-write, left in `directory`.

    They are never read (only complete files are renamed into place); they just take space. A temporary file
    whose writer (the pid in its name) is still alive is left alone: it may be a run's checkpoint half written,
    or a plot that `--attach` is saving into the run's directory.
    """
    for path in Path(directory).glob(".*.tmp"):
        match = _TEMP_NAME.fullmatch(path.name)
        if match and not _is_alive(int(match.group(1))):
            path.unlink(missing_ok=True)


def _is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # no such process; a number no process can have
        return False
    except PermissionError:  # another user's process
        return True
    return True


class DirectoryLocked(OSError):
    """Another process holds the run directory's lock; the message names the directory and that process."""


class RunDirectoryLock:
    """An exclusive lock on a run directory, so two runs never write into one: an `flock` on DIRECTORY/.lock, which
    holds the pid of its holder. The kernel releases it when the process ends, however it ends, so a killed run
    never leaves a stale lock behind. Also a context manager."""

    def __init__(self, directory: str | Path):
        self.directory = directory
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise DirectoryLocked at once; another OSError if the lock file cannot be made."""
        if fcntl is None:
            return
        fd = os.open(Path(self.directory) / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise
            by = f"another training run (pid {holder})" if holder.isdigit() else "another training run"
            raise DirectoryLocked(
                f"{self.directory} is in use by {by}: two runs would overwrite each other's files; wait for it to "
                "end, or give this one another --out (to watch that run, use --attach)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # releases the lock
            self._fd = None

    def __enter__(self) -> "RunDirectoryLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open directories
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
