"""Writing files so that a crash or a full disk never leaves a half-written one behind."""

import os
import re
import shutil
import threading
from contextlib import contextmanager
from pathlib import Path

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

    They are never read (only complete files are renamed into place); they just take space.
    """
    for path in Path(directory).glob(".*.tmp"):
        match = _TEMP_NAME.fullmatch(path.name)
        if match and int(match.group(1)) != os.getpid():
            path.unlink(missing_ok=True)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open directories
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
