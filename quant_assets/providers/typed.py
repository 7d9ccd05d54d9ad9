"""Vendor results as typed polars frames: the one place that turns a provider's JSON records into rows, setting
aside each record that is not usable, with its reason (a bad record never stops the others)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import polars as pl

from quant_assets.names import shown, ticker_problem


def typed_frame(
    results: Iterable[Any],
    fields: Mapping[str, pl.DataType],
    required: tuple[str, ...],
    where: str,
    tickers: tuple[str, ...] = ("ticker",),
) -> tuple[pl.DataFrame, list[str]]:
    """The vendor's `results` as a frame with exactly `fields`, typed, and the results set aside, each with its
    reason (naming `where` and the result's position): one that is not an object, lacks a required field, has a
    ticker field (`tickers`) that is not a vendor symbol (`names.ticker_problem`), a value of the wrong type, or a
    number that is not finite. One bad result never stops the others."""
    rows, positions, aside = [], [], []
    for index, result in enumerate(results):
        problem = None
        if not isinstance(result, Mapping):
            problem = f"is not an object: {shown(result)}"
        elif missing := [name for name in required if result.get(name) is None]:
            problem = f"lacks {', '.join(missing)}"
        else:
            problem = next((p for t in tickers if (p := _ticker_problem(result.get(t))) is not None), None)
        if problem:
            aside.append((index, f"{where}: result {index} {problem}"))
            continue
        rows.append({name: result.get(name) for name in fields})
        positions.append(index)
    text = {name: pl.String() for name in fields}
    frame = pl.DataFrame(rows, schema=text, strict=False) if rows else pl.DataFrame(schema=text)
    columns = []
    for name, dtype in fields.items():
        column = pl.col(name)
        if dtype == pl.Date():
            columns.append(column.str.slice(0, 10).str.to_date("%Y-%m-%d", strict=False).alias(name))
        elif isinstance(dtype, pl.Datetime):
            columns.append(column.str.to_datetime(time_zone="UTC", strict=False).dt.cast_time_unit("us").alias(name))
        elif dtype == pl.Boolean():
            columns.append(column.str.to_lowercase().replace_strict({"true": True, "false": False}, default=None))
        else:
            columns.append(column.cast(dtype, strict=False).alias(name))
    typed = frame.select(columns)
    bad = pl.Series([False] * typed.height, dtype=pl.Boolean)
    for name, dtype in fields.items():  # a value that did not convert is a vendor defect, not a null
        wrong = typed[name].is_null() & frame[name].is_not_null()
        if dtype == pl.Float64():
            wrong = wrong | ~typed[name].is_finite().fill_null(True)
        for at in wrong.arg_true().to_list():
            kind = "a finite number" if typed[name][at] is not None else str(dtype)
            aside.append(
                (positions[at], f"{where}: result {positions[at]} has {name}={shown(frame[name][at])}, not {kind}")
            )
        bad = bad | wrong
    return typed.filter(~bad), [reason for _, reason in sorted(aside, key=lambda item: item[0])]


def projected(result: Any, fields: Mapping[str, pl.DataType]) -> Any:
    """The `fields` of a result (an object), or the result itself (anything else, set aside later)."""
    return {name: result.get(name) for name in fields if name in result} if isinstance(result, Mapping) else result


def _ticker_problem(value: Any) -> str | None:
    return ticker_problem(value) if value is not None else None
