"""The C code holds none of the values it must agree on with Python: it is handed
them once (runner/_native/contract.py), refuses to work before, and writes
whatever Python's layouts say."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from runner._native.contract import ContractError, contract, layout
from runner._native.loader import extension
from runner.audit.chain import EntryKind
from runner.gateway import wire
from runner.gateway.policy.guard import LITERAL_GUARD_WORDS


def run_raw(code: str) -> str:
    """``code`` in a fresh interpreter that imports the extension itself (not through
    the loader, so nothing is configured); its stdout."""
    program = "from runner._native import _speedups as s\n" + textwrap.dedent(code)
    done = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_contract_is_the_python_owners_values() -> None:
    values = contract()
    assert values.guard_words is LITERAL_GUARD_WORDS
    assert set(values.row_commands) == set(wire._ROW_COMMANDS)
    assert values.outcome_layout.count("tag") == 2 and "rows" in values.outcome_layout
    assert (values.statement_kind, values.outcome_kind) == (EntryKind.STATEMENT, EntryKind.OUTCOME)


def test_a_layout_missing_a_slot_is_refused() -> None:
    assert layout("a<T>b", {"<T>": "tag"}, {"tag": 1}) == ("a", "tag", "b")
    with pytest.raises(ContractError, match="slots"):
        layout("a<T>b", {"<T>": "tag"}, {"tag": 2})
    with pytest.raises(ContractError, match="slots"):
        layout("ab", {"<T>": "tag"}, {"tag": 1})


built = pytest.mark.skipif(
    extension() is None, reason="the C extension is not built (or SIGNOFF_PURE_PYTHON=1)"
)


@built
def test_configure_is_once() -> None:
    module = extension()
    assert module is not None
    with pytest.raises(RuntimeError, match="configured once"):
        module.configure(*contract())


@built
def test_nothing_runs_unconfigured() -> None:
    out = run_raw(
        """
        calls = {
            "Lane": lambda: s.Lane(None, print, print, s.AuditQueue(print), "so", {}, {}, 1),
            "chain_lines": lambda: s.chain_lines([], 0, "0" * 64, "ts"),
            "journal_append": lambda: s.journal_append(0, [], 0, "0" * 64, 0, False),
            "outcome_data": lambda: s.outcome_data("SELECT 1", 5),
            "_query_key": lambda: s._query_key(b"Q\\0\\0\\0\\x0dSELECT 1\\0"),
            "_literal_guard": lambda: s._literal_guard(b"x"),
            "_tag_rows": lambda: s._tag_rows("SELECT 1"),
            "_statement_data": lambda: s._statement_data("{", b"x"),
        }
        for name, call in calls.items():
            try:
                call()
            except RuntimeError as refused:
                print(name, "not configured" in str(refused))
            else:
                print(name, "ran")
        """
    )
    assert out.split() == [
        word
        for name in (
            "Lane", "chain_lines", "journal_append", "outcome_data", "_query_key",
            "_literal_guard", "_tag_rows", "_statement_data",
        )
        for word in (name, "True")
    ]  # fmt: skip


@built
def test_the_c_code_writes_whatever_python_hands_it() -> None:
    """Other words, other commands, other layouts: C follows them (it has none of its
    own to fall back on)."""
    out = run_raw(
        """
        s.configure(
            ("zebra",),
            ("FOO",),
            ("<", "tag", "|", "rows", "|", "duration_ms", ">"),
            ("[", "text", "]"),
            ("", "prev_hash", ":", "seq", ":", "data", ":", "kind", ":", "ref", ":",
             "session_id", ":", "ts", ""),
            ("", "seq", " ", "hash", " ", "kind", "\\n"),
            "statement",
            "outcome",
        )
        print(s._literal_guard(b"a ZEBRA"), s._literal_guard(b"set_config u& conforming"))
        print(s._tag_rows("FOO 3"), s._tag_rows("SELECT 3"))
        print(s.outcome_data("FOO 7", 1500))
        print(s._statement_data("{", b'x"y'))
        lines, last = s.chain_lines([("grant", None, 4, '{"a":1}', None)], 9, "f" * 64, "T")
        import hashlib
        hashed = "f" * 64 + ':10:{"a":1}:"grant":4:null:"T"'
        print(lines == f'10 {hashlib.sha256(hashed.encode()).hexdigest()} "grant"\\n'.encode())
        """
    )
    assert out.splitlines() == [
        "True False",
        "3 None",
        '<"FOO 7"|7|1.5>',
        "{" + "[" + '"x\\"y"' + "]",
        "True",
    ]


@built
def test_configure_refuses_what_c_could_not_match() -> None:
    out = run_raw(
        """
        tail = (
            ("", "sha256", "", "text", ""), ("", "seq", ""), ("", "hash", ""),
            "statement", "outcome",
        )
        outcome = ("", "tag", "")
        for args in [
            (("Conforming",), ("SELECT",), outcome, *tail),  # C folds A-Z: never matched
            (("a b",), ("SELECT",), outcome, *tail),
            ((), ("SELECT",), outcome, *tail),
            (("x",) * 17, ("SELECT",), outcome, *tail),
            (("x",), ("SELECT",), ("", "sha256", ""), *tail),  # not an outcome slot
            (("x",), ("SELECT",), ("", "tag"), *tail),  # no literal after the slot
        ]:
            try:
                s.configure(*args)
            except ValueError as refused:
                print("refused:", str(refused).split(":")[0])
            else:
                print("configured")
        """
    )
    assert out.splitlines() == [
        "refused: guard_words",
        "refused: guard_words",
        "refused: guard_words",
        "refused: guard_words",
        "refused: outcome_layout",
        "refused: outcome_layout",
    ]


@built
def test_the_first_calls_from_several_threads_configure_once() -> None:
    """The audit writer's thread and the event loop may both be first."""
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import threading
                from runner._native.loader import native
                errors = []
                def first(i):
                    try:
                        if i % 2:
                            native.chain_lines([], 0, "0" * 64, "ts")
                        else:
                            native.outcome_data("SELECT 1", i)
                    except Exception as error:
                        errors.append(error)
                threads = [threading.Thread(target=first, args=(i,)) for i in range(16)]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                print(errors, native.configured)
                """
            ),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[]", "True"]
