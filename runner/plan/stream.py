"""Lint that streams: SQL read in bounded pieces, each statement analysed and
rendered as soon as it is split, nothing kept but what the summary needs.

``signoff lint`` on a 50 MB dump must not hold 880,000 statements, their
tokens and their syntax trees at once. ``read_statements`` splits a text
stream piece by piece, cutting only where ``statements.clean_cut`` says the
statements before the cut are the same whether the rest is split with them or
not, so the statements (their text, lines and so their sha256) are exactly
those of ``split_statements(whole_text, psql_script=True)``. ``lint_stream``
analyses them in order with one ``Analysis`` (as ``build_plan`` does), hands
each to a sink, and keeps only counts, the exit status inputs and the plan hash,
which it computes incrementally over the same canonical JSON as
``model.plan_hash``.

The text and JSON sinks write the same document as ``render.text`` (lint's
statements with findings only) and ``Plan.dumps``. The text report starts with
the verdict and hash, known only at the end, so its body is spooled to a
temporary file (in memory up to a few MB) and written after the header.
"""

from __future__ import annotations

import gc
import hashlib
import json
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import IO, Protocol

from sqlglot.errors import TokenError

from runner.plan import render
from runner.plan.analyse import Analysis
from runner.plan.build import ServerFacts, analysis_basis
from runner.plan.model import (
    SHORT_HASH_LEN,
    AnalysisBasis,
    Decision,
    Plan,
    Statement,
    canonical_json,
)
from runner.plan.policy import Policy
from runner.plan.rules import RULESET_VERSION
from runner.plan.schema import SchemaState
from runner.plan.statements import (
    MetaCommand,
    RawStatement,
    assemble,
    clean_cut,
    copy_data_end,
    meta_only,
    scan,
    split_untokenizable,
)

# Characters read at a time. A statement longer than this (a big function body)
# makes the piece grow until it ends; memory is a few times the longest statement.
CHUNK_CHARS = 1 << 18


class TextSource(Protocol):
    """What lint reads from: a text file, stdin, or anything with ``read(size)``."""

    def read(self, size: int = -1, /) -> str: ...


def read_statements(
    stream: TextSource, *, chunk_chars: int = CHUNK_CHARS
) -> Iterator[RawStatement]:
    """The statements of a psql script, read ``chunk_chars`` at a time.

    The same statements as ``split_statements(stream.read(), psql_script=True)``.
    The last statement is held back until the end: meta-commands after it in
    the script are attached to it.
    """
    pending = ""
    line = 1
    held: RawStatement | None = None
    want = chunk_chars
    copying = False  # inside COPY data that goes on past what has been read
    while True:
        chunk = stream.read(want)
        if not chunk:
            break
        pending += chunk
        if copying:  # drop the data's whole lines, up to its `\.` line
            skipped, done = copy_data_end(pending, 0, at_end=False)
            line += pending.count("\n", 0, skipped)
            pending = pending[skipped:]
            copying = not done
            if copying:
                continue
        want = max(chunk_chars, len(pending))  # until a cut: read as much again
        limit = pending.rfind("\n") + 1
        if limit == 0:
            continue
        piece = pending[:limit]
        try:
            tokens, metas = scan(piece, psql_script=True)
        except TokenError:
            continue  # cut inside a string, a comment or a dollar quote: read on
        cut = clean_cut(piece, tokens)
        for span in metas:
            # Never between a COPY and its data, nor inside the data: past it, or
            # (it goes on past the piece) the whole piece, the rest skipped as read.
            if span.data and span.start <= cut and (cut < span.end or not span.closed):
                cut = span.end
                copying = not span.closed
        if cut == 0:
            continue
        statements, _ = assemble(
            piece,
            [t for t in tokens if t.start < cut],
            [m for m in metas if m[0] < cut],
            line,
            cut,
        )
        for statement in statements:
            if held is not None:
                yield held
            held = statement
        line += piece.count("\n", 0, cut)
        pending = pending[cut:]
        want = chunk_chars
    if copying:
        pending = ""  # the data ran to the end of the script, as psql reads it
    statements, trailing = _split_rest(pending, line)
    for statement in statements:
        if held is not None:
            yield held
        held = statement
    if trailing:
        held = meta_only(trailing) if held is None else _with_metas(held, trailing)
    if held is not None:
        yield held


def _split_rest(text: str, line: int) -> tuple[list[RawStatement], list[MetaCommand]]:
    try:
        tokens, metas = scan(text, psql_script=True)
    except TokenError:
        return split_untokenizable(text, line)
    return assemble(text, tokens, metas, line, len(text))


def _with_metas(statement: RawStatement, metas: list[MetaCommand]) -> RawStatement:
    return replace(statement, meta_commands=(*statement.meta_commands, *metas))


class PlanHasher:
    """``model.plan_hash`` fed one statement sha256 at a time (no revisions: lint)."""

    def __init__(self, target: str, ruleset: str) -> None:
        marker = "\x00statements\x00"
        document = canonical_json(
            {"target": target, "revisions": [], "statements": [marker], "ruleset": ruleset}
        )
        head, _, tail = document.partition(json.dumps(marker))
        self._tail = tail
        self._digest = hashlib.sha256(head.encode("utf-8"))
        self._first = True

    def add(self, sha256: str) -> None:
        self._digest.update((("" if self._first else ",") + f'"{sha256}"').encode("ascii"))
        self._first = False

    def hexdigest(self) -> str:
        digest = self._digest.copy()
        digest.update(self._tail.encode("utf-8"))
        return digest.hexdigest()


@dataclass
class LintSummary:
    """What is left of a streamed lint once every statement has been written out."""

    target: str
    basis: AnalysisBasis
    ruleset: str = RULESET_VERSION
    statements: int = 0
    statements_needing_approval: int = 0
    denied: bool = False
    category_counts: dict[str, int] = field(default_factory=dict)
    # The highest severity rank of a finding that is not advisory (0: none).
    worst_severity_rank: int = 0
    hash: str = ""

    @property
    def needs_approval(self) -> bool:
        return self.statements_needing_approval > 0

    @property
    def short_hash(self) -> str:
        return self.hash[:SHORT_HASH_LEN]

    def verdict(self) -> str:
        """As ``render.verdict`` says it of the plan."""
        if self.denied:
            return "denied: a finding blocks this plan as written"
        if self.needs_approval:
            count = self.statements_needing_approval
            return f"needs approval: {count} statement{'s' if count != 1 else ''}"
        return "nothing needs approval"

    def count(self, statement: Statement) -> None:
        self.statements += 1
        if statement.needs_approval:
            self.statements_needing_approval += 1
        for finding in statement.findings:
            key = finding.category.value
            self.category_counts[key] = self.category_counts.get(key, 0) + 1
            if finding.decision is Decision.DENY:
                self.denied = True
            if finding.decision is not Decision.ADVISORY:
                self.worst_severity_rank = max(self.worst_severity_rank, finding.severity.rank)


class Sink(Protocol):
    """Where a streamed lint writes: told the basis first, each statement, the summary last."""

    needs_fingerprints: bool

    def begin(self, summary: LintSummary) -> None: ...
    def statement(self, statement: Statement) -> None: ...
    def end(self, summary: LintSummary) -> None: ...


class TextSink:
    """``render.text(plan, all_statements=False)``, written as the statements come."""

    needs_fingerprints = False

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self._body: IO[str] = tempfile.SpooledTemporaryFile(  # noqa: SIM115 (closed in end())
            max_size=8 << 20, mode="w+", encoding="utf-8"
        )

    def begin(self, summary: LintSummary) -> None:
        pass

    def statement(self, statement: Statement) -> None:
        if not statement.findings:
            return
        lines = [f"  {statement.source}:{statement.line}  {render.first_line(statement)}"]
        lines.extend(f"      {render.finding_line(f)}" for f in statement.findings)
        self._body.write("\n".join(lines) + "\n")

    def end(self, summary: LintSummary) -> None:
        self.out.write(
            f"Signoff plan {summary.short_hash} for {summary.target}: 0 revision(s), "
            f"{summary.statements} statement(s) — {summary.verdict()}\n"
            f"  analysed for {_basis_text(summary.basis)}; rules {summary.ruleset}\n"
        )
        self._body.seek(0)
        shutil.copyfileobj(self._body, self.out)
        self._body.close()
        counts = summary.category_counts
        if counts:
            parts = ", ".join(f"{n} {c}" for c, n in sorted(counts.items()))
            last = f"Findings: {parts}. Plan hash {summary.hash}"
        else:
            last = f"No findings. Plan hash {summary.hash}"
        self.out.write(f"\n{last}\n")


def _basis_text(basis: AnalysisBasis) -> str:
    """As ``render`` says it (its ``_basis`` takes a whole plan)."""
    empty = Plan(target="", ruleset="", revisions=(), statements=(), basis=basis)
    return render._basis(empty)  # one wording for both renderers


class JsonSink:
    """``Plan.dumps()`` of the plan, written statement by statement."""

    needs_fingerprints = True

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self._first = True

    def begin(self, summary: LintSummary) -> None:
        empty = Plan(summary.target, summary.ruleset, (), (), summary.basis)
        document = empty.dumps()
        head, _, _ = document.partition('"statements": []')
        self.out.write(head + '"statements": [')

    def statement(self, statement: Statement) -> None:
        text = indented_json(statement.to_json(), "    ")
        self.out.write(("\n    " if self._first else ",\n    ") + text)
        self._first = False

    def end(self, summary: LintSummary) -> None:
        closing = "]" if self._first else "\n  ]"
        fields = {
            "needs_approval": summary.needs_approval,
            "hash": summary.hash,
            "short_hash": summary.short_hash,
        }
        # The fields after "statements" in Plan.to_json, at the document's indent.
        self.out.write(closing + "," + json.dumps(fields, indent=2)[1:] + "\n")


_encode_string = json.encoder.encode_basestring


def indented_json(value: object, indent: str) -> str:
    """``json.dumps(value, indent=2, ensure_ascii=False)`` nested at ``indent``.

    json's own encoder falls back to pure Python whenever an indent is asked
    for, and a report holds one document per statement; this writes the same
    bytes for what a plan holds (dicts, lists, strings, ints, bools, None).
    """
    if isinstance(value, str):
        return str(_encode_string(value))
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return int.__repr__(value)
    inner = indent + "  "
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [
            f"{inner}{_encode_string(key)}: {indented_json(item, inner)}"
            for key, item in value.items()
        ]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(value, list | tuple):
        if not value:
            return "[]"
        items = [inner + indented_json(item, inner) for item in value]
        return "[\n" + ",\n".join(items) + "\n" + indent + "]"
    return json.dumps(value, ensure_ascii=False)  # floats and the like, as json writes them


def lint_stream(
    sources: Iterable[tuple[str, TextSource]],
    sink: Sink,
    *,
    policy: Policy,
    facts: ServerFacts | None = None,
    chunk_chars: int = CHUNK_CHARS,
) -> LintSummary:
    """Lint ``(name, stream)`` sources in order as one plan, written to ``sink``."""
    facts = facts or ServerFacts()
    basis = analysis_basis(policy, facts)
    analysis = Analysis(
        policy,
        server_version=basis.server_version_num,
        schema=SchemaState.from_catalog(facts.columns),
        reuse_parses=True,
        functions=facts.functions,
    )
    summary = LintSummary(target=policy.target, basis=basis)
    hasher = PlanHasher(policy.target, summary.ruleset)
    sink.begin(summary)
    with _few_collections():
        _lint_all(sources, sink, analysis, summary, hasher, chunk_chars)
    summary.hash = hasher.hexdigest()
    sink.end(summary)
    return summary


# Statements between two full collections: the young generations are collected
# as usual, but Python postpones full ones as the heap grows, and trees kept a
# while (the parse reuse) die old; bounded memory needs one now and then.
_FULL_COLLECTION_EVERY = 100_000


@contextmanager
def _few_collections() -> Iterator[None]:
    """Fewer garbage collections while statements stream through.

    Each statement's syntax tree is garbage a moment later (its parent links
    make cycles, so the collector is needed), but the modules, the rule
    catalogue and the schema state live on: frozen, the collector stops
    rescanning them, and a larger first generation collects less often.
    """
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(max(threshold[0], 20_000), *threshold[1:])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


def _lint_all(
    sources: Iterable[tuple[str, TextSource]],
    sink: Sink,
    analysis: Analysis,
    summary: LintSummary,
    hasher: PlanHasher,
    chunk_chars: int,
) -> None:
    fingerprints = sink.needs_fingerprints
    index = 0
    for name, stream in sources:
        for raw in read_statements(stream, chunk_chars=chunk_chars):
            analysed = analysis.analyse_one(raw)
            statement = Statement(
                index=index,
                revision=None,
                source=name,
                line=raw.line,
                end_line=raw.end_line,
                text=raw.text,
                sha256=raw.sha256,
                fingerprint=raw.fingerprint if fingerprints else "",
                kind=analysed.kind,
                transaction=analysed.transaction,
                findings=analysed.findings,
            )
            index += 1
            if index % _FULL_COLLECTION_EVERY == 0:
                gc.collect()  # the old trees (parses kept a while) the young passes miss
            hasher.add(statement.sha256)
            summary.count(statement)
            sink.statement(statement)


STREAM_FORMATS = ("text", "json")


def sink_for(fmt: str, out: IO[str]) -> Sink:
    if fmt == "json":
        return JsonSink(out)
    if fmt == "text":
        return TextSink(out)
    raise ValueError(f"no streaming renderer for {fmt!r}")


__all__ = [
    "CHUNK_CHARS",
    "STREAM_FORMATS",
    "JsonSink",
    "LintSummary",
    "PlanHasher",
    "TextSink",
    "lint_stream",
    "read_statements",
    "sink_for",
]
