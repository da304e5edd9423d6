/* What the C code must agree on with Python (runner/_native/_contract.c).
 *
 * Every value here is Python's: runner/_native/loader.py hands it over once with
 * configure() (the literal guard's words from runner.gateway.policy.guard, the
 * commands whose tag counts rows from runner.gateway.wire, the outcome's and the
 * statement's JSON layouts from runner.audit.entries, an audit entry's hashed text
 * and journal line from runner.audit.chain). Until then a Lane cannot be made and
 * the readers below refuse. The readers each have a Python twin that stays the
 * reference (runner/_native/reference.py, tests/native/test_native_properties.py). */
#ifndef SIGNOFF_CONTRACT_H
#define SIGNOFF_CONTRACT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "_speedups_core.h"

/* 1 once configure() has run; else 0 with a RuntimeError set. */
int contract_ready(void);

/* The kinds of the entries a lane queues (audit.chain.EntryKind members). */
extern PyObject *contract_statement_kind;
extern PyObject *contract_outcome_kind;

/* Whether s[0:n] holds a guard word, ASCII letters folded (policy.needs_literal_guard
 * on an ASCII text: the lane reads no other). */
int contract_literal_guard(const unsigned char *s, Py_ssize_t n);

/* The rows a CommandComplete tag reports (wire.rows_from_tag); -1 for its None,
 * -2 when the count is too long to read here (the caller leaves the tag to Python). */
long long contract_tag_rows(const char *tag, Py_ssize_t n);

/* outcome_data_json of a completed statement with this tag and duration; NULL with
 * an exception set (OverflowError when the tag's row count is too long). */
PyObject *contract_outcome_data(const char *tag, Py_ssize_t size, long long us);

/* The statement entry's data of an allowed text: ``prefix`` (the cached data up to
 * its sha256, auditlog.statement_data_prefix), completed with the text's sha256 and
 * the text as statement_data_json lays them out. */
PyObject *contract_statement_data(PyObject *prefix, const unsigned char *text, Py_ssize_t size);

/* Append the journal lines of ``prepared`` (audit.chain's (kind, session_id, ref,
 * data text, ...) tuples) chained after (seq, prev) to ``out``, as chain_rows writes
 * them; ``prev`` becomes the last entry's hash. 0, or -1 with an exception set. */
int contract_chain_into(Buffer *out, PyObject *prepared, long long seq, char prev[64],
                        const char *ts, Py_ssize_t ts_size);

/* One simple Query message, exactly d[0:n], that the lane may look up in its cache:
 * its text's [start, end) within d and its literal mask (a new reference) in *key;
 * 1, 0 when it is not the lane's (Python decides it), -1 with an exception set. */
int contract_query_key(const unsigned char *d, Py_ssize_t n, PyObject **key, Py_ssize_t *start,
                       Py_ssize_t *end);

/* Where the parts of the extended protocol's one-shot shape are in a read. */
typedef struct {
    Py_ssize_t text_at, text_size; /* the Parse text */
    int described;
    Py_ssize_t execute_at, execute_end;
} OneShot;

/* Parse (unnamed), Bind (unnamed portal of the unnamed statement), [Describe the
 * portal], Execute (all rows), Sync: exactly d[0:n]? 1 and where its parts are; 0. */
int contract_one_shot_shape(const unsigned char *d, Py_ssize_t n, OneShot *shape);

/* configure() and the readers' test entry points, added to the module. */
int contract_add_to_module(PyObject *module);

#endif
