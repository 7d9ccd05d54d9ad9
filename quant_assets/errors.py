"""The error every per-session step raises: it names the dataset, the session, the object key and, where there is
one, the row, so that a user can act on the message without reading the code. And the error a write raises when
the data folder, not the data, is at fault (read-only, full, not writable, a file in the way): one sentence."""

from __future__ import annotations

import datetime as dt
import errno
import os
import re
import shutil
import uuid
from contextlib import suppress
from pathlib import Path

from quant_assets.settings import DATA_ENV, MIN_FREE_ENV


class SessionError(ValueError):
    """One session of one dataset could not be processed; the other sessions of a run are not affected."""

    def __init__(self, dataset: str, session: dt.date | str, key: str, problem: str, row: int | None = None):
        self.dataset, self.session, self.key, self.problem, self.row = dataset, str(session), key, problem, row
        where = f", row {row} (line {row + 1})" if row is not None else ""
        super().__init__(f"{dataset} {session}: {key}{where}: {problem}")

    def __reduce__(self):
        # Pickled (a Dask worker sends it back) as its class and attributes: unpickling the default way would call
        # the constructor with `args`, which hold only the message. Subclasses' attributes (`summary`) come along.
        return _restore, (type(self), self.args, dict(vars(self)))


def _restore(kind: type, args: tuple, attributes: dict) -> SessionError:
    error = kind.__new__(kind, *args)
    error.args = args
    error.__dict__.update(attributes)
    return error


class DataFolderError(OSError):
    """A file of the data folder could not be written because of the folder, not of the data: a read-only
    filesystem, a full disk or quota, no permission, a file where a folder should be. Its message is one sentence
    (the file, the folder, the problem, what to do). An OSError, with the errno of the failure, so that handlers of
    OSError still catch it."""

    def __init__(self, errno: int, message: str, path: str = "", folder: str = ""):
        super().__init__(errno, message)
        self.path, self.folder = path, folder

    def __str__(self) -> str:
        return self.strerror

    def __reduce__(self):
        return type(self), (self.errno, self.strerror, self.path, self.folder)


INSTEAD = f"set {DATA_ENV} to another folder"
_ERRNO_IN_TEXT = re.compile(r"\((?:os error|errno) (\d+)\)|\[errno (\d+)\]", re.IGNORECASE)
# errno: (what is wrong with the folder, its name, what to do)
_PROBLEMS = {
    errno.EROFS: ("is on a read-only filesystem", "EROFS", "mount it read-write"),
    errno.ENOSPC: ("is on a full disk", "ENOSPC", "free space on it"),
    errno.EDQUOT: ("is over its disk quota", "EDQUOT", "free space within the quota or raise it"),
    errno.EACCES: ("is not writable by this user", "EACCES", "give the user running Dagster write access to it"),
    errno.ENOTDIR: ("is a file, not a folder", "ENOTDIR", "move the file away"),
}
_FILESYSTEM_WIDE = (errno.EROFS, errno.ENOSPC, errno.EDQUOT)
PROBE_PREFIX = ".write-probe-"


def error_number(error: BaseException) -> int | None:
    """The errno of an OSError, or the one polars wrote into its message (`... (os error 28)`); None for any
    other error (a message of ours may quote an errno that is not about this write)."""
    if isinstance(error, OSError):
        return error.errno
    if type(error).__module__.startswith("polars") and (found := _ERRNO_IN_TEXT.search(str(error))):
        return int(found.group(1) or found.group(2))
    return None


def _existing(path: Path) -> Path:
    """`path`, or its nearest ancestor that exists."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _file_in_the_way(path: Path) -> Path | None:
    """The first of `path` and its ancestors that exists and is not a folder (what makes ENOTDIR)."""
    for part in (*reversed(path.parents), path):
        if part.exists() and not part.is_dir():
            return part
    return None


def _mount_point(path: Path) -> Path:
    path = _existing(path).resolve()
    while not os.path.ismount(path):
        path = path.parent
    return path


def _folder_and_problem(code: int, folder: Path, instead: str) -> tuple[Path, str]:
    """(the folder to name, "<what is wrong> (<errno name>[, its filesystem]); <what to do>, or <instead>")."""
    what, name, remedy = _PROBLEMS[code]
    if code == errno.ENOTDIR:
        folder = _file_in_the_way(folder) or folder
    else:
        folder = _existing(folder)
    if code in _FILESYSTEM_WIDE and (mount := _mount_point(folder)) != folder:
        name = f"{name}, the filesystem mounted at {mount}"
    return folder, f"{what} ({name}); {remedy}, or {instead}"


def data_folder_error(error: BaseException, path: str | os.PathLike, instead: str = INSTEAD) -> DataFolderError | None:
    """`error`, raised while writing the file `path`, as a DataFolderError when the folder is the cause
    (read-only, full, over quota, not writable, a file in the way), else None. An OSError that names another file
    (a read of the raw file while the lake file was being written) is not about `path`: None too."""
    if isinstance(error, DataFolderError):
        return error
    code = error_number(error)
    if code not in _PROBLEMS:
        return None
    path = Path(path)
    named = getattr(error, "filename", None)
    if named is not None and not (Path(named).parent == path.parent or Path(named) in (path, *path.parents)):
        return None
    folder, problem = _folder_and_problem(code, path.parent, instead)
    return DataFolderError(code, f"cannot write {path}: folder {folder} {problem}", str(path), str(folder))


class writing:  # noqa: N801 (used as `with writing(path):`, like a function)
    """Raise an error of the block, if the folder of `path` is its cause, as the one DataFolderError that says
    so (the original is not chained to it: the message says all). A class, not a generator: the Qlib writer
    enters it once per bin, ~100,000 times a session."""

    def __init__(self, path: str | os.PathLike):
        self.path = path

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, error, traceback) -> bool:
        if not isinstance(error, Exception):
            return False
        translated = data_folder_error(error, self.path)
        if translated is None or translated is error:
            return False
        raise translated from None


def _folder_refused(code: int, folder: Path, instead: str, what: str) -> DataFolderError:
    named, problem = _folder_and_problem(code, folder, instead)
    where = what if named == folder else f"{what} {folder}: folder"
    return DataFolderError(code, f"{where} {named} {problem}", "", str(named))


def unwritable_folder(
    error: BaseException, folder: str | os.PathLike, instead: str = INSTEAD, what: str = "data folder"
) -> DataFolderError | None:
    """`error`, raised by a write somewhere in `folder` that did not say which file, as a DataFolderError naming
    the folder when the folder is the cause (read-only, full, over quota, not writable, a file in the way)."""
    if isinstance(error, DataFolderError):
        return error
    code = error_number(error)
    return _folder_refused(code, Path(folder), instead, what) if code in _PROBLEMS else None


def check_folder(folder: str | os.PathLike, instead: str = INSTEAD, what: str = "data folder") -> None:
    """Raise a DataFolderError if `folder` (or a folder above it) is a file: a command that only reads would find
    nothing there and say the zones are empty."""
    folder = Path(folder)
    if _file_in_the_way(folder) is not None:
        raise _folder_refused(errno.ENOTDIR, folder, instead, what)


def check_writable_folder(
    folder: str | os.PathLike, min_free_mb: float = 0, instead: str = INSTEAD, what: str = "data folder"
) -> None:
    """Raise a DataFolderError (one sentence: "<what> <folder> <problem>; <what to do>, or <instead>") unless
    `folder` is a folder (made if missing) where this user can create a file (a probe, removed again) with at least
    `min_free_mb` MiB free on its disk."""
    folder = Path(folder)
    check_folder(folder, instead, what)
    probe = folder / f"{PROBE_PREFIX}{uuid.uuid4().hex}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(probe, "xb") as stream:
            stream.write(b"\0")
            stream.flush()
            os.fsync(stream.fileno())
    except OSError as error:
        if error.errno not in _PROBLEMS:
            raise
        raise _folder_refused(error.errno, folder, instead, what) from None
    finally:
        with suppress(OSError):
            probe.unlink(missing_ok=True)
    free = shutil.disk_usage(folder).free / 2**20
    if free < min_free_mb:
        raise DataFolderError(
            errno.ENOSPC,
            f"{what} {folder} has {free:.0f} MiB free on its disk (the filesystem mounted at "
            f"{_mount_point(folder)}), under the minimum of {min_free_mb:g} MiB ({MIN_FREE_ENV}); free space on "
            f"it, or {instead}",
            "",
            str(folder),
        )
