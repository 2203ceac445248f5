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

/* fa_block_forward (a pack and two chained convolutions writing two channel slices of one output, the
 * second reading the first's epilogue packing, both adding a shortcut; with `final` both also pack the stored
 * output for a next block) against the same steps called one by one and the output packed afterwards, and
 * against a call whose input is packed already (pack target lo NULL): identical floats and bits, and every
 * buffer exactly sized for the memory checkers. */
static int run_block_case(int isa, int64_t n, int64_t cin, int64_t c1, int64_t c2, int64_t h, int64_t w, int threads,
                          int final) {
    const int64_t cout = c1 + c2, cw = (cin + 63) / 64, cw1 = (c1 + 63) / 64, hp = h + 2, wp = w + 2;
    const int64_t cwo = (cout + 63) / 64;
    const int64_t cb1 = (c1 + FA_BLOCK - 1) / FA_BLOCK, cb2 = (c2 + FA_BLOCK - 1) / FA_BLOCK, pixels = n * h * w;
    float *x = xmalloc(sizeof(float) * (size_t)(pixels * cin)), *shortcut = xmalloc(sizeof(float) * (size_t)(pixels * cout));
    float *lo = xmalloc(sizeof(float) * (size_t)cin), *hi = xmalloc(sizeof(float) * (size_t)cin);
    float *lo1 = xmalloc(sizeof(float) * (size_t)c1), *hi1 = xmalloc(sizeof(float) * (size_t)c1);
    float *alpha1 = xmalloc(sizeof(float) * (size_t)c1), *alpha2 = xmalloc(sizeof(float) * (size_t)c2);
    int8_t *ws1 = xmalloc((size_t)(c1 * cin * 9)), *ws2 = xmalloc((size_t)(c2 * c1 * 9));
    uint64_t *w1 = xmalloc(sizeof(uint64_t) * (size_t)(cb1 * 9 * cw * FA_BLOCK));
    uint64_t *w2 = xmalloc(sizeof(uint64_t) * (size_t)(cb2 * 9 * cw1 * FA_BLOCK));
    int64_t *t1 = xmalloc(sizeof(int64_t) * (size_t)(cb1 * 9 * FA_BLOCK)), *t2 = xmalloc(sizeof(int64_t) * (size_t)(cb2 * 9 * FA_BLOCK));
    float *outs[3];
    uint64_t *acts[3], *mids[3], *fins[3];
    float *flo = xmalloc(sizeof(float) * (size_t)cout), *fhi = xmalloc(sizeof(float) * (size_t)cout);
    for (int64_t c = 0; c < cout; c++) { flo[c] = next_normal_ish(); fhi[c] = flo[c] + 2.0f; }
    for (int64_t i = 0; i < pixels * cin; i++) x[i] = next_normal_ish();
    for (int64_t i = 0; i < pixels * cout; i++) shortcut[i] = next_normal_ish();
    for (int64_t c = 0; c < cin; c++) { lo[c] = next_normal_ish(); hi[c] = 1e30f * 1e30f; }
    for (int64_t c = 0; c < c1; c++) { lo1[c] = -1e30f * 1e30f; hi1[c] = next_normal_ish(); alpha1[c] = 0.5f + (float)(c % 5); }
    for (int64_t c = 0; c < c2; c++) alpha2[c] = 0.75f + (float)(c % 3);
    for (int64_t i = 0; i < c1 * cin * 9; i++) ws1[i] = (next_u32() & 1) ? 1 : -1;
    for (int64_t i = 0; i < c2 * c1 * 9; i++) ws2[i] = (next_u32() & 1) ? 1 : -1;
    build_weights(ws1, c1, cin, 3, w1, t1);
    build_weights(ws2, c2, c1, 3, w2, t2);
    int failures = 0;
    if (isa == FA_ISA_AMX && final) { /* the AMX path does not write final bits: such a call is refused */
        uint64_t word = 0;
        float one = 1.0f;
        fa_conv_args a = {.act = &word, .n = 1, .h = 1, .w = 1, .cin = 1, .cw = 1, .pad_in = 1, .weights = w1,
                          .tapsum = t1, .cout = 1, .k = 3, .out = &one, .out_pixel_stride = 1, .final_bits = &word,
                          .final_cw = 1, .final_lo = &one, .final_hi = &one};
        if (fa_binary_conv(isa, &a, threads) != FA_ERR_ARG) failures++;
        final = 0;
    }
    for (int run = 0; run < 3; run++) {
        outs[run] = xmalloc(sizeof(float) * (size_t)(pixels * cout));
        acts[run] = xmalloc(sizeof(uint64_t) * (size_t)(n * hp * wp * cw));
        mids[run] = xmalloc(sizeof(uint64_t) * (size_t)(n * hp * wp * cw1));
        fins[run] = xmalloc(sizeof(uint64_t) * (size_t)(n * hp * wp * cwo));
        memset(acts[run], 0, sizeof(uint64_t) * (size_t)(n * hp * wp * cw));
        memset(mids[run], 0, sizeof(uint64_t) * (size_t)(n * hp * wp * cw1));
        memset(fins[run], 0, sizeof(uint64_t) * (size_t)(n * hp * wp * cwo));
        fa_conv_args convs[2] = {
            {.act = acts[run], .n = n, .h = h, .w = w, .cin = cin, .cw = cw, .pad_in = 1, .weights = w1, .tapsum = t1,
             .alpha = alpha1, .cout = c1, .k = 3, .out = outs[run], .out_pixel_stride = cout, .residual = shortcut,
             .residual_pixel_stride = cout, .next_bits = mids[run], .next_cw = cw1, .next_pad = 1, .next_lo = lo1,
             .next_hi = hi1},
            {.act = mids[run], .n = n, .h = h, .w = w, .cin = c1, .cw = cw1, .pad_in = 1, .weights = w2, .tapsum = t2,
             .alpha = alpha2, .cout = c2, .k = 3, .out = outs[run] + c1, .out_pixel_stride = cout,
             .residual = shortcut + c1, .residual_pixel_stride = cout},
        };
        if (final && run != 1)
            for (int i = 0; i < 2; i++) {
                convs[i].final_bits = fins[run];
                convs[i].final_cw = cwo;
                convs[i].final_pad = 1;
                convs[i].final_channel_offset = i ? c1 : 0;
                convs[i].final_lo = flo + (i ? c1 : 0);
                convs[i].final_hi = fhi + (i ? c1 : 0);
            }
        if (run == 1) {
            if (fa_pack_activations(isa, x, n, h, w, cin, cin, lo, hi, 1, acts[run], threads) != FA_OK) failures++;
            for (int i = 0; i < 2; i++)
                if (fa_binary_conv(isa, &convs[i], threads) != FA_OK) failures++;
            if (final && fa_pack_activations(isa, outs[run], n, h, w, cout, cout, flo, fhi, 1, fins[run], threads) != FA_OK)
                failures++;
        } else {
            fa_pack_target pack = {.lo = lo, .hi = hi, .bits = acts[run], .pad = 1};
            if (run == 2) { /* packed already: the call must not pack again */
                if (fa_pack_activations(isa, x, n, h, w, cin, cin, lo, hi, 1, acts[run], threads) != FA_OK) failures++;
                pack.lo = pack.hi = NULL;
            }
            if (fa_block_forward(isa, x, n, h, w, cin, cin, &pack, 1, convs, 2, threads) != FA_OK) failures++;
        }
    }
    for (int run = 1; run < 3; run++) {
        if (memcmp(outs[0], outs[run], sizeof(float) * (size_t)(pixels * cout)) != 0) failures++;
        if (memcmp(mids[0], mids[run], sizeof(uint64_t) * (size_t)(n * hp * wp * cw1)) != 0) failures++;
        if (memcmp(fins[0], fins[run], sizeof(uint64_t) * (size_t)(n * hp * wp * cwo)) != 0) failures++;
    }
    for (int run = 0; run < 3; run++) { free(outs[run]); free(acts[run]); free(mids[run]); free(fins[run]); }
    free(flo); free(fhi);
    free(x); free(shortcut); free(lo); free(hi); free(lo1); free(hi1); free(alpha1); free(alpha2);
    free(ws1); free(ws2); free(w1); free(w2); free(t1); free(t2);
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
        /* AVX2: both kernels (vector look-up only, and split with scalar POPCNT) */
        for (int mixed = 0; mixed <= (isa == FA_ISA_AVX2); mixed++) {
            if (isa == FA_ISA_AVX2) fa_set_avx2_mixed(mixed);
            for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++)
                for (int threads = 1; threads <= 2; threads++)
                    for (int fused = 0; fused <= 1; fused++)
                        failures += run_case(isa, shapes[s][0], shapes[s][1], shapes[s][2], shapes[s][3],
                                             shapes[s][4], shapes[s][5], (int64_t)(s % 3), threads, fused);
        }
        if (isa == FA_ISA_AVX2) fa_set_avx2_mixed(-1);
        for (int threads = 1; threads <= 2; threads++) {
            failures += run_block_case(isa, 1, 70, 40, 24, 5, 6, threads, 0);
            failures += run_block_case(isa, 2, 256, 128, 64, 8, 8, threads, 0);
            failures += run_block_case(isa, 2, 100, 64, 32, 5, 7, threads, 1);
            failures += run_block_case(isa, 1, 256, 128, 64, 8, 8, threads, 1);
        }
        printf("%-7s %s\n", names[isa], failures ? "MISMATCH" : "ok");
        total += failures;
    }
    /* Bad arguments are rejected, not dereferenced. */
    fa_conv_args bad;
    memset(&bad, 0, sizeof(bad));
    if (fa_binary_conv(FA_ISA_SCALAR, &bad, 1) != FA_ERR_ARG) total++;
    if (fa_pack_activations(FA_ISA_SCALAR, NULL, 1, 1, 1, 1, 1, NULL, NULL, 1, NULL, 1) != FA_ERR_ARG) total++;
    if (fa_block_forward(FA_ISA_SCALAR, NULL, 1, 1, 1, 1, 1, NULL, 0, &bad, 1, 1) != FA_ERR_ARG) total++;
    const fa_pack_target no_bits = {0};
    if (fa_block_forward(FA_ISA_SCALAR, NULL, 1, 1, 1, 1, 1, &no_bits, 1, &bad, 1, 1) != FA_ERR_ARG) total++;
    printf("%s\n", total ? "FAILED" : "all cases passed");
    return total ? 1 : 0;
}
