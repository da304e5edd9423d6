"""Value detectors: PHI found in a text value whatever its column.

Patterns over result VALUES (never over SQL), after Microsoft Presidio's recognizers
(UsSsnRecognizer, EmailRecognizer, PhoneRecognizer, CreditCardRecognizer with its Luhn
check, DateRecognizer) but leaning the other way: Presidio scores and may discard a
weak match, the gateway masks it (a false positive costs a masked value, a false
negative costs PHI). An SSN is three, two and four digits with one separator used
twice; a phone number is a NANP number with or without +1, parentheses and
separators, or an international one with a leading +; a credit card is 13 to 19
digits (spaces or dashes between) that pass Luhn; a date of birth is any date in the
common formats (ISO, US m/d/y, d.m.y, "March 4, 1980"); an MRN is ``MRN`` followed by
5 to 12 digits unless the policy gives its own pattern.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

_MONTHS = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
    r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)


def luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card_ok(match: str) -> bool:
    digits = "".join(c for c in match if c.isdigit())
    return 13 <= len(digits) <= 19 and luhn(digits)


@dataclass(frozen=True)
class Detector:
    name: str
    pattern: re.Pattern[str]
    valid: Callable[[str], bool] | None = None

    def spans(self, value: str) -> Iterator[tuple[int, int]]:
        valid = self.valid
        for match in self.pattern.finditer(value):
            if valid is None or valid(match.group(0)):
                yield match.span()


def _detectors(mrn: str | None) -> dict[str, Detector]:
    flags = re.IGNORECASE
    return {
        # The card first: its digit runs would otherwise be cut into phone numbers.
        "credit_card": Detector(
            "credit_card", re.compile(r"(?<!\d)\d(?:[ -]?\d){12,18}(?!\d)"), _card_ok
        ),
        "ssn": Detector("ssn", re.compile(r"(?<!\d)\d{3}([- .])\d{2}\1\d{4}(?!\d)")),
        "email": Detector(
            "email",
            re.compile(r"[A-Za-z0-9._%+'-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}", flags),
        ),
        "phone": Detector(
            "phone",
            re.compile(
                r"(?:(?<![\w+])\+?1[-. ]?)?(?<![\w])\(?\d{3}\)?[-. ]?\d{3}[-. ]?\d{4}(?!\d)"
                r"|(?<![\w])\+\d{1,3}[-. ]?(?:\d[-. ]?){6,12}\d(?!\d)"
            ),
        ),
        "mrn": Detector(
            "mrn",
            re.compile(mrn) if mrn is not None else re.compile(r"\bMRN[-:# ]?\d{5,12}\b", flags),
        ),
        "dob": Detector(
            "dob",
            re.compile(
                r"(?<!\d)(?:1[89]|20)\d{2}[-/.](?:0?[1-9]|1[0-2])[-/.](?:0?[1-9]|[12]\d|3[01])(?!\d)"
                r"|(?<!\d)(?:0?[1-9]|[12]\d|3[01])[-/.](?:0?[1-9]|[12]\d|3[01])[-/.](?:1[89]|20)\d{2}(?!\d)"
                rf"|\b{_MONTHS}\.? \d{{1,2}}(?:st|nd|rd|th)?,? (?:1[89]|20)\d{{2}}\b"
                rf"|\b\d{{1,2}} {_MONTHS}\.?,? (?:1[89]|20)\d{{2}}\b",
                flags,
            ),
        ),
    }


DETECTORS: tuple[str, ...] = tuple(_detectors(None))


def detectors(names: tuple[str, ...], mrn: str | None = None) -> list[Detector]:
    """The named detectors, in the order they are tried (cards before phones)."""
    made = _detectors(mrn)
    return [made[name] for name in DETECTORS if name in names]


def find(value: str, found: list[Detector]) -> list[tuple[int, int, Detector]]:
    """Non-overlapping spans of ``value`` matched by ``found`` (earlier detectors win)."""
    spans: list[tuple[int, int, Detector]] = []
    for detector in found:
        for start, end in detector.spans(value):
            if all(end <= s or start >= e for s, e, _ in spans):
                spans.append((start, end, detector))
    spans.sort(key=lambda s: s[0])
    return spans
