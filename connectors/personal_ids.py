"""Personnummer handling: normalise, validate, pseudonymise.

Every connector calls `pseudonymise_column` before anything is written, so no personnummer
ever reaches disk (docs/design.md, invariant 5). Rules (Skatteverket's):

- accepted forms: `YYMMDD-NNNC`, `YYMMDD+NNNC` (100 years or older), `YYMMDDNNNC`,
  `YYYYMMDDNNNC`, `YYYYMMDD-NNNC`; spaces are ignored;
- the check digit is Luhn over the 10-digit form; samordningsnummer have day + 60;
- temporary ids from student registers carry letters in the birth-number part
  (`20130101TF01`); they cannot be Luhn-checked and are kept as kind `temporary`;
- the canonical form is 12 characters `YYYYMMDDNNNC`; the pseudonym is
  HMAC-SHA256(key, canonical form), hex. Invalid ids are pseudonymised too (of their stripped
  text), so a quarantined row keeps a stable reference without the id itself.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import date

import polars as pl

KIND_PERSONNUMMER = "personnummer"
KIND_SAMORDNINGSNUMMER = "samordningsnummer"
KIND_TEMPORARY = "temporary"
KIND_INVALID = "invalid"
KIND_MISSING = "missing"

_FORM = re.compile(
    r"^(?P<century>\d{2})?(?P<yymmdd>\d{6})(?P<sep>[-+])?(?P<serial>[0-9A-Z]{3})(?P<check>[0-9A-Z])$"
)


@dataclass(frozen=True)
class PersonalId:
    kind: str
    canonical: str  # 12 characters for valid and temporary ids, stripped text otherwise


def luhn_check_digit(nine_digits: str) -> int:
    total = 0
    for i, ch in enumerate(nine_digits):
        product = int(ch) * (2 if i % 2 == 0 else 1)
        total += product // 10 + product % 10
    return (10 - total % 10) % 10


def _real_date(year: int, month: int, day: int) -> bool:
    try:
        date(year, month, day)
    except ValueError:
        return False
    return True


def _century(yymmdd: str, sep: str | None, today: date) -> int:
    """Century for a 10-digit id: the latest that is not in the future, minus 100 for '+'."""
    yy, mmdd = int(yymmdd[:2]), (int(yymmdd[2:4]), int(yymmdd[4:6]) % 60)
    year = (today.year // 100) * 100 + yy
    if (year, *mmdd) > (today.year, today.month, today.day):
        year -= 100
    if sep == "+":
        year -= 100
    return year // 100


def parse_personal_id(raw: str | None, today: date | None = None) -> PersonalId:
    text = "" if raw is None else re.sub(r"\s", "", str(raw)).upper()
    if not text:
        return PersonalId(KIND_MISSING, "")
    if len(text) == 9 and text.isdigit():
        text = "0" + text  # a 10-digit id kept as a number in Excel lost its leading zero
    match = _FORM.match(text)
    if not match:
        return PersonalId(KIND_INVALID, text)
    yymmdd, serial, check = match["yymmdd"], match["serial"], match["check"]
    century = match["century"]
    if century is None:
        # the clock's date, not Sweden's: it only places a 10-digit id in its century
        century = str(_century(yymmdd, match["sep"], today or date.today()))  # noqa: DTZ011
    canonical = f"{century}{yymmdd}{serial}{check}"
    year, month, day = int(canonical[:4]), int(yymmdd[2:4]), int(yymmdd[4:6])
    kind = KIND_PERSONNUMMER
    if day > 60:
        kind, day = KIND_SAMORDNINGSNUMMER, day - 60
    if not _real_date(year, month, day):
        return PersonalId(KIND_INVALID, text)
    if not (serial + check).isdigit():
        # Temporary ids put letters in the birth-number part; no check digit to verify.
        if serial[:2].isalpha():
            return PersonalId(KIND_TEMPORARY, canonical)
        return PersonalId(KIND_INVALID, text)
    if luhn_check_digit(yymmdd + serial) != int(check):
        return PersonalId(KIND_INVALID, text)
    return PersonalId(kind, canonical)


def pseudonym(key: bytes, canonical: str) -> str:
    return hmac.new(key, canonical.encode(), hashlib.sha256).hexdigest()


def pseudonymise_column(
    frame: pl.DataFrame,
    column: str,
    key: bytes,
    *,
    prefix: str = "pupil",
    cache: dict[str | None, tuple[str | None, str]] | None = None,
) -> pl.DataFrame:
    """Replace `column` by `<prefix>_key` (HMAC) and `<prefix>_id_kind`.

    Work per distinct id, so a year of lessons costs one HMAC per pupil, not per row; with
    `cache` (raw id → (key, kind), shared by the files of a run, from several threads), one
    per pupil and run, not per file.
    """
    distinct = frame.get_column(column).unique()
    keys, kinds = {}, {}
    today = date.today()  # noqa: DTZ011 (only the century of a 10-digit id depends on it)
    cache = {} if cache is None else cache
    for raw in distinct.to_list():
        known = cache.get(raw)
        if known is None:
            parsed = parse_personal_id(raw, today)
            known = (pseudonym(key, parsed.canonical) if parsed.canonical else None, parsed.kind)
            cache[raw] = known  # a dict item is set atomically: threads may share it
        keys[raw], kinds[raw] = known
    # Build a lookup frame and join it; a Python mapping over millions of rows would be slow.
    lookup = pl.DataFrame(
        {
            column: list(keys),
            f"{prefix}_key": list(keys.values()),
            f"{prefix}_id_kind": [kinds[k] for k in keys],
        },
        schema={
            column: frame.schema[column],
            f"{prefix}_key": pl.String,
            f"{prefix}_id_kind": pl.String,
        },
    )
    position = frame.columns.index(column)
    joined = frame.join(lookup, on=column, how="left", nulls_equal=True)
    ordered = [
        *frame.columns[:position],
        f"{prefix}_key",
        f"{prefix}_id_kind",
        *frame.columns[position + 1 :],
    ]
    return joined.select(ordered)
