"""No text that holds a literal guard word is decided from the C lane's cache.

A text that might touch standard_conforming_strings (``policy.guard``'s
``LITERAL_GUARD_WORDS``, in any case) is decided statement by statement by the
Python relay, never from a cache: its literal values matter. The lane is handed
those words (runner/_native/contract.py); these tests run a real gateway, put a
literal mask in the lane's cache, and send texts with that very mask whose literal
holds a guard word, then texts spelling the guards as SQL, by simple Query and by
the extended protocol's one-shot. The lane's ``decided`` count must not move on
any of them (and does move on the plain text sent after each: the lane was there
to take it); the relay records each.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from audit_journal import journal_path, read_entries
from gateway_harness import Gateway, running_gateway
from pgclient import RawClient, bind, describe_portal, execute

from runner._native.loader import native
from runner.gateway import wire
from runner.gateway.policy.guard import LITERAL_GUARD_WORDS

pytestmark = pytest.mark.skipif(native is None, reason="the C extension is not built")

# The lane decides this mask from its cache once Python has allowed one text of it.
CACHED = "SELECT mrn FROM patients WHERE mrn = '{}'"


def spellings(word: str) -> list[str]:
    return sorted({word, word.upper(), word.title(), word.swapcase(), word[:1].upper() + word[1:]})


# Each guard word, in several cases, as the literal of a text with the cached mask.
IN_LITERALS = [CACHED.format(spelt) for word in LITERAL_GUARD_WORDS for spelt in spellings(word)]
# The guards spelt as SQL.
AS_SQL = [
    "SELECT set_config('application_name', 'x', false)",
    "SELECT Set_Config('standard_conforming_strings', 'off', false)",
    "SELECT U&'d\\0061t'",
    'SELECT u&"mrn" FROM patients WHERE id = 1',
    "SHOW standard_conforming_strings",
    "SHOW STANDARD_CONFORMING_STRINGS",
    "SET standard_conforming_strings = on",
    "SET Standard_Conforming_Strings TO off",
]


@pytest.fixture
def gateway(
    scratch_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Gateway]:
    with running_gateway(scratch_db_url, tmp_path, monkeypatch) as running:
        yield running


@pytest.fixture
def client(gateway: Gateway) -> Iterator[RawClient]:
    session = gateway.session()
    client = RawClient(gateway.pg_port)
    try:
        started = client.startup(session["session_id"], "ehr", session["secret"])
        assert started[-1][0] == "Z", started
        time.sleep(0.1)  # the relay and its lane take over just after the startup
        yield client
    finally:
        client.close()


def decided(gateway: Gateway) -> int:
    """The statements lanes have decided from their caches so far."""
    service = gateway.running.running.service
    assert service is not None
    count: int = service.writer.lane_queue.decided
    return count


def recorded_texts(gateway: Gateway) -> list[str]:
    entries = read_entries(journal_path(gateway.state_path))
    return [entry["data"]["text"] for entry in entries if entry["kind"] == "statement"]


def one_shot(client: RawClient, text: str) -> list[tuple[str, bytes]]:
    client.send(wire.parse(b"", text), bind(b"", b""), describe_portal(), execute(), wire.sync())
    return client.until("Z")


def test_the_guarded_words_are_policys() -> None:
    """What the lane was handed is the policy's tuple (and it holds the known guards)."""
    assert {"conforming", "set_config", "u&"} <= set(LITERAL_GUARD_WORDS)


@pytest.mark.parametrize("texts", [IN_LITERALS, AS_SQL], ids=["in-literals", "as-sql"])
def test_a_guarded_query_is_never_decided_from_the_lanes_cache(
    gateway: Gateway, client: RawClient, texts: list[str]
) -> None:
    client.query(CACHED.format("M1"))  # Python decides it and caches its mask
    before = decided(gateway)
    assert client.query(CACHED.format("M2"))[-1][0] == "Z"
    assert decided(gateway) == before + 1  # the lane takes the mask from here on
    for number, text in enumerate(texts, start=3):
        before = decided(gateway)
        answer = client.query(text)
        assert answer[-1][0] == "Z", (text, answer)
        assert decided(gateway) == before, f"the lane decided {text!r} from its cache"
        # and it was there to take the next plain text of the cached mask
        client.query(CACHED.format(f"M{number}"))
        assert decided(gateway) == before + 1, text
    recorded = recorded_texts(gateway)
    missing = [text for text in texts if text not in recorded]
    assert not missing, f"the relay recorded no statement entry for {missing}"


@pytest.mark.parametrize("texts", [IN_LITERALS, AS_SQL[:4]], ids=["in-literals", "as-sql"])
def test_a_guarded_one_shot_is_never_decided_from_the_lanes_cache(
    gateway: Gateway, client: RawClient, texts: list[str]
) -> None:
    plain = "SELECT mrn FROM patients WHERE id = 1"
    one_shot(client, plain)  # Python decides it and caches the text
    before = decided(gateway)
    one_shot(client, plain)
    assert decided(gateway) == before + 1
    for text in texts:
        before = decided(gateway)
        for _ in range(2):  # a second run would come from the cache if it had been put there
            answer = one_shot(client, text)
            assert answer[-1][0] == "Z", (text, answer)
        assert decided(gateway) == before, f"the lane decided {text!r} from its cache"
        one_shot(client, plain)
        assert decided(gateway) == before + 1, text


def test_the_connection_keeps_standard_conforming_strings_on(
    gateway: Gateway, client: RawClient
) -> None:
    """After every guarded text went through, this connection's server still reads
    literals as the analysis does (the relay refused whatever could turn it off)."""
    for text in [*IN_LITERALS, *AS_SQL]:
        assert client.query(text)[-1][0] == "Z", text
    answer = client.query("SHOW standard_conforming_strings")
    rows = [body for kind, body in answer if kind == "D"]
    assert rows and rows[0].endswith(b"on"), answer
