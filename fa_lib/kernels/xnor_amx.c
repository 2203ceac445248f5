/* Binary convolution on Intel AMX (TDPBSSD): the fourth code path of fa_lib.kernels (FA_ISA_AMX).
 *
 * Why a path that is not XOR + popcount: eq. 5.1's binary dot product sum_c sign(a_c) * sign(w_c) is an
 * integer matrix product of +-1 values.  XOR + VPOPCNTQ + add costs 3 vector micro-ops per 512 binary MACs,
 * and on an Intel core that issues two 512-bit micro-ops per cycle this caps the popcount path at ~341
 * binary MACs per cycle, ~11x PyTorch's fp32 convolution (32 FMA lanes per cycle).  An AMX tile unit
 * multiplies int8 matrices at 1024 MACs per cycle, so the same +-1 products written as int8 bytes run ~3x
 * faster than the popcount path, and the result is the same integer bit for bit.
 *
 * What this file does for one fa_binary_conv call (same arguments, same epilogue as xnor.c):
 *   1. unpacks the bit-packed activations into an int8 scratch image [N][H+2p][W+2p][64*CW] holding +1/-1,
 *      with 0 in the zero padding and in the channels beyond Cin, so no border correction is needed;
 *   2. (unless the caller passes them pre-converted) expands the weight bits into AMX B tiles of +1/-1;
 *   3. treats each image as a flat sequence of "padded-width" pixels q = y*(W+2p) + x: the input of tap
 *      (ky, kx) for output q sits at q + ky*(W+2p) + kx, so a tile of 16 consecutive q is one strided tile
 *      load for any image width (outputs at x >= W are computed and discarded);
 *   4. accumulates a 32-pixel x 32-channel block in four int32 tiles (2 A tiles x 2 B tiles per step),
 *      then runs the epilogue of xnor.c (alpha, ReLU, next layer's sign bits, residual) in AVX-512.
 * Layout of the AMX weights (int8): [CB][k*k][CW][2][16 rows][16 channels][4 bytes], i.e. for 32-channel
 * block cb, tap t, 64-channel word j and half h, a 16x64 B tile (the two halves a step needs are adjacent,
 * one sequential stream for the prefetcher) in the VNNI order TDPBSSD expects (row r
 * holds input channels 64j + 4r .. 64j + 4r + 3 of each of the 16 output channels).
 */
#define _GNU_SOURCE /* syscall() under -std=c11 */
#include "xnor_internal.h"

#include <stdlib.h>
#include <string.h>

#if !defined(FA_XNOR_NO_SIMD) && defined(__x86_64__) && defined(__linux__) && \
    ((defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11) || (defined(__clang__) && __clang_major__ >= 12))
#define FA_HAVE_AMX 1
#endif

#ifndef FA_HAVE_AMX

int fa_amx_supported(void) { return 0; }
int fa_amx_weights_size(int64_t cout, int64_t cin, int64_t k) {
    (void)cout; (void)cin; (void)k;
    return FA_ERR_ISA;
}
int fa_amx_pack_weights(const uint64_t *blocked, int64_t cout, int64_t cin, int64_t k, int8_t *out) {
    (void)blocked; (void)cout; (void)cin; (void)k; (void)out;
    return FA_ERR_ISA;
}
int fa_amx_binary_conv(const fa_conv_args *a, int threads) {
    (void)a; (void)threads;
    return FA_ERR_ISA;
}
int fa_amx_peak(int64_t steps) {
    (void)steps;
    return FA_ERR_ISA;
}

#else

#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#define FA_TAMX __attribute__((target("amx-tile,amx-int8,avx512f,avx512bw,avx512vl,avx512dq")))

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18
#define TILE_BYTES 1024 /* 16 rows x 64 bytes */
#define PIXELS 32       /* output pixels per block (two A tiles) */

/* ------------------------------------------------------------------------------------------------ */
/* Detection: the CPU has AMX-TILE + AMX-INT8 (CPUID.7.0:EDX[24,25]) and AVX-512 for the epilogue, and */
/* Linux grants this process the tile data state (arch_prctl; kernels before 5.16 refuse).           */
/* ------------------------------------------------------------------------------------------------ */

static int amx_state = -1; /* -1 unknown, 0 no, 1 yes */

int fa_amx_supported(void) {
    if (amx_state >= 0) return amx_state;
    unsigned eax, ebx, ecx, edx;
    int ok = 0;
    if (fa_isa_supported(FA_ISA_AVX512) && __get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) &&
        (edx & (1u << 24)) && (edx & (1u << 25)))
        ok = syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
    __atomic_store_n(&amx_state, ok, __ATOMIC_RELAXED);
    return ok;
}

/* Tile configuration (palette 1): eight 16x64-byte tiles; 0-3 int32 accumulators, 4-5 A, 6-7 B. */
typedef struct {
    uint8_t palette_id, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tile_config;

FA_TAMX static void configure_tiles(void) {
    tile_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette_id = 1;
    for (int t = 0; t < 8; t++) {
        cfg.rows[t] = 16;
        cfg.colsb[t] = 64;
    }
    _tile_loadconfig(&cfg);
}

/* ------------------------------------------------------------------------------------------------ */
/* Weights: bits -> +-1 int8 B tiles                                                                  */
/* ------------------------------------------------------------------------------------------------ */

int fa_amx_weights_size(int64_t cout, int64_t cin, int64_t k) {
    if (cout < 1 || cin < 1 || k < 1) return FA_ERR_ARG;
    const int64_t cb = (cout + FA_BLOCK - 1) / FA_BLOCK, cw = (cin + 63) / 64;
    const int64_t bytes = cb * 2 * k * k * cw * TILE_BYTES;
    return bytes > 0x7FFFFFFF ? FA_ERR_ARG : (int)bytes;
}

/* 64 sign bits -> 64 bytes (+1 where the bit is clear, -1 where set). */
FA_TAMX FA_INLINE __m512i expand_signs(uint64_t bits) {
    return _mm512_mask_blend_epi8((__mmask64)bits, _mm512_set1_epi8(1), _mm512_set1_epi8(-1));
}

FA_TAMX static void pack_weights_amx(const uint64_t *blocked, int64_t cout, int64_t cin, int64_t k, int8_t *out) {
    const int64_t cb_count = (cout + FA_BLOCK - 1) / FA_BLOCK, cw = (cin + 63) / 64, kk = k * k;
    /* dword r of the expanded channel goes to row r of the tile, at column n: stride 16 dwords */
    const __m512i rows = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                            _mm512_set1_epi32(16));
    for (int64_t cb = 0; cb < cb_count; cb++)
        for (int64_t half = 0; half < 2; half++)
            for (int64_t t = 0; t < kk; t++)
                for (int64_t j = 0; j < cw; j++) {
                    int8_t *tile = out + (((cb * kk + t) * cw + j) * 2 + half) * TILE_BYTES;
                    const uint64_t *words = blocked + ((cb * kk + t) * cw + j) * FA_BLOCK + half * 16;
                    for (int n = 0; n < 16; n++) {
                        const int64_t c = cb * FA_BLOCK + half * 16 + n;
                        /* input channels beyond Cin read 0 from the activations, so their sign is moot;
                         * output channels beyond Cout are never stored: zero them for tidiness */
                        const __m512i v = c < cout ? expand_signs(words[n]) : _mm512_setzero_si512();
                        _mm512_i32scatter_epi32((void *)(tile + 4 * n), rows, v, 4);
                    }
                }
}

int fa_amx_pack_weights(const uint64_t *blocked, int64_t cout, int64_t cin, int64_t k, int8_t *out) {
    if (!fa_amx_supported()) return FA_ERR_ISA;
    if (!blocked || !out || fa_amx_weights_size(cout, cin, k) < 0) return FA_ERR_ARG;
    pack_weights_amx(blocked, cout, cin, k, out);
    return FA_OK;
}

/* ------------------------------------------------------------------------------------------------ */
/* Activations: bits -> +-1 int8 scratch image with zero padding                                      */
/* ------------------------------------------------------------------------------------------------ */

typedef struct {
    const fa_conv_args *a;
    int64_t kk, kpad, cw, row_bytes;   /* row_bytes = 64 * cw bytes per pixel */
    int64_t ws, hs, q_count, img_pixels; /* scratch width/height, computed positions, pixels per image */
    int8_t *scratch;
    const int8_t *weights;
    int64_t tap_offset[49];            /* in pixels */
} amx_plan;

/* Per calling thread, grown on demand and kept: page-faulting a fresh buffer on every call would cost
 * more than the convolution of a small layer. */
static __thread int8_t *tls_buffer[2];
static __thread size_t tls_size[2];

static int8_t *scratch_buffer(int which, size_t bytes) {
    if (tls_size[which] < bytes) {
        free(tls_buffer[which]);
        tls_buffer[which] = NULL;
        tls_size[which] = 0;
        const size_t rounded = (bytes + 4095) / 4096 * 4096;
        void *p = aligned_alloc(64, rounded);
        if (!p) return NULL;
        tls_buffer[which] = (int8_t *)p;
        tls_size[which] = rounded;
    }
    return tls_buffer[which];
}

FA_TAMX static void unpack_row(const amx_plan *pl, int64_t n, int64_t ys) {
    const fa_conv_args *a = pl->a;
    int8_t *dst = pl->scratch + (n * pl->img_pixels + ys * pl->ws) * pl->row_bytes;
    const int64_t y = ys - pl->kpad;
    if (y < 0 || y >= a->h) {
        memset(dst, 0, (size_t)(pl->ws * pl->row_bytes));
        return;
    }
    const int64_t last = a->cin - 64 * (pl->cw - 1); /* channels used in the last word, 1..64 */
    const __mmask64 last_mask = last >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << last) - 1);
    const int64_t wp = a->w + 2 * a->pad_in;
    const uint64_t *src = a->act + ((n * (a->h + 2 * a->pad_in) + y + a->pad_in) * wp + a->pad_in) * pl->cw;
    memset(dst, 0, (size_t)(pl->kpad * pl->row_bytes));
    memset(dst + (pl->kpad + a->w) * pl->row_bytes, 0, (size_t)((pl->ws - pl->kpad - a->w) * pl->row_bytes));
    int8_t *d = dst + pl->kpad * pl->row_bytes;
    for (int64_t x = 0; x < a->w; x++) {
        const uint64_t *s = src + x * pl->cw;
        for (int64_t j = 0; j < pl->cw; j++) {
            __m512i v = expand_signs(s[j]);
            if (j == pl->cw - 1) v = _mm512_maskz_mov_epi8(last_mask, v);
            _mm512_store_si512((void *)(d + x * pl->row_bytes + 64 * j), v);
        }
    }
}

/* ------------------------------------------------------------------------------------------------ */
/* Convolution                                                                                         */
/* ------------------------------------------------------------------------------------------------ */

/* Epilogue of one 32-pixel x 32-channel block (epilogue16, shared with the AVX-512 popcount path). */
FA_TAMX static void store_block(const amx_plan *pl, int64_t n, int64_t cb, int64_t q0, const int32_t acc[2][16][32]) {
    const fa_conv_args *a = pl->a;
    const int64_t c0 = cb * FA_BLOCK;
    int64_t y = q0 / pl->ws, x = q0 % pl->ws - 1; /* one division per block, not per pixel */
    for (int p = 0; p < PIXELS; p++) {
        if (++x == pl->ws) {
            x = 0;
            y++;
        }
        if (y >= a->h || x >= a->w) continue;
        const int64_t pixel = (n * a->h + y) * a->w + x;
        const int32_t *dots = acc[p / 16][p % 16];
        uint32_t negative = 0;
        for (int r = 0; r < 2; r++) {
            const int64_t left = a->cout - c0 - 16 * r;
            if (left <= 0) break;
            const __m512i dot = _mm512_loadu_si512((const void *)(dots + 16 * r));
            negative |= epilogue16(a, c0 + 16 * r, pixel, dot, lanes16(left), NULL) << (16 * r); /* no final_bits on AMX */
        }
        if (a->next_bits) *next_bits_slot(a, cb, n, y, x) = negative;
    }
}

/* Issues the tile products of one block (32 positions from q0 x the 32 output channels of block cb) into
 * accumulator tiles 0-3; the caller stores them. */
FA_TAMX static void issue_block(const amx_plan *pl, int64_t n, int64_t cb, int64_t q0) {
    const int64_t cw = pl->cw, stride = pl->row_bytes;
    const int8_t *img = pl->scratch + (n * pl->img_pixels + q0) * stride;
    const int8_t *wb = pl->weights + cb * pl->kk * cw * 2 * TILE_BYTES;
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (int64_t t = 0; t < pl->kk; t++) {
        const int8_t *s = img + pl->tap_offset[t] * stride;
        for (int64_t j = 0; j < cw; j++) {
            const int8_t *b = wb + (t * cw + j) * 2 * TILE_BYTES;
            /* Tiles are not renamed: a load into tile 4-7 waits until the products reading its old
             * contents are done.  Each load is placed right before the first product that needs it, so
             * the next step's loads into 4 and 6 can start while products 2-3 of this step still run
             * (loading all four first made every load wait for the previous step's last product:
             * measured 4-5% slower on the 3x3 shapes of the benchmark). */
            _tile_loadd(4, s + 64 * j, stride);
            _tile_loadd(6, b, 64);
            _tile_dpbssd(0, 4, 6);
            _tile_loadd(7, b + TILE_BYTES, 64);
            _tile_dpbssd(1, 4, 7);
            _tile_loadd(5, s + 16 * stride + 64 * j, stride);
            _tile_dpbssd(2, 5, 6);
            _tile_dpbssd(3, 5, 7);
        }
    }
}

/* tile (pixel half p, channel half h) -> acc[p][row][16h ..] */
FA_TAMX static void save_tiles(int32_t acc[2][16][32]) {
    _tile_stored(0, &acc[0][0][0], 128);
    _tile_stored(1, &acc[0][0][16], 128);
    _tile_stored(2, &acc[1][0][0], 128);
    _tile_stored(3, &acc[1][0][16], 128);
}

/* Blocks [begin, end) of one thread, output-channel blocks innermost: consecutive blocks read the same
 * ~26 KB of activations from L1 (the weights, 72 KB per 32 channels at 256 inputs, come from L2 either way).
 * Software-pipelined: the AVX-512 epilogue of block i-1 is placed after the tile products of block i are
 * issued and before their results are stored, so the core runs it while the tile unit computes (storing
 * the tiles right after issuing them would stall on the whole chain of products). */
FA_TAMX static void conv_blocks(const amx_plan *pl, int64_t begin, int64_t end, int64_t cb_count,
                                int64_t blocks_per_image) {
    int32_t acc[2][2][16][32] __attribute__((aligned(64)));
    int64_t prev_n = 0, prev_cb = 0, prev_q0 = 0;
    for (int64_t i = begin; i < end; i++) {
        const int64_t cb = i % cb_count, blk = (i / cb_count) % blocks_per_image;
        const int64_t n = i / (blocks_per_image * cb_count);
        issue_block(pl, n, cb, blk * PIXELS);
        if (i > begin) store_block(pl, prev_n, prev_cb, prev_q0, (const int32_t(*)[16][32])acc[(i - 1) & 1]);
        save_tiles(acc[i & 1]);
        prev_n = n;
        prev_cb = cb;
        prev_q0 = blk * PIXELS;
    }
    if (end > begin) store_block(pl, prev_n, prev_cb, prev_q0, (const int32_t(*)[16][32])acc[(end - 1) & 1]);
}

FA_TAMX static void release_tiles(void) { _tile_release(); }

/* The tile unit's own rate: `steps` x 4 TDPBSSD (16x16x64 MACs each) on L1-resident tiles, no stores in
 * between; the caller times it (fa_lib.kernels.bench reports the ceiling the convolution is held to). */
FA_TAMX int fa_amx_peak(int64_t steps) {
    if (!fa_amx_supported()) return FA_ERR_ISA;
    static int8_t operand[2 * TILE_BYTES] __attribute__((aligned(64)));
    int32_t sink[16 * 16] __attribute__((aligned(64)));
    configure_tiles();
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    _tile_loadd(4, operand, 64);
    _tile_loadd(5, operand + TILE_BYTES, 64);
    _tile_loadd(6, operand, 64);
    _tile_loadd(7, operand + TILE_BYTES, 64);
    for (int64_t i = 0; i < steps; i++) {
        _tile_dpbssd(0, 4, 6);
        _tile_dpbssd(1, 4, 7);
        _tile_dpbssd(2, 5, 6);
        _tile_dpbssd(3, 5, 7);
    }
    _tile_stored(0, sink, 64);
    _tile_release();
    return sink[0] == 0 ? FA_OK : FA_ERR_ARG; /* zero operands: any other value means a broken unit */
}

/* The target attribute also covers the OpenMP region GCC outlines from this function. */
FA_TAMX int fa_amx_binary_conv(const fa_conv_args *a, int threads) {
    if (!fa_amx_supported()) return FA_ERR_ISA;
    amx_plan pl;
    pl.a = a;
    pl.kk = a->k * a->k;
    pl.kpad = (a->k - 1) / 2;
    pl.cw = a->cw;
    pl.row_bytes = 64 * a->cw;
    pl.ws = a->w + 2 * pl.kpad;
    pl.hs = a->h + 2 * pl.kpad;
    /* computed positions: every q < h*ws, rounded up to whole blocks; their taps reach
     * q + (k-1)*(ws+1), which must stay inside this image's zeroed allocation */
    pl.q_count = (a->h * pl.ws + PIXELS - 1) / PIXELS * PIXELS;
    const int64_t reach = pl.q_count + (a->k - 1) * (pl.ws + 1);
    pl.img_pixels = reach > pl.hs * pl.ws ? reach : pl.hs * pl.ws;
    for (int64_t ky = 0; ky < a->k; ky++)
        for (int64_t kx = 0; kx < a->k; kx++) pl.tap_offset[ky * a->k + kx] = ky * pl.ws + kx;

    const size_t act_bytes = (size_t)(a->n * pl.img_pixels * pl.row_bytes);
    pl.scratch = scratch_buffer(0, act_bytes);
    if (!pl.scratch) return FA_ERR_ARG;
    const int64_t cb_count = (a->cout + FA_BLOCK - 1) / FA_BLOCK;
    if (a->weights_i8) {
        pl.weights = a->weights_i8;
    } else {
        const int size = fa_amx_weights_size(a->cout, a->cin, a->k);
        int8_t *w = size > 0 ? scratch_buffer(1, (size_t)size) : NULL;
        if (!w) return FA_ERR_ARG;
        pack_weights_amx(a->weights, a->cout, a->cin, a->k, w);
        pl.weights = w;
    }
    if (threads < 1) threads = 1;
    (void)threads;
    const int64_t rows = a->n * pl.hs, tail = pl.img_pixels - pl.hs * pl.ws;
    const int64_t blocks_per_image = pl.q_count / PIXELS, items = a->n * cb_count * blocks_per_image;
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
#endif
    {
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
        for (int64_t r = 0; r < rows; r++) unpack_row(&pl, r / pl.hs, r % pl.hs);
        if (tail > 0) {
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
            for (int64_t b = 0; b < a->n; b++)
                memset(pl.scratch + (b * pl.img_pixels + pl.hs * pl.ws) * pl.row_bytes, 0, (size_t)(tail * pl.row_bytes));
        }
        configure_tiles();
        int64_t begin = 0, end = items;
#ifdef _OPENMP
        const int64_t team = omp_get_num_threads(), me = omp_get_thread_num();
        begin = items * me / team;
        end = items * (me + 1) / team;
#endif
        conv_blocks(&pl, begin, end, cb_count, blocks_per_image);
        release_tiles();
    }
    return FA_OK;
}

#endif /* FA_HAVE_AMX */
