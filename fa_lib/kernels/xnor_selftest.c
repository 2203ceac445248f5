/* Standalone self-test of xnor.c for memory checkers (AddressSanitizer/UBSan, valgrind).
 *
 * Build and run (what `make sanitize` does):
 *   cc -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fopenmp \
 *      fa_lib/kernels/xnor.c fa_lib/kernels/xnor_selftest.c -lm -o build/xnor_selftest_asan
 *   ./build/xnor_selftest_asan
 * or, without sanitizers, under valgrind:  valgrind --error-exitcode=1 ./build/xnor_selftest
 *
 * Every buffer is malloc'ed with its exact size, so any read or write outside it (e.g. a SIMD tail that
 * runs past the last channel or pixel) is reported.  Results are compared with a naive reference of the
 * binary layer rule (threshold sign, zero padding after the sign, integer dot product, alpha * integer).
 * Exit status 0 = all shapes and all ISAs supported by this CPU agree with the reference.
 * Compile with -DFA_SELFTEST_SHRINK=1 to allocate the packed-activation buffer one word too small: the
 * memory checker must then report a heap-buffer-overflow (a check that the harness can fail).
 */
#ifndef FA_SELFTEST_SHRINK
#define FA_SELFTEST_SHRINK 0
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xnor.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t next_u32(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}
static float next_normal_ish(void) { return ((float)(next_u32() % 20001) - 10000.0f) / 5000.0f; }

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) { fprintf(stderr, "out of memory\n"); exit(2); }
    return p;
}

/* Blocked weights [CB][k*k][CW][32] and tapsum [CB][k*k][32] from +-1 signs wsign[co][ci][t]. */
static void build_weights(const int8_t *wsign, int64_t cout, int64_t cin, int64_t k, uint64_t *blocked, int64_t *tapsum) {
    const int64_t kk = k * k, cw = (cin + 63) / 64, cb = (cout + FA_BLOCK - 1) / FA_BLOCK;
    memset(blocked, 0, (size_t)(cb * kk * cw * FA_BLOCK) * sizeof(uint64_t));
    memset(tapsum, 0, (size_t)(cb * kk * FA_BLOCK) * sizeof(int64_t));
    for (int64_t co = 0; co < cout; co++)
        for (int64_t t = 0; t < kk; t++)
            for (int64_t ci = 0; ci < cin; ci++) {
                const int8_t s = wsign[(co * cin + ci) * kk + t];
                const int64_t b = co / FA_BLOCK, lane = co % FA_BLOCK;
                if (s < 0) blocked[((b * kk + t) * cw + ci / 64) * FA_BLOCK + lane] |= 1ull << (ci % 64);
                tapsum[(b * kk + t) * FA_BLOCK + lane] += s;
            }
}

static int run_case(int isa, int64_t n, int64_t cin, int64_t cout, int64_t h, int64_t w, int64_t k,
                    int64_t out_stride_extra, int threads, int fused) {
    const int64_t kk = k * k, cw = (cin + 63) / 64, cb = (cout + FA_BLOCK - 1) / FA_BLOCK, pad = 1;
    const int64_t in_stride = cin + 3; /* input is a channel slice of a wider channels-last tensor */
    const int64_t out_stride = cout + out_stride_extra;
    float *x = xmalloc(sizeof(float) * (size_t)(n * h * w * in_stride));
    float *lo = xmalloc(sizeof(float) * (size_t)cin), *hi = xmalloc(sizeof(float) * (size_t)cin);
    int8_t *wsign = xmalloc((size_t)(cout * cin * kk));
    uint64_t *act = xmalloc(sizeof(uint64_t) * (size_t)(n * (h + 2 * pad) * (w + 2 * pad) * cw - FA_SELFTEST_SHRINK));
    uint64_t *blocked = xmalloc(sizeof(uint64_t) * (size_t)(cb * kk * cw * FA_BLOCK));
    int64_t *tapsum = xmalloc(sizeof(int64_t) * (size_t)(cb * kk * FA_BLOCK));
    float *alpha = xmalloc(sizeof(float) * (size_t)cout);
    float *out = xmalloc(sizeof(float) * (size_t)(n * h * w * out_stride));
    for (int64_t i = 0; i < n * h * w * in_stride; i++) x[i] = next_normal_ish();
    for (int64_t c = 0; c < cin; c++) { /* increasing, decreasing, always, never */
        const float t = next_normal_ish() * 0.5f;
        switch (next_u32() % 4) {
            case 0: lo[c] = t; hi[c] = 1e30f * 1e30f; break;
            case 1: lo[c] = -1e30f * 1e30f; hi[c] = t; break;
            case 2: lo[c] = -1e30f * 1e30f; hi[c] = 1e30f * 1e30f; break;
            default: lo[c] = 1e30f * 1e30f; hi[c] = -1e30f * 1e30f; break;
        }
    }
    for (int64_t i = 0; i < cout * cin * kk; i++) wsign[i] = (next_u32() & 1) ? 1 : -1;
    for (int64_t c = 0; c < cout; c++) alpha[c] = 0.25f + (float)(c % 7);
    for (int64_t i = 0; i < n * h * w * out_stride; i++) out[i] = -12345.0f;
    build_weights(wsign, cout, cin, k, blocked, tapsum);
    /* Fused epilogue: ReLU, residual (its own buffer, stride cout) and the next layer's packing. */
    const int64_t ncw = (cout + 63) / 64, npad = 1;
    const int64_t nbits_len = n * (h + 2 * npad) * (w + 2 * npad) * ncw;
    float *res = xmalloc(sizeof(float) * (size_t)(n * h * w * cout));
    float *nlo = xmalloc(sizeof(float) * (size_t)cout), *nhi = xmalloc(sizeof(float) * (size_t)cout);
    uint64_t *nbits = xmalloc(sizeof(uint64_t) * (size_t)nbits_len);
    for (int64_t i = 0; i < n * h * w * cout; i++) res[i] = next_normal_ish();
    for (int64_t c = 0; c < cout; c++) {
        nlo[c] = (c % 2) ? -1e30f * 1e30f : next_normal_ish();
        nhi[c] = (c % 2) ? next_normal_ish() : 1e30f * 1e30f;
    }
    memset(nbits, 0, sizeof(uint64_t) * (size_t)nbits_len);

    int failures = 0;
    if (fa_pack_activations(isa, x, n, h, w, cin, in_stride, lo, hi, pad, act, threads) != FA_OK) failures++;
    fa_conv_args a = {.act = act, .n = n, .h = h, .w = w, .cin = cin, .cw = cw, .pad_in = pad, .weights = blocked,
                      .tapsum = tapsum, .alpha = alpha, .cout = cout, .k = k, .out = out, .out_pixel_stride = out_stride};
    if (fused) {
        a.relu = 1;
        a.residual = res;
        a.residual_pixel_stride = cout;
        a.next_bits = nbits;
        a.next_cw = ncw;
        a.next_pad = npad;
        a.next_channel_offset = 0;
        a.next_lo = nlo;
        a.next_hi = nhi;
    }
    if (fa_binary_conv(isa, &a, threads) != FA_OK) failures++;

    const int64_t kp = (k - 1) / 2;
    for (int64_t b = 0; b < n && !failures; b++)
        for (int64_t y = 0; y < h; y++)
            for (int64_t xx = 0; xx < w; xx++)
                for (int64_t co = 0; co < out_stride; co++) {
                    const float got = out[((b * h + y) * w + xx) * out_stride + co];
                    if (co >= cout) { /* channels outside the slice must be untouched */
                        if (got != -12345.0f) failures++;
                        continue;
                    }
                    int64_t dot = 0;
                    for (int64_t ky = 0; ky < k; ky++)
                        for (int64_t kx = 0; kx < k; kx++) {
                            const int64_t yy = y + ky - kp, xs = xx + kx - kp;
                            if (yy < 0 || yy >= h || xs < 0 || xs >= w) continue; /* zero padding */
                            for (int64_t ci = 0; ci < cin; ci++) {
                                const float v = x[((b * h + yy) * w + xs) * in_stride + ci];
                                const int s = (v >= lo[ci] && v <= hi[ci]) ? 1 : -1;
                                dot += s * wsign[(co * cin + ci) * kk + ky * k + kx];
                            }
                        }
                    float v = alpha[co] * (float)dot;
                    if (fused) {
                        if (!(v >= 0.0f)) v = 0.0f;
                        const int negative = !(v >= nlo[co] && v <= nhi[co]);
                        const uint64_t word = nbits[((b * (h + 2 * npad) + y + npad) * (w + 2 * npad) + xx + npad) * ncw + co / 64];
                        if ((int)((word >> (co % 64)) & 1u) != negative) failures++;
                        v = v + res[((b * h + y) * w + xx) * cout + co];
                    }
                    if (got != v) failures++;
                }
    if (fused) /* padding words of the next layer's buffer stay zero */
        for (int64_t b = 0; b < n; b++)
            for (int64_t yp = 0; yp < h + 2 * npad; yp++)
                for (int64_t xp = 0; xp < w + 2 * npad; xp++)
                    if (yp < npad || yp >= h + npad || xp < npad || xp >= w + npad)
                        for (int64_t j = 0; j < ncw; j++)
                            if (nbits[((b * (h + 2 * npad) + yp) * (w + 2 * npad) + xp) * ncw + j]) failures++;
    free(res); free(nlo); free(nhi); free(nbits);
    free(x); free(lo); free(hi); free(wsign); free(act); free(blocked); free(tapsum); free(alpha); free(out);
    return failures;
}

int main(void) {
    static const int64_t shapes[][6] = {
        /* n, cin, cout, h, w, k */
        {1, 1, 1, 1, 1, 3},   {1, 3, 5, 1, 1, 3},   {2, 64, 32, 4, 4, 3},  {1, 65, 33, 3, 7, 3},
        {1, 130, 70, 5, 9, 3}, {2, 127, 31, 6, 5, 1}, {1, 200, 40, 2, 13, 3}, {1, 256, 128, 8, 8, 3},
    };
    const char *names[] = {"scalar", "avx2", "avx512", "amx"};
    /* FA_XNOR_SELFTEST_SKIP_AMX=1: valgrind does not emulate AMX tiles, so its run leaves that path out */
    const char *skip_amx = getenv("FA_XNOR_SELFTEST_SKIP_AMX");
    int total = 0;
    for (int isa = 0; isa < 4; isa++) {
        if (isa == FA_ISA_AMX && skip_amx && skip_amx[0] == '1') {
            printf("%-7s skipped (FA_XNOR_SELFTEST_SKIP_AMX)\n", names[isa]);
            continue;
        }
        if (!fa_isa_supported(isa)) {
            printf("%-7s not supported by this CPU: skipped\n", names[isa]);
            continue;
        }
        int failures = 0;
        if (isa == FA_ISA_AMX) fa_amx_set_min_pixels(0); /* the tile kernel itself, even on tiny maps */
        for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++)
            for (int threads = 1; threads <= 2; threads++)
                for (int fused = 0; fused <= 1; fused++)
                    failures += run_case(isa, shapes[s][0], shapes[s][1], shapes[s][2], shapes[s][3], shapes[s][4],
                                         shapes[s][5], (int64_t)(s % 3), threads, fused);
        printf("%-7s %s\n", names[isa], failures ? "MISMATCH" : "ok");
        total += failures;
    }
    /* Bad arguments are rejected, not dereferenced. */
    fa_conv_args bad;
    memset(&bad, 0, sizeof(bad));
    if (fa_binary_conv(FA_ISA_SCALAR, &bad, 1) != FA_ERR_ARG) total++;
    if (fa_pack_activations(FA_ISA_SCALAR, NULL, 1, 1, 1, 1, 1, NULL, NULL, 1, NULL, 1) != FA_ERR_ARG) total++;
    printf("%s\n", total ? "FAILED" : "all cases passed");
    return total ? 1 : 0;
}
