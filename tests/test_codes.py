"""Apology codes: derived (a retry proposes the same one), unguessable, easy to type."""

from __future__ import annotations

import re
from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from plugin import codes

KEY = "test-secret-key-0123456789abcdef0123456789"


def test_the_same_incident_and_key_always_give_the_same_code():
    assert codes.derive(KEY, 42) == codes.derive(KEY, 42)


def test_another_incident_or_another_key_gives_another_code():
    assert codes.derive(KEY, 42) != codes.derive(KEY, 43)
    assert codes.derive(KEY, 42) != codes.derive(KEY + "x", 42)


@given(st.integers(min_value=1, max_value=2**63 - 1))
def test_shape_and_alphabet(incident_id):
    code = codes.derive(KEY, incident_id)
    assert re.fullmatch(r"[34679ACEFGHJKMNPRTWXY]{4}(-[34679ACEFGHJKMNPRTWXY]{4}){2}", code)
    assert not set(code) & set(codes.AMBIGUOUS)
    assert codes.looks_like_ours(code)


def test_no_ambiguous_characters_in_the_alphabet():
    assert len(set(codes.ALPHABET)) == len(codes.ALPHABET) == 21
    for confusable in "0O1IL2Z5S8BUVDQ":
        assert confusable not in codes.ALPHABET


def test_no_collisions_and_an_even_spread_over_many_incidents():
    derived = [codes.derive(KEY, i) for i in range(1, 50_001)]
    assert len(set(derived)) == len(derived)
    counts = Counter(ch for code in derived for ch in code.replace("-", ""))
    expected = len(derived) * codes.SYMBOLS / len(codes.ALPHABET)
    assert all(abs(n - expected) / expected < 0.05 for n in counts.values()), counts


def test_consecutive_incidents_share_nothing_predictable():
    a, b = codes.derive(KEY, 1000), codes.derive(KEY, 1001)
    same_position = sum(x == y for x, y in zip(a.replace("-", ""), b.replace("-", ""), strict=True))
    assert same_position <= 4  # about 12/21 expected by chance


def test_what_a_customer_types_is_read_back():
    code = codes.derive(KEY, 7)
    assert codes.normalise(code.lower().replace("-", " ")) == code
    assert codes.normalise(f" {code.lower()} ") == code
    assert codes.normalise("SUMMER10") == "SUMMER10"
    assert not codes.looks_like_ours("SUMMER10")
    assert not codes.looks_like_ours("ABCD-EFGH-IJKL")  # I and L are not ours
