"""Small frames as text: markdown tables for Dagster metadata and the `quant-assets` command."""

import polars as pl

from quant_assets.names import shown

CELL_LIMIT = 80  # characters of one cell: a vendor's 10,000-character ticker is shown cut


def cell(value: object) -> str:
    """`value` as one markdown cell: a text with control characters (a ticker with a newline) is shown escaped, as
    its repr, and a long one cut, so that a hostile value cannot break the table's lines; `|` is escaped."""
    text = str(value)
    if not text.isprintable() or len(text) > CELL_LIMIT:
        text = shown(value, CELL_LIMIT)
    return text.replace("|", "\\|")


def markdown_table(frame: pl.DataFrame) -> str:
    """A frame as a markdown table."""
    columns = frame.columns
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.iter_rows()]
    return "\n".join(lines)
