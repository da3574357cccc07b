"""Fictional pupils' identities: personnummer, samordningsnummer, temporary ids and names.

Id kinds (docs/glossary.md) and their shares in the demo:

- ``personnummer`` (97 %): YYMMDD + birth number 001-999 (odd last digit for boys,
  even for girls) + Luhn check digit;
- ``samordningsnummer`` (2 %): as a personnummer with the birth day + 60;
- ``temporary`` (1 %): letters in the birth-number part, ``YYMMDD-TF01`` /
  ``20130101TF01``, as school registers issue them; they have no valid check digit.

Every pupil is born in the 2000s, so the 12-character form starts with ``20`` and the
10-character form uses ``-``. All names are encodable in cp1252.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np

PERSONNUMMER = "personnummer"
SAMORDNINGSNUMMER = "samordningsnummer"
TEMPORARY = "temporary"

SAMORDNING_SHARE = 0.02
TEMPORARY_SHARE = 0.01

GIRL_NAMES = (
    "Alice", "Maja", "Elsa", "Ebba", "Saga", "Alva", "Wilma", "Astrid", "Selma", "Olivia",
    "Stella", "Freja", "Agnes", "Signe", "Ella", "Klara", "Linnéa", "Märta", "Åsa", "Tindra",
    "Nora", "Vera", "Leia", "Hedda", "Ines", "Juni", "Majken", "Ellen", "Amira", "Noor",
    "Leila", "Sara", "Hanna", "Tyra", "Ronja", "Siri", "Elin", "Ester", "Lova", "Thea",
)  # fmt: skip
BOY_NAMES = (
    "William", "Noah", "Hugo", "Oscar", "Lucas", "Liam", "Elias", "Adam", "Ludvig", "Nils",
    "Alfred", "Vincent", "Sixten", "Måns", "Björn", "Love", "Frans", "Otto", "Melvin", "Loke",
    "Axel", "Theo", "Charlie", "Elton", "Ali", "Yusuf", "Omar", "Mohammed", "Isak", "Viggo",
    "Sigge", "Edvin", "Malte", "Jöns", "Gösta", "Valter", "Harry", "Colin", "Leo", "Åke",
)  # fmt: skip
SURNAMES = (
    "Andersson", "Johansson", "Karlsson", "Nilsson", "Eriksson", "Larsson", "Olsson",
    "Persson", "Svensson", "Gustafsson", "Pettersson", "Jonsson", "Jansson", "Hansson",
    "Öberg", "Ängström", "Åberg", "Sjöberg", "Lindqvist", "Bäckström", "Strömberg",
    "Hägglund", "Ek", "Löfgren", "Sandström", "Nyström", "Åkesson", "Jönsson", "Holmgren",
    "Bergström", "Lundgren", "Söderberg", "Engström", "Forsberg", "Hedlund", "Björk",
    "Ström", "Dahlén", "Ahmed", "Hassan", "Ali", "Mohammadi", "Nguyen", "Karimi",
    "Lindén", "Östlund", "Wallin", "Berglöf", "Ekdahl", "Fröjd",
)  # fmt: skip


def luhn_check_digit(nine_digits: str) -> int:
    """Check digit over YYMMDDNNN: weights 2,1,2,…, digit sum, (10 - sum mod 10) mod 10."""
    total = 0
    for position, char in enumerate(nine_digits):
        product = int(char) * (2 if position % 2 == 0 else 1)
        total += product // 10 + product % 10
    return (10 - total % 10) % 10


@dataclass(frozen=True)
class Identity:
    id_kind: str
    id10: str  # YYMMDD-NNNC
    id12: str  # YYYYMMDDNNNC
    first_name: str
    last_name: str


def make_identities(rng: np.random.Generator, birth_dates: list[date]) -> list[Identity]:
    """A unique identity for each birth date, in the given order."""
    # Exact shares, so that even a small run has a few of each kind.
    count = len(birth_dates)
    temporary, samordning = round(count * TEMPORARY_SHARE), round(count * SAMORDNING_SHARE)
    kinds = np.full(count, PERSONNUMMER, dtype=object)
    shuffled = rng.permutation(count)
    kinds[shuffled[:temporary]] = TEMPORARY
    kinds[shuffled[temporary : temporary + samordning]] = SAMORDNINGSNUMMER
    used: set[str] = set()
    identities = []
    for born, kind in zip(birth_dates, kinds, strict=True):
        day = born.day + 60 if kind == SAMORDNINGSNUMMER else born.day
        date_part = f"{born.year % 100:02d}{born.month:02d}{day:02d}"
        while True:
            if kind == TEMPORARY:
                serial = int(rng.integers(1, 100))
                is_girl = bool(rng.random() < 0.5)
                tail = f"TF{serial:02d}"
            else:
                birth_number = int(rng.integers(1, 1000))
                is_girl = birth_number % 2 == 0
                digits = f"{date_part}{birth_number:03d}"
                tail = f"{birth_number:03d}{luhn_check_digit(digits)}"
            if date_part + tail not in used:
                used.add(date_part + tail)
                break
        first_names = GIRL_NAMES if is_girl else BOY_NAMES
        identities.append(
            Identity(
                id_kind=kind,
                id10=f"{date_part}-{tail}",
                id12=f"{born.year // 100}{date_part}{tail}",
                first_name=first_names[int(rng.integers(len(first_names)))],
                last_name=SURNAMES[int(rng.integers(len(SURNAMES)))],
            )
        )
    return identities


def random_birth_dates(rng: np.random.Generator, year: int, count: int) -> list[date]:
    first = date(year, 1, 1)
    days_in_year = (date(year + 1, 1, 1) - first).days
    offsets = np.sort(rng.integers(0, days_in_year, count))
    return [first + timedelta(days=int(offset)) for offset in offsets]
