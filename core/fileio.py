"""Writing files so that a crash or a full disk never leaves a half-written one behind."""

import os
import threading
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_write(path: str | Path):
    """Yield a binary file beside `path`; once the block succeeds, flush and fsync it and rename it over `path`.

    Readers see either the old file or the complete new one. On any error the temporary file is removed
    and `path` is left untouched.
    """
    path = Path(path)
    # One temporary name per thread: the TUI may save the plot while the training thread saves it too.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
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


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open directories
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
