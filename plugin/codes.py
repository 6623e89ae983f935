"""Apology discount codes: derived, unguessable, easy to type.

The code is an HMAC-SHA256 of the incident id keyed with SECRET_KEY, so a retried job
proposes the same code (and can never mint a second one), while nobody without the key can
predict another customer's code. It is written in an alphabet without the characters people
confuse when reading or typing (0/O/D/Q, 1/I/L, 2/Z, 5/S, 8/B, U/V), in three groups of four:
`7KXF-M3WC-HJ4P`. Twelve symbols from 21 carry 52 bits: guessing a live code is hopeless.
"""

from __future__ import annotations

import hashlib
import hmac

ALPHABET = "34679ACEFGHJKMNPRTWXY"
AMBIGUOUS = "0ODQ1IL2Z5S8BUV"
SYMBOLS = 12
GROUP = 4


def derive(secret_key: str, incident_id: int) -> str:
    """The one code of `incident_id`: the same for the same key and incident, always."""
    digest = hmac.new(secret_key.encode(), f"amends:discount-code:{incident_id}".encode(), hashlib.sha256)
    number = int.from_bytes(digest.digest(), "big")  # 256 bits; 12 symbols use 53 of them
    symbols = []
    for _ in range(SYMBOLS):
        number, index = divmod(number, len(ALPHABET))
        symbols.append(ALPHABET[index])
    return "-".join("".join(symbols[i : i + GROUP]) for i in range(0, SYMBOLS, GROUP))


def normalise(typed: str) -> str:
    """A code as a person may have typed it ("7kxf m3wc hj4p") in its canonical form."""
    cleaned = "".join(ch for ch in typed.upper() if ch.isalnum())
    if len(cleaned) != SYMBOLS:
        return typed.strip().upper()
    return "-".join(cleaned[i : i + GROUP] for i in range(0, SYMBOLS, GROUP))


def looks_like_ours(code: str) -> bool:
    """True when `code` has the shape of an Amends code (for spotting redemptions)."""
    parts = code.upper().split("-")
    return (
        len(parts) == SYMBOLS // GROUP
        and all(len(p) == GROUP for p in parts)
        and all(ch in ALPHABET for p in parts for ch in p)
    )
