"""Small frames as text: markdown tables for Dagster metadata and the `quant-assets` command."""

import polars as pl


def markdown_table(frame: pl.DataFrame) -> str:
    """A frame as a markdown table."""
    columns = frame.columns
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.iter_rows()]
    return "\n".join(lines)
