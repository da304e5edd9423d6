/* runner._speedups: the gateway's per-statement hot path, in C.
 *
 * Two functions, each with a pure-Python twin that stays the reference (the
 * tests run both on the same inputs and require equal results):
 *
 *   literal_shape(sql: str) -> tuple[str, int, int] | None
 *       The text with each plain literal (a standard '...' string, a decimal
 *       number, a $n parameter) replaced by "?", and the [start, end) span of
 *       the text split_statements would give for it, when the text is one
 *       statement. None when anything is not plainly simple (a comment, a
 *       dollar quote, a prefixed or backslashed string, non-ASCII text, more
 *       than one statement, ...): the caller then tokenizes with sqlglot. It
 *       only ever answers for texts where "same mask" implies "same sqlglot
 *       fingerprint", so the mask is a sound cache key.
 *
 *   chain_lines(prepared: list, last_seq: int, last_hash: str, ts: str)
 *       -> tuple[bytes, str]
 *       The audit journal lines of ``prepared`` (store._Prepared tuples:
 *       kind, session_id, ref, canonical data text, ...) chained after
 *       (last_seq, last_hash), and the last entry's hash: exactly what
 *       store._chain_rows writes, hash = sha256(prev_hash + canonical body).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <dlfcn.h>
#include <stdint.h>
#include <string.h>

/* ---------------------------------------------------------------- SHA-256 */

typedef struct {
    uint32_t h[8];
    uint64_t length; /* bytes hashed so far */
    uint8_t block[64];
    size_t used;
} Sha256;

static const uint32_t SHA_K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

#define ROTR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha256_compress(uint32_t h[8], const uint8_t *p) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++) {
        w[i] = ((uint32_t)p[4 * i] << 24) | ((uint32_t)p[4 * i + 1] << 16) |
               ((uint32_t)p[4 * i + 2] << 8) | (uint32_t)p[4 * i + 3];
    }
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ROTR(w[i - 15], 7) ^ ROTR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ROTR(w[i - 2], 17) ^ ROTR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = k + (ROTR(e, 6) ^ ROTR(e, 11) ^ ROTR(e, 25)) + ((e & f) ^ (~e & g)) +
                      SHA_K[i] + w[i];
        uint32_t t2 = (ROTR(a, 2) ^ ROTR(a, 13) ^ ROTR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        k = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
    h[5] += f;
    h[6] += g;
    h[7] += k;
}

static void sha256_init(Sha256 *s) {
    static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->h, iv, sizeof iv);
    s->length = 0;
    s->used = 0;
}

static void sha256_update(Sha256 *s, const uint8_t *p, size_t n) {
    s->length += n;
    if (s->used) {
        size_t take = 64 - s->used < n ? 64 - s->used : n;
        memcpy(s->block + s->used, p, take);
        s->used += take;
        p += take;
        n -= take;
        if (s->used < 64) return;
        sha256_compress(s->h, s->block);
        s->used = 0;
    }
    while (n >= 64) {
        sha256_compress(s->h, p);
        p += 64;
        n -= 64;
    }
    memcpy(s->block, p, n);
    s->used = n;
}

static void sha256_final(Sha256 *s, uint8_t digest[32]) {
    uint64_t bits = s->length * 8;
    uint8_t pad = 0x80, zero = 0, len[8];
    sha256_update(s, &pad, 1);
    while (s->used != 56) sha256_update(s, &zero, 1);
    for (int i = 0; i < 8; i++) len[i] = (uint8_t)(bits >> (56 - 8 * i));
    sha256_update(s, len, 8);
    for (int i = 0; i < 8; i++) {
        for (int j = 0; j < 4; j++) digest[4 * i + j] = (uint8_t)(s->h[i] >> (24 - 8 * j));
    }
}

/* The same digest from the process's libcrypto when it has one (CPython's hashlib
 * loads it): its assembly uses the CPU's SHA extensions, several times faster
 * than the portable code above, which is the fallback. */
typedef unsigned char *(*OneShotSha256)(const unsigned char *, size_t, unsigned char *);
static OneShotSha256 libcrypto_sha256 = NULL;
static int libcrypto_looked_up = 0;

static void find_libcrypto(void) {
    static const char *names[] = {"libcrypto.so.3", "libcrypto.so.1.1", "libcrypto.so", NULL};
    libcrypto_looked_up = 1;
    for (int i = 0; names[i] != NULL; i++) {
        void *handle = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (handle == NULL) continue;
        libcrypto_sha256 = (OneShotSha256)dlsym(handle, "SHA256");
        if (libcrypto_sha256 != NULL) return;
        dlclose(handle);
    }
}

static void digest_hex(const uint8_t *data, size_t size, int portable, char out[64]) {
    static const char hex[] = "0123456789abcdef";
    uint8_t digest[32];
    if (!libcrypto_looked_up) find_libcrypto();
    if (libcrypto_sha256 != NULL && !portable) {
        libcrypto_sha256(data, size, digest);
    } else {
        Sha256 sha;
        sha256_init(&sha);
        sha256_update(&sha, data, size);
        sha256_final(&sha, digest);
    }
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hex[digest[i] >> 4];
        out[2 * i + 1] = hex[digest[i] & 15];
    }
}

/* ------------------------------------------------------------ byte buffer */

typedef struct {
    char *data;
    size_t size;
    size_t capacity;
} Buffer;

static int buffer_reserve(Buffer *b, size_t extra) {
    if (b->size + extra <= b->capacity) return 0;
    size_t capacity = b->capacity ? b->capacity : 1024;
    while (capacity < b->size + extra) capacity *= 2;
    char *data = PyMem_Realloc(b->data, capacity);
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->data = data;
    b->capacity = capacity;
    return 0;
}

static int buffer_add(Buffer *b, const char *p, size_t n) {
    if (buffer_reserve(b, n) < 0) return -1;
    memcpy(b->data + b->size, p, n);
    b->size += n;
    return 0;
}

#define ADD_LITERAL(b, text) buffer_add((b), (text), sizeof(text) - 1)

/* json.dumps(text, ensure_ascii=False): only '"', '\\' and control characters
 * are escaped (Python's encode_basestring). */
static int buffer_add_json_string(Buffer *b, const char *p, Py_ssize_t n) {
    static const char hex[] = "0123456789abcdef";
    if (ADD_LITERAL(b, "\"") < 0) return -1;
    Py_ssize_t run = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        if (buffer_add(b, p + run, (size_t)(i - run)) < 0) return -1;
        run = i + 1;
        char escaped[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
        const char *out = escaped;
        size_t size = 6;
        switch (c) {
            case '"': out = "\\\""; size = 2; break;
            case '\\': out = "\\\\"; size = 2; break;
            case '\n': out = "\\n"; size = 2; break;
            case '\r': out = "\\r"; size = 2; break;
            case '\t': out = "\\t"; size = 2; break;
            case '\b': out = "\\b"; size = 2; break;
            case '\f': out = "\\f"; size = 2; break;
            default: break;
        }
        if (buffer_add(b, out, size) < 0) return -1;
    }
    if (buffer_add(b, p + run, (size_t)(n - run)) < 0) return -1;
    return ADD_LITERAL(b, "\"");
}

/* ------------------------------------------------------------ chain_lines */

static PyObject *chain_lines(PyObject *module, PyObject *args) {
    (void)module;
    PyObject *prepared;
    long long seq;
    const char *prev_in, *ts;
    Py_ssize_t prev_size, ts_size;
    if (!PyArg_ParseTuple(args, "O!Ls#s#", &PyList_Type, &prepared, &seq, &prev_in, &prev_size,
                          &ts, &ts_size)) {
        return NULL;
    }
    if (prev_size != 64) {
        PyErr_SetString(PyExc_ValueError, "last_hash must be 64 hex digits");
        return NULL;
    }
    char prev[64];
    memcpy(prev, prev_in, 64);
    Buffer out = {NULL, 0, 0};
    Buffer body = {NULL, 0, 0};
    Py_ssize_t count = PyList_GET_SIZE(prepared);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *item = PyList_GET_ITEM(prepared, i);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) < 4) {
            PyErr_SetString(PyExc_TypeError, "prepared entries must be tuples");
            goto fail;
        }
        PyObject *kind = PyTuple_GET_ITEM(item, 0);
        PyObject *session = PyTuple_GET_ITEM(item, 1);
        PyObject *ref = PyTuple_GET_ITEM(item, 2);
        PyObject *data = PyTuple_GET_ITEM(item, 3);
        Py_ssize_t kind_size, data_size, session_size = 0;
        const char *kind_text = PyUnicode_AsUTF8AndSize(kind, &kind_size);
        const char *data_text = kind_text ? PyUnicode_AsUTF8AndSize(data, &data_size) : NULL;
        const char *session_text = NULL;
        if (data_text && session != Py_None) {
            session_text = PyUnicode_AsUTF8AndSize(session, &session_size);
            if (session_text == NULL) goto fail;
        }
        if (data_text == NULL) goto fail;
        long long ref_value = 0;
        if (ref != Py_None) {
            ref_value = PyLong_AsLongLong(ref);
            if (ref_value == -1 && PyErr_Occurred()) goto fail;
        }
        seq += 1;
        char number[32];
        body.size = 0;
        /* the hash is taken over prev_hash + body: keep them contiguous */
        if (buffer_add(&body, prev, 64) < 0 || ADD_LITERAL(&body, "{\"data\":") < 0 ||
            buffer_add(&body, data_text, data_size) < 0 ||
            ADD_LITERAL(&body, ",\"kind\":") < 0 ||
            buffer_add_json_string(&body, kind_text, kind_size) < 0 ||
            ADD_LITERAL(&body, ",\"prev_hash\":\"") < 0 || buffer_add(&body, prev, 64) < 0 ||
            ADD_LITERAL(&body, "\",\"ref\":") < 0) {
            goto fail;
        }
        if (ref == Py_None) {
            if (ADD_LITERAL(&body, "null") < 0) goto fail;
        } else {
            int n = snprintf(number, sizeof number, "%lld", ref_value);
            if (buffer_add(&body, number, (size_t)n) < 0) goto fail;
        }
        int n = snprintf(number, sizeof number, "%lld", seq);
        if (ADD_LITERAL(&body, ",\"seq\":") < 0 || buffer_add(&body, number, (size_t)n) < 0 ||
            ADD_LITERAL(&body, ",\"session_id\":") < 0) {
            goto fail;
        }
        if (session_text == NULL) {
            if (ADD_LITERAL(&body, "null") < 0) goto fail;
        } else if (buffer_add_json_string(&body, session_text, session_size) < 0) {
            goto fail;
        }
        if (ADD_LITERAL(&body, ",\"ts\":") < 0 || buffer_add_json_string(&body, ts, ts_size) < 0 ||
            ADD_LITERAL(&body, "}") < 0) {
            goto fail;
        }
        digest_hex((const uint8_t *)body.data, body.size, 0, prev);
        /* the line: the body with "hash" added last */
        if (buffer_add(&out, body.data + 64, body.size - 65) < 0 ||
            ADD_LITERAL(&out, ",\"hash\":\"") < 0 || buffer_add(&out, prev, 64) < 0 ||
            ADD_LITERAL(&out, "\"}\n") < 0) {
            goto fail;
        }
    }
    PyObject *lines = PyBytes_FromStringAndSize(out.data ? out.data : "", (Py_ssize_t)out.size);
    PyMem_Free(out.data);
    PyMem_Free(body.data);
    if (lines == NULL) return NULL;
    PyObject *last = PyUnicode_FromStringAndSize(prev, 64);
    if (last == NULL) {
        Py_DECREF(lines);
        return NULL;
    }
    return Py_BuildValue("(NN)", lines, last);
fail:
    PyMem_Free(out.data);
    PyMem_Free(body.data);
    return NULL;
}

/* ---------------------------------------------------------- literal_shape */

static int is_space(unsigned char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static int is_ident_start(unsigned char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

/* '$' is a PostgreSQL identifier character too, but sqlglot may read a word
 * with one as the start of a dollar quote: such text is left to sqlglot. */
static int is_ident_char(unsigned char c) {
    return is_ident_start(c) || (c >= '0' && c <= '9');
}

static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

static PyObject *literal_shape(PyObject *module, PyObject *arg) {
    (void)module;
    if (!PyUnicode_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "literal_shape takes a str");
        return NULL;
    }
    if (!PyUnicode_IS_ASCII(arg)) Py_RETURN_NONE; /* str.isspace and offsets: ASCII only */
    const unsigned char *s = (const unsigned char *)PyUnicode_DATA(arg);
    Py_ssize_t n = PyUnicode_GET_LENGTH(arg);
    Buffer mask = {NULL, 0, 0};
    if (buffer_reserve(&mask, (size_t)n + 1) < 0) goto error;
    Py_ssize_t start = -1;     /* first character of the statement */
    Py_ssize_t end = -1;       /* just after its last token */
    int terminated = 0;        /* a ';' was seen: only whitespace may follow */
    int strings = 0, params = 0; /* sqlglot misreads some texts with both: not plain */
    Py_ssize_t i = 0, run = 0; /* s[run:i] is copied verbatim when a literal starts */
    while (i < n) {
        unsigned char c = s[i];
        if (is_space(c)) {
            i++;
            continue;
        }
        if (terminated) goto bail; /* a second statement (or a stray token) */
        if (c < 0x20 || c == 0x7f) goto bail;
        if (start < 0) start = i;
        if (c == ';') {
            terminated = 1;
            i++;
            continue;
        }
        if ((c == '-' && i + 1 < n && s[i + 1] == '-') || (c == '/' && i + 1 < n && s[i + 1] == '*')) {
            goto bail; /* a comment may hold a signoff directive */
        }
        if (c == '\'') {
            if (i > 0 && (is_ident_char(s[i - 1]) || s[i - 1] == '&')) goto bail; /* E'', U&'' */
            Py_ssize_t j = i + 1;
            for (;;) {
                if (j >= n) goto bail; /* unterminated */
                if (s[j] == '\\') goto bail; /* meaning depends on standard_conforming_strings */
                if (s[j] == '\'') {
                    if (j + 1 < n && s[j + 1] == '\'') {
                        j += 2;
                        continue;
                    }
                    break;
                }
                j++;
            }
            j++; /* past the closing quote */
            /* 'a' 'b' continues a string only across a newline; a quote right after
             * a string is its own token in sqlglot too, but keep it simple. */
            if (j < n && (s[j] == '\'' || is_ident_char(s[j]))) goto bail;
            if (buffer_add(&mask, (const char *)s + run, (size_t)(i - run)) < 0) goto error;
            if (ADD_LITERAL(&mask, "?") < 0) goto error;
            i = run = end = j;
            strings = 1;
            continue;
        }
        if (c == '"') {
            if (i > 0 && (is_ident_char(s[i - 1]) || s[i - 1] == '&')) goto bail; /* U&"" */
            Py_ssize_t j = i + 1;
            for (;;) {
                if (j >= n) goto bail;
                if (s[j] == '"') {
                    if (j + 1 < n && s[j + 1] == '"') {
                        j += 2;
                        continue;
                    }
                    break;
                }
                j++;
            }
            i = end = j + 1;
            continue;
        }
        if (c == '$') {
            if (i + 1 < n && is_digit(s[i + 1]) && !(i > 0 && is_ident_char(s[i - 1]))) {
                Py_ssize_t j = i + 1;
                while (j < n && is_digit(s[j])) j++;
                if (j < n && (is_ident_char(s[j]) || s[j] == '.')) goto bail;
                if (buffer_add(&mask, (const char *)s + run, (size_t)(i - run)) < 0) goto error;
                if (ADD_LITERAL(&mask, "?") < 0) goto error;
                i = run = end = j;
                params = 1;
                continue;
            }
            goto bail; /* a dollar quote */
        }
        if (is_digit(c)) {
            Py_ssize_t j = i;
            while (j < n && is_digit(s[j])) j++;
            if (j < n && s[j] == '.') {
                if (!(j + 1 < n && is_digit(s[j + 1]))) goto bail; /* "1." */
                j++;
                while (j < n && is_digit(s[j])) j++;
            }
            if (j < n && (s[j] == 'e' || s[j] == 'E')) {
                Py_ssize_t k = j + 1;
                if (k < n && (s[k] == '+' || s[k] == '-')) k++;
                if (!(k < n && is_digit(s[k]))) goto bail;
                while (k < n && is_digit(s[k])) k++;
                j = k;
            }
            /* 1_000, 0x1F, 1.5.2, 12abc: let the real tokenizer decide */
            if (j < n && (is_ident_char(s[j]) || s[j] == '.' || s[j] == '\'' || s[j] == '"')) {
                goto bail;
            }
            if (buffer_add(&mask, (const char *)s + run, (size_t)(i - run)) < 0) goto error;
            if (ADD_LITERAL(&mask, "?") < 0) goto error;
            i = run = end = j;
            continue;
        }
        if (is_ident_start(c)) {
            Py_ssize_t j = i + 1;
            while (j < n && is_ident_char(s[j])) j++;
            if (j < n && (s[j] == '\'' || s[j] == '"' || s[j] == '&')) goto bail; /* E'', U& */
            i = end = j;
            continue;
        }
        if (c == '.' && i + 1 < n && is_digit(s[i + 1])) goto bail; /* ".5" */
        /* operators and punctuation: verbatim, one character; anything unusual
         * (a backslash, a backtick, braces) is left to the real tokenizer */
        if (strchr("(),.:+-*/<>=!~^|%[]", c) == NULL) goto bail;
        i = end = i + 1;
    }
    if (start < 0 || end <= start) goto bail;
    /* sqlglot cannot tokenize "SELECT $1 = ''" (a $n, then a string at the end):
     * such a text must get the full analysis (unanalysable), not a cached answer */
    if (strings && params) goto bail;
    if (buffer_add(&mask, (const char *)s + run, (size_t)(n - run)) < 0) goto error;
    PyObject *text = PyUnicode_DecodeASCII(mask.data, (Py_ssize_t)mask.size, NULL);
    PyMem_Free(mask.data);
    if (text == NULL) return NULL;
    return Py_BuildValue("(Nnn)", text, start, end);
bail:
    PyMem_Free(mask.data);
    Py_RETURN_NONE;
error:
    PyMem_Free(mask.data);
    return NULL;
}

/* sha256_hex(data: bytes, portable: bool = False) -> str: for the tests, which
 * check both implementations against hashlib. */
static PyObject *sha256_hex_py(PyObject *module, PyObject *args) {
    (void)module;
    const char *data;
    Py_ssize_t size;
    int portable = 0;
    if (!PyArg_ParseTuple(args, "y#|p", &data, &size, &portable)) return NULL;
    char out[64];
    digest_hex((const uint8_t *)data, (size_t)size, portable, out);
    return PyUnicode_FromStringAndSize(out, 64);
}

/* ----------------------------------------------------------------- module */

static PyMethodDef methods[] = {
    {"chain_lines", chain_lines, METH_VARARGS,
     "chain_lines(prepared, last_seq, last_hash, ts) -> (journal lines, last hash)"},
    {"sha256_hex", sha256_hex_py, METH_VARARGS,
     "sha256_hex(data, portable=False) -> hex digest (libcrypto's, or the portable one)"},
    {"literal_shape", literal_shape, METH_O,
     "literal_shape(sql) -> (literal mask, start, end) of one plain statement, or None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "runner._speedups", "The gateway's hot path in C.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__speedups(void) { return PyModule_Create(&module); }
