/* The GRU kernel, included by native.c once per instruction set, with ISA(name) giving each
 * copy's names and VEC its vector width in floats (16: AVX-512, 8: AVX2 + FMA + F16C, 0: plain
 * C). One source, so the copies cannot drift apart; lm/native.py calls the copy that the CPU
 * running it supports. Where a VEC == 16 block and a VEC >= 8 block do the same, it is one
 * loop in two vector widths: intrinsics have no spelling that is generic in the width, and gcc
 * does not vectorise the float16 conversion by itself.
 *
 * Why: at batch 1 a GRU-512 step reads its 3 MB recurrent matrix once, which does not fit a
 * core's L2 cache. Kept in float16 (1.5 MB, converted exactly to float32 in registers) it does,
 * and the ~40 small torch calls a step costs in Python collapse into one call.
 */

/* x[0..n) -= logsumexp(x), as torch computes it; e [n] scratch (the exponentials go there so
 * that their loop is vectorised: the sum itself is kept in order). */
static void ISA(log_softmax)(float *restrict x, int64_t n, float *restrict e) {
    float mx = x[0];
    for (int64_t i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    for (int64_t i = 0; i < n; i++) e[i] = expf(x[i] - mx);
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++) s += e[i];
    float lse = mx + logf(s);
    for (int64_t i = 0; i < n; i++) x[i] -= lse;
}

/* y[0..n) += sum over r < 4 of a[r] * w[r * ld + j]: four half-precision rows at once, so y
 * is loaded and stored once per four rows. 256-bit vectors in the AVX-512 copy too: one
 * sequence is bound by reading the weights, and with 512-bit conversions a GRU-512 step took
 * 27.7 us against 24.3 (AMD EPYC, where 512-bit operations are split in two). */
static inline void ISA(axpy4_h)(float *restrict y, const float *a, const half *restrict w,
                                int64_t ld, int64_t n) {
    int64_t j = 0;
#if VEC >= 8
    __m256 a0 = _mm256_set1_ps(a[0]), a1 = _mm256_set1_ps(a[1]);
    __m256 a2 = _mm256_set1_ps(a[2]), a3 = _mm256_set1_ps(a[3]);
    for (; j + 8 <= n; j += 8) {
        __m256 acc = _mm256_loadu_ps(y + j);
        acc = _mm256_fmadd_ps(a0, _mm256_cvtph_ps(_mm_loadu_si128((const void *)(w + j))), acc);
        acc = _mm256_fmadd_ps(a1, _mm256_cvtph_ps(_mm_loadu_si128((const void *)(w + ld + j))), acc);
        acc = _mm256_fmadd_ps(a2, _mm256_cvtph_ps(_mm_loadu_si128((const void *)(w + 2 * ld + j))), acc);
        acc = _mm256_fmadd_ps(a3, _mm256_cvtph_ps(_mm_loadu_si128((const void *)(w + 3 * ld + j))), acc);
        _mm256_storeu_ps(y + j, acc);
    }
#endif
    for (; j < n; j++)
        y[j] += a[0] * (float)w[j] + a[1] * (float)w[ld + j] + a[2] * (float)w[2 * ld + j]
                + a[3] * (float)w[3 * ld + j];
}

/* dst[0..n) = src[0..n) converted exactly from float16. */
static inline void ISA(to_float)(float *restrict dst, const half *restrict src, int64_t n) {
    int64_t j = 0;
#if VEC == 16
    for (; j + 16 <= n; j += 16)
        _mm512_storeu_ps(dst + j, _mm512_cvtph_ps(_mm256_loadu_si256((const void *)(src + j))));
#elif VEC == 8
    for (; j + 8 <= n; j += 8)
        _mm256_storeu_ps(dst + j, _mm256_cvtph_ps(_mm_loadu_si128((const void *)(src + j))));
#endif
    for (; j < n; j++) dst[j] = (float)src[j];
}

/* axpy4_h for four float32 rows w[r * n + j] (converted from float16 into L1): the same
 * operations in the same order, and the same n % 8 last columns left to plain C, so a batch
 * computes exactly what one sequence alone does. One sequence keeps axpy4_h, converting in
 * registers: going through L1 as a batch does is 30% slower for it. */
static inline void ISA(axpy4_f)(float *restrict y, const float *a, const float *restrict w,
                                int64_t n) {
    int64_t j = 0;
#if VEC == 16
    __m512 b0 = _mm512_set1_ps(a[0]), b1 = _mm512_set1_ps(a[1]);
    __m512 b2 = _mm512_set1_ps(a[2]), b3 = _mm512_set1_ps(a[3]);
    for (; j + 16 <= n; j += 16) {
        __m512 acc = _mm512_loadu_ps(y + j);
        acc = _mm512_fmadd_ps(b0, _mm512_loadu_ps(w + j), acc);
        acc = _mm512_fmadd_ps(b1, _mm512_loadu_ps(w + n + j), acc);
        acc = _mm512_fmadd_ps(b2, _mm512_loadu_ps(w + 2 * n + j), acc);
        acc = _mm512_fmadd_ps(b3, _mm512_loadu_ps(w + 3 * n + j), acc);
        _mm512_storeu_ps(y + j, acc);
    }
#endif
#if VEC >= 8
    __m256 a0 = _mm256_set1_ps(a[0]), a1 = _mm256_set1_ps(a[1]);
    __m256 a2 = _mm256_set1_ps(a[2]), a3 = _mm256_set1_ps(a[3]);
    for (; j + 8 <= n; j += 8) {
        __m256 acc = _mm256_loadu_ps(y + j);
        acc = _mm256_fmadd_ps(a0, _mm256_loadu_ps(w + j), acc);
        acc = _mm256_fmadd_ps(a1, _mm256_loadu_ps(w + n + j), acc);
        acc = _mm256_fmadd_ps(a2, _mm256_loadu_ps(w + 2 * n + j), acc);
        acc = _mm256_fmadd_ps(a3, _mm256_loadu_ps(w + 3 * n + j), acc);
        _mm256_storeu_ps(y + j, acc);
    }
#endif
    for (; j < n; j++)
        y[j] += a[0] * w[j] + a[1] * w[n + j] + a[2] * w[2 * n + j] + a[3] * w[3 * n + j];
}

/* ys[b] = bias + xs[b] @ w for B vectors (row strides ldx, ldy): each block of four weight rows
 * is converted to float32 once, into buf [4, n], and used by every vector while in L1. */
static void ISA(matvec_h_batch)(float *ys, int64_t ldy, const float *bias, const float *xs,
                                int64_t ldx, const half *w, int64_t m, int64_t n, int64_t B,
                                float *buf) {
    for (int64_t b = 0; b < B; b++) memcpy(ys + b * ldy, bias, n * sizeof(float));
    for (int64_t i = 0; i < m; i += 4) {
        ISA(to_float)(buf, w + i * n, 4 * n);
        for (int64_t b = 0; b < B; b++) ISA(axpy4_f)(ys + b * ldy, xs + b * ldx + i, buf, n);
    }
}

/* y[0..n) = bias + x[0..m) @ w[m, n] for half-precision w (m a multiple of 4). */
static void ISA(matvec_h)(float *restrict y, const float *bias, const float *x, const half *w,
                          int64_t m, int64_t n) {
    memcpy(y, bias, n * sizeof(float));
    for (int64_t i = 0; i < m; i += 4) ISA(axpy4_h)(y, x + i, w + i * n, n, n);
}

/* The gates of one GRU step: gh [3H] holds W_hh h + b_hh on entry (clobbered), x [3H] the
 * input projection; the state hb [H] is updated in place. Saturated gates give 0, 1 or -1,
 * as torch's sigmoid and tanh do: 1 / (1 + inf) is 0, never NaN, without -ffast-math. */
static void ISA(gru_gates)(const float *restrict x, float *restrict gh, float *restrict hb,
                           int64_t H) {
    for (int64_t j = 0; j < 2 * H; j++) gh[j] = 1.0f / (1.0f + expf(-(x[j] + gh[j])));
    for (int64_t j = 0; j < H; j++) {  /* tanh(u) = 2 sigmoid(2u) - 1: expf has a vector form */
        float u = x[2 * H + j] + gh[j] * gh[2 * H + j];
        float n = 2.0f / (1.0f + expf(-2.0f * u)) - 1.0f;
        hb[j] = n + gh[H + j] * (hb[j] - n);
    }
}

/* Single-layer GRU language model, B sequences of T steps (see gru_forward in native.c). */
static void ISA(gru_forward)(int64_t B, int64_t T, int64_t H, int64_t V, const int64_t *ids,
                             const float *gi, const half *whh, const float *bhh,
                             const half *wout, const float *bout, float *h, float *work,
                             float *logp, float *hs) {
    const int64_t G = 3 * H;
    float *buf = work + B * G; /* four converted weight rows (B > 1), or exponentials */
    for (int64_t t = 0; t < T; t++) {
        if (B == 1)
            ISA(matvec_h)(work, bhh, h, whh, H, G);
        else
            ISA(matvec_h_batch)(work, G, bhh, h, H, whh, H, G, B, buf);
        for (int64_t b = 0; b < B; b++) {
            ISA(gru_gates)(gi + ids[b * T + t] * G, work + b * G, h + b * H, H);
            if (logp == NULL) memcpy(hs + (b * T + t) * H, h + b * H, H * sizeof(float));
        }
        if (logp == NULL) continue;
        if (B == 1)
            ISA(matvec_h)(logp + t * V, bout, h, wout, H, V);
        else
            ISA(matvec_h_batch)(logp + t * V, T * V, bout, h, H, wout, H, V, B, buf);
        for (int64_t b = 0; b < B; b++) ISA(log_softmax)(logp + (b * T + t) * V, V, buf);
    }
}
