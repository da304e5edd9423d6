"""Which statements ahead of a text could change how the server reads its backslashes.

A text whose string literals hold a backslash, decided while statements forwarded
before it have not yet reached their ReadyForQuery, is read by the server with
whatever standard_conforming_strings they left (the server reports a change only at
that ReadyForQuery). The relay refuses such a text only when it reads differently
with the setting off and one of those statements could have changed it
(``policy.guard``). This watch keeps the statements forwarded since the relay was
last settled and judges them only when such a text arrives (once each), so the
relay's hot path pays one append per forwarded statement.
"""

from __future__ import annotations

from collections.abc import Sequence

from runner.gateway.model import StatementDecision
from runner.gateway.policy.guard import backslashes_read_alike, may_change_literal_reading


class ReadingWatch:
    """The statements forwarded since the relay last settled, judged on demand."""

    __slots__ = ("ahead", "noted", "risky")

    def __init__(self) -> None:
        self.ahead: list[Sequence[StatementDecision]] = []
        self.noted = False  # a statement was forwarded through the relay since it settled
        self.risky = False  # one of those could change the reading, or one it never saw

    def forwarded(self, was_settled: bool, decisions: Sequence[StatementDecision]) -> None:
        """The relay forwarded ``decisions``' statements (``was_settled``: before it)."""
        if not self.noted:
            self.noted = True
            if not was_settled:
                # Unsettled by something the watch did not see (the C lane carried
                # a statement, then handed the connection back): assume the worst.
                self.risky = True
        if not decisions:
            self.risky = True  # a statement the C lane decided, handed back unseen
        elif not self.risky:
            self.ahead.append(decisions)

    def settled(self) -> None:
        """Every statement forwarded so far has reached its ReadyForQuery."""
        self.ahead.clear()
        self.noted = False
        self.risky = False

    def refuses(self, text: str) -> bool:
        """Whether ``text`` (holding a backslash, sent while the relay is not
        settled) must be refused: it reads differently with the setting off, and a
        statement ahead could have turned it off."""
        if backslashes_read_alike(text):
            return False
        if not self.noted:
            return True  # unsettled by what the watch never saw
        if not self.risky:
            for decisions in self.ahead:
                if any(may_change_literal_reading(d.text) for d in decisions):
                    self.risky = True
                    break
            self.ahead.clear()  # judged: the verdict so far is in ``risky``
        return self.risky
