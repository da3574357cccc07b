import hashlib
import hmac
from datetime import date

import polars as pl
import pytest

from connectors.personal_ids import (
    KIND_INVALID,
    KIND_MISSING,
    KIND_PERSONNUMMER,
    KIND_SAMORDNINGSNUMMER,
    KIND_TEMPORARY,
    luhn_check_digit,
    parse_personal_id,
    pseudonymise_column,
)

TODAY = date(2026, 11, 25)


def test_luhn_matches_skatteverket_worked_example():
    # Skatteverket: 640823-323 has check digit 4.
    assert luhn_check_digit("640823323") == 4


@pytest.mark.parametrize(
    ("raw", "kind", "canonical"),
    [
        ("640823-3234", KIND_PERSONNUMMER, "196408233234"),
        ("6408233234", KIND_PERSONNUMMER, "196408233234"),
        ("196408233234", KIND_PERSONNUMMER, "196408233234"),
        ("19640823-3234", KIND_PERSONNUMMER, "196408233234"),
        (" 640823 - 3234 ", KIND_PERSONNUMMER, "196408233234"),
        ("640823+3234", KIND_PERSONNUMMER, "186408233234"),  # 100 years or older
        ("640883-3231", KIND_SAMORDNINGSNUMMER, "196408833231"),  # day 23 + 60
        ("20130101TF01", KIND_TEMPORARY, "20130101TF01"),
        ("130101-TF01", KIND_TEMPORARY, "20130101TF01"),
        ("640823-3235", KIND_INVALID, "640823-3235"),  # wrong check digit
        ("641323-3234", KIND_INVALID, "641323-3234"),  # month 13
        ("640230-1234", KIND_INVALID, "640230-1234"),  # 30 February
        ("abc", KIND_INVALID, "ABC"),
        ("", KIND_MISSING, ""),
        (None, KIND_MISSING, ""),
    ],
)
def test_parse_personal_id(raw, kind, canonical):
    parsed = parse_personal_id(raw, TODAY)
    assert (parsed.kind, parsed.canonical) == (kind, canonical)


def _with_check(nine: str, sep: str = "-") -> str:
    return f"{nine[:6]}{sep}{nine[6:]}{luhn_check_digit(nine)}"


def test_century_of_ten_digit_ids_for_pupils():
    assert parse_personal_id(_with_check("150101000"), TODAY).canonical.startswith("2015")
    assert parse_personal_id(_with_check("261201000"), TODAY).canonical.startswith("1926")
    assert parse_personal_id(_with_check("261201000", "+"), TODAY).canonical.startswith("1826")


def test_samordningsnummer_check_digit_is_luhn_over_day_plus_60():
    assert parse_personal_id(_with_check("640883323"), TODAY).kind == KIND_SAMORDNINGSNUMMER


def test_pseudonymise_column_replaces_ids_with_hmac():
    key = b"test-key"
    frame = pl.DataFrame({"row": [1, 2, 3, 4], "pnr": ["640823-3234", "196408233234", "", "x"]})
    out = pseudonymise_column(frame, "pnr", key)
    assert out.columns == ["row", "pupil_key", "pupil_id_kind"]
    expected = hmac.new(key, b"196408233234", hashlib.sha256).hexdigest()
    # The 10- and 12-digit forms of one person get the same pseudonym.
    assert out["pupil_key"].to_list()[:2] == [expected, expected]
    assert out["pupil_key"][2] is None
    assert out["pupil_id_kind"].to_list() == [
        KIND_PERSONNUMMER,
        KIND_PERSONNUMMER,
        KIND_MISSING,
        KIND_INVALID,
    ]
    assert "640823" not in str(out.to_dicts())
