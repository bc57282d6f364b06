// The shape of the interleaved loop for the instruction set this translation unit is compiled
// for (metaprior.cpu_kernel builds one library per variant, each with its own -m flags).
//
// Register budget of a tile (kRows points x kTile units of a forward or backward layer):
// kRows * kTile accumulators + kTile weights + 1 activation (a weight gradient's tile:
// kGradTile x kTile accumulators + as many loads). AVX-512 has 32 zmm registers: 5 x 4 -> 25.
// AVX2 has 16 ymm registers: 16-float vectors take two each, so the 5 x 4 tile needs 50 and
// spills on every multiply-add (measured at B = 1000: 645 adaptations/s, against 6,900 with
// the AVX2 shape below). 8 lanes with 5 x 2 tiles (13 registers) measured best on AVX2 (one
// run each on a shared machine), ahead of 2 x 4 (-7%) and of 2 x 8 or 5 x 2 with 4-wide
// gradient tiles (both spill: -40%). 5 rows also fit the default minibatch of 10 without
// padding. -D overrides exist for measuring.
#pragma once

#if defined(__AVX512F__)
#define METAPRIOR_DEFAULT_LANES 16
#define METAPRIOR_DEFAULT_ROWS 5
#define METAPRIOR_DEFAULT_TILE 4
#define METAPRIOR_DEFAULT_GRAD_TILE 4
#define METAPRIOR_ISA "avx512"
#elif defined(__AVX2__) && defined(__FMA__)
#define METAPRIOR_DEFAULT_LANES 8
#define METAPRIOR_DEFAULT_ROWS 5
#define METAPRIOR_DEFAULT_TILE 2
#define METAPRIOR_DEFAULT_GRAD_TILE 2
#define METAPRIOR_ISA "avx2"
#else
#error "metaprior's compiled inner loop needs AVX2 and FMA (or AVX-512); the PyTorch loop runs"
#endif

#ifndef METAPRIOR_LANES
#define METAPRIOR_LANES METAPRIOR_DEFAULT_LANES
#endif
#ifndef METAPRIOR_ROWS
#define METAPRIOR_ROWS METAPRIOR_DEFAULT_ROWS
#endif
#ifndef METAPRIOR_TILE
#define METAPRIOR_TILE METAPRIOR_DEFAULT_TILE
#endif
#ifndef METAPRIOR_GRAD_TILE
#define METAPRIOR_GRAD_TILE METAPRIOR_DEFAULT_GRAD_TILE
#endif
