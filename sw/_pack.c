/* Fused kernels for the compact saved tensors of the SWAT layers (sw/fused.py loads this).
 *
 * The stock-ATen route masks with |x| >= t (abs, compare), finds the kept indices (nonzero),
 * gathers the values (take) and packs the mask (a few int64 passes): about seven passes over
 * the activation. swat_pack_ge does it in one pass (packed mask, the kept values compressed
 * per chunk, for weights also the dense sparse copy), swat_concat joins the chunks' values.
 * Unpacking is one pass instead of zero-fill + bit expansion + masked_scatter, and the
 * candidate scan of an exact Top-K one pass instead of abs, compare, nonzero and take.
 *
 * Bit layout (sw.layers._packbits, numpy.packbits): byte j holds elements 8j..8j+7, element 8j
 * in the most significant bit; padding bits are 0. Results are bit-identical to the ATen route.
 * Work is split in chunks of CHUNK elements (a multiple of 8) so OpenMP threads can write their
 * own part of the values once the per-chunk counts are known.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#if defined(__x86_64__)
#include <immintrin.h>
#define SWAT_X86 1
#endif

#define CHUNK 65536

static int64_t nchunks(int64_t n) { return (n + CHUNK - 1) / CHUNK; }

/* REV[b]: b with its bit order reversed (AVX-512 masks are LSB-first, our bytes MSB-first). */
static uint8_t REV[256];
static int has_avx512 = 0;

/* Called once after loading: the byte-reversal table and the CPU's AVX-512F support (the
 * vector paths are compiled for AVX-512F and only taken where the CPU has it). */
void swat_init(void) {
    for (int b = 0; b < 256; b++) {
        int r = 0;
        for (int j = 0; j < 8; j++) r |= ((b >> j) & 1) << (7 - j);
        REV[b] = (uint8_t)r;
    }
#ifdef SWAT_X86
    __builtin_cpu_init();
    has_avx512 = __builtin_cpu_supports("avx512f");
#endif
}

int swat_has_avx512(void) { return has_avx512; }

/* Tests: take the portable paths even where AVX-512F exists (on = 0), or the vector paths
 * again (on = 1, only if the CPU has them). */
void swat_use_avx512(int on) {
    swat_init();
    has_avx512 = on && has_avx512;
}

#ifdef SWAT_X86
static inline __mmask16 tail16(int64_t m) { return (__mmask16)(m >= 16 ? 0xFFFF : (1u << m) - 1); }

/* Compress/expand through a register: the memory forms of vcompressps / vexpandps are
 * microcoded (slow) on some CPUs (AMD Zen 4); masked loads and stores are not, and never touch
 * memory outside the first popcount(m) elements. */
__attribute__((target("avx512f"))) static inline void compress_store(float *dst, __mmask16 m,
                                                                     __m512 v) {
    __mmask16 first = (__mmask16)((1u << __builtin_popcount((unsigned)m)) - 1);
    _mm512_mask_storeu_ps(dst, first, _mm512_maskz_compress_ps(m, v));
}

__attribute__((target("avx512f"))) static inline __m512 expand_load(const float *src,
                                                                    __mmask16 m) {
    __mmask16 first = (__mmask16)((1u << __builtin_popcount((unsigned)m)) - 1);
    return _mm512_maskz_expand_ps(m, _mm512_maskz_loadu_ps(first, src));
}

/* Reverse the bit order within each byte of a 64-bit word (LSB-first lanes -> MSB-first). */
static inline uint64_t rev_bytes_bits(uint64_t v) {
    v = ((v >> 1) & 0x5555555555555555ULL) | ((v & 0x5555555555555555ULL) << 1);
    v = ((v >> 2) & 0x3333333333333333ULL) | ((v & 0x3333333333333333ULL) << 2);
    return ((v >> 4) & 0x0F0F0F0F0F0F0F0FULL) | ((v & 0x0F0F0F0F0F0F0F0FULL) << 4);
}

static inline __mmask16 load_mask16(const uint8_t *bits, int64_t i, int64_t hi) {
    unsigned m = REV[bits[i >> 3]];
    if (i + 8 < hi) m |= (unsigned)REV[bits[(i >> 3) + 1]] << 8;
    return (__mmask16)m;
}

__attribute__((target("avx512f"))) static void unpack_512(const uint8_t *bits, int64_t lo,
                                                          int64_t hi, const float *vals,
                                                          int64_t o, float *out) {
    int64_t i = lo;
    for (; i + 64 <= hi; i += 64) {
        uint64_t m64;
        memcpy(&m64, bits + (i >> 3), 8);
        m64 = rev_bytes_bits(m64);
        for (int q = 0; q < 4; q++) {
            __mmask16 m = (__mmask16)(m64 >> (16 * q));
            _mm512_storeu_ps(out + i + 16 * q, expand_load(vals + o, m));
            o += __builtin_popcount((unsigned)m);
        }
    }
    for (; i < hi; i += 16) {
        __mmask16 live = tail16(hi - i), m = load_mask16(bits, i, hi);
        _mm512_mask_storeu_ps(out + i, live, expand_load(vals + o, m));
        o += __builtin_popcount((unsigned)m);
    }
}
#endif

/* Per-chunk popcounts of a packed mask of n elements (for swat_unpack_bits' offsets). */
void swat_count_bits(const uint8_t *bits, int64_t n, int64_t *counts, int nt) {
    int64_t nc = nchunks(n);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t c = 0; c < nc; c++) {
        int64_t lo = c * CHUNK, hi = lo + CHUNK < n ? lo + CHUNK : n, cnt = 0;
        for (int64_t i = lo; i < hi; i += 8) cnt += __builtin_popcount(bits[i >> 3]);
        counts[c] = cnt;
    }
}

/* out[i] = next value if bit i is set, else 0 (the dense tensor of a packed mask + values). */
void swat_unpack_bits(const uint8_t *bits, int64_t n, const float *vals,
                      const int64_t *offsets, float *out, int nt) {
    int64_t nc = nchunks(n);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t c = 0; c < nc; c++) {
        int64_t lo = c * CHUNK, hi = lo + CHUNK < n ? lo + CHUNK : n, o = offsets[c];
#ifdef SWAT_X86
        if (has_avx512) {
            unpack_512(bits, lo, hi, vals, o, out);
            continue;
        }
#endif
        for (int64_t i = lo; i < hi; i += 8) {
            unsigned b = bits[i >> 3];
            int m = hi - i < 8 ? (int)(hi - i) : 8;
            if (!b) {
                memset(out + i, 0, (size_t)m * sizeof(float));
                continue;
            }
            for (int j = 0; j < m; j++) {
                unsigned bit = (b >> (7 - j)) & 1u;
                out[i + j] = bit ? vals[o] : 0.0f;
                o += bit;
            }
        }
    }
}

/* Kept set given as ascending flat indices: bits (zeroed by the caller), vals in index order
 * and (optional) dense = x at the indices (zeroed by the caller). With drop_zeros, kept zeros
 * are not stored. Returns the number of values written. */
int64_t swat_pack_idx(const float *x, const int64_t *idx, int64_t k, int drop_zeros,
                      uint8_t *bits, float *vals, float *dense) {
    int64_t o = 0;
    for (int64_t q = 0; q < k; q++) {
        int64_t i = idx[q];
        float v = x[i];
        if (drop_zeros && v == 0.0f) continue;
        bits[i >> 3] |= (uint8_t)(1u << (7 - (i & 7)));
        vals[o++] = v;
        if (dense) dense[i] = v;
    }
    return o;
}

/* Candidates of a whole-tensor Top-K: |x| for every element with |x| >= lo, in stream order,
 * written to buf (n floats of scratch; chunk c first fills buf[c * CHUNK ...], then the chunks
 * are moved together). counts: one int64 per chunk. Returns how many were written. */
#ifdef SWAT_X86
__attribute__((target("avx512f"))) static int64_t collect_512(const float *x, int64_t lo_i,
                                                              int64_t hi, float lo, float *out) {
    const __m512 lv = _mm512_set1_ps(lo);
    int64_t o = 0, i = lo_i;
    for (; i + 16 <= hi; i += 16) {  /* full vectors: no per-iteration tail mask */
        __m512 a = _mm512_abs_ps(_mm512_loadu_ps(x + i));
        __mmask16 m = _mm512_cmp_ps_mask(a, lv, _CMP_GE_OQ);
        compress_store(out + o, m, a);
        o += __builtin_popcount((unsigned)m);
    }
    for (; i < hi; i += 16) {
        __mmask16 live = tail16(hi - i);
        __m512 a = _mm512_abs_ps(_mm512_maskz_loadu_ps(live, x + i));
        __mmask16 m = _mm512_mask_cmp_ps_mask(live, a, lv, _CMP_GE_OQ);
        compress_store(out + o, m, a);
        o += __builtin_popcount((unsigned)m);
    }
    return o;
}
#endif

int64_t swat_collect_ge(const float *x, int64_t n, float lo, float *buf, int64_t *counts,
                        int nt) {
    int64_t nc = nchunks(n);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t c = 0; c < nc; c++) {
        int64_t s = c * CHUNK, hi = s + CHUNK < n ? s + CHUNK : n, o = 0;
        float *out = buf + s;
#ifdef SWAT_X86
        if (has_avx512) {
            counts[c] = collect_512(x, s, hi, lo, out);
            continue;
        }
#endif
        for (int64_t i = s; i < hi; i++) {
            float a = fabsf(x[i]);
            if (a >= lo) out[o++] = a;
        }
        counts[c] = o;
    }
    int64_t total = 0;
    for (int64_t c = 0; c < nc; c++) {
        if (total != c * CHUNK) memmove(buf + total, buf + c * CHUNK, counts[c] * sizeof(float));
        total += counts[c];
    }
    return total;
}

/* Held-threshold packing in one pass: bits[j] of keep = |x| >= t && x != 0, counts[c] = kept
 * elements of chunk c, whose values are compressed into scratch[c * CHUNK ...] (n floats);
 * dense (optional) = x where kept, else 0. swat_concat then joins the chunks' values.
 * Returns the total kept count. */
#ifdef SWAT_X86
__attribute__((target("avx512f"))) static inline __mmask16 keep16(__m512 v, __m512 tv,
                                                                  __mmask16 live) {
    return _mm512_mask_cmp_ps_mask(live, _mm512_abs_ps(v), tv, _CMP_GE_OQ) &
           _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_NEQ_OQ);
}

__attribute__((target("avx512f"))) static int64_t pack_ge_512(const float *x, int64_t lo,
                                                              int64_t hi, float t,
                                                              uint8_t *bits, float *out,
                                                              float *dense) {
    const __m512 tv = _mm512_set1_ps(t);
    int64_t o = 0, i = lo;
    for (; i + 64 <= hi; i += 64) {  /* 64 elements: one 8-byte store of the packed mask */
        uint64_t m64 = 0;
        for (int q = 0; q < 4; q++) {
            __m512 v = _mm512_loadu_ps(x + i + 16 * q);
            __mmask16 m = keep16(v, tv, 0xFFFF);
            compress_store(out + o, m, v);
            if (dense) _mm512_storeu_ps(dense + i + 16 * q, _mm512_maskz_mov_ps(m, v));
            o += __builtin_popcount((unsigned)m);
            m64 |= (uint64_t)m << (16 * q);
        }
        m64 = rev_bytes_bits(m64);
        memcpy(bits + (i >> 3), &m64, 8);  /* little-endian: byte j = elements 8j.. */
    }
    for (; i < hi; i += 16) {
        __mmask16 live = tail16(hi - i);
        __m512 v = _mm512_maskz_loadu_ps(live, x + i);
        __mmask16 m = keep16(v, tv, live);
        bits[i >> 3] = REV[m & 0xFF];
        if (i + 8 < hi) bits[(i >> 3) + 1] = REV[m >> 8];
        compress_store(out + o, m, v);
        if (dense) _mm512_mask_storeu_ps(dense + i, live, _mm512_maskz_mov_ps(m, v));
        o += __builtin_popcount((unsigned)m);
    }
    return o;
}
#endif

int64_t swat_pack_ge(const float *x, int64_t n, float t, uint8_t *bits, int64_t *counts,
                     float *scratch, float *dense, int nt) {
    int64_t nc = nchunks(n), total = 0;
#pragma omp parallel for num_threads(nt) schedule(static) reduction(+ : total)
    for (int64_t c = 0; c < nc; c++) {
        int64_t lo = c * CHUNK, hi = lo + CHUNK < n ? lo + CHUNK : n, o = 0;
        float *out = scratch + lo;
#ifdef SWAT_X86
        if (has_avx512) {
            o = pack_ge_512(x, lo, hi, t, bits, out, dense);
            counts[c] = o;
            total += o;
            continue;
        }
#endif
        for (int64_t i = lo; i < hi; i += 8) {
            unsigned b = 0;
            for (int j = 0; j < 8 && i + j < hi; j++) {
                float v = x[i + j];
                unsigned keep = fabsf(v) >= t && v != 0.0f;
                b |= keep << (7 - j);
                if (keep) out[o++] = v;
                if (dense) dense[i + j] = keep ? v : 0.0f;
            }
            bits[i >> 3] = (uint8_t)b;
        }
        counts[c] = o;
        total += o;
    }
    return total;
}

/* vals = the chunks' values of swat_pack_ge, in order. */
void swat_concat(const float *scratch, int64_t n, const int64_t *counts, float *vals) {
    int64_t nc = nchunks(n), o = 0;
    for (int64_t c = 0; c < nc; c++) {
        memcpy(vals + o, scratch + c * CHUNK, (size_t)counts[c] * sizeof(float));
        o += counts[c];
    }
}

/* The k-th largest of c non-negative floats (candidates |x| >= lo; NaN never among them) by a
 * two-pass radix select on their bit patterns (for non-negative IEEE floats the unsigned bit
 * pattern orders like the value): *t = that value, *n_ge = how many are >= it (k, or more when
 * it ties). Returns 0, or -1 if k is out of [1, c] or memory is short. */
int swat_kth_largest(const float *cand, int64_t c, int64_t k, float *t, int64_t *n_ge) {
    if (k < 1 || k > c) return -1;
    const uint32_t *u = (const uint32_t *)cand;
    int64_t *hist = (int64_t *)calloc(65536, sizeof(int64_t));
    if (!hist) return -1;
    for (int64_t i = 0; i < c; i++) hist[u[i] >> 16]++;
    int64_t above = 0, hb = 65535;
    while (above + hist[hb] < k) above += hist[hb--];
    int64_t r = k - above;  /* rank of the answer among bucket hb, from the top */
    memset(hist, 0, 65536 * sizeof(int64_t));
    for (int64_t i = 0; i < c; i++)
        if ((u[i] >> 16) == (uint32_t)hb) hist[u[i] & 0xFFFF]++;
    int64_t cum = 0, lb = 65535;
    while (cum + hist[lb] < r) cum += hist[lb--];
    uint32_t bitsv = ((uint32_t)hb << 16) | (uint32_t)lb;
    memcpy(t, &bitsv, sizeof(float));
    *n_ge = above + cum + hist[lb];
    free(hist);
    return 0;
}
