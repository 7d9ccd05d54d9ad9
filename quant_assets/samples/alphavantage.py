"""A local Alpha Vantage server over the synthetic universe (`DailyHistory`): TIME_SERIES_DAILY and the indicators
SMA, EMA, RSI and MACD computed from the same closes, values as strings, newest first, with the vendor's quirks:
errors with HTTP 200 (`{"Information": "... 25 requests per day ..."}` past `quota`, the premium `Information` for
`premium_functions`, `{"Error Message": ...}` for `error_message_for` and unknown symbols or a missing key).

    with AlphaVantageServer(start, end, api_key="secret", quota=25) as server: ... server.url ...
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from quant_assets.providers.symbols import from_vendor
from quant_assets.sample_rest import Reply
from quant_assets.samples.history import HistoryServer
from quant_assets.samples.server import json_reply

DAILY_LIMIT = (
    "Thank you for using Alpha Vantage! Our standard API rate limit is 25 requests per day. Please subscribe to any "
    "of the premium plans at https://www.alphavantage.co/premium/ to instantly remove all daily rate limits."
)
PREMIUM = (
    "Thank you for using Alpha Vantage! This is a premium endpoint. You may subscribe to any of the premium plans."
)


def _number(value: float) -> str:
    """A number as Alpha Vantage writes volumes: a string, no trailing zeros."""
    return f"{value:.6f}".rstrip("0").rstrip(".")


def sma(closes: list[float], n: int) -> list[float | None]:
    return [None if i + 1 < n else sum(closes[i + 1 - n : i + 1]) / n for i in range(len(closes))]


def ema(closes: list[float], n: int) -> list[float | None]:
    out, value, k = [], None, 2 / (n + 1)
    for i, close in enumerate(closes):
        if i + 1 == n:
            value = sum(closes[:n]) / n
        elif value is not None:
            value = close * k + value * (1 - k)
        out.append(value)
    return out


def rsi(closes: list[float], n: int) -> list[float | None]:
    out, gain, loss = [None], 0.0, 0.0
    for i in range(1, len(closes)):
        change = closes[i] - closes[i - 1]
        up, down = max(change, 0.0), max(-change, 0.0)
        if i <= n:
            gain, loss = gain + up / n, loss + down / n
            out.append(None if i < n else 100 - 100 / (1 + gain / loss) if loss else 100.0)
        else:
            gain, loss = (gain * (n - 1) + up) / n, (loss * (n - 1) + down) / n
            out.append(100 - 100 / (1 + gain / loss) if loss else 100.0)
    return out


class AlphaVantageServer(HistoryServer):
    name = "alphavantage"

    def __init__(
        self,
        start: dt.date,
        end: dt.date,
        premium_functions: Iterable[str] = ("TIME_SERIES_DAILY_ADJUSTED",),
        error_message_for: Iterable[str] = (),
        **options,
    ):
        super().__init__(start, end, **options)
        self.premium_functions = frozenset(premium_functions)
        self.error_message_for = frozenset(error_message_for)

    def authorised(self, headers, query: dict[str, str]) -> bool:
        return self.api_key is None or query.get("apikey") == self.api_key

    def unauthorised(self) -> Reply:
        return json_reply({"Error Message": "the parameter apikey is invalid or missing."})

    def over_quota(self) -> Reply:
        return json_reply({"Information": DAILY_LIMIT})

    def over_limit(self) -> Reply:
        return json_reply({"Note": "Our standard API call frequency is 5 calls per minute."})

    def answer(self, path: str, query: dict[str, str]) -> Reply:
        function, symbol = query.get("function", ""), query.get("symbol", "")
        if path != "/query":
            return json_reply({"Error Message": "Invalid API call."}, 404)
        if function in self.premium_functions:
            return json_reply({"Information": PREMIUM})
        try:
            ticker = from_vendor(symbol, "alphavantage")
        except ValueError:
            ticker = ""
        bars = self.history.bars(ticker, self.history.start, self.history.end)
        if symbol in self.error_message_for or not bars:
            return json_reply(
                {"Error Message": f"Invalid API call. Please retry or visit the documentation for {function}."}
            )
        if function == "TIME_SERIES_DAILY":
            series = {b["date"].isoformat(): {"1. open": f"{b['open']:.4f}", "2. high": f"{b['high']:.4f}",
                      "3. low": f"{b['low']:.4f}", "4. close": f"{b['close']:.4f}", "5. volume": _number(b['volume'])}
                      for b in reversed(bars)}  # fmt: skip
            meta = {"1. Information": "Daily Prices (open, high, low, close) and Volumes", "2. Symbol": symbol,
                    "3. Last Refreshed": bars[-1]["date"].isoformat(), "4. Output Size": query.get("outputsize", "Compact"),
                    "5. Time Zone": "US/Eastern"}  # fmt: skip
            return json_reply({"Meta Data": meta, "Time Series (Daily)": series})
        closes = [b["close"] for b in bars]
        period = int(query.get("time_period") or 14)
        if function == "SMA":
            values = {"SMA": sma(closes, period)}
        elif function == "EMA":
            values = {"EMA": ema(closes, period)}
        elif function == "RSI":
            values = {"RSI": rsi(closes, period)}
        elif function == "MACD":
            fast, slow = ema(closes, 12), ema(closes, 26)
            macd = [f - s if f is not None and s is not None else None for f, s in zip(fast, slow)]
            known = [m for m in macd if m is not None]
            signal = [None] * (len(macd) - len(known)) + ema(known, 9)
            hist = [m - s if m is not None and s is not None else None for m, s in zip(macd, signal)]
            values = {"MACD": macd, "MACD_Signal": signal, "MACD_Hist": hist}
        else:
            return json_reply({"Error Message": f"Invalid API call: unknown function {function}."})
        rows = {}
        for i in reversed(range(len(bars))):
            if all(v[i] is not None for v in values.values()):
                rows[bars[i]["date"].isoformat()] = {name: f"{v[i]:.4f}" for name, v in values.items()}
        meta = {"1: Symbol": symbol, "2: Indicator": function, "3: Last Refreshed": bars[-1]["date"].isoformat(),
                "4: Interval": query.get("interval", "daily"), "5: Time Period": period,
                "6: Series Type": query.get("series_type", "close"), "7: Time Zone": "US/Eastern"}  # fmt: skip
        return json_reply({"Meta Data": meta, f"Technical Analysis: {function}": rows})
