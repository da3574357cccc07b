"""Which pseudonymisation key produced a load: a fingerprint, never the key.

Pupil keys are HMAC-SHA256 pseudonyms. A run with another key would add a second pseudonym
space to the landed data and count every pupil twice without a word, so every pseudonymised
load records the fingerprint of its key (`key_fingerprint` in its manifest) and a run whose
key differs from the landed loads' stops before landing anything (docs/operations.md,
*Changing the pseudonym key*).
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from flows.layers.manifest import Manifest

# An HMAC of a fixed label: comparable between runs, and it gives nothing of the key away
# (nor any pseudonym: no personnummer is ever hashed with this label).
_LABEL = b"lagesbild pseudonym key fingerprint v1"


class KeyMismatch(RuntimeError):
    """The pseudonym key differs from the one the landed data was pseudonymised with."""


def fingerprint(key: bytes) -> str:
    return hmac.new(key, _LABEL, hashlib.sha256).hexdigest()[:16]


def landed_fingerprints(landing: Path) -> dict[str, str]:
    """Each key fingerprint of the landed loads, with one load it is found in."""
    found: dict[str, str] = {}
    for path in sorted(landing.glob("*/*/period=*/load_id=*/_manifest.json")):
        manifest = Manifest.model_validate_json(path.read_text(encoding="utf-8"))
        if manifest.key_fingerprint and manifest.key_fingerprint not in found:
            found[manifest.key_fingerprint] = manifest.origin
    return found


def check_landed_key(landing: Path, key: bytes) -> None:
    """Stop, before anything is landed, when the landed loads were made with another key."""
    current = fingerprint(key)
    others = {f: origin for f, origin in landed_fingerprints(landing).items() if f != current}
    if others:
        fingerprints, origin = ", ".join(sorted(others)), next(iter(others.values()))
        raise KeyMismatch(
            f"LAGESBILD_PSEUDONYM_KEY (fingerprint {current}) is not the key the landed data "
            f"was pseudonymised with (fingerprint {fingerprints}, e.g. load {origin}). Two "
            "keys would count every pupil twice. Set the key the data was landed with, or "
            "change keys by rebuilding from the source exports (docs/operations.md, "
            "'Changing the pseudonym key')."
        )
