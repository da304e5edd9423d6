/* The masking row rewriter (runner/gateway/masking/rewrite.py's RowMask.rewrite in C).
 *
 * rewrite(data, pos, n, width, plan, hits) -> (stop, bytes)
 *
 * Rewrites the whole DataRow messages of data[pos:n] (until another message or an
 * incomplete one) with the columns of ``plan`` changed, and returns where they stop
 * and their new bytes. ``plan`` is a tuple of (position, kind, arg), sorted by
 * position, kinds:
 *   0 NULL          the value becomes NULL
 *   1 CONST  bytes  the value becomes arg
 *   2 KEEP   int    every ASCII letter and digit but the last arg becomes '*'
 *                   (a value with no more than arg of them becomes all '*'); a value
 *                   with a non-ASCII byte goes to the fallback (kind 4's callable in
 *                   slot 3 of the tuple) so the Python and C results are the same
 *   3 DOMAIN bytes  "***" + the value from its last '@' (none, or first: arg)
 *   4 CALL   fn     fn(value bytes) -> bytes | None (Python decides: detectors,
 *                   pseudonyms, non-ASCII values); a result that is not the value
 *                   object itself adds the position to ``hits`` (a set)
 *   5 DETECT fn     as CALL, but a value with neither an '@' nor five ASCII digits
 *                   is left as it is without calling fn (rewrite.might_hold_bytes)
 *   6 PSEUDO key    "ps_" + the first 16 hex digits of HMAC-SHA256(key, value)
 *                   (replace.pseudonym); a non-ASCII value goes to the fallback
 * A NULL stays NULL. A row of another width than ``width`` becomes all NULL.
 * Python owns the policy; this only applies it (the pure-Python RowMask is the
 * reference, and tests/gateway/test_masking_native.py holds both to the same bytes).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>
#include <stdint.h>

typedef struct {
    Py_ssize_t position;
    int kind;
    PyObject *arg;      /* borrowed from the plan tuple */
    PyObject *fallback; /* KEEP: the callable for non-ASCII values (borrowed), or NULL */
    long keep;
} Action;

/* SHA-256 (FIPS 180-4), for the pseudonyms' HMAC: small and self-contained, checked
 * against Python's hmac by tests/gateway/test_masking_native.py. */
typedef struct { uint32_t h[8]; unsigned char block[64]; size_t used; uint64_t bits; } Sha;

static const uint32_t K256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha_block(Sha *s, const unsigned char *p) {
    uint32_t w[64], a, b, c, d, e, f, g, h;
    for (int i = 0; i < 16; i++)
        w[i] = ((uint32_t)p[4 * i] << 24) | ((uint32_t)p[4 * i + 1] << 16) |
               ((uint32_t)p[4 * i + 2] << 8) | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    a = s->h[0]; b = s->h[1]; c = s->h[2]; d = s->h[3];
    e = s->h[4]; f = s->h[5]; g = s->h[6]; h = s->h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = h + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + K256[i] + w[i];
        uint32_t t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        h = g; g = f; f = e; e = d + t1; d = c; c = b; b = a; a = t1 + t2;
    }
    s->h[0] += a; s->h[1] += b; s->h[2] += c; s->h[3] += d;
    s->h[4] += e; s->h[5] += f; s->h[6] += g; s->h[7] += h;
}

static void sha_init(Sha *s) {
    static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->h, iv, sizeof iv);
    s->used = 0;
    s->bits = 0;
}

static void sha_update(Sha *s, const unsigned char *p, size_t n) {
    s->bits += (uint64_t)n * 8;
    while (n) {
        size_t take = 64 - s->used;
        if (take > n) take = n;
        memcpy(s->block + s->used, p, take);
        s->used += take; p += take; n -= take;
        if (s->used == 64) { sha_block(s, s->block); s->used = 0; }
    }
}

static void sha_final(Sha *s, unsigned char out[32]) {
    uint64_t bits = s->bits;
    unsigned char pad = 0x80, zero = 0, len[8];
    sha_update(s, &pad, 1);
    while (s->used != 56) sha_update(s, &zero, 1);
    for (int i = 0; i < 8; i++) len[i] = (unsigned char)(bits >> (56 - 8 * i));
    sha_update(s, len, 8);
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (unsigned char)(s->h[i] >> 24); out[4 * i + 1] = (unsigned char)(s->h[i] >> 16);
        out[4 * i + 2] = (unsigned char)(s->h[i] >> 8); out[4 * i + 3] = (unsigned char)s->h[i];
    }
}

static void hmac_sha256(const unsigned char *key, size_t klen, const unsigned char *msg, size_t n,
                        unsigned char out[32]) {
    unsigned char k[64] = {0}, pad[64], inner[32];
    Sha s;
    if (klen > 64) { sha_init(&s); sha_update(&s, key, klen); sha_final(&s, k); }
    else memcpy(k, key, klen);
    for (int i = 0; i < 64; i++) pad[i] = k[i] ^ 0x36;
    sha_init(&s); sha_update(&s, pad, 64); sha_update(&s, msg, n); sha_final(&s, inner);
    for (int i = 0; i < 64; i++) pad[i] = k[i] ^ 0x5c;
    sha_init(&s); sha_update(&s, pad, 64); sha_update(&s, inner, 32); sha_final(&s, out);
}

typedef struct {
    char *buf;
    Py_ssize_t len, cap;
} Out;

static int out_grow(Out *o, Py_ssize_t more) {
    if (o->len + more <= o->cap) return 0;
    Py_ssize_t cap = o->cap ? o->cap : 4096;
    while (cap < o->len + more) cap *= 2;
    char *b = PyMem_Realloc(o->buf, (size_t)cap);
    if (!b) { PyErr_NoMemory(); return -1; }
    o->buf = b;
    o->cap = cap;
    return 0;
}

static int out_put(Out *o, const void *p, Py_ssize_t n) {
    if (out_grow(o, n) < 0) return -1;
    memcpy(o->buf + o->len, p, (size_t)n);
    o->len += n;
    return 0;
}

static inline uint32_t be32(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline void put_be32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24); p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8); p[3] = (unsigned char)v;
}

static int put_value(Out *o, const char *v, Py_ssize_t n) {
    unsigned char len[4];
    put_be32(len, (uint32_t)n);
    if (out_put(o, len, 4) < 0) return -1;
    return out_put(o, v, n);
}

static int put_null(Out *o) {
    static const unsigned char null[4] = {0xff, 0xff, 0xff, 0xff};
    return out_put(o, null, 4);
}

static int is_alnum_ascii(unsigned char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* The value through a Python callable; 1 when the result is not the value itself. */
static int call_fallback(Out *o, PyObject *fn, const unsigned char *v, Py_ssize_t n) {
    PyObject *value = PyBytes_FromStringAndSize((const char *)v, n);
    if (!value) return -1;
    PyObject *res = PyObject_CallOneArg(fn, value);
    if (!res) { Py_DECREF(value); return -1; }
    int changed = res != value;
    int rc;
    if (res == Py_None) rc = put_null(o);
    else if (PyBytes_Check(res)) rc = put_value(o, PyBytes_AS_STRING(res), PyBytes_GET_SIZE(res));
    else { PyErr_SetString(PyExc_TypeError, "a masking action returned neither bytes nor None"); rc = -1; }
    Py_DECREF(res);
    Py_DECREF(value);
    return rc < 0 ? -1 : changed;
}

static int apply(Out *o, const Action *a, const unsigned char *v, Py_ssize_t n, PyObject *hits) {
    switch (a->kind) {
    case 0:
        return put_null(o);
    case 1:
        return put_value(o, PyBytes_AS_STRING(a->arg), PyBytes_GET_SIZE(a->arg));
    case 2: {
        for (Py_ssize_t i = 0; i < n; i++)
            if (v[i] & 0x80) return call_fallback(o, a->fallback, v, n) < 0 ? -1 : 0;
        unsigned char len[4];
        put_be32(len, (uint32_t)n);
        if (out_put(o, len, 4) < 0 || out_grow(o, n) < 0) return -1;
        unsigned char *dst = (unsigned char *)o->buf + o->len;
        memcpy(dst, v, (size_t)n);
        long seen = 0;
        for (Py_ssize_t i = n - 1; i >= 0; i--) {
            if (is_alnum_ascii(dst[i]) && ++seen > a->keep) dst[i] = '*';
        }
        if (seen <= a->keep) memset(dst, '*', (size_t)n);
        o->len += n;
        return 0;
    }
    case 6: {
        for (Py_ssize_t i = 0; i < n; i++)
            if (v[i] & 0x80) return call_fallback(o, a->fallback, v, n) < 0 ? -1 : 0;
        unsigned char mac[32];
        char text[19] = "ps_";
        static const char hex[] = "0123456789abcdef";
        hmac_sha256((const unsigned char *)PyBytes_AS_STRING(a->arg),
                    (size_t)PyBytes_GET_SIZE(a->arg), v, (size_t)n, mac);
        for (int i = 0; i < 8; i++) {
            text[3 + 2 * i] = hex[mac[i] >> 4];
            text[4 + 2 * i] = hex[mac[i] & 15];
        }
        return put_value(o, text, 19);
    }
    case 3: {
        Py_ssize_t at = -1;
        for (Py_ssize_t i = n - 1; i >= 0; i--) if (v[i] == '@') { at = i; break; }
        if (at <= 0) return put_value(o, PyBytes_AS_STRING(a->arg), PyBytes_GET_SIZE(a->arg));
        unsigned char len[4];
        put_be32(len, (uint32_t)(3 + n - at));
        if (out_put(o, len, 4) < 0 || out_put(o, "***", 3) < 0) return -1;
        return out_put(o, v + at, n - at);
    }
    default: {
        if (a->kind == 5) {
            int digits = 0, any = 0;
            for (Py_ssize_t i = 0; i < n && !any; i++) {
                if (v[i] == '@') any = 1;
                else if (v[i] >= '0' && v[i] <= '9' && ++digits >= 5) any = 1;
            }
            if (!any) return put_value(o, (const char *)v, n);
        }
        int changed = call_fallback(o, a->arg, v, n);
        if (changed < 0) return -1;
        if (changed && hits != Py_None) {
            PyObject *p = PyLong_FromSsize_t(a->position);
            if (!p || PySet_Add(hits, p) < 0) { Py_XDECREF(p); return -1; }
            Py_DECREF(p);
        }
        return 0;
    }
    }
}

static PyObject *rewrite(PyObject *self, PyObject *args) {
    Py_buffer data;
    Py_ssize_t pos, n, width;
    PyObject *plan, *hits;
    if (!PyArg_ParseTuple(args, "y*nnnO!O", &data, &pos, &n, &width, &PyTuple_Type, &plan, &hits))
        return NULL;
    PyObject *result = NULL;
    Action *acts = NULL;
    Out o = {0};
    Py_ssize_t nacts = PyTuple_GET_SIZE(plan);
    if (n > data.len || pos < 0 || pos > n) {
        PyErr_SetString(PyExc_ValueError, "rewrite: bad bounds");
        goto done;
    }
    acts = PyMem_Calloc((size_t)(nacts ? nacts : 1), sizeof(Action));
    if (!acts) { PyErr_NoMemory(); goto done; }
    for (Py_ssize_t i = 0; i < nacts; i++) {
        PyObject *t = PyTuple_GET_ITEM(plan, i);
        if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) < 3) {
            PyErr_SetString(PyExc_TypeError, "rewrite: plan items are (position, kind, arg[, fallback])");
            goto done;
        }
        acts[i].position = PyLong_AsSsize_t(PyTuple_GET_ITEM(t, 0));
        acts[i].kind = (int)PyLong_AsLong(PyTuple_GET_ITEM(t, 1));
        acts[i].arg = PyTuple_GET_ITEM(t, 2);
        if (PyErr_Occurred()) goto done;
        if (acts[i].kind == 2 || acts[i].kind == 6) {
            if (acts[i].kind == 2) acts[i].keep = PyLong_AsLong(acts[i].arg);
            else if (!PyBytes_Check(acts[i].arg)) {
                PyErr_SetString(PyExc_TypeError, "rewrite: a pseudonym key must be bytes");
                goto done;
            }
            if (PyTuple_GET_SIZE(t) < 4) {
                PyErr_SetString(PyExc_TypeError, "rewrite: keep and pseudonym need a fallback");
                goto done;
            }
            acts[i].fallback = PyTuple_GET_ITEM(t, 3);
        } else if ((acts[i].kind == 1 || acts[i].kind == 3) && !PyBytes_Check(acts[i].arg)) {
            PyErr_SetString(PyExc_TypeError, "rewrite: constant must be bytes");
            goto done;
        }
        if (PyErr_Occurred()) goto done;
    }
    const unsigned char *buf = data.buf;
    while (n - pos >= 5 && buf[pos] == 'D') {
        Py_ssize_t length = be32(buf + pos + 1);
        Py_ssize_t end = pos + 1 + length;
        if (length < 6 || end > n) break;
        Py_ssize_t start = o.len;
        if (out_grow(&o, 5 + length) < 0) goto done;
        o.len += 5; /* the header, filled in below */
        Py_ssize_t count = ((Py_ssize_t)buf[pos + 5] << 8) | buf[pos + 6];
        if (out_put(&o, buf + pos + 5, 2) < 0) goto done;
        if (count != width) {
            for (Py_ssize_t c = 0; c < count; c++) if (put_null(&o) < 0) goto done;
        } else {
            Py_ssize_t p = pos + 7, last = p, a = 0;
            for (Py_ssize_t c = 0; c < count && a < nacts; c++) {
                if (p + 4 > end) { PyErr_SetString(PyExc_ValueError, "rewrite: truncated row"); goto done; }
                int32_t flen = (int32_t)be32(buf + p);
                Py_ssize_t vend = p + 4 + (flen > 0 ? flen : 0);
                if (vend > end) { PyErr_SetString(PyExc_ValueError, "rewrite: truncated row"); goto done; }
                if (acts[a].position == c) {
                    if (flen >= 0) {
                        if (out_put(&o, buf + last, p - last) < 0) goto done;
                        if (apply(&o, &acts[a], buf + p + 4, flen, hits) < 0) goto done;
                        last = vend;
                    }
                    a++;
                }
                p = vend;
            }
            if (out_put(&o, buf + last, end - last) < 0) goto done;
        }
        unsigned char *hdr = (unsigned char *)o.buf + start;
        hdr[0] = 'D';
        put_be32(hdr + 1, (uint32_t)(o.len - start - 1));
        pos = end;
    }
    PyObject *bytes = PyBytes_FromStringAndSize(o.buf ? o.buf : "", o.len);
    if (bytes) {
        result = Py_BuildValue("(nN)", pos, bytes);
    }
done:
    PyMem_Free(acts);
    PyMem_Free(o.buf);
    PyBuffer_Release(&data);
    return result;
}

static PyMethodDef methods[] = {
    {"rewrite", rewrite, METH_VARARGS, "Rewrite whole DataRow messages by a masking plan."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_mask", "The masking row rewriter (see _mask.c).", -1, methods,
};

PyMODINIT_FUNC PyInit__mask(void) { return PyModule_Create(&module); }
