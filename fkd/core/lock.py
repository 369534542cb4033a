"""One writer per folder: `fkd cv` (and every trial of a search) holds a lock on its run folder.

The lock is an flock on `<folder>/.lock`, which also names its holder (pid, host, start time). The
kernel drops an flock when its process dies, so a dead writer's lock is free at once; the file is
kept (emptied) on release, since removing it would let two writers lock two different files.
A lock file naming a process on another host is refused even when the flock is free: flock does not
reach across every network file system, so only the user can tell whether that writer is gone.
"""
import contextlib
import fcntl
import json
import os
import socket
from datetime import datetime, timezone
from pathlib import Path

from fkd.core.errors import FkdError

LOCK_FILE = ".lock"
# a process that trains a run's folds in child processes (the kernel's fold-parallel runner) holds the
# lock itself and names its pid here: its children write their own folds under it
HOLDER_ENV = "FKD_RUN_LOCK_HOLDER"


def _holder_text(holder: dict) -> str:
    return f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('started')}"


def _read_holder(fd) -> dict:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 4096).decode("utf-8", "replace").strip()
    try:
        holder = json.loads(text) if text else {}
    except json.JSONDecodeError:
        return {"pid": "?", "host": "?", "started": "?"}
    return holder if isinstance(holder, dict) else {}


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError, TypeError):
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def writer_lock(folder, log=print, what="the run"):
    """Hold the folder's lock while the block runs; a second writer gets an FkdError naming the holder."""
    path = Path(folder) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as error:
        raise FkdError(f"cannot write there: {error.strerror or error}", path=folder) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            if str(holder.get("pid")) == os.environ.get(HOLDER_ENV) and holder.get("host") == socket.gethostname():
                yield holder  # our parent holds it for us
                return
            raise FkdError(f"{what} is being written by {_holder_text(holder)}: wait for it to "
                           "finish, or pass another --name", path=folder) from None
        previous = _read_holder(fd)
        if previous and previous.get("host") != socket.gethostname():
            fcntl.flock(fd, fcntl.LOCK_UN)
            raise FkdError(f"{what} is locked by {_holder_text(previous)}: if that process is gone, "
                           f"delete {path}", path=folder)
        if previous and previous.get("pid") != os.getpid():
            state = "still running, yet it holds no lock" if _alive(previous.get("pid")) else "no longer running"
            log(f"{folder}: taking over the lock of {_holder_text(previous)} ({state})")
        holder = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        try:
            yield holder
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def check_not_being_written(folder, what="the run") -> None:
    """FkdError when a writer holds the folder's lock as a reader starts: no reader starts on a run being
    written (a writer that starts later rewrites its files one by one, each atomically)."""
    path = Path(folder) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # no lock file (or an unreadable one on a read-only copy): nobody writes here through fkd
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FkdError(f"{what} is being written by {_holder_text(_read_holder(fd))}: wait for it to "
                           "finish", path=folder) from None
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
