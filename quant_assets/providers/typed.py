"""Vendor results as typed polars frames: the one place that turns a provider's JSON records into rows, setting
aside each record that is not usable, with its reason (a bad record never stops the others)."""

from __future__ import annotations

import datetime as dt
import math
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
    number that is not finite. One bad result never stops the others.

    Values are checked and converted in Python, one result at a time, and the frame is built once from the typed
    columns: a provider's answer is a few rows per request (one symbol's days), and a frame per field check would
    cost more than the request's parsing."""
    converters = [(name, _CONVERTERS[_kind(dtype)], dtype) for name, dtype in fields.items()]
    columns: dict[str, list] = {name: [] for name in fields}
    aside = []
    for index, result in enumerate(results):
        problem = None
        if not isinstance(result, Mapping):
            problem = f"is not an object: {shown(result)}"
        elif missing := [name for name in required if result.get(name) is None]:
            problem = f"lacks {', '.join(missing)}"
        else:
            problem = next((p for t in tickers if (p := _ticker_problem(result.get(t))) is not None), None)
        if problem is None:
            row = []
            for name, convert, dtype in converters:
                value = result.get(name)
                typed, wrong = convert(value) if value is not None else (None, None)
                if wrong is not None:
                    kind = "a finite number" if wrong == FINITE else str(dtype)
                    problem = f"has {name}={shown(value)}, not {kind}"
                    break
                row.append(typed)
        if problem:
            aside.append(f"{where}: result {index} {problem}")
            continue
        for (name, _, _), typed in zip(converters, row):
            columns[name].append(typed)
    return pl.DataFrame(columns, schema=dict(fields)), aside


FINITE, TYPE = "finite", "type"


def _kind(dtype: pl.DataType) -> str:
    if dtype == pl.Float64():
        return "float"
    if dtype == pl.Int64():
        return "int"
    if dtype == pl.Date():
        return "date"
    if isinstance(dtype, pl.Datetime):
        return "datetime"
    if dtype == pl.Boolean():
        return "bool"
    if dtype == pl.String():
        return "str"
    raise TypeError(f"typed_frame has no conversion to {dtype}")


def _float(value: Any) -> tuple[float | None, str | None]:
    if isinstance(value, bool):
        return None, TYPE
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None, TYPE
    else:
        return None, TYPE
    return (number, None) if math.isfinite(number) else (None, FINITE)


INT64 = range(-(2**63), 2**63)


def _int(value: Any) -> tuple[int | None, str | None]:
    if isinstance(value, bool):
        return None, TYPE
    number = None
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        number = int(value)
    if number is None or number not in INT64:  # 1e300 is whole, but no Int64
        return None, TYPE
    return number, None


def _date(value: Any) -> tuple[dt.date | None, str | None]:
    if isinstance(value, str) and len(value) >= 10 and value[4] == "-" and value[7] == "-":
        try:
            return dt.date.fromisoformat(value[:10]), None
        except ValueError:
            pass
    return None, TYPE


def _datetime(value: Any) -> tuple[dt.datetime | None, str | None]:
    if isinstance(value, str):
        try:
            when = dt.datetime.fromisoformat(value)
        except ValueError:
            return None, TYPE
        return (when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)), None
    return None, TYPE


def _bool(value: Any) -> tuple[bool | None, str | None]:
    if isinstance(value, bool):
        return value, None
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true", None
    return None, TYPE


def _str(value: Any) -> tuple[str | None, str | None]:
    if isinstance(value, str):
        return value, None
    if isinstance(value, bool):
        return str(value).lower(), None
    if isinstance(value, int | float):
        return str(value), None
    return None, TYPE


_CONVERTERS = {"float": _float, "int": _int, "date": _date, "datetime": _datetime, "bool": _bool, "str": _str}


def projected(result: Any, fields: Mapping[str, pl.DataType]) -> Any:
    """The `fields` of a result (an object), or the result itself (anything else, set aside later)."""
    return {name: result.get(name) for name in fields if name in result} if isinstance(result, Mapping) else result


def _ticker_problem(value: Any) -> str | None:
    return ticker_problem(value) if value is not None else None
