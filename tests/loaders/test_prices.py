"""parse_price: thousands separators, decimal commas, currencies (loaders.text)."""

from __future__ import annotations

import math

import pytest

from loaders.text import parse_price


@pytest.mark.parametrize("raw, price", [
    # thousands commas: a comma then exactly three digits
    ("1,234", 1234.0), ("1,234.56", 1234.56), ("$1,234,567", 1234567.0), ("$1,250.00", 1250.0),
    # decimal commas: a comma then one or two digits at the end
    ("5,99", 5.99), ("12,99", 12.99), ("5,9", 5.9), ("1.299,00", 1299.0), ("1.234.567,50", 1234567.5),
    # ambiguous mixes
    ("1,2,3", math.nan), ("12,3456", math.nan), ("1234,567", math.nan), ("1.234.567", math.nan),
    ("1,234,56", math.nan), ("12,", math.nan), (",99", math.nan),
    # currencies before or after, with or without a space
    ("€12.99", 12.99), ("12,99 €", 12.99), ("£8.50", 8.5), ("¥1200", 1200.0), ("12.99 USD", 12.99),
    ("CA$ 5.00", 5.0), ("US$5", 5.0), ("EUR 7,50", 7.5), ("12.99$", 12.99), ("USD", math.nan),
    # what worked before
    ("$12.99", 12.99), ("$1.00 - $5.00", 1.0), ("$.99", 0.99), ("$ 10.00", 10.0), ("$0.00", 0.0),
    ("5,99 € - 7,99 €", 5.99), ("12", 12.0), (7, 7.0),
    # not prices
    (".a-box-inner{background-color:#fff}", math.nan), ("-5", math.nan), ("$-5", math.nan),
    ("from $9.99", math.nan), ("None", math.nan), ("", math.nan), ("call us", math.nan), (-1.0, math.nan),
])
def test_parse_price(raw, price):
    got = parse_price(raw)
    assert (math.isnan(got) and math.isnan(price)) or got == price, (raw, got)


@pytest.mark.parametrize("raw, default, thousands", [
    # a dot then groups of three digits: a decimal point unless the column uses decimal commas
    ("2.500", 2.5, 2500.0), ("2.500 €", 2.5, 2500.0), ("€ 1.299", 1.299, 1299.0),
    ("1.234.567", math.nan, 1234567.0), ("EUR 12.000 - 15.000", 12.0, 12000.0),
    # the others read the same either way
    ("1.299,00 €", 1299.0, 1299.0), ("12,99", 12.99, 12.99), ("12.99", 12.99, 12.99), ("0.500", 0.5, 0.5),
    ("1,299", 1299.0, 1299.0), ("1234.567", 1234.567, 1234.567), ("12.3456", 12.3456, 12.3456),
])
def test_dot_thousands(raw, default, thousands):
    for got, want in ((parse_price(raw), default), (parse_price(raw, dot_thousands=True), thousands)):
        assert (math.isnan(got) and math.isnan(want)) or got == want, (raw, got, want)
