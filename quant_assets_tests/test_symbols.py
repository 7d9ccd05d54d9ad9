"""One canonical symbol, converted at the boundary: round trips per provider for share classes, preferreds and
indices; what a provider cannot serve is refused before anything is sent; what users type is read."""

import pytest

from quant_assets.providers.symbols import FORMS, Unsupported, canonical, from_vendor, to_bloomberg, to_vendor

CANONICAL = ["AAPL", "BRK.B", "BF.A", "BCpC", "BACpL", "BCp", "I:SPX", "I:COMP", "I:NDX", "I:DJI", "I:VIX"]
EXPECTED = {
    "massive": ["AAPL", "BRK.B", "BF.A", "BCpC", "BACpL", "BCp", "I:SPX", "I:COMP", "I:NDX", "I:DJI", "I:VIX"],
    "tiingo": ["AAPL", "BRK-B", "BF-A", "BC-P-C", "BAC-P-L", "BC-P", None, None, None, None, None],
    "yahoo": ["AAPL", "BRK-B", "BF-A", "BC-PC", "BAC-PL", "BC-P", "^GSPC", "^IXIC", "^NDX", "^DJI", "^VIX"],
    "finnhub": ["AAPL", "BRK.B", "BF.A", "BC-PC", "BAC-PL", "BC-P", "^GSPC", "^IXIC", "^NDX", "^DJI", "^VIX"],
    "alphavantage": ["AAPL", "BRK.B", "BF.A", "BC-PC", "BAC-PL", "BC-P", None, None, None, None, None],
}


@pytest.mark.parametrize("provider", sorted(FORMS))
def test_every_symbol_round_trips_through_each_providers_form(provider):
    for symbol, vendor in zip(CANONICAL, EXPECTED[provider], strict=True):
        if vendor is None:
            with pytest.raises(Unsupported, match=f"{provider} has no index data: {symbol} is not asked from it"):
                to_vendor(symbol, provider)
            continue
        assert to_vendor(symbol, provider) == vendor, (provider, symbol)
        assert from_vendor(vendor, provider) == symbol, (provider, vendor)


@pytest.mark.parametrize(
    "typed, symbol",
    [
        ("AAPL US Equity", "AAPL"),
        ("BRK/B US Equity", "BRK.B"),
        ("BC/PC US Equity", "BCpC"),
        ("AAPL:US", "AAPL"),
        ("BRK/B:US", "BRK.B"),
        ("SPX Index", "I:SPX"),
        ("INDU Index", "I:DJI"),
        ("CCMP Index", "I:COMP"),
        ("^GSPC", "I:SPX"),
        ("BRK-B", "BRK.B"),
        ("BC-P-C", "BCpC"),
        ("BC-PC", "BCpC"),
        ("  BRK.B ", "BRK.B"),
        ("I:SPX", "I:SPX"),
    ],
)
def test_what_users_type_is_read_in_any_common_form(typed, symbol):
    assert canonical(typed) == symbol


@pytest.mark.parametrize("symbol", ["AAPL", "BRK.B", "BCpC", "I:SPX", "I:DJI", "I:COMP"])
def test_bloomberg_forms_round_trip(symbol):
    assert canonical(to_bloomberg(symbol)) == symbol
    if not symbol.startswith("I:"):
        assert canonical(to_bloomberg(symbol, short=True)) == symbol


@pytest.mark.parametrize("bad", ["", "../etc/passwd", "AAPL US", "a b c", "BRK/B/C US Equity", None, 42])
def test_what_is_not_a_symbol_is_refused_with_a_reason(bad):
    with pytest.raises(Unsupported):
        canonical(bad)


def test_a_hostile_vendor_symbol_never_comes_back_as_a_symbol():
    for provider in FORMS:
        for text in ["../../x", "A\nB", "X" * 500, "^../x"]:
            with pytest.raises(Unsupported):
                from_vendor(text, provider)
    with pytest.raises(Unsupported, match="is not a stock or an index"):
        to_vendor("O:SPY230327P00390000", "tiingo")
    with pytest.raises(KeyError, match="no symbol form for provider 'bloomberg'"):
        to_vendor("AAPL", "bloomberg")
