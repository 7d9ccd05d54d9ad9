"""The error every per-session step raises: it names the dataset, the session, the object key and, where there is
one, the row, so that a user can act on the message without reading the code."""

from __future__ import annotations

import datetime as dt


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
