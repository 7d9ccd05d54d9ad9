"""Progress bars for the long `quant-assets` commands: shown on a terminal, silent in logs and CI (tqdm prints
nothing when stderr is not a terminal)."""

from collections.abc import Iterable


def progress(items: Iterable, what: str, unit: str = "session", total: int | None = None) -> Iterable:
    """`items`, with a progress bar named `what` on stderr when it is a terminal."""
    from tqdm import tqdm

    return tqdm(items, desc=what, unit=unit, total=total, leave=False, disable=None)


def progress_bar(total: int, what: str, unit: str):
    """A progress bar of `total` steps on stderr when it is a terminal: `.update()` after each, `.close()` at the
    end."""
    from tqdm import tqdm

    return tqdm(total=total, desc=what, unit=unit, leave=False, disable=None)
