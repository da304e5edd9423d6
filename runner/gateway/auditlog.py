"""Moved to runner/audit/ (chain, entries, verify, records, writer): these names stay
until every importer has moved, then this module goes.

``AuditWriter`` here also answers to ``submit_seqs``, the name ``submit`` had.
"""

from __future__ import annotations

from runner.audit import writer as _writer
from runner.audit.chain import canonical_data as canonical_data
from runner.audit.entries import event_entry as event_entry
from runner.audit.entries import outcome_data as outcome_data
from runner.audit.entries import outcome_data_json as outcome_data_json
from runner.audit.entries import outcome_entry as outcome_entry
from runner.audit.entries import statement_data as statement_data
from runner.audit.entries import statement_data_json as statement_data_json
from runner.audit.entries import statement_data_prefix as statement_data_prefix
from runner.audit.entries import statement_entry as statement_entry
from runner.audit.records import merge_records as merge_records
from runner.audit.verify import ChainReport as ChainReport
from runner.audit.verify import verify_chain as verify_chain
from runner.audit.writer import WriterStats as WriterStats


class AuditWriter(_writer.AuditWriter):
    submit_seqs = _writer.AuditWriter.submit
