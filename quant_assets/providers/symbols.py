"""One canonical symbol, converted at the request boundary: data always holds the flat files' form, and each
provider's form is made when a request is built (`to_vendor`) and read back on the way in (`from_vendor`).

The canonical form (the flat files', ../shared/reference/polygon-flat-files.md): a share class after a dot
(`BRK.B`), a preferred series after a lower-case `p` (`BCpC`: BC preferred series C; `BACpL`), indices with the
`I:` prefix (`I:SPX`). The vendors' forms:

| provider     | share class | preferred  | index            |
|--------------|-------------|------------|------------------|
| massive      | `BRK.B`     | `BCpC`     | `I:SPX`          |
| tiingo       | `BRK-B`     | `BC-P-C`   | none (use ETFs)  |
| yahoo        | `BRK-B`     | `BC-PC`    | `^GSPC`          |
| finnhub      | `BRK.B`     | `BC-PC`    | `^GSPC` (paid)   |
| alphavantage | `BRK.B`     | `BC-PC`    | none             |
| bloomberg    | `BRK/B US Equity`, `BRK/B:US` | `BC/PC US Equity` | `SPX Index` |

Finnhub's and Alpha Vantage's share-class form is not confirmed by the vendors (both `BRK-B` and `BRK.B` are seen);
`FORMS` is data, so a deployment that learns otherwise changes one entry. A symbol a provider cannot serve raises
`Unsupported` with the reason, before anything is sent.

`canonical` reads what a user types (a universe file, the CLI) in any of these forms.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from quant_assets.names import shown, ticker_problem


class Unsupported(ValueError):
    """A symbol the provider cannot serve (an index on Tiingo), or a vendor symbol that has no canonical form: the
    symbol is skipped for that provider, with this reason, and never sent."""


# Yahoo's (and Finnhub's) index names where they differ from the canonical `I:` name; others are `^` + the name.
YAHOO_INDEX = {"SPX": "GSPC", "COMP": "IXIC", "NYA": "NYA", "DJI": "DJI", "NDX": "NDX", "RUT": "RUT", "VIX": "VIX"}
BLOOMBERG_INDEX = {"COMP": "CCMP", "DJI": "INDU"}


@dataclass(frozen=True)
class Form:
    """How one provider writes symbols: the share-class separator, how a preferred series is written (`{base}` and
    `{series}`), and its index form (`{name}`), or None when it has no indices."""

    share_class: str
    preferred: str
    index: str | None
    index_names: dict[str, str] = field(default_factory=dict)


FORMS: dict[str, Form] = {
    "massive": Form(".", "{base}p{series}", "I:{name}"),
    "tiingo": Form("-", "{base}-P-{series}", None),
    "yahoo": Form("-", "{base}-P{series}", "^{name}", YAHOO_INDEX),
    "finnhub": Form(".", "{base}-P{series}", "^{name}", YAHOO_INDEX),
    "alphavantage": Form(".", "{base}-P{series}", None),
}

_PREFERRED = re.compile(r"(?P<base>[A-Z0-9]+)p(?P<series>[A-Z]*)")
_CLASS = re.compile(r"(?P<base>[A-Z0-9]+)\.(?P<cls>[A-Z]{1,2})")


def _form(provider: str) -> Form:
    try:
        return FORMS[provider]
    except KeyError:
        raise KeyError(f"no symbol form for provider {provider!r}; known: {', '.join(FORMS)}") from None


def to_vendor(symbol: str, provider: str) -> str:
    """`symbol` (canonical) as `provider` writes it; `Unsupported` when the provider cannot serve it."""
    form = _form(provider)
    if problem := ticker_problem(symbol):
        raise Unsupported(f"{provider}: {problem}")
    if symbol.startswith("I:"):
        name = symbol[2:]
        if form.index is None:
            raise Unsupported(f"{provider} has no index data: {symbol} is not asked from it")
        return form.index.format(name=form.index_names.get(name, name))
    if ":" in symbol:
        raise Unsupported(f"{provider}: {symbol} is not a stock or an index")
    if match := _PREFERRED.fullmatch(symbol):
        return form.preferred.format(base=match["base"], series=match["series"]).rstrip("-")
    if match := _CLASS.fullmatch(symbol):
        return f"{match['base']}{form.share_class}{match['cls']}"
    return symbol


def from_vendor(text: str, provider: str) -> str:
    """The canonical symbol of `text` as `provider` writes it (`to_vendor`'s inverse); `Unsupported` when it is
    not a symbol of that form."""
    form = _form(provider)
    if not isinstance(text, str) or not text:
        raise Unsupported(f"{provider}: {shown(text)} is not a symbol")
    if form.index is not None:
        prefix = form.index.split("{", 1)[0]
        if text.startswith(prefix) and prefix:
            name = text[len(prefix) :]
            names = {vendor: ours for ours, vendor in form.index_names.items()}
            return _checked(f"I:{names.get(name, name)}", text, provider)
    base, series = _preferred_parts(text, form)
    if base is not None:
        return _checked(f"{base}p{series}", text, provider)
    separator = re.escape(form.share_class)
    if form.share_class != "." and (match := re.fullmatch(rf"([A-Z0-9]+){separator}([A-Z]{{1,2}})", text)):
        return _checked(f"{match[1]}.{match[2]}", text, provider)
    return _checked(text, text, provider)


def _preferred_parts(text: str, form: Form) -> tuple[str | None, str]:
    """The base and series of a preferred in `form`, or (None, "") when `text` is not one."""
    pattern = re.escape(form.preferred).replace(r"\{base\}", "(?P<base>[A-Z0-9]+)")
    pattern = pattern.replace(r"\{series\}", "(?P<series>[A-Z]*)")
    match = re.fullmatch(pattern, text)
    if match is None and form.preferred.endswith("-{series}"):  # a preferred without a series: `BC-P`
        match = re.fullmatch(pattern.removesuffix("\\-(?P<series>[A-Z]*)") + "(?P<series>)", text)
    return (match["base"], match["series"]) if match else (None, "")


def _checked(symbol: str, text: str, provider: str) -> str:
    if problem := ticker_problem(symbol):
        raise Unsupported(f"{provider} symbol {shown(text)}: {problem}")
    return symbol


_BLOOMBERG = re.compile(r"(?P<ticker>[A-Z0-9/.\-]+)(?: (?P<market>[A-Z]{2}))? (?P<yellow>Equity|Index)", re.I)
_BLOOMBERG_SHORT = re.compile(r"(?P<ticker>[A-Z0-9/.\-]+):(?P<market>[A-Z]{2})")


def canonical(text: str) -> str:
    """The canonical symbol of what a user wrote: the flat files' form itself (`BRK.B`, `BCpC`, `I:SPX`), Bloomberg's
    (`AAPL US Equity`, `BRK/B US Equity`, `AAPL:US`, `SPX Index`), Yahoo's index form (`^GSPC`) or the hyphenated
    share classes of Tiingo and Yahoo (`BRK-B`, `BC-P-C`, `BC-PC`). `Unsupported` when it is none of these."""
    text = text.strip() if isinstance(text, str) else text
    if not isinstance(text, str) or not text:
        raise Unsupported(f"{shown(text)} is not a symbol")
    if match := _BLOOMBERG.fullmatch(text):
        ticker = match["ticker"].upper()
        if match["yellow"].lower() == "index":
            names = {vendor: ours for ours, vendor in BLOOMBERG_INDEX.items()}
            return _checked(f"I:{names.get(ticker, ticker)}", text, "bloomberg")
        return _slash_class(ticker, text)
    if match := _BLOOMBERG_SHORT.fullmatch(text):
        return _slash_class(match["ticker"].upper(), text)
    if text.startswith("^"):
        return from_vendor(text, "yahoo")
    if ticker_problem(text) is None and "-" not in text:
        return text
    for provider in ("yahoo", "tiingo"):  # `BC-PC` is Yahoo's preferred C, `BC-P-C` Tiingo's
        try:
            symbol = from_vendor(text, provider)
        except Unsupported:
            continue
        if "-" not in symbol:
            return symbol
    raise Unsupported(f"{shown(text)} is not a symbol in any known form")


def _slash_class(ticker: str, text: str) -> str:
    """Bloomberg's `BRK/B` (a share class) and `BC/PC` (a preferred) in the canonical form."""
    base, _, rest = ticker.partition("/")
    if not rest:
        return _checked(base, text, "bloomberg")
    if rest.startswith("P") and len(rest) <= 2:
        return _checked(f"{base}p{rest[1:]}", text, "bloomberg")
    return _checked(f"{base}.{rest}", text, "bloomberg")


def to_bloomberg(symbol: str, short: bool = False) -> str:
    """`symbol` (canonical) as Bloomberg writes it: `AAPL US Equity` (`AAPL:US` when `short`), `SPX Index`."""
    if symbol.startswith("I:"):
        name = symbol[2:]
        return f"{BLOOMBERG_INDEX.get(name, name)} Index"
    if match := _PREFERRED.fullmatch(symbol):
        symbol = f"{match['base']}/P{match['series']}"
    elif match := _CLASS.fullmatch(symbol):
        symbol = f"{match['base']}/{match['cls']}"
    return f"{symbol}:US" if short else f"{symbol} US Equity"
