// One decode step of a Llama-family decoder (int4 weights, bf16 activations) for every row at once,
// in one call: the fast path's eager step dispatched about 25 small torch ops per layer from Python,
// which cost as much as the int4 matmuls themselves. Here the matmuls are this file's packed kernels
// (CPUs with AVX512-BF16, on AMX tiles where the CPU has them, or AVX2; else torch's int4 kernel)
// and everything between them (RMS norm, rotary embedding, KV-cache writes, attention for one query
// a row, SiLU gate, residual adds) is a plain loop, computed in fp32 and stored in bf16.
// Built on first use by convo.engine.native (torch.utils.cpp_extension); the Python step stays the
// reference and the fallback.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

using at::BFloat16;

namespace {

constexpr int64_t kGroup = 32;
using Half = uint16_t;  // the int4 kernels' scales and lows: fp16 bits (fastpath.pack_int4)

inline float f(BFloat16 v) { return static_cast<float>(v); }

// fn(begin, end) over the `blocks` output blocks of a matmul of `rows` rows. For several rows, in
// chunks of about blocks / (8 x threads), each taken by the next thread that is free: with one fixed
// share a thread (at::parallel_for), a thread the OS takes away for a while (the app's other threads
// run on the same cores) holds up the whole op until its share is done; with chunks the other threads
// take over the rest. (AVX2 Zen 3, 2 cores shared with other tenants, steps of 8 rows interleaved each
// way: median 19.7-24.8 ms against 23.0-30.2 with fixed shares, the fastest the same.) One row is
// memory-bound and streams better through a whole share: chunks were 6-8% slower there, so it keeps
// fixed shares.
template <typename F>
void parallel_blocks(int64_t blocks, int64_t rows, const F& fn) {
  if (rows <= 1) return at::parallel_for(0, blocks, 1, fn);
  const int64_t threads = at::get_num_threads(), grain = std::max<int64_t>(1, blocks / (8 * threads));
  const int64_t chunks = (blocks + grain - 1) / grain;
  std::atomic<int64_t> next{0};
  at::parallel_for(0, threads, 1, [&](int64_t, int64_t) {
    for (int64_t c; (c = next.fetch_add(1, std::memory_order_relaxed)) < chunks;)
      fn(c * grain, std::min(blocks, (c + 1) * grain));
  });
}

// out[b] = bf16(bf16(x[b] / rms(x[b])) * weight): transformers' order (normalized in fp32, cast, then scaled)
void rms_norm_scalar(const BFloat16* x, const BFloat16* weight, BFloat16* out, int64_t rows, int64_t hidden, float eps) {
  for (int64_t b = 0; b < rows; ++b) {
    const BFloat16* xr = x + b * hidden;
    float sum = 0.f;
    for (int64_t i = 0; i < hidden; ++i) sum += f(xr[i]) * f(xr[i]);
    const float scale = 1.f / std::sqrt(sum / hidden + eps);
    for (int64_t i = 0; i < hidden; ++i) {
      const float normed = f(BFloat16(f(xr[i]) * scale));
      out[b * hidden + i] = BFloat16(normed * f(weight[i]));
    }
  }
}

// rotate-half rotary embedding of one head vector (d values) at one position
inline void rope(const BFloat16* in, const BFloat16* cos, const BFloat16* sin, float* out, int64_t d) {
  const int64_t half = d / 2;
  for (int64_t i = 0; i < d; ++i) {
    const float rotated = i < half ? -f(in[i + half]) : f(in[i - half]);
    out[i] = f(BFloat16(f(in[i]) * f(cos[i]))) + f(BFloat16(rotated * f(sin[i])));
  }
}

// a query head rotated at `pos` and rounded to bf16 (as the eager step's query), in fp32
inline void rotated_query(const BFloat16* in, const BFloat16* cos, const BFloat16* sin, int64_t pos, float* out, int64_t d) {
  rope(in, cos + pos * d, sin + pos * d, out, d);
  for (int64_t i = 0; i < d; ++i) out[i] = f(BFloat16(out[i]));
}

// ---------------------------------------------------------------------------------------------------
// Matmuls whose cost grows little with the rows (AVX512-BF16 CPUs here, AVX2 ones below). torch's int4/int8 CPU kernels
// cost nearly the same per row however many rows come; these dequantize each block of 16 outputs x
// 2 inputs once into bf16 pairs and apply it to up to 12 rows with vdpbf16ps (bf16 products summed in
// fp32), so a step of 8 rows costs far less than 8 steps of one.
//
// int4 layout (pack_int4 in fastpath): for output block nb (16 outputs) and input pair p, 16 bytes;
// byte i's low nibble is word i and its high nibble word i + 16 of the 32 bf16 words whose pair j
// (words 2j, 2j + 1) is (w[16 nb + j][2p], w[16 nb + j][2p + 1]), as q in 0..15. Per group of 32
// inputs and output: w = q * scale + low (fp16 [N/16, K/32, 16] each: 20 bytes a group with the
// weights, as the GGUF's Q4_1 block; fp32 took 24).
// int8 layout: 32 bytes per (nb, p), byte i = word i, w = q * scale[n] (scale fp32 [N]).
#if defined(__AVX512BF16__) && defined(__AVX512BW__)
#include <immintrin.h>
constexpr const char* kPackedKernels = "avx512_bf16";

inline __m512 load_half16(const Half* p) { return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }

// One output block's input pair (16 packed bytes) as its 32 bf16 words 128 + q: see int4_block.
struct Int4Unpack {
  const __m512i widen = _mm512_set_epi8(
      -128, 15, -128, 14, -128, 13, -128, 12, -128, 11, -128, 10, -128, 9, -128, 8,
      -128, 7, -128, 6, -128, 5, -128, 4, -128, 3, -128, 2, -128, 1, -128, 0,
      -128, 15, -128, 14, -128, 13, -128, 12, -128, 11, -128, 10, -128, 9, -128, 8,
      -128, 7, -128, 6, -128, 5, -128, 4, -128, 3, -128, 2, -128, 1, -128, 0);
  const __m512i shifts = _mm512_set_epi64(0x0004000400040004, 0x0004000400040004, 0x0004000400040004, 0x0004000400040004, 0, 0, 0, 0);
  const __m512i nibble = _mm512_set1_epi16(0x000f), bias = _mm512_set1_epi16(0x4300);
  __m512i operator()(const uint8_t* packed) const {
    const __m512i bytes = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(packed)));
    const __m512i words = _mm512_srlv_epi16(_mm512_shuffle_epi8(bytes, widen), shifts);
    return _mm512_ternarylogic_epi32(words, nibble, bias, 0xEA);  // (a & b) | c
  }
};

template <int MB>
void int4_block(const BFloat16* x, int64_t rows_stride, const float* xsum, int64_t groups, const uint8_t* w,
                const Half* scale, const Half* low, BFloat16* y, int64_t y_stride) {
  // Each 16 bytes become the 32 bf16 words 128 + q (0x4300 | q is exactly that bf16), so the products
  // sum (128 + q) x and the group's low term takes 128 x scale back out: w = (128 + q) scale + (low -
  // 128 scale). The 16 bytes go to all four 128-bit lanes at load; one in-lane byte shuffle widens
  // lane 0's and 2's to bytes 0-7 and lane 1's and 3's to bytes 8-15, lanes 2 and 3 shift right by a
  // nibble, and one ternary-logic op keeps the nibble and sets 0x4300. (It was a nibble split, a
  // 128-bit insert, a byte-to-word widening across lanes and a word permute through a table of
  // bf16 0..15: three cross-lane shuffles where this has none. 8-row matmuls on Zen 4: see
  // benchmarks/README.md.)
  const Int4Unpack unpack;
  const __m512 k128 = _mm512_set1_ps(128.f);
  __m512 acc[MB];
  for (int m = 0; m < MB; ++m) acc[m] = _mm512_setzero_ps();
  const uint32_t* xp[MB];
  for (int m = 0; m < MB; ++m) xp[m] = reinterpret_cast<const uint32_t*>(x + m * rows_stride);
  // Each row's sums of a group in kChains chains of dot products (pairs p, p + kChains, ...): in one
  // chain each vdpbf16ps waits out the last one's latency, which set the pace for one or two rows
  // (30 layers of the bundled model, one row, 2-core AMX Xeon, interleaved runs: 2.7-2.8 ms against
  // 3.0-3.1 with one chain; the int8 head 0.93 against 1.03)
  constexpr int kChains = MB == 1 ? 4 : MB == 2 ? 2 : 1;
  for (int64_t g = 0; g < groups; ++g) {
    __m512 part[kChains][MB];
    for (int c = 0; c < kChains; ++c)
      for (int m = 0; m < MB; ++m) part[c][m] = _mm512_setzero_ps();
    for (int p0 = 0; p0 < 16; p0 += kChains) {
      for (int c = 0; c < kChains; ++c) {
        const int64_t pair = g * 16 + p0 + c;
        const __m512bh wv = (__m512bh)unpack(w + pair * 16);
        for (int m = 0; m < MB; ++m)
          asm("vdpbf16ps %2%{1to16%}, %1, %0" : "+v"(part[c][m]) : "v"(wv), "m"(xp[m][pair]));
      }
    }
    for (int c = 1; c < kChains; ++c)
      for (int m = 0; m < MB; ++m) part[0][m] = _mm512_add_ps(part[0][m], part[c][m]);
    const __m512 s = load_half16(scale + g * 16), z = _mm512_fnmadd_ps(k128, s, load_half16(low + g * 16));
    for (int m = 0; m < MB; ++m) {
      acc[m] = _mm512_fmadd_ps(part[0][m], s, acc[m]);
      acc[m] = _mm512_fmadd_ps(z, _mm512_set1_ps(xsum[m * groups + g]), acc[m]);
    }
  }
  for (int m = 0; m < MB; ++m)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + m * y_stride), (__m256i)_mm512_cvtneps_pbh(acc[m]));
}

// One output block's input pair (32 int8 weights) as its 32 bf16 words (int8 values are exact in bf16).
inline __m512bh int8_pair(const int8_t* b) {
  const __m512 lo = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b))));
  const __m512 hi = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 16))));
  return _mm512_cvtne2ps_pbh(hi, lo);
}

template <int MB>
void int8_block(const BFloat16* x, int64_t rows_stride, int64_t pairs, const int8_t* w, const float* scale,
                BFloat16* y, int64_t y_stride) {
  constexpr int kChains = MB == 1 ? 4 : MB == 2 ? 2 : 1;  // (as in int4_block)
  __m512 acc[kChains][MB];
  for (int c = 0; c < kChains; ++c)
    for (int m = 0; m < MB; ++m) acc[c][m] = _mm512_setzero_ps();
  const uint32_t* xp[MB];
  for (int m = 0; m < MB; ++m) xp[m] = reinterpret_cast<const uint32_t*>(x + m * rows_stride);
  int64_t pair = 0;
  for (; pair + kChains <= pairs; pair += kChains)
    for (int c = 0; c < kChains; ++c) {
      const __m512bh wv = int8_pair(w + (pair + c) * 32);
      for (int m = 0; m < MB; ++m)
        acc[c][m] = _mm512_dpbf16_ps(acc[c][m], (__m512bh)_mm512_set1_epi32(static_cast<int>(xp[m][pair + c])), wv);
    }
  for (; pair < pairs; ++pair) {
    const __m512bh wv = int8_pair(w + pair * 32);
    for (int m = 0; m < MB; ++m)
      acc[0][m] = _mm512_dpbf16_ps(acc[0][m], (__m512bh)_mm512_set1_epi32(static_cast<int>(xp[m][pair])), wv);
  }
  for (int c = 1; c < kChains; ++c)
    for (int m = 0; m < MB; ++m) acc[0][m] = _mm512_add_ps(acc[0][m], acc[c][m]);
  const __m512 s = _mm512_loadu_ps(scale);
  for (int m = 0; m < MB; ++m)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + m * y_stride),
                        (__m256i)_mm512_cvtneps_pbh(_mm512_mul_ps(acc[0][m], s)));
}

#if defined(__AMX_TILE__) && defined(__AMX_BF16__)
#include <sys/syscall.h>
#include <unistd.h>
#define CONVO_AMX 1
// AMX (Xeons from Sapphire Rapids on): a tile multiply sums a 16 x 32 bf16 block of activations
// against 32 x 16 weights in one instruction, so the rows beside the first cost little; here the
// dot products of up to 16 rows per unpacked weight block, where vdpbf16ps above takes one
// instruction per row and pair (an 8-row step cost 3.3-4x a 1-row one on a 2-core AMX Xeon; with
// the tiles 1.7-2x, see benchmarks/README.md). For one row the tiles were no faster: there the
// unpacking is the work.
// Linux lends a process the tile registers only once asked (arch_prctl ARCH_REQ_XCOMP_PERM for
// XTILEDATA); amx_usable is false where it refuses, or once turned off (set_amx: tests compare
// both ways; $CONVO_FAST_AMX=0).
std::atomic<bool> amx_wanted{[] { const char* v = std::getenv("CONVO_FAST_AMX"); return !(v && std::string(v) == "0"); }()};
bool amx_usable() {
  static const bool granted = syscall(SYS_arch_prctl, 0x1023, 18) == 0;
  return granted && amx_wanted.load(std::memory_order_relaxed);
}

struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0, reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
};

// ldtilecfg of a config just written. Where the config was not read again, GCC 12 dropped the stores
// of its rows and columns before the instruction and kept only the first byte's (a helper that wrote
// a config and loaded it: every tile then had 0 rows, and the first tile op faulted with SIGILL);
// the empty asm that may read any memory keeps them.
inline void load_tile_config(const TileConfig& config) {
  asm volatile("" : : "m"(config) : "memory");
  _tile_loadconfig(&config);
}

// output blocks a tiled kernel keeps in flight: 3 with one tile of rows, 2 with two, 1 with three (of 8 tiles)
constexpr int amx_blocks(int row_tiles) { return row_tiles == 1 ? 3 : row_tiles == 2 ? 2 : 1; }
constexpr int kMostRows = 48;  // rows a pass of the tiles takes at most (three tiles of 16)

// The tiles of the packed kernels below for `rows` rows (1..48) in kRowTiles tiles of up to 16:
// A (the rows' 32 inputs) tmm0.., B (an output block's 16 input pairs) after them, and C (A x B,
// fp32 sums) tmm4..; set per call, as other code on this thread (oneDNN) sets tiles of its own.
template <int kRowTiles>
void configure_row_tiles(int64_t rows) {
  constexpr int kBlocks = amx_blocks(kRowTiles), kC = kRowTiles + kBlocks;
  int64_t tile_rows[kRowTiles];
  for (int a = 0; a < kRowTiles; ++a) tile_rows[a] = std::clamp<int64_t>(rows - 16 * a, 1, 16);
  TileConfig config;
  for (int a = 0; a < kRowTiles; ++a) config.rows[a] = static_cast<uint8_t>(tile_rows[a]), config.colsb[a] = 64;
  for (int b = 0; b < kBlocks; ++b) config.rows[kRowTiles + b] = 16, config.colsb[kRowTiles + b] = 64;
  for (int a = 0; a < kRowTiles; ++a)
    for (int b = 0; b < kBlocks; ++b)
      config.rows[kC + a * kBlocks + b] = static_cast<uint8_t>(tile_rows[a]), config.colsb[kC + a * kBlocks + b] = 64;
  load_tile_config(config);
}

template <int kRowTiles>
void zero_sums() {
  _tile_zero(4); _tile_zero(5); _tile_zero(6);
  if constexpr (kRowTiles == 2) _tile_zero(7);  // (three tiles of rows: one block, C in tmm4-6)
}

// C += A x B for 32 inputs: x (the rows, k inputs apart) times the unpacked blocks in wb
template <int kRowTiles>
void multiply_tiles(const BFloat16* x, int64_t k, const uint16_t (*wb)[16 * 32]) {
  if constexpr (kRowTiles == 1) {
    _tile_loadd(0, x, k * 2);
    _tile_loadd(1, wb[0], 64); _tile_loadd(2, wb[1], 64); _tile_loadd(3, wb[2], 64);
    _tile_dpbf16ps(4, 0, 1); _tile_dpbf16ps(5, 0, 2); _tile_dpbf16ps(6, 0, 3);
  } else if constexpr (kRowTiles == 2) {
    _tile_loadd(0, x, k * 2); _tile_loadd(1, x + 16 * k, k * 2);
    _tile_loadd(2, wb[0], 64); _tile_loadd(3, wb[1], 64);
    _tile_dpbf16ps(4, 0, 2); _tile_dpbf16ps(5, 0, 3); _tile_dpbf16ps(6, 1, 2); _tile_dpbf16ps(7, 1, 3);
  } else {
    _tile_loadd(0, x, k * 2); _tile_loadd(1, x + 16 * k, k * 2); _tile_loadd(2, x + 32 * k, k * 2);
    _tile_loadd(3, wb[0], 64);
    _tile_dpbf16ps(4, 0, 3); _tile_dpbf16ps(5, 1, 3); _tile_dpbf16ps(6, 2, 3);
  }
}

// sums[b][m * 16 + j]: row m's sum for output j of block b
template <int kRowTiles>
void store_sums(float (*sums)[kMostRows * 16]) {
  if constexpr (kRowTiles == 1) {
    _tile_stored(4, sums[0], 64); _tile_stored(5, sums[1], 64); _tile_stored(6, sums[2], 64);
  } else if constexpr (kRowTiles == 2) {
    _tile_stored(4, sums[0], 64); _tile_stored(5, sums[1], 64);
    _tile_stored(6, sums[0] + 16 * 16, 64); _tile_stored(7, sums[1] + 16 * 16, 64);
  } else {
    _tile_stored(4, sums[0], 64); _tile_stored(5, sums[0] + 16 * 16, 64); _tile_stored(6, sums[0] + 32 * 16, 64);
  }
}

// The rows of the pass that starts at row r: 32 (two tiles of 16), or all the rest where they are
// at most `most` (32, or 48 for a kernel with a pass of three tiles).
inline int64_t pass_rows(int64_t rows, int64_t r, int64_t most) { return rows - r <= most ? rows - r : 32; }

// fn(r, pass, begin, end) for the rows in passes (pass_rows: a pass of up to 16 rows takes one tile
// of them, of up to 32 two, of more three), each pass's output blocks [begin, end) shared by the
// threads in whole runs of the blocks a kernel keeps in flight
template <typename F>
void amx_passes(int64_t rows, int64_t blocks, int64_t most, const F& fn) {
  for (int64_t r = 0, pass; r < rows; r += pass) {
    pass = pass_rows(rows, r, most);
    const int64_t step = amx_blocks(pass > 32 ? 3 : pass > 16 ? 2 : 1);
    parallel_blocks((blocks + step - 1) / step, pass, [&](int64_t begin, int64_t end) {
      fn(r, pass, begin * step, std::min(blocks, end * step));
    });
  }
}

// Groups of an int4 block prefetched ahead of the one unpacked (2-core AMX Xeon, 30 layers at 8 rows:
// 4.0 ms against 4.6 without, 4.3 at 8 ahead): nine streams a thread (each block's weights, scales and
// lows) outrun the hardware prefetchers. prefetch_group: one group's 256 bytes of weights, its scales
// and its lows.
constexpr int64_t kAhead = 2;
inline void prefetch_group(const uint8_t* w, const Half* scale, const Half* low) {
  for (int line = 0; line < 4; ++line) _mm_prefetch(reinterpret_cast<const char*>(w + line * 64), _MM_HINT_T0);
  _mm_prefetch(reinterpret_cast<const char*>(scale), _MM_HINT_T0);
  _mm_prefetch(reinterpret_cast<const char*>(low), _MM_HINT_T0);
}

// y's output blocks [begin, end) (16 outputs each) for `rows` rows (1..32), with int4_block's
// unpacking: each group's 16 pairs become a 32 x 16 bf16 tile of 128 + q in AMX's pair layout (tile
// row p holds the 16 outputs' pair p, which is how the packed bytes already run), multiplied by up
// to 16 rows' 32 inputs in one tdpbf16ps; each group's fp32 sums are then scaled as int4_block does
// (exact products: only the order of the fp32 sums differs). Tiles hold one group (its scales differ
// from the next group's), so several output blocks are in flight at once for the core to overlap
// their chains of tile ops: 3 for up to 16 rows (7 of the 8 tiles), 2 for 2 x 16 rows (all 8).
template <int kRowTiles>
void int4_blocks_amx(const BFloat16* x, int64_t k, int64_t rows, const float* xsum, int64_t groups,
                     const uint8_t* wp, const Half* sp, const Half* lp, BFloat16* y, int64_t n,
                     int64_t begin, int64_t end) {
  constexpr int kBlocks = amx_blocks(kRowTiles);
  const Int4Unpack unpack;
  const __m512 k128 = _mm512_set1_ps(128.f);
  configure_row_tiles<kRowTiles>(rows);
  alignas(64) uint16_t weights[2][kBlocks][16 * 32];
  alignas(64) float sums[kBlocks][kMostRows * 16], acc[kBlocks][32 * 16];
  for (int64_t nb0 = begin; nb0 < end; nb0 += kBlocks) {
    const int nbs = static_cast<int>(std::min<int64_t>(kBlocks, end - nb0));
    for (int b = 0; b < nbs; ++b)
      for (int64_t m = 0; m < rows; ++m) _mm512_store_ps(acc[b] + m * 16, _mm512_setzero_ps());
    for (int64_t g = 0; g < groups; ++g) {
      uint16_t(*wb)[16 * 32] = weights[g & 1];  // two sets: the next group's unpacking need not wait for these tile loads
      for (int b = 0; b < kBlocks; ++b) {  // (a missing last block repeats the one before: same tile ops, result unused)
        const int64_t block = nb0 + std::min(b, nbs - 1);
        const uint8_t* w = wp + block * (k / 2) * 16 + g * 16 * 16;
        if (g + kAhead < groups) prefetch_group(w + kAhead * 256, sp + (block * groups + g + kAhead) * 16, lp + (block * groups + g + kAhead) * 16);
        for (int p = 0; p < 16; ++p) _mm512_store_si512(wb[b] + p * 32, unpack(w + p * 16));
      }
      zero_sums<kRowTiles>();  // (each group's sums are scaled on their own: its scale and low differ)
      multiply_tiles<kRowTiles>(x + g * kGroup, k, wb);
      store_sums<kRowTiles>(sums);
      for (int b = 0; b < nbs; ++b) {
        const Half *scale = sp + (nb0 + b) * groups * 16 + g * 16, *low = lp + (nb0 + b) * groups * 16 + g * 16;
        const __m512 s = load_half16(scale), z = _mm512_fnmadd_ps(k128, s, load_half16(low));
        for (int64_t m = 0; m < rows; ++m) {
          const __m512 a = _mm512_fmadd_ps(_mm512_load_ps(sums[b] + m * 16), s, _mm512_load_ps(acc[b] + m * 16));
          _mm512_store_ps(acc[b] + m * 16, _mm512_fmadd_ps(z, _mm512_set1_ps(xsum[m * groups + g]), a));
        }
      }
    }
    for (int b = 0; b < nbs; ++b)
      for (int64_t m = 0; m < rows; ++m)
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + m * n + (nb0 + b) * 16),
                            (__m256i)_mm512_cvtneps_pbh(_mm512_load_ps(acc[b] + m * 16)));
  }
  _tile_release();
}

// int4_blocks_amx for passes of kDequantizeRows..48 rows: each group's 16 pairs are dequantized to bf16
// weights (q x scale + low in fp32, rounded to bf16, as a bf16 layer's weights are) and the tiles sum
// every group, so a block's sums are stored and scaled once instead of once a group. The per-group
// scaling above costs a load, two multiply-adds and a store per row, group and block, and at 32 rows
// that was more than the tile products; the dequantizing costs the same for any rows. Whole steps of the
// bundled model (2-core AMX Xeon, 125 cached positions, interleaved runs): 32 rows 11.6 -> 10.3 ms,
// 24 rows 9.6 -> 9.1, 20 rows 8.6 -> 8.4, 17 rows 7.7 -> 7.9 (slower: hence the threshold). With three
// tiles of rows (33-48, one block in flight) a pass takes what was a pass of 32 and a second pass that
// unpacked every weight again (150 positions: 33 rows 15.4 -> 12.3 ms, 40 rows 17.4 -> 14.4). The bf16
// weights move a step's output as much as the AMX tiles' order of sums does (1.0e-2 of its largest
// value against 1.3e-2 between tiles and no tiles).
constexpr int64_t kDequantizeRows = 20;

// The tiles' sums over all k inputs for output blocks [begin, end) of `rows` rows (1..48): fill(wb,
// block, c) writes the block's inputs 32c.. as a 32 x 16 bf16 tile in the pair layout, the tiles sum
// every chunk, and y gets the sums, times the block's per-output `scale` where one is given (int8).
template <int kRowTiles, typename Fill>
void tiles_over_inputs(const BFloat16* x, int64_t k, int64_t rows, const Fill& fill, const float* scale, BFloat16* y,
                       int64_t n, int64_t begin, int64_t end) {
  constexpr int kBlocks = amx_blocks(kRowTiles);
  configure_row_tiles<kRowTiles>(rows);
  alignas(64) uint16_t weights[2][kBlocks][16 * 32];
  alignas(64) float sums[kBlocks][kMostRows * 16];
  for (int64_t nb0 = begin; nb0 < end; nb0 += kBlocks) {
    const int nbs = static_cast<int>(std::min<int64_t>(kBlocks, end - nb0));
    zero_sums<kRowTiles>();
    for (int64_t c = 0; c < k / 32; ++c) {
      uint16_t(*wb)[16 * 32] = weights[c & 1];  // two sets: the next chunk's filling need not wait for these tile loads
      for (int b = 0; b < kBlocks; ++b) fill(wb[b], nb0 + std::min(b, nbs - 1), c);  // (a missing last block repeats the one before: same tile ops, result unused)
      multiply_tiles<kRowTiles>(x + c * 32, k, wb);
    }
    store_sums<kRowTiles>(sums);
    for (int b = 0; b < nbs; ++b) {
      const __m512 s = scale ? _mm512_loadu_ps(scale + (nb0 + b) * 16) : _mm512_set1_ps(1.f);
      for (int64_t m = 0; m < rows; ++m)
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + m * n + (nb0 + b) * 16),
                            (__m256i)_mm512_cvtneps_pbh(_mm512_mul_ps(_mm512_load_ps(sums[b] + m * 16), s)));
    }
  }
  _tile_release();
}

template <int kRowTiles>
void int4_blocks_amx_dequantized(const BFloat16* x, int64_t k, int64_t rows, int64_t groups, const uint8_t* wp,
                                 const Half* sp, const Half* lp, BFloat16* y, int64_t n, int64_t begin, int64_t end) {
  // a group's 16 scales (and lows) as the pair layout's words 0-15 (outputs 0-7, two words each) and 16-31
  alignas(64) int32_t first_half[16], second_half[16];
  for (int i = 0; i < 16; ++i) first_half[i] = i / 2, second_half[i] = 8 + i / 2;
  const __m512i first = _mm512_load_si512(first_half), second = _mm512_load_si512(second_half);
  const __m512i nibble = _mm512_set1_epi32(0xf);
  auto fill = [&](uint16_t* wb, int64_t block, int64_t g) {
    const uint8_t* w = wp + block * (k / 2) * 16 + g * 16 * 16;
    if (g + kAhead < groups) prefetch_group(w + kAhead * 256, sp + (block * groups + g + kAhead) * 16, lp + (block * groups + g + kAhead) * 16);
    const __m512 scale = load_half16(sp + (block * groups + g) * 16), low = load_half16(lp + (block * groups + g) * 16);
    const __m512 scale0 = _mm512_permutexvar_ps(first, scale), scale1 = _mm512_permutexvar_ps(second, scale);
    const __m512 low0 = _mm512_permutexvar_ps(first, low), low1 = _mm512_permutexvar_ps(second, low);
    for (int p = 0; p < 16; ++p) {  // byte i: word i's q in its low nibble, word i + 16's in its high one
      const __m512i bytes = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + p * 16)));
      const __m512 q0 = _mm512_cvtepi32_ps(_mm512_and_si512(bytes, nibble));
      const __m512 q1 = _mm512_cvtepi32_ps(_mm512_srli_epi32(bytes, 4));
      _mm512_store_si512(wb + p * 32, (__m512i)_mm512_cvtne2ps_pbh(_mm512_fmadd_ps(q1, scale1, low1),
                                                                      _mm512_fmadd_ps(q0, scale0, low0)));
    }
  };
  tiles_over_inputs<kRowTiles>(x, k, rows, fill, nullptr, y, n, begin, end);
}

// int8_block's matmul on AMX for up to 32 rows (one tile of 16 rows or two): each 16 input pairs of a
// block become a 32 x 16 bf16 tile (the int8 values are exact in bf16) and the block's one scale per
// output applies at the end, so its tiles sum every input; 3 blocks in flight with one tile of rows,
// 2 with two, as above. (Up to 16 rows a pass, a 32-row step converted and read the head twice: the
// bundled model's head at 32 rows 1.5 ms -> 0.9, 2-core AMX Xeon.)
template <int kRowTiles>
void int8_blocks_amx(const BFloat16* x, int64_t k, int64_t rows, const int8_t* wp, const float* sp, BFloat16* y,
                     int64_t n, int64_t begin, int64_t end) {
  auto fill = [&](uint16_t* wb, int64_t block, int64_t c) {
    const int8_t* w = wp + block * (k / 2) * 32 + c * 16 * 32;
    for (int p = 0; p < 16; ++p) _mm512_store_si512(wb + p * 32, (__m512i)int8_pair(w + p * 32));
  };
  tiles_over_inputs<kRowTiles>(x, k, rows, fill, sp, y, n, begin, end);
}
#endif

// one block of 16 outputs for up to 12 rows at a time (the row count picks the unrolled kernel), in
// passes of equal rows: each pass unpacks every weight of the block again. An 8-row batch with a
// short prompt fed beside it took 8 rows and then the rest (whole steps of the bundled model, Zen 4,
// 8 rows 9.6 ms: 9 rows 11.6 -> 10.4, 10 rows 12.7 -> 11.6, 12 rows 14.2 -> 13.5; 13-64 rows the same)
template <typename Block>
void by_rows(int64_t rows, Block&& block) {
  constexpr int64_t kMost = 12;  // (12 rows' sums and a group's scaling: 24 of the 32 vector registers)
  for (int64_t r = 0, passes = (rows + kMost - 1) / kMost; r < rows; --passes) {
    const int64_t pass = (rows - r + passes - 1) / passes;
    switch (pass) {
      case 12: block(r, std::integral_constant<int, 12>{}); break;
      case 11: block(r, std::integral_constant<int, 11>{}); break;
      case 10: block(r, std::integral_constant<int, 10>{}); break;
      case 9: block(r, std::integral_constant<int, 9>{}); break;
      case 8: block(r, std::integral_constant<int, 8>{}); break;
      case 7: block(r, std::integral_constant<int, 7>{}); break;
      case 6: block(r, std::integral_constant<int, 6>{}); break;
      case 5: block(r, std::integral_constant<int, 5>{}); break;
      case 4: block(r, std::integral_constant<int, 4>{}); break;
      case 3: block(r, std::integral_constant<int, 3>{}); break;
      case 2: block(r, std::integral_constant<int, 2>{}); break;
      default: block(r, std::integral_constant<int, 1>{}); break;
    }
    r += pass;
  }
}

// y [M, N] = x [M, K] (bf16) times the packed int4 weight (see the layout above)
at::Tensor int4_mm_impl(const at::Tensor& x_in, const at::Tensor& packed, const at::Tensor& scale, const at::Tensor& low) {
  const at::Tensor x = x_in.contiguous();
  const int64_t rows = x.size(0), k = x.size(1), blocks = packed.size(0), groups = k / kGroup;
  TORCH_CHECK(packed.size(1) == k / 2 && packed.size(2) == 16 && k % kGroup == 0, "int4_mm: shapes do not match");
  auto y = at::empty({rows, blocks * 16}, x.options());
  // each row's sums per group of 32 inputs (the low term), for the rows of passes that scale per group
  int64_t summed_from = 0;
#ifdef CONVO_AMX
  const bool tiles = rows >= 2 && amx_usable();  // (one row: the kernel below was as fast)
  if (tiles) {  // amx_passes' passes below: the dequantizing kernel needs no sums, the rest from the first that does
    summed_from = rows;
    for (int64_t r = 0, pass; r < rows; r += pass)
      if ((pass = pass_rows(rows, r, kMostRows)) < kDequantizeRows) {
        summed_from = r;
        break;
      }
  }
#endif
  std::vector<float> xsum(rows * groups);
  const BFloat16* xp = x.data_ptr<BFloat16>();
  for (int64_t m = summed_from; m < rows; ++m)
    for (int64_t g = 0; g < groups; ++g) {
      float s = 0.f;
      for (int64_t i = 0; i < kGroup; ++i) s += f(xp[m * k + g * kGroup + i]);
      xsum[m * groups + g] = s;
    }
  const uint8_t* wp = packed.data_ptr<uint8_t>();
  TORCH_CHECK(scale.scalar_type() == at::kHalf && low.scalar_type() == at::kHalf, "int4_mm: fp16 scales and lows");
  const Half* sp = reinterpret_cast<const Half*>(scale.data_ptr<at::Half>());
  const Half* lp = reinterpret_cast<const Half*>(low.data_ptr<at::Half>());
  BFloat16* yp = y.data_ptr<BFloat16>();
  const int64_t n = blocks * 16;
#ifdef CONVO_AMX
  if (tiles) {
    amx_passes(rows, blocks, kMostRows, [&](int64_t r, int64_t pass, int64_t begin, int64_t end) {  // (each unpacks every weight once)
      if (pass >= kDequantizeRows) {
        auto dequantized = pass > 32 ? int4_blocks_amx_dequantized<3> : int4_blocks_amx_dequantized<2>;
        dequantized(xp + r * k, k, pass, groups, wp, sp, lp, yp + r * n, n, begin, end);
        return;
      }
      auto kernel = pass > 16 ? int4_blocks_amx<2> : int4_blocks_amx<1>;
      kernel(xp + r * k, k, pass, xsum.data() + r * groups, groups, wp, sp, lp, yp + r * n, n, begin, end);
    });
    return y;
  }
#endif
  parallel_blocks(blocks, rows, [&](int64_t begin, int64_t end) {
    for (int64_t nb = begin; nb < end; ++nb) {
      by_rows(rows, [&](int64_t r, auto mb) {
        int4_block<decltype(mb)::value>(xp + r * k, k, xsum.data() + r * groups, groups, wp + nb * (k / 2) * 16,
                                        sp + nb * groups * 16, lp + nb * groups * 16, yp + r * n + nb * 16, n);
      });
    }
  });
  return y;
}

at::Tensor int8_mm_impl(const at::Tensor& x_in, const at::Tensor& packed, const at::Tensor& scale) {
  const at::Tensor x = x_in.contiguous();
  const int64_t rows = x.size(0), k = x.size(1), blocks = packed.size(0);
  TORCH_CHECK(packed.size(1) == k / 2 && packed.size(2) == 32 && k % 2 == 0, "int8_mm: shapes do not match");
  auto y = at::empty({rows, blocks * 16}, x.options());
  const BFloat16* xp = x.data_ptr<BFloat16>();
  const int8_t* wp = packed.data_ptr<int8_t>();
  const float* sp = scale.data_ptr<float>();
  BFloat16* yp = y.data_ptr<BFloat16>();
  const int64_t n = blocks * 16;
#ifdef CONVO_AMX
  if (k % 32 == 0 && amx_usable()) {  // (faster from one row: 0.88 ms against 1.2 for the bundled model's head)
    amx_passes(rows, blocks, 32, [&](int64_t r, int64_t pass, int64_t begin, int64_t end) {
      auto kernel = pass > 16 ? int8_blocks_amx<2> : int8_blocks_amx<1>;
      kernel(xp + r * k, k, pass, wp, sp, yp + r * n, n, begin, end);
    });
    return y;
  }
#endif
  parallel_blocks(blocks, rows, [&](int64_t begin, int64_t end) {
    for (int64_t nb = begin; nb < end; ++nb) {
      by_rows(rows, [&](int64_t r, auto mb) {
        int8_block<decltype(mb)::value>(xp + r * k, k, k / 2, wp + nb * (k / 2) * 32, sp + nb * 16,
                                        yp + r * n + nb * 16, n);
      });
    }
  });
  return y;
}
#elif defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
// AVX2 CPUs (no bf16 arithmetic): integer dot products on the same packed layouts. Each row's
// inputs are quantized to int16 (x ~ q * scale; per group of 32 for the int4 kernel, per row for the
// int8 one), and vpmaddwd multiplies 8 outputs x 2 inputs by a row's input pair in one instruction,
// summed exactly in int32; a block of up to 4 rows shares each unpacked weight block (int4: with the
// rows' fp32 sums in memory between groups, see int4_block; in registers 4 rows spilled, and 3 were
// the most). (int8 inputs, as llama.cpp's q8_0, were twice as fast per row but
// moved the bundled model's next-token distributions by 0.018 nats from the fp32 reference, where these
// kernels are at 0.0021 and torch's at 0.0024. With the error of each group's sum taken out, 0.0052
// nats and perplexity +0.34% against +0.24%, for 1.1-1.17x per 8-row matmul with 2 threads on 2 cores:
// not kept.)
#include <immintrin.h>
constexpr const char* kPackedKernels = "avx2";

inline __m256 load_half8(const Half* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }

// 8 fp32 with their bf16 (nearest even, as c10::BFloat16, finite values) in the high 16 bits
inline __m256i bf16_rounded8(__m256 v) {
  const __m256i bits = _mm256_castps_si256(v);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(bits, 16), _mm256_set1_epi32(1));
  return _mm256_add_epi32(bits, _mm256_add_epi32(lsb, _mm256_set1_epi32(0x7fff)));
}

// 8 fp32 -> 8 bf16
inline void store8_bf16(BFloat16* p, __m256 v) {
  const __m256i bits = _mm256_srli_epi32(bf16_rounded8(v), 16);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p),
                   _mm_packus_epi32(_mm256_castsi256_si128(bits), _mm256_extracti128_si256(bits, 1)));
}

// `count` inputs of one row as int16 pairs (pair p: inputs 2p, 2p + 1 in one uint32) scaled so
// that the largest |x| is `top_q`; returns the scale (x ~ q * scale)
inline float quantize_pairs(const BFloat16* x, int64_t count, float top_q, uint32_t* pairs) {
  float top = 0.f;
  for (int64_t i = 0; i < count; ++i) top = std::max(top, std::fabs(f(x[i])));
  const float inv = top > 0.f ? top_q / top : 0.f;
  for (int64_t p = 0; p < count / 2; ++p) {
    const auto q0 = static_cast<uint16_t>(static_cast<int16_t>(std::nearbyint(f(x[2 * p]) * inv)));
    const auto q1 = static_cast<uint16_t>(static_cast<int16_t>(std::nearbyint(f(x[2 * p + 1]) * inv)));
    pairs[p] = static_cast<uint32_t>(q0) | (static_cast<uint32_t>(q1) << 16);
  }
  return top / top_q;
}

template <int MB>
__attribute__((noinline)) void int4_block(const uint32_t* xq, int64_t pairs_stride, const float* xscale, const float* xsum, int64_t groups,
                const uint8_t* w, const Half* scale, const Half* low, BFloat16* y, int64_t y_stride) {
  const __m256i nibble = _mm256_set1_epi16(0x0f);
  // The rows' fp32 sums stay in memory between groups (a load and a store a group and 8 outputs), so
  // the registers hold only the group's int32 sums: 4 rows a block without spills. The empty asm
  // after each row's sums keeps GCC from adding into a new register and copying it back (6 copies
  // a pair at 3 rows), and noinline keeps its register allocation: inlined into the row loop's lambda
  // the same code ran at 0.7x. (The int8 kernel below is the opposite: noinline, with or without the
  // asm, made its blocks of several rows 0.56-0.67x.) Zen 3, bit-identical outputs, interleaved with the
  // code before in one process: the bundled model's int4 matmuls 1.00-1.36x on 2 threads; whole decode steps at 200
  // cached positions 1 row 1.02-1.06x, 4 rows 1.12-1.13x, 8 rows 1.06-1.07x (benchmarks/README.md).
  alignas(32) float acc[MB][16] = {};
  for (int64_t g = 0; g < groups; ++g) {
    __m256i part[MB][2];  // 16 pairs x 2 x 15 x 32767 stays inside int32
    for (int m = 0; m < MB; ++m) part[m][0] = part[m][1] = _mm256_setzero_si256();
    for (int p = 0; p < 16; ++p) {
      const int64_t pair = g * 16 + p;
      // the 16 bytes widened to words: low nibbles are outputs 0-7's pairs, high nibbles outputs 8-15's
      const __m256i words = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + pair * 16)));
      const __m256i lo = _mm256_and_si256(words, nibble), hi = _mm256_srli_epi16(words, 4);
      for (int m = 0; m < MB; ++m) {
        const __m256i xv = _mm256_set1_epi32(static_cast<int>(xq[m * pairs_stride + pair]));
        part[m][0] = _mm256_add_epi32(part[m][0], _mm256_madd_epi16(lo, xv));
        part[m][1] = _mm256_add_epi32(part[m][1], _mm256_madd_epi16(hi, xv));
        asm("" : "+x"(part[m][0]), "+x"(part[m][1]));
      }
    }
    const __m256 s0 = load_half8(scale + g * 16), s1 = load_half8(scale + g * 16 + 8);
    const __m256 z0 = load_half8(low + g * 16), z1 = load_half8(low + g * 16 + 8);
    for (int m = 0; m < MB; ++m) {
      const __m256 sx = _mm256_set1_ps(xscale[m * groups + g]), sum = _mm256_set1_ps(xsum[m * groups + g]);
      _mm256_store_ps(acc[m], _mm256_fmadd_ps(_mm256_cvtepi32_ps(part[m][0]), _mm256_mul_ps(s0, sx),
                                              _mm256_fmadd_ps(z0, sum, _mm256_load_ps(acc[m]))));
      _mm256_store_ps(acc[m] + 8, _mm256_fmadd_ps(_mm256_cvtepi32_ps(part[m][1]), _mm256_mul_ps(s1, sx),
                                                  _mm256_fmadd_ps(z1, sum, _mm256_load_ps(acc[m] + 8))));
    }
  }
  for (int m = 0; m < MB; ++m) {
    store8_bf16(y + m * y_stride, _mm256_load_ps(acc[m]));
    store8_bf16(y + m * y_stride + 8, _mm256_load_ps(acc[m] + 8));
  }
}

template <int MB>
void int8_block(const uint32_t* xq, int64_t pairs_stride, const float* xscale, int64_t pairs, const int8_t* w,
                const float* scale, BFloat16* y, int64_t y_stride) {
  __m256i acc[MB][2];
  for (int m = 0; m < MB; ++m) acc[m][0] = acc[m][1] = _mm256_setzero_si256();
  for (int64_t pair = 0; pair < pairs; ++pair) {
    const int8_t* b = w + pair * 32;
    const __m256i lo = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b)));       // outputs 0-7
    const __m256i hi = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 16)));  // outputs 8-15
    for (int m = 0; m < MB; ++m) {
      const __m256i xv = _mm256_set1_epi32(static_cast<int>(xq[m * pairs_stride + pair]));
      acc[m][0] = _mm256_add_epi32(acc[m][0], _mm256_madd_epi16(lo, xv));
      acc[m][1] = _mm256_add_epi32(acc[m][1], _mm256_madd_epi16(hi, xv));
    }
  }
  const __m256 s0 = _mm256_loadu_ps(scale), s1 = _mm256_loadu_ps(scale + 8);
  for (int m = 0; m < MB; ++m) {
    const __m256 sx = _mm256_set1_ps(xscale[m]);
    store8_bf16(y + m * y_stride, _mm256_mul_ps(_mm256_cvtepi32_ps(acc[m][0]), _mm256_mul_ps(s0, sx)));
    store8_bf16(y + m * y_stride + 8, _mm256_mul_ps(_mm256_cvtepi32_ps(acc[m][1]), _mm256_mul_ps(s1, sx)));
  }
}

// one block of 16 outputs for up to `most` (4) rows at a time
template <int most, typename Block>
void by_rows(int64_t begin, int64_t end, Block&& block) {
  for (int64_t r = begin; r < end; r += most) {
    switch (std::min<int64_t>(most, end - r)) {
      case 4: if constexpr (most >= 4) block(r, std::integral_constant<int, 4>{}); break;
      case 3: if constexpr (most >= 3) block(r, std::integral_constant<int, 3>{}); break;
      case 2: block(r, std::integral_constant<int, 2>{}); break;
      default: block(r, std::integral_constant<int, 1>{}); break;
    }
  }
}

constexpr int64_t kRowTile = 64;  // rows a thread takes through its outputs before the next rows (prefill)

at::Tensor int4_mm_impl(const at::Tensor& x_in, const at::Tensor& packed, const at::Tensor& scale, const at::Tensor& low) {
  const at::Tensor x = x_in.contiguous();
  const int64_t rows = x.size(0), k = x.size(1), blocks = packed.size(0), groups = k / kGroup;
  TORCH_CHECK(packed.size(1) == k / 2 && packed.size(2) == 16 && k % kGroup == 0, "int4_mm: shapes do not match");
  auto y = at::empty({rows, blocks * 16}, x.options());
  // each row's inputs per group of 32 to int16, and the group's sum for the low term
  std::vector<uint32_t> xq(rows * k / 2);
  std::vector<float> xscale(rows * groups), xsum(rows * groups);
  const BFloat16* xp = x.data_ptr<BFloat16>();
  at::parallel_for(0, rows, 16, [&](int64_t begin, int64_t end) {
    for (int64_t m = begin; m < end; ++m)
      for (int64_t g = 0; g < groups; ++g) {
        const BFloat16* xg = xp + m * k + g * kGroup;
        xscale[m * groups + g] = quantize_pairs(xg, kGroup, 32767.f, xq.data() + m * (k / 2) + g * (kGroup / 2));
        float sum = 0.f;
        for (int64_t i = 0; i < kGroup; ++i) sum += f(xg[i]);
        xsum[m * groups + g] = sum;
      }
  });
  const uint8_t* wp = packed.data_ptr<uint8_t>();
  TORCH_CHECK(scale.scalar_type() == at::kHalf && low.scalar_type() == at::kHalf, "int4_mm: fp16 scales and lows");
  const Half* sp = reinterpret_cast<const Half*>(scale.data_ptr<at::Half>());
  const Half* lp = reinterpret_cast<const Half*>(low.data_ptr<at::Half>());
  BFloat16* yp = y.data_ptr<BFloat16>();
  const int64_t n = blocks * 16;
  parallel_blocks(blocks, rows, [&](int64_t begin, int64_t end) {
    for (int64_t r0 = 0; r0 < rows; r0 += kRowTile)
      for (int64_t nb = begin; nb < end; ++nb)
        by_rows<4>(r0, std::min(rows, r0 + kRowTile), [&](int64_t r, auto mb) {
          int4_block<decltype(mb)::value>(xq.data() + r * (k / 2), k / 2, xscale.data() + r * groups,
                                          xsum.data() + r * groups, groups, wp + nb * (k / 2) * 16,
                                          sp + nb * groups * 16, lp + nb * groups * 16, yp + r * n + nb * 16, n);
        });
  });
  return y;
}

at::Tensor int8_mm_impl(const at::Tensor& x_in, const at::Tensor& packed, const at::Tensor& scale) {
  const at::Tensor x = x_in.contiguous();
  const int64_t rows = x.size(0), k = x.size(1), blocks = packed.size(0), pairs = k / 2;
  TORCH_CHECK(packed.size(1) == k / 2 && packed.size(2) == 32 && k % 2 == 0, "int8_mm: shapes do not match");
  auto y = at::empty({rows, blocks * 16}, x.options());
  // each row to int16 with its largest |x| at the most that keeps a sum of `pairs` products of two
  // inputs inside int32 (32767 up to 258 pairs; 29356 for the bundled model's head, 288; 11008 for 768)
  const float top_q = std::min(32767.f, std::floor(2147483647.f / (2.f * 127.f * static_cast<float>(pairs))));
  std::vector<uint32_t> xq(rows * pairs);
  std::vector<float> xscale(rows);
  const BFloat16* xp = x.data_ptr<BFloat16>();
  at::parallel_for(0, rows, 16, [&](int64_t begin, int64_t end) {
    for (int64_t m = begin; m < end; ++m) xscale[m] = quantize_pairs(xp + m * k, k, top_q, xq.data() + m * pairs);
  });
  const int8_t* wp = packed.data_ptr<int8_t>();
  const float* sp = scale.data_ptr<float>();
  BFloat16* yp = y.data_ptr<BFloat16>();
  const int64_t n = blocks * 16;
  parallel_blocks(blocks, rows, [&](int64_t begin, int64_t end) {
    for (int64_t r0 = 0; r0 < rows; r0 += kRowTile)
      for (int64_t nb = begin; nb < end; ++nb)
        by_rows<4>(r0, std::min(rows, r0 + kRowTile), [&](int64_t r, auto mb) {
          int8_block<decltype(mb)::value>(xq.data() + r * pairs, pairs, xscale.data() + r, pairs,
                                          wp + nb * pairs * 32, sp + nb * 16, yp + r * n + nb * 16, n);
        });
  });
  return y;
}
#else
constexpr const char* kPackedKernels = "";
at::Tensor int4_mm_impl(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&) {
  TORCH_CHECK(false, "int4_mm needs a CPU with AVX512-BF16 or AVX2");
}
at::Tensor int8_mm_impl(const at::Tensor&, const at::Tensor&, const at::Tensor&) {
  TORCH_CHECK(false, "int8_mm needs a CPU with AVX512-BF16 or AVX2");
}
#endif

// The elementwise work between the matmuls (RMS norm, residual adds, SiLU gate) and attention's inner
// loops, vectorized where the widths allow: as scalar loops it cost about 1 ms a row per step, as
// much as a row's matmuls. Written once over `Simd`: 16 fp32 lanes with AVX512-BF16, 8 with AVX2.
// the lanes a, b, a, b, ... as one 64-bit pattern (Simd::set2)
inline uint64_t pair_bits(float a, float b) {
  uint32_t low, high;
  std::memcpy(&low, &a, 4);
  std::memcpy(&high, &b, 4);
  return low | static_cast<uint64_t>(high) << 32;
}

#if defined(__AVX512BF16__) && defined(__AVX512BW__)
#define CONVO_SIMD 1
inline __m512 load16(const BFloat16* p) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16));
}
inline void store16(BFloat16* p, __m512 v) {  // rounded to nearest even, as c10::BFloat16
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), (__m256i)_mm512_cvtneps_pbh(v));
}
inline __m512 round16(__m512 v) {  // through bf16 and back
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(v)), 16));
}
// e^x for x in [-87, 88] (Cephes' polynomial on x - n ln2, then scaled by 2^n): within 2 ulp of expf
inline __m512 exp16(__m512 x) {
  x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(88.f)), _mm512_set1_ps(-87.f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500E-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507E-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073E-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894E-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459E-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201E-1f));
  p = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.f)));
  return _mm512_scalef_ps(p, n);
}
struct Simd {
  using V = __m512;
  static constexpr int64_t W = 16;
  static V zero() { return _mm512_setzero_ps(); }
  static V set1(float v) { return _mm512_set1_ps(v); }
  static V set2(float a, float b) {
    return _mm512_castsi512_ps(_mm512_set1_epi64(static_cast<long long>(pair_bits(a, b))));
  }
  static V loadf(const float* p) { return _mm512_loadu_ps(p); }
  static void storef(float* p, V v) { _mm512_storeu_ps(p, v); }
  static V load(const BFloat16* p) { return load16(p); }
  static void store(BFloat16* p, V v) { store16(p, v); }
  static V round(V v) { return round16(v); }
  static V exp(V v) { return exp16(v); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V sub(V a, V b) { return _mm512_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm512_mul_ps(a, b); }
  static V div(V a, V b) { return _mm512_div_ps(a, b); }
  static V fmadd(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V max(V a, V b) { return _mm512_max_ps(a, b); }
  static float sum(V v) { return _mm512_reduce_add_ps(v); }
  static float hmax(V v) { return _mm512_reduce_max_ps(v); }
};
#elif defined(__AVX2__) && defined(__FMA__)
#define CONVO_SIMD 1
inline __m256 load8(const BFloat16* p) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))), 16));
}
inline __m256 round8(__m256 v) {  // through bf16 (nearest even) and back
  return _mm256_castsi256_ps(_mm256_and_si256(bf16_rounded8(v), _mm256_set1_epi32(static_cast<int>(0xffff0000u))));
}
inline float hsum8(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
}
// e^x for x in [-87, 88], as exp16 above: Cephes' polynomial on x - n ln2, scaled by 2^n
inline __m256 exp8(__m256 x) {
  x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(88.f)), _mm256_set1_ps(-87.f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500E-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507E-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073E-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894E-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459E-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201E-1f));
  p = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.f)));
  // 2^n for n in [-126, 127] (x is clamped above): the exponent bits directly; n = -126 - 1 rounds below
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}
struct Simd {
  using V = __m256;
  static constexpr int64_t W = 8;
  static V zero() { return _mm256_setzero_ps(); }
  static V set1(float v) { return _mm256_set1_ps(v); }
  static V set2(float a, float b) {
    return _mm256_castsi256_ps(_mm256_set1_epi64x(static_cast<long long>(pair_bits(a, b))));
  }
  static V loadf(const float* p) { return _mm256_loadu_ps(p); }
  static void storef(float* p, V v) { _mm256_storeu_ps(p, v); }
  static V load(const BFloat16* p) { return load8(p); }
  static void store(BFloat16* p, V v) { store8_bf16(p, v); }
  static V round(V v) { return round8(v); }
  static V exp(V v) { return exp8(v); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V sub(V a, V b) { return _mm256_sub_ps(a, b); }
  static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  static V div(V a, V b) { return _mm256_div_ps(a, b); }
  static V fmadd(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V max(V a, V b) { return _mm256_max_ps(a, b); }
  static float sum(V v) { return hsum8(v); }
  static float hmax(V v) {
    const __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 t = _mm_max_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_max_ss(t, _mm_shuffle_ps(t, t, 1)));
  }
};
#endif

// q . k for one key of bf16 values, and out += p * v for one value row (attention's inner loops)
inline float dot_bf16(const float* q, const BFloat16* k, int64_t d) {
#ifdef CONVO_SIMD
  if (d % Simd::W == 0) {
    Simd::V acc = Simd::zero();
    for (int64_t i = 0; i < d; i += Simd::W) acc = Simd::fmadd(Simd::loadf(q + i), Simd::load(k + i), acc);
    return Simd::sum(acc);
  }
#endif
  float dot = 0.f;
  for (int64_t i = 0; i < d; ++i) dot += q[i] * f(k[i]);
  return dot;
}

// Where value i of key t is in one KV head's values: rows of d (t * d + i), or `paired` as AMX tiles
// take them (key pairs of d dims x 2, ((t / 2) * d + i) * 2 + t % 2: fastpath.FastModel.paired_values)
inline int64_t value_index(int64_t t, int64_t i, int64_t d, bool paired) {
  return paired ? ((t >> 1) * d + i) * 2 + (t & 1) : t * d + i;
}

inline BFloat16 value_at(const BFloat16* values, int64_t t, int64_t i, int64_t d, bool paired) {
  return values[value_index(t, i, d, paired)];
}

inline void axpy_bf16(float p, const BFloat16* v, float* out, int64_t d) {
#ifdef CONVO_SIMD
  if (d % Simd::W == 0) {
    const Simd::V scale = Simd::set1(p);
    for (int64_t i = 0; i < d; i += Simd::W) Simd::storef(out + i, Simd::fmadd(scale, Simd::load(v + i), Simd::loadf(out + i)));
    return;
  }
#endif
  for (int64_t i = 0; i < d; ++i) out[i] += p * f(v[i]);
}

#ifdef CONVO_AMX
// scores[h * span + t] = scale x (q_h . k_t) for the keys of whole blocks of 16 (returns how many), on
// AMX tiles: 16 keys read in place from the cache as a tile's rows, against the G heads' queries 32
// dims at a time (queries are bf16-rounded, so bf16 holds them exactly; sums in fp32). The loop below
// summed each key's products across the vector lanes, a dozen instructions a head and key.
template <int G>
int64_t scores_amx(const float* q, const BFloat16* keys, int64_t span, int64_t d, float scale, float* scores) {
  const int64_t full = span / 16 * 16, chunks = d / 32;
  if (full == 0 || d % 32 != 0 || chunks > 4 || !amx_usable()) return 0;
  TileConfig config;
  for (int c = 0; c < 4; ++c) config.rows[c] = 16, config.colsb[c] = 4 * G;  // tmm0-3: the queries' dims 32c.., in pairs
  config.rows[4] = 16, config.colsb[4] = 64;     // tmm4, 5: 16 keys' 32 dims (chunks in turn)
  config.rows[5] = 16, config.colsb[5] = 64;
  config.rows[6] = 16, config.colsb[6] = 4 * G;  // tmm6: the 16 keys' scores for the G heads
  load_tile_config(config);
  alignas(64) uint32_t pairs[4][16 * G];
  for (int64_t c = 0; c < chunks; ++c)
    for (int p = 0; p < 16; ++p)
      for (int h = 0; h < G; ++h) {
        const float* at = q + h * d + c * 32 + 2 * p;
        pairs[c][p * G + h] = static_cast<uint32_t>(BFloat16(at[0]).x) | (static_cast<uint32_t>(BFloat16(at[1]).x) << 16);
      }
  _tile_loadd(0, pairs[0], 4 * G);
  if (chunks > 1) _tile_loadd(1, pairs[1], 4 * G);
  if (chunks > 2) _tile_loadd(2, pairs[2], 4 * G);
  if (chunks > 3) _tile_loadd(3, pairs[3], 4 * G);
  alignas(64) float sums[16 * G];
  const int64_t stride = d * static_cast<int64_t>(sizeof(BFloat16));
  for (int64_t t = 0; t < full; t += 16) {
    const BFloat16* k = keys + t * d;
    _tile_zero(6);
    _tile_loadd(4, k, stride);
    _tile_dpbf16ps(6, 4, 0);
    if (chunks > 1) { _tile_loadd(5, k + 32, stride); _tile_dpbf16ps(6, 5, 1); }
    if (chunks > 2) { _tile_loadd(4, k + 64, stride); _tile_dpbf16ps(6, 4, 2); }
    if (chunks > 3) { _tile_loadd(5, k + 96, stride); _tile_dpbf16ps(6, 5, 3); }
    _tile_stored(6, sums, 4 * G);
    for (int j = 0; j < 16; ++j)
      for (int h = 0; h < G; ++h) scores[h * span + t + j] = sums[j * G + h] * scale;
  }
  _tile_release();
  return full;
}

// partial[h * d + i] = sum over the keys t of whole blocks of 32 (returns how many) of p[h * span + t]
// x inv[h] x v_t[i], on AMX tiles: the G heads' probabilities (e x inv, rounded to bf16, as torch's
// bf16 attention rounds them for its product with the values) against 32 value rows in the tile's pair
// layout, 16 dims at a time; dims in passes of 64 (four sums' tiles). With `paired` values the cache
// holds them so (see value_at) and the tiles are loaded from it; then every key is summed, the last
// block's probabilities past `span` being zeros. Else consecutive rows are interleaved here first (a
// permute and a store per 16 dims of two rows: whole steps of the bundled model were 4-10% slower,
// 2-core AMX Xeon: 32 rows at 250 cached positions 15.9 ms against 14.9, 16 rows at 500 12.7 against 11.5).
// The loop below broadcast each probability and multiplied it into every value row, G heads apiece.
template <int G>
int64_t values_amx(const float* p, const float* inv, const BFloat16* values, int64_t span, int64_t d, float* partial,
                   bool paired) {
  const int64_t full = paired ? span : span / 32 * 32;
  if (full == 0 || d % 64 != 0 || !amx_usable()) return 0;
  TileConfig config;
  config.rows[0] = G, config.colsb[0] = 64;    // tmm0: G heads' probabilities of 32 keys
  config.rows[1] = 16, config.colsb[1] = 64;   // tmm1, 2: 32 keys' values of 16 dims, in key pairs
  config.rows[2] = 16, config.colsb[2] = 64;
  for (int c = 4; c < 8; ++c) config.rows[c] = G, config.colsb[c] = 64;  // tmm4-7: the sums of 16 dims each
  load_tile_config(config);
  __m512i pairs_of;  // word 2i: the first row's dim i, word 2i + 1: the second row's
  {
    alignas(64) uint16_t index[32];
    for (int i = 0; i < 16; ++i) index[2 * i] = static_cast<uint16_t>(i), index[2 * i + 1] = static_cast<uint16_t>(32 + i);
    pairs_of = _mm512_load_si512(index);
  }
  alignas(64) uint16_t probs[G * 32];
  alignas(64) uint16_t pairs[2][16 * 32];
  for (int64_t i0 = 0; i0 < d; i0 += 64) {
    _tile_zero(4); _tile_zero(5); _tile_zero(6); _tile_zero(7);
    for (int64_t t0 = 0; t0 < full; t0 += 32) {
      const int64_t n = std::min<int64_t>(32, full - t0);
      const __mmask16 low = n >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << n) - 1);
      const __mmask16 high = n >= 32 ? 0xFFFF : n > 16 ? static_cast<__mmask16>((1u << (n - 16)) - 1) : 0;
      for (int h = 0; h < G; ++h) {
        const __m512 scale = _mm512_set1_ps(inv[h]);
        _mm512_store_si512(probs + h * 32, (__m512i)_mm512_cvtne2ps_pbh(
                                               _mm512_mul_ps(_mm512_maskz_loadu_ps(high, p + h * span + t0 + 16), scale),
                                               _mm512_mul_ps(_mm512_maskz_loadu_ps(low, p + h * span + t0), scale)));
      }
      _tile_loadd(0, probs, 64);
      if (paired) {  // key pair t0 / 2 + kp, dims i0 + 16j.. of it: 64 bytes, a pair row (2d values) apart
        const BFloat16* block = values + value_index(t0, i0, d, true);
        _tile_loadd(1, block, 4 * d); _tile_dpbf16ps(4, 0, 1);
        _tile_loadd(2, block + 32, 4 * d); _tile_dpbf16ps(5, 0, 2);
        _tile_loadd(1, block + 64, 4 * d); _tile_dpbf16ps(6, 0, 1);
        _tile_loadd(2, block + 96, 4 * d); _tile_dpbf16ps(7, 0, 2);
        continue;
      }
      for (int j = 0; j < 4; ++j) {
        uint16_t* b = pairs[j & 1];
        for (int kp = 0; kp < 16; ++kp) {
          const BFloat16* row = values + (t0 + 2 * kp) * d + i0 + 16 * j;
          const __m512i first = _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row)));
          const __m512i second = _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + d)));
          _mm512_store_si512(b + kp * 32, _mm512_permutex2var_epi16(first, pairs_of, second));
        }
        if (j & 1) {
          _tile_loadd(2, b, 64);
          if (j == 1) _tile_dpbf16ps(5, 0, 2); else _tile_dpbf16ps(7, 0, 2);
        } else {
          _tile_loadd(1, b, 64);
          if (j == 0) _tile_dpbf16ps(4, 0, 1); else _tile_dpbf16ps(6, 0, 1);
        }
      }
    }
    const int64_t stride = d * static_cast<int64_t>(sizeof(float));
    _tile_stored(4, partial + i0, stride); _tile_stored(5, partial + i0 + 16, stride);
    _tile_stored(6, partial + i0 + 32, stride); _tile_stored(7, partial + i0 + 48, stride);
  }
  _tile_release();
  return full;
}
#endif

#ifdef CONVO_SIMD
// Attention of G query heads that share one KV head (one row, one query each) over `span` cached
// positions, where head_dim is a multiple of 2 x Simd::W: each key and value row is loaded and widened
// once for the G heads, the outputs stay in registers over the positions, and the softmax's
// exponentials are taken W at a time. (One head a job, a scalar exp and the outputs in memory: on an
// AVX2 Zen 3, a step of 8 rows at 1,900 cached positions took 60.9 ms against 48.6, at 1,000 48.7
// against 39.8; at 40 the same. Past a few hundred positions reading the cache bounds it.)
// q: G x d (rotated, bf16-rounded); scores: G x (span + d) of scratch; out: G x d, written as bf16.
template <int G>
void attend(const float* q, const BFloat16* keys, const BFloat16* values, int64_t span, int64_t d, float scale,
            float* scores, BFloat16* out, bool paired) {
  int64_t scored = 0;
#ifdef CONVO_AMX
  scored = scores_amx<G>(q, keys, span, d, scale, scores);
#endif
  for (int64_t t = scored; t < span; ++t) {
    const BFloat16* k = keys + t * d;
    Simd::V acc[G];
    for (int h = 0; h < G; ++h) acc[h] = Simd::zero();
    for (int64_t i = 0; i < d; i += Simd::W) {
      const Simd::V kv = Simd::load(k + i);
      for (int h = 0; h < G; ++h) acc[h] = Simd::fmadd(Simd::loadf(q + h * d + i), kv, acc[h]);
    }
    for (int h = 0; h < G; ++h) scores[h * span + t] = Simd::sum(acc[h]) * scale;
  }
  // softmax: the scores become exponentials and inv[h] the inverse of head h's sum; a probability,
  // e x inv, is taken where the values are summed (a pass over the scores of its own, and the max
  // taken one score at a time, had cost about as much as the scores: 1.4 of a 32-row step's 14 ms
  // at 110 cached positions, 2-core AMX Xeon)
  float inv[G];
  for (int h = 0; h < G; ++h) {
    float* sc = scores + h * span;
    int64_t t = 0;
    Simd::V tops = Simd::set1(-INFINITY);
    for (; t + Simd::W <= span; t += Simd::W) tops = Simd::max(tops, Simd::loadf(sc + t));
    float top = Simd::hmax(tops);
    for (; t < span; ++t) top = std::max(top, sc[t]);
    const Simd::V shift = Simd::set1(top);
    Simd::V sums = Simd::zero();
    for (t = 0; t + Simd::W <= span; t += Simd::W) {
      const Simd::V e = Simd::exp(Simd::sub(Simd::loadf(sc + t), shift));
      Simd::storef(sc + t, e);
      sums = Simd::add(sums, e);
    }
    float total = Simd::sum(sums);
    for (; t < span; ++t) total += (sc[t] = std::exp(sc[t] - top));
    inv[h] = 1.f / total;
  }
  int64_t summed = 0;  // keys whose values are already summed into `partial` (G x d)
  float* partial = scores + G * span;
#ifdef CONVO_AMX
  summed = values_amx<G>(scores, inv, values, span, d, partial, paired);
#endif
  if (paired && summed < span) {
    // (no tiles) a pair row holds keys t and t + 1 interleaved, so a vector is W / 2 dims of both: summed
    // against the lanes p_t, p_t+1, p_t, ..., then adjacent lanes added; C vectors of a row at a time
    constexpr int64_t C = 4;
    const int64_t per_row = 2 * d / Simd::W;
    alignas(64) float lanes[Simd::W];
    for (int64_t c0 = 0; c0 < per_row; c0 += C) {
      const int64_t n = std::min(C, per_row - c0);
      Simd::V acc[G][C];
      for (int h = 0; h < G; ++h)
        for (int64_t c = 0; c < C; ++c) acc[h][c] = Simd::zero();
      for (int64_t t = 0; t < span; t += 2) {
        const BFloat16* pair = values + value_index(t, 0, d, true) + c0 * Simd::W;
        for (int h = 0; h < G; ++h) {
          const Simd::V p = Simd::set2(scores[h * span + t], t + 1 < span ? scores[h * span + t + 1] : 0.f);
          for (int64_t c = 0; c < C; ++c)
            if (c < n) acc[h][c] = Simd::fmadd(p, Simd::load(pair + c * Simd::W), acc[h][c]);
        }
      }
      for (int h = 0; h < G; ++h)
        for (int64_t c = 0; c < n; ++c) {
          Simd::storef(lanes, acc[h][c]);
          for (int64_t k = 0; k < Simd::W / 2; ++k)
            partial[h * d + (c0 + c) * Simd::W / 2 + k] = (lanes[2 * k] + lanes[2 * k + 1]) * inv[h];
        }
    }
    summed = span;
  }
  for (int64_t i = 0; i < d; i += 2 * Simd::W) {
    Simd::V o[G][2];
    for (int h = 0; h < G; ++h)
      if (summed) o[h][0] = Simd::loadf(partial + h * d + i), o[h][1] = Simd::loadf(partial + h * d + i + Simd::W);
      else o[h][0] = o[h][1] = Simd::zero();
    for (int64_t t = summed; t < span; ++t) {
      const Simd::V v0 = Simd::load(values + t * d + i), v1 = Simd::load(values + t * d + i + Simd::W);
      for (int h = 0; h < G; ++h) {
        const Simd::V p = Simd::set1(scores[h * span + t] * inv[h]);
        o[h][0] = Simd::fmadd(p, v0, o[h][0]);
        o[h][1] = Simd::fmadd(p, v1, o[h][1]);
      }
    }
    for (int h = 0; h < G; ++h) {
      Simd::store(out + h * d + i, o[h][0]);
      Simd::store(out + h * d + i + Simd::W, o[h][1]);
    }
  }
}
#endif

void rms_norm(const BFloat16* x, const BFloat16* weight, BFloat16* out, int64_t rows, int64_t hidden, float eps) {
#ifdef CONVO_SIMD
  if (hidden % Simd::W == 0) {
    for (int64_t b = 0; b < rows; ++b) {
      const BFloat16* xr = x + b * hidden;
      Simd::V sum = Simd::zero();
      for (int64_t i = 0; i < hidden; i += Simd::W) sum = Simd::fmadd(Simd::load(xr + i), Simd::load(xr + i), sum);
      const Simd::V scale = Simd::set1(1.f / std::sqrt(Simd::sum(sum) / hidden + eps));
      for (int64_t i = 0; i < hidden; i += Simd::W)
        Simd::store(out + b * hidden + i, Simd::mul(Simd::round(Simd::mul(Simd::load(xr + i), scale)), Simd::load(weight + i)));
    }
    return;
  }
#endif
  rms_norm_scalar(x, weight, out, rows, hidden, eps);
}

// x += y, in bf16 (each sum rounded once)
void add_into(BFloat16* x, const BFloat16* y, int64_t n) {
  int64_t i = 0;
#ifdef CONVO_SIMD
  for (; i + Simd::W <= n; i += Simd::W) Simd::store(x + i, Simd::add(Simd::load(x + i), Simd::load(y + i)));
#endif
  for (; i < n; ++i) x[i] = BFloat16(f(x[i]) + f(y[i]));
}

// act[b] = bf16(silu(gate)) * up, with gate and up the two halves of each row of gu ([rows, 2 * inner])
void silu_mul(const BFloat16* gu, BFloat16* act, int64_t rows, int64_t inner) {
  for (int64_t b = 0; b < rows; ++b) {
    const BFloat16* gate = gu + b * 2 * inner;
    const BFloat16* up = gate + inner;
    int64_t i = 0;
#ifdef CONVO_SIMD
    for (; i + Simd::W <= inner; i += Simd::W) {
      const Simd::V g = Simd::load(gate + i);
      const Simd::V silu = Simd::div(g, Simd::add(Simd::set1(1.f), Simd::exp(Simd::sub(Simd::zero(), g))));
      Simd::store(act + b * inner + i, Simd::mul(Simd::round(silu), Simd::load(up + i)));
    }
#endif
    for (; i < inner; ++i) {
      const float g = f(gate[i]);
      act[b * inner + i] = BFloat16(f(BFloat16(g / (1.f + std::exp(-g)))) * f(up[i]));
    }
  }
}

// fn(begin, end) over the rows, on the threads where there are enough rows to be worth a parallel
// region (the work between the matmuls: norms, residual adds, the SiLU gate, the KV writes). On one
// thread, a 32-row step of the bundled model spent about 1 ms of its 12-15 in them while the other
// thread waited (2-core AMX Xeon).
constexpr int64_t kRowsOnThreads = 8;
template <typename F>
void over_rows(int64_t rows, const F& fn) {
  if (rows >= kRowsOnThreads && at::get_num_threads() > 1) at::parallel_for(0, rows, 1, fn);
  else fn(0, rows);
}

// x += y, then out = rms_norm(x) (weight), a row at a time: the residual add and the next norm in
// one pass over each row
void add_then_norm(BFloat16* x, const BFloat16* y, const BFloat16* weight, BFloat16* out, int64_t rows,
                   int64_t hidden, float eps) {
  over_rows(rows, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      add_into(x + b * hidden, y + b * hidden, hidden);
      rms_norm(x + b * hidden, weight, out + b * hidden, 1, hidden, eps);
    }
  });
}

// fastpath.padded_rows: the row count a dense matmul runs at (oneDNN keeps a kernel per shape)
int64_t padded_rows(int64_t rows) {
  int64_t pow2 = 1;
  while (pow2 < rows) pow2 <<= 1;
  const int64_t step = std::max<int64_t>(16, pow2 >> 3);
  return (rows + step - 1) / step * step;
}

// a linear layer of the step: the packed kernel when its lows are given, torch's int4 kernel when
// only its scales are, else w is a dense bf16 copy (AMX CPUs, steps of many rows: oneDNN's matmul)
at::Tensor linear4(const at::Tensor& x, const at::Tensor& w, const at::Tensor& s, const at::Tensor& low) {
  if (low.numel()) return int4_mm_impl(x, w, s, low);
  if (s.numel()) return at::_weight_int4pack_mm_for_cpu(x, w, kGroup, s).contiguous();
  const int64_t rows = x.size(0), padded = padded_rows(rows);
  if (padded == rows) return at::linear(x, w);
  return at::linear(at::constant_pad_nd(x, {0, 0, 0, padded - rows}), w).narrow(0, 0, rows).contiguous();
}

}  // namespace

// x: [B, hidden] bf16, the embedded tokens; positions: [B] int64, each row's position (its slot's
// cache length before this token); row_slots: [B] int64, each row's cache slot. Several rows may
// share a slot at consecutive positions: a prompt's new tokens fed in the same step as other rows'
// next tokens. Causal for them too, since each layer writes every row's key and value before any
// row attends (a row sees its slot's positions up to its own).
// k_cache, v_cache: [layers, slots, kv_heads, max_len, head_dim] bf16 (v_cache may be paired: see value_at). cos, sin: [max_len, head_dim] bf16. Per layer (lists of equal length): the first norm's weight,
// the fused q/k/v int4 weight, its scales and zeros, its bias (or an empty tensor), the output
// projection, the second norm, the fused gate/up projection and the down projection.
// final_norm: the model's final norm weight. Returns the hidden states after the last layer and that
// norm, [B, hidden] bf16 (the caller applies the head).
at::Tensor decode_layers(at::Tensor x, at::Tensor positions, at::Tensor row_slots, at::Tensor k_cache, at::Tensor v_cache,
                         at::Tensor cos, at::Tensor sin, std::vector<at::Tensor> norm1,
                         std::vector<at::Tensor> qkv_w, std::vector<at::Tensor> qkv_s, std::vector<at::Tensor> qkv_z,
                         std::vector<at::Tensor> qkv_b, std::vector<at::Tensor> o_w, std::vector<at::Tensor> o_s,
                         std::vector<at::Tensor> o_z, std::vector<at::Tensor> norm2, std::vector<at::Tensor> gu_w,
                         std::vector<at::Tensor> gu_s, std::vector<at::Tensor> gu_z, std::vector<at::Tensor> d_w,
                         std::vector<at::Tensor> d_s, std::vector<at::Tensor> d_z, int64_t n_heads, int64_t n_kv,
                         int64_t head_dim, double eps, at::Tensor final_norm) {
  // only ATen from here on: other Python threads (the app's request handlers) run during the step
  pybind11::gil_scoped_release no_gil;
  TORCH_CHECK(x.scalar_type() == at::kBFloat16 && x.dim() == 2 && x.is_contiguous(), "x: contiguous [B, hidden] bf16");
  TORCH_CHECK(k_cache.is_contiguous() && v_cache.is_contiguous(), "the KV cache must be contiguous");
  // v_cache as k_cache, or [layers, slots, kv_heads, max_len' / 2, head_dim, 2]: key pairs (value_at)
  const bool paired = v_cache.dim() == 6;
  const int64_t rows = x.size(0), hidden = x.size(1), layers = static_cast<int64_t>(norm1.size());
  const int64_t nq = n_heads * head_dim, nk = n_kv * head_dim, per_kv = n_heads / n_kv;
  const int64_t max_len = k_cache.size(3), slots = k_cache.size(1);
  const int64_t v_len = paired ? 2 * v_cache.size(3) : max_len;  // positions a head's values have room for
  TORCH_CHECK(!paired || (v_len >= max_len && v_len % 32 == 0),
              "paired values: room for every position, in blocks of 32");
  TORCH_CHECK(positions.scalar_type() == at::kLong && positions.numel() == rows && positions.is_contiguous(),
              "positions: one int64 a row");
  TORCH_CHECK(row_slots.scalar_type() == at::kLong && row_slots.numel() == rows && row_slots.is_contiguous(),
              "row_slots: one int64 a row");
  const int64_t* pos = positions.data_ptr<int64_t>();
  const int64_t* slot = row_slots.data_ptr<int64_t>();
  for (int64_t b = 0; b < rows; ++b) {
    TORCH_CHECK(pos[b] >= 0 && pos[b] < max_len, "position out of the cache");
    TORCH_CHECK(slot[b] >= 0 && slot[b] < slots, "slot out of the cache");
  }
  const float softmax_scale = 1.f / std::sqrt(static_cast<float>(head_dim));
  const float epsilon = static_cast<float>(eps);

  x = x.clone();
  auto normed = at::empty_like(x);
  auto attn = at::empty({rows, nq}, x.options());
  BFloat16* xp = x.data_ptr<BFloat16>();
  BFloat16* np = normed.data_ptr<BFloat16>();
  const BFloat16* cosp = cos.data_ptr<BFloat16>();
  const BFloat16* sinp = sin.data_ptr<BFloat16>();
  const int64_t layer_stride = slots * n_kv * max_len * head_dim, v_layer_stride = slots * n_kv * v_len * head_dim;

  TORCH_CHECK(final_norm.numel() == hidden, "final_norm: one weight per hidden unit");
  TORCH_CHECK(layers > 0, "no layers");
  over_rows(rows, [&](int64_t begin, int64_t end) {
    rms_norm(xp + begin * hidden, norm1[0].data_ptr<BFloat16>(), np + begin * hidden, end - begin, hidden, epsilon);
  });
  for (int64_t l = 0; l < layers; ++l) {
    // (normed: this layer's first norm of x, from the step's start or the layer before)
    auto qkv = linear4(normed, qkv_w[l], qkv_s[l], qkv_z[l]);
    if (qkv_b[l].numel()) qkv.add_(qkv_b[l]);
    qkv = qkv.contiguous();
    const BFloat16* qkvp = qkv.data_ptr<BFloat16>();
    BFloat16* kc = k_cache.data_ptr<BFloat16>() + l * layer_stride;
    BFloat16* vc = v_cache.data_ptr<BFloat16>() + l * v_layer_stride;
    // keys and values of every row into its slot, before any row attends (rotated keys, as the
    // eager step stores them)
    over_rows(rows, [&](int64_t begin, int64_t end) {
      std::vector<float> rotated(head_dim);
      for (int64_t b = begin; b < end; ++b) {
        const BFloat16* row = qkvp + b * (nq + 2 * nk);
        for (int64_t h = 0; h < n_kv; ++h) {
          const int64_t at_pos = ((slot[b] * n_kv + h) * max_len + pos[b]) * head_dim;
          BFloat16* head_values = vc + (slot[b] * n_kv + h) * v_len * head_dim;
          rope(row + nq + h * head_dim, cosp + pos[b] * head_dim, sinp + pos[b] * head_dim, rotated.data(), head_dim);
          for (int64_t i = 0; i < head_dim; ++i) kc[at_pos + i] = BFloat16(rotated[i]);
          if (paired)
            for (int64_t i = 0; i < head_dim; ++i)
              head_values[value_index(pos[b], i, head_dim, true)] = row[nq + nk + h * head_dim + i];
          else
            std::copy(row + nq + nk + h * head_dim, row + nq + nk + (h + 1) * head_dim, head_values + pos[b] * head_dim);
        }
      }
    });
    // attention of each row's one query over its slot's cache up to its position, per query head
    // (fp32 throughout)
    BFloat16* ap = attn.data_ptr<BFloat16>();
#ifdef CONVO_SIMD
    if (head_dim % (2 * Simd::W) == 0) {
      // a job: up to 4 query heads of one KV head of one row (one head a job where that leaves the
      // threads too few jobs)
      const int64_t chunk = rows * n_kv >= 4 * at::get_num_threads() ? std::min<int64_t>(per_kv, 4) : 1;
      const int64_t chunks = (per_kv + chunk - 1) / chunk;
      // jobs handed out one by one: rows differ in length (a prompt's new tokens, replies at
      // different lengths), so fixed shares left a thread waiting for the other
      std::atomic<int64_t> next_job{0};
      const int64_t jobs = rows * n_kv * chunks;
      at::parallel_for(0, std::min<int64_t>(jobs, at::get_num_threads()), 1, [&](int64_t, int64_t) {
        std::vector<float> q(chunk * head_dim), scores;
        for (int64_t job; (job = next_job.fetch_add(1, std::memory_order_relaxed)) < jobs;) {
          const int64_t b = job / (n_kv * chunks), kvh = job / chunks % n_kv, h0 = kvh * per_kv + job % chunks * chunk;
          const int64_t heads = std::min(chunk, (kvh + 1) * per_kv - h0), span = pos[b] + 1;
          const BFloat16* row = qkvp + b * (nq + 2 * nk);
          for (int64_t h = 0; h < heads; ++h)
            rotated_query(row + (h0 + h) * head_dim, cosp, sinp, pos[b], q.data() + h * head_dim, head_dim);
          const BFloat16* keys = kc + (slot[b] * n_kv + kvh) * max_len * head_dim;
          const BFloat16* values = vc + (slot[b] * n_kv + kvh) * v_len * head_dim;
          scores.resize(heads * (span + head_dim));  // (then the heads' partial sums of values)
          BFloat16* out = ap + b * nq + h0 * head_dim;
          switch (heads) {
            case 4: attend<4>(q.data(), keys, values, span, head_dim, softmax_scale, scores.data(), out, paired); break;
            case 3: attend<3>(q.data(), keys, values, span, head_dim, softmax_scale, scores.data(), out, paired); break;
            case 2: attend<2>(q.data(), keys, values, span, head_dim, softmax_scale, scores.data(), out, paired); break;
            default: attend<1>(q.data(), keys, values, span, head_dim, softmax_scale, scores.data(), out, paired); break;
          }
        }
      });
    } else
#endif
    at::parallel_for(0, rows * n_heads, 1, [&](int64_t begin, int64_t end) {
      std::vector<float> q(head_dim), out(head_dim), scores;
      for (int64_t job = begin; job < end; ++job) {
        const int64_t b = job / n_heads, h = job % n_heads, kvh = h / per_kv, span = pos[b] + 1;
        const BFloat16* row = qkvp + b * (nq + 2 * nk);
        rotated_query(row + h * head_dim, cosp, sinp, pos[b], q.data(), head_dim);
        const BFloat16* keys = kc + (slot[b] * n_kv + kvh) * max_len * head_dim;
        const BFloat16* values = vc + (slot[b] * n_kv + kvh) * v_len * head_dim;
        scores.resize(span);
        float top = -INFINITY;
        for (int64_t t = 0; t < span; ++t) {
          scores[t] = dot_bf16(q.data(), keys + t * head_dim, head_dim) * softmax_scale;
          top = std::max(top, scores[t]);
        }
        float total = 0.f;
        for (int64_t t = 0; t < span; ++t) total += (scores[t] = std::exp(scores[t] - top));
        std::fill(out.begin(), out.end(), 0.f);
        for (int64_t t = 0; t < span; ++t)
          if (paired)
            for (int64_t i = 0; i < head_dim; ++i)
              out[i] += scores[t] / total * f(value_at(values, t, i, head_dim, true));
          else
            axpy_bf16(scores[t] / total, values + t * head_dim, out.data(), head_dim);
        for (int64_t i = 0; i < head_dim; ++i) ap[b * nq + h * head_dim + i] = BFloat16(out[i]);
      }
    });
    auto o = linear4(attn, o_w[l], o_s[l], o_z[l]);
    add_then_norm(xp, o.data_ptr<BFloat16>(), norm2[l].data_ptr<BFloat16>(), np, rows, hidden, epsilon);
    auto gu = linear4(normed, gu_w[l], gu_s[l], gu_z[l]);
    const int64_t inner = gu.size(1) / 2;
    auto act = at::empty({rows, inner}, x.options());
    const BFloat16* gup = gu.data_ptr<BFloat16>();
    BFloat16* actp = act.data_ptr<BFloat16>();
    over_rows(rows, [&](int64_t begin, int64_t end) {
      silu_mul(gup + begin * 2 * inner, actp + begin * inner, end - begin, inner);
    });
    auto down = linear4(act, d_w[l], d_s[l], d_z[l]);
    // then the next layer's first norm, or the model's final norm after the last layer (one call here
    // instead of its torch ops from Python: 0.1-0.2 ms a step)
    add_then_norm(xp, down.data_ptr<BFloat16>(), (l + 1 < layers ? norm1[l + 1] : final_norm).data_ptr<BFloat16>(), np,
                  rows, hidden, epsilon);
  }
  return normed;
}

namespace {

struct Candidate {
  float value;
  int64_t id;
};
// the higher logit first; of equal ones, the lower id (a fixed order, whatever the scan found first)
inline bool before(const Candidate& a, const Candidate& b) { return a.value > b.value || (a.value == b.value && a.id < b.id); }

// The `k` highest of `logits[0, vocab)`, highest first. A min-heap of k: most logits fall below its
// least and cost one compare.
void top_candidates(const float* logits, int64_t vocab, int64_t k, std::vector<Candidate>& out) {
  out.resize(k);
  for (int64_t i = 0; i < k; ++i) out[i] = {logits[i], i};
  std::make_heap(out.begin(), out.end(), before);  // out.front(): the least of the kept ones
  const auto offer = [&](int64_t i) {
    if (logits[i] > out.front().value) {
      std::pop_heap(out.begin(), out.end(), before);
      out.back() = {logits[i], i};
      std::push_heap(out.begin(), out.end(), before);
    }
  };
  int64_t i = k;
  for (; i + 16 <= vocab; i += 16) {  // 16 at a time: a (vectorized) maximum, and a look only above the heap
    float most = logits[i];
    for (int64_t j = 1; j < 16; ++j) most = std::max(most, logits[i + j]);
    if (most > out.front().value)
      for (int64_t j = 0; j < 16; ++j) offer(i + j);
  }
  for (; i < vocab; ++i) offer(i);
  std::sort(out.begin(), out.end(), before);
}

// transformers' repetition penalty of one logit, rounded as torch's ops (a true division: the file's
// -ffast-math would multiply by a reciprocal, one rounding more)
__attribute__((noinline, optimize("no-fast-math"))) float penalized(float v, float factor) {
  return v < 0 ? v * factor : v / factor;
}

// softmax of v[0, n) into p, in fp32 as torch's
void softmax(const std::vector<float>& v, std::vector<float>& p) {
  const float top = *std::max_element(v.begin(), v.end());
  float total = 0.f;
  p.resize(v.size());
  for (size_t i = 0; i < v.size(); ++i) total += (p[i] = std::exp(v[i] - top));
  for (float& x : p) x /= total;
}

}  // namespace

// One token for each row of logits [rows, vocab] fp32 (changed in place by the bias and the penalty):
// bias[row] added to the logits of the row's favour ids (distinct; a Steered prompt), then in
// transformers' processor order: repetition penalty over the row's seen ids (int64, distinct; empty:
// none), greedy where its temperature is 0, else temperature, top-k (0: every token), top-p (1:
// off) and a draw that inverts the row's cumulative distribution at uniform[row] in [0, 1). The
// same maths as fastpath.sample_rows' torch ops (its reference), in one call and without torch.topk:
// the bundled model's 49k logits (top-k 50, top-p 0.95, a penalty over 200 ids) on 2 Zen 4 cores,
// 8 rows 0.71 -> 0.095 ms, 1 row 0.28 -> 0.023 ms (about 7% of an 8-row decode step saved).
std::vector<int64_t> sample_rows(at::Tensor logits, std::vector<at::Tensor> seen, std::vector<double> penalty,
                                 std::vector<double> temperature, std::vector<int64_t> top_k,
                                 std::vector<double> top_p, std::vector<double> uniform,
                                 std::vector<std::vector<int64_t>> favour, std::vector<double> bias) {
  pybind11::gil_scoped_release no_gil;
  TORCH_CHECK(logits.scalar_type() == at::kFloat && logits.dim() == 2 && logits.is_contiguous(),
              "logits: contiguous [rows, vocab] fp32");
  const int64_t rows = logits.size(0), vocab = logits.size(1);
  const size_t n = static_cast<size_t>(rows);
  TORCH_CHECK(seen.size() == n && penalty.size() == n && temperature.size() == n && top_k.size() == n &&
              top_p.size() == n && uniform.size() == n && favour.size() == n && bias.size() == n,
              "one setting of each kind a row");
  for (const auto& ids : favour)
    for (int64_t id : ids) TORCH_CHECK(id >= 0 && id < vocab, "favoured id out of the vocabulary");
  for (const auto& ids : seen) {
    TORCH_CHECK(ids.numel() == 0 || (ids.scalar_type() == at::kLong && ids.dim() == 1 && ids.is_contiguous()),
                "seen: 1-d int64 ids");
    const int64_t* id = ids.numel() ? ids.data_ptr<int64_t>() : nullptr;
    for (int64_t i = 0; i < ids.numel(); ++i) TORCH_CHECK(id[i] >= 0 && id[i] < vocab, "seen id out of the vocabulary");
  }
  std::vector<int64_t> tokens(n);
  float* all = logits.data_ptr<float>();
  at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
    std::vector<Candidate> kept;
    std::vector<float> values, probs;
    for (int64_t r = begin; r < end; ++r) {
      float* row = all + r * vocab;
      for (int64_t id : favour[r]) row[id] += static_cast<float>(bias[r]);
      const float factor = static_cast<float>(penalty[r]);
      if (factor != 1.f && seen[r].numel()) {
        const int64_t* id = seen[r].data_ptr<int64_t>();
        for (int64_t i = 0; i < seen[r].numel(); ++i) row[id[i]] = penalized(row[id[i]], factor);
      }
      if (temperature[r] <= 0) {  // greedy: the first of the highest, as torch.argmax
        tokens[r] = std::max_element(row, row + vocab) - row;
        continue;
      }
      const int64_t k = top_k[r] > 0 && top_k[r] < vocab ? top_k[r] : vocab;
      top_candidates(row, vocab, k, kept);
      const float t = static_cast<float>(temperature[r]);
      values.resize(k);
      for (int64_t i = 0; i < k; ++i) values[i] = kept[i].value / t;
      if (top_p[r] < 1.0) {  // keep the smallest prefix whose mass reaches top_p (the first always stays)
        const float p = static_cast<float>(top_p[r]);
        softmax(values, probs);
        double cumulative = 0.0;  // summed in double and compared in fp32, as torch's cumsum
        for (int64_t i = 0; i < k; ++i) {
          if (static_cast<float>(cumulative + probs[i]) - probs[i] > p) values[i] = -INFINITY;
          cumulative += probs[i];
        }
      }
      softmax(values, probs);
      double cumulative = 0.0;
      for (float& x : probs) x = static_cast<float>(cumulative += x);
      const float target = static_cast<float>(uniform[r]) * probs.back();
      const int64_t pick = std::lower_bound(probs.begin(), probs.end(), target) - probs.begin();
      tokens[r] = kept[std::min(pick, k - 1)].id;
    }
  });
  return tokens;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("decode_layers", &decode_layers, "one decode step through every layer (int4 weights, bf16 activations), then "
        "final_norm");
  m.def("sample_rows", &sample_rows, "one token a row of fp32 logits: repetition penalty, greedy or temperature, "
        "top-k, top-p and an inverse-CDF draw at the row's uniform number (after a bias on favoured ids)");
  m.def("int4_mm", [](at::Tensor x, at::Tensor packed, at::Tensor scale, at::Tensor low) {
    pybind11::gil_scoped_release no_gil;
    return int4_mm_impl(x, packed, scale, low);
  }, "x [M, K] bf16 times a packed int4 weight -> [M, N] bf16 (AVX512-BF16 or AVX2 CPUs)");
  m.def("int8_mm", [](at::Tensor x, at::Tensor packed, at::Tensor scale) {
    pybind11::gil_scoped_release no_gil;
    return int8_mm_impl(x, packed, scale);
  }, "x [M, K] bf16 times a packed int8 weight -> [M, N] bf16 (AVX512-BF16 or AVX2 CPUs)");
  m.def("set_amx", [](bool on) {
#ifdef CONVO_AMX
    amx_wanted = on;
    return amx_usable();
#else
    return false;
#endif
  }, "use AMX tiles for the packed kernels' matmuls (where the CPU has them and Linux lends them); returns whether they are used");
  m.attr("packed_kernels") = kPackedKernels;  // "" where this CPU has neither
}
