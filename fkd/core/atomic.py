"""Atomic writes: a temporary file in the same folder, renamed over the target when complete, so an
interrupted write never leaves a file that looks finished. And the one reader of JSON files.
"""
import contextlib
import json
import os
import tempfile
from pathlib import Path

from fkd.core.errors import FkdError


@contextlib.contextmanager
def atomic_path(path, overwrite: bool = True, suffix: str = ".tmp"):
    """Yield a temporary path to write to; on success it becomes `path`.

    With overwrite=False an existing `path` is never replaced (the rename is refused). `suffix` ends
    the temporary's name (a writer that picks its format by the name, such as OpenCV's, needs it).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's file is private (0600); the result need not be
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails with FileExistsError rather than replacing
            tmp.unlink()
    finally:
        tmp.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path, text: str, overwrite: bool = True) -> Path:
    with atomic_path(path, overwrite) as tmp:
        tmp.write_text(text)
    return Path(path)


def check_writable(folder) -> Path:
    """The folder, made if it is missing, once a file can be written in it; else an FkdError naming it.
    Called before long work, so that no result is lost to a place that cannot take it."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / ".fkd-write-check"):
            pass
    except OSError as error:
        raise FkdError(f"cannot write there: {error.strerror or error}", path=folder) from None
    (folder / ".fkd-write-check").unlink(missing_ok=True)
    return folder


def check_destination(path, force: bool, kind: str, is_same_kind) -> Path:
    """Before long work: `path` may be written. It does not exist yet, or it is `kind` (is_same_kind(path))
    that fkd wrote and `force` is given; a folder, or a file of any other kind, is never replaced."""
    path = Path(path)
    if path.is_dir():
        raise FkdError(f"is a folder: name the file to write ({kind})", path=path)
    if path.exists():
        if not is_same_kind(path):
            raise FkdError(f"exists and is not {kind}: fkd never replaces it; choose another name", path=path)
        if not force:
            raise FkdError(f"exists ({kind}): pass --force to replace it", path=path)
    check_writable(path.parent)
    return path


def read_json(path, missing: str = "no such file", kind=None):
    """A JSON file's value; FkdError naming the file when it is absent (`missing`), not UTF-8 JSON, or
    (with `kind`, dict or list) holds another kind of value."""
    path = Path(path)
    if not path.is_file():
        raise FkdError(missing, path=path)
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise FkdError(f"not a UTF-8 text file (byte {error.start}): damaged, or not fkd's", path=path) from None
    except json.JSONDecodeError as error:
        raise FkdError(f"not valid JSON ({error.msg}, line {error.lineno})", path=path) from None
    if kind is not None and not isinstance(value, kind):
        wanted = {dict: "an object", list: "a list"}[kind]
        raise FkdError(f"holds {type(value).__name__} where fkd expects {wanted}: damaged, or not fkd's",
                       path=path)
    return value
