"""Small frames as text: markdown tables for Dagster metadata and the `quant-assets` command."""

import polars as pl

CELL_LIMIT = 500  # characters of one cell: a vendor's 10,000-character ticker is shown cut


def cell(value: object) -> str:
    """`value` as one markdown cell: a text with control characters (a ticker with a newline) is shown escaped, as
    its repr, so that a hostile value cannot break the table's lines; a text longer than `CELL_LIMIT` is cut, and
    `|` is escaped."""
    text = str(value)
    if not text.isprintable():
        text = repr(text)
    if len(text) > CELL_LIMIT:
        text = text[: CELL_LIMIT - 3] + "..."
    return text.replace("|", "\\|")


def markdown_table(frame: pl.DataFrame) -> str:
    """A frame as a markdown table."""
    columns = frame.columns
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.iter_rows()]
    return "\n".join(lines)
