// The inner loop for groups of kLanes tasks interleaved across the lanes of a SIMD vector:
// `vf` holds one number of each of kLanes tasks, so every multiply-add of the per-task
// algorithm is one vector instruction for kLanes tasks, with no reductions across lanes, no
// transposes and no shuffles. A group runs all of its SGD steps with its weights, gradients and
// activations in the core's L2. The matrix loops are tiled (kRows points x up to kTile units),
// so each weight or activation loaded from cache feeds several multiply-adds held in registers.
//
// The vector width and the tiles are set per build (variants.h): a tile's accumulators, its
// weights and one activation must fit the target's vector registers (32 on AVX-512, 16 on
// AVX2), else the compiler spills them to the stack on every multiply-add.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "common.h"
#include "variants.h"

namespace metaprior::lanes {

constexpr int kLanes = METAPRIOR_LANES;  // tasks per vector: one register of floats
constexpr int kRows = METAPRIOR_ROWS;    // points per register tile; minibatches are padded to it
constexpr int kTile = METAPRIOR_TILE;    // at most this many units per register tile
constexpr int kGradTile = METAPRIOR_GRAD_TILE;  // output units per tile of a weight gradient
constexpr int kRowCap = (kMaxBatch + kRows - 1) / kRows * kRows;  // rows of the buffers

typedef float vf __attribute__((vector_size(kLanes * sizeof(float))));
typedef std::int32_t vi __attribute__((vector_size(kLanes * sizeof(std::int32_t))));

inline vf splat(float v) { return vf{} + v; }

// A tile width that divides n: the largest of kTile, ..., 1 (so no loop needs a remainder).
constexpr int tile(int n, int most = kTile) { return n % most == 0 ? most : tile(n, most - 1); }

// h = act(a W^T + b) for m rows (a multiple of kRows); a: m x IN, W: OUT x IN, h: m x OUT.
template <int IN, int OUT, bool TANH>
inline void forward_layer(const vf* __restrict__ a, const vf* __restrict__ W,
                          const vf* __restrict__ b, vf* __restrict__ h, int m) {
  constexpr int OB = tile(OUT);
  for (int r0 = 0; r0 < m; r0 += kRows) {
    for (int o0 = 0; o0 < OUT; o0 += OB) {
      vf acc[kRows][OB];
      for (int r = 0; r < kRows; ++r)
        for (int k = 0; k < OB; ++k) acc[r][k] = b[o0 + k];
      for (int i = 0; i < IN; ++i) {
        vf w[OB];
        for (int k = 0; k < OB; ++k) w[k] = W[(o0 + k) * IN + i];
        for (int r = 0; r < kRows; ++r) {
          const vf ai = a[(r0 + r) * IN + i];
          for (int k = 0; k < OB; ++k) acc[r][k] += ai * w[k];
        }
      }
      for (int r = 0; r < kRows; ++r)
        for (int k = 0; k < OB; ++k)
          h[(r0 + r) * OUT + o0 + k] = TANH ? tanh_rational(acc[r][k]) : acc[r][k];
    }
  }
}

// Gradient of one layer from its input a (m x IN) and output delta g (m x OUT); returns its
// squared norm, per lane.
template <int IN, int OUT>
inline vf layer_grad(const vf* __restrict__ a, const vf* __restrict__ g, vf* __restrict__ gW,
                     vf* __restrict__ gb, int m) {
  constexpr int OB = tile(OUT, kGradTile), IB = tile(IN);
  vf sq = splat(0.f);
  for (int o = 0; o < OUT; ++o) {
    vf s = splat(0.f);
    for (int r = 0; r < m; ++r) s += g[r * OUT + o];
    gb[o] = s;
    sq += s * s;
  }
  for (int o0 = 0; o0 < OUT; o0 += OB) {
    for (int i0 = 0; i0 < IN; i0 += IB) {
      vf acc[OB][IB];
      for (int k = 0; k < OB; ++k)
        for (int j = 0; j < IB; ++j) acc[k][j] = splat(0.f);
      for (int r = 0; r < m; ++r) {
        vf gk[OB], aj[IB];
        for (int k = 0; k < OB; ++k) gk[k] = g[r * OUT + o0 + k];
        for (int j = 0; j < IB; ++j) aj[j] = a[r * IN + i0 + j];
        for (int k = 0; k < OB; ++k)
          for (int j = 0; j < IB; ++j) acc[k][j] += gk[k] * aj[j];
      }
      for (int k = 0; k < OB; ++k)
        for (int j = 0; j < IB; ++j) {
          gW[(o0 + k) * IN + i0 + j] = acc[k][j];
          sq += acc[k][j] * acc[k][j];
        }
    }
  }
  return sq;
}

// Delta of the layer below: (g W) * (1 - a^2), with a the tanh output that fed this layer.
template <int IN, int OUT>
inline void back_delta(const vf* __restrict__ g, const vf* __restrict__ W,
                       const vf* __restrict__ a, vf* __restrict__ below, int m) {
  constexpr int IB = tile(IN);
  for (int r0 = 0; r0 < m; r0 += kRows) {
    for (int i0 = 0; i0 < IN; i0 += IB) {
      vf acc[kRows][IB];
      for (int r = 0; r < kRows; ++r)
        for (int j = 0; j < IB; ++j) acc[r][j] = splat(0.f);
      for (int o = 0; o < OUT; ++o) {
        vf w[IB];
        for (int j = 0; j < IB; ++j) w[j] = W[o * IN + i0 + j];
        for (int r = 0; r < kRows; ++r) {
          const vf go = g[(r0 + r) * OUT + o];
          for (int j = 0; j < IB; ++j) acc[r][j] += go * w[j];
        }
      }
      for (int r = 0; r < kRows; ++r)
        for (int j = 0; j < IB; ++j) {
          const vf ai = a[(r0 + r) * IN + i0 + j];
          below[(r0 + r) * IN + i0 + j] = acc[r][j] * (1.f - ai * ai);
        }
    }
  }
}

// Built with -ffast-math, so std::isfinite may be folded to true; test the exponent bits.
// -1 in lanes that are finite, 0 elsewhere.
inline vi finite_lanes(vf v) {
  const vi bits = (vi)v;
  return (bits & 0x7f800000) != 0x7f800000;
}

template <int N>
inline void sgd_step(vf* __restrict__ w, const vf* __restrict__ g, vf s, vi ok) {
  for (int k = 0; k < N; ++k) w[k] = ok ? w[k] - s * g[k] : w[k];
}

// One group's weights, gradients and activations; about 1 MB, allocated once per thread.
template <int D, int H>
struct Group {
  static constexpr int kSizes[8] = {H * D, H, H * H, H, H * H, H, H, 1};
  vf W0[H * D], b0[H], W1[H * H], b1[H], W2[H * H], b2[H], W3[H], b3[1];
  vf gW0[H * D], gb0[H], gW1[H * H], gb1[H], gW2[H * H], gb2[H], gW3[H], gb3[1];
  vf x[kRowCap * D], y[kRowCap], wt[kRowCap], out[kRowCap], g3[kRowCap];
  vf a1[kRowCap * H], a2[kRowCap * H], a3[kRowCap * H];
  vf g2[kRowCap * H], g1[kRowCap * H], g0[kRowCap * H];

  vf* weights(int k) {
    vf* w[8] = {W0, b0, W1, b1, W2, b2, W3, b3};
    return w[k];
  }

  // Output of the network on rows [0, m) of x.
  void forward(int m) {
    forward_layer<D, H, true>(x, W0, b0, a1, m);
    forward_layer<H, H, true>(a1, W1, b1, a2, m);
    forward_layer<H, H, true>(a2, W2, b2, a3, m);
    forward_layer<H, 1, false>(a3, W3, b3, out, m);
  }

  // Gradient of sum_r wt_r (out_r - y_r)^2 into g*; returns its squared norm per lane.
  vf backward(int m) {
    for (int r = 0; r < m; ++r) g3[r] = 2.f * wt[r] * (out[r] - y[r]);
    vf sq = layer_grad<H, 1>(a3, g3, gW3, gb3, m);
    back_delta<H, 1>(g3, W3, a3, g2, m);
    sq += layer_grad<H, H>(a2, g2, gW2, gb2, m);
    back_delta<H, H>(g2, W2, a2, g1, m);
    sq += layer_grad<H, H>(a1, g1, gW1, gb1, m);
    back_delta<H, H>(g1, W1, a1, g0, m);
    sq += layer_grad<D, H>(x, g0, gW0, gb0, m);
    return sq;
  }

  void step(vf s, vi ok) {
    sgd_step<H * D>(W0, gW0, s, ok);
    sgd_step<H>(b0, gb0, s, ok);
    sgd_step<H * H>(W1, gW1, s, ok);
    sgd_step<H>(b1, gb1, s, ok);
    sgd_step<H * H>(W2, gW2, s, ok);
    sgd_step<H>(b2, gb2, s, ok);
    sgd_step<H>(W3, gW3, s, ok);
    sgd_step<1>(b3, gb3, s, ok);
  }
};

// Adapts tasks [t0, t0 + lanes) in place; lanes past the last task stay zero and are dropped.
template <int D, int H>
void adapt_group(Group<D, H>& G, const Inputs& in, int64_t t0, int lanes) {
  const int64_t n = in.n, steps = in.steps;
  const int m = in.m, mp = (m + kRows - 1) / kRows * kRows;
  for (int k = 0; k < 8; ++k) {
    vf* w = G.weights(k);
    for (int e = 0; e < Group<D, H>::kSizes[k]; ++e) {
      w[e] = splat(0.f);
      for (int l = 0; l < lanes; ++l) w[e][l] = in.base[k][(t0 + l) * in.stride[k] + e];
    }
  }
  // Loss on all points before the first step, kMaxBatch points at a time.
  vf loss = splat(0.f);
  for (int64_t start = 0; start < n; start += kMaxBatch) {
    const int rows = static_cast<int>(std::min<int64_t>(kMaxBatch, n - start));
    const int rp = (rows + kRows - 1) / kRows * kRows;
    for (int r = 0; r < rp; ++r) {
      for (int j = 0; j < D; ++j) G.x[r * D + j] = splat(0.f);
      G.y[r] = G.wt[r] = splat(0.f);
      if (r >= rows) continue;
      for (int l = 0; l < lanes; ++l) {
        const int64_t p = (t0 + l) * n + start + r;
        for (int j = 0; j < D; ++j) G.x[r * D + j][l] = in.X[p * D + j];
        G.y[r][l] = in.Y[p];
        G.wt[r][l] = in.full_w[p];
      }
    }
    G.forward(rp);
    for (int r = 0; r < rp; ++r) {
      const vf e = G.out[r] - G.y[r];
      loss += G.wt[r] * e * e;
    }
  }
  for (int l = 0; l < lanes; ++l) in.loss0[t0 + l] = loss[l];

  for (int r = 0; r < mp; ++r) {  // padding rows and lanes: zero inputs, zero weight
    for (int j = 0; j < D; ++j) G.x[r * D + j] = splat(0.f);
    G.y[r] = G.wt[r] = splat(0.f);
  }
  for (int64_t s = 0; s < steps; ++s) {
    for (int l = 0; l < lanes; ++l) {
      const int64_t t = t0 + l, off = (t * steps + s) * m;
      const int64_t* ix = in.idx + off;
      for (int r = 0; r < m; ++r) {
        const int64_t p = t * n + ix[r];
        for (int j = 0; j < D; ++j) G.x[r * D + j][l] = in.X[p * D + j];
        G.y[r][l] = in.Y[p];
        G.wt[r][l] = in.wts[off + r];
      }
    }
    G.forward(mp);
    const vf sq = G.backward(mp);
    // Per-task clip of the gradient norm; an overflowed task skips the step, as in Python.
    vf lr = splat(0.f);
    for (int l = 0; l < kLanes; ++l) {
      const float norm = std::sqrt(sq[l]);
      lr[l] = in.lr * std::min(1.f, in.max_norm / (norm + 1e-12f));
    }
    G.step(lr, finite_lanes(sq));
  }
  for (int k = 0; k < 8; ++k) {
    const vf* w = G.weights(k);
    for (int e = 0; e < Group<D, H>::kSizes[k]; ++e)
      for (int l = 0; l < lanes; ++l) in.base[k][(t0 + l) * in.stride[k] + e] = w[e][l];
  }
}

}  // namespace metaprior::lanes
