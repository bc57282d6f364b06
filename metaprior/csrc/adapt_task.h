// The inner loop for one task at a time: its weights in local arrays (kept in both layouts, W
// and its transpose, so every loop runs along a contiguous axis of 32 floats and vectorises
// along the hidden units). Used for the few tasks left over after the 16-task groups of
// adapt_lanes.h, where it beats a mostly empty vector (BO adapts one task at a time).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "common.h"

namespace metaprior::per_task {

// h = act(a W^T + b) for m rows; a: m x IN, WT: IN x OUT, h: m x OUT.
template <int IN, int OUT, bool TANH>
inline void forward_layer(const float* __restrict__ a, const float* __restrict__ WT,
                          const float* __restrict__ b, float* __restrict__ h, int m) {
  for (int r = 0; r < m; ++r) {
    float acc[OUT];
    for (int o = 0; o < OUT; ++o) acc[o] = b[o];
    for (int i = 0; i < IN; ++i) {
      const float ai = a[r * IN + i];
      for (int o = 0; o < OUT; ++o) acc[o] += ai * WT[i * OUT + o];
    }
    if (TANH) {
      for (int o = 0; o < OUT; ++o) acc[o] = tanh_rational<float>(acc[o]);
    }
    for (int o = 0; o < OUT; ++o) h[r * OUT + o] = acc[o];
  }
}

// Gradient of one layer from its input a (m x IN) and output delta g (m x OUT), in both
// layouts; returns its squared norm.
template <int IN, int OUT>
inline float layer_grad(const float* __restrict__ a, const float* __restrict__ g,
                        float* __restrict__ gW, float* __restrict__ gWT, float* __restrict__ gb,
                        int m) {
  float sq = 0.f;
  for (int o = 0; o < OUT; ++o) {  // summed over the points in registers too
    float acc[IN];
    for (int i = 0; i < IN; ++i) acc[i] = 0.f;
    float bacc = 0.f;
    for (int r = 0; r < m; ++r) {
      const float go = g[r * OUT + o];
      bacc += go;
      for (int i = 0; i < IN; ++i) acc[i] += go * a[r * IN + i];
    }
    for (int i = 0; i < IN; ++i) {
      gW[o * IN + i] = acc[i];
      sq += acc[i] * acc[i];
    }
    gb[o] = bacc;
    sq += bacc * bacc;
  }
  for (int i = 0; i < IN; ++i) {  // the transpose, summed over the points in registers
    float acc[OUT];
    for (int o = 0; o < OUT; ++o) acc[o] = 0.f;
    for (int r = 0; r < m; ++r) {
      const float ai = a[r * IN + i];
      for (int o = 0; o < OUT; ++o) acc[o] += ai * g[r * OUT + o];
    }
    for (int o = 0; o < OUT; ++o) gWT[i * OUT + o] = acc[o];
  }
  return sq;
}

// Delta of the layer below: (g W) * (1 - a^2), with a the tanh output that fed this layer.
template <int IN, int OUT>
inline void back_delta(const float* __restrict__ g, const float* __restrict__ W,
                       const float* __restrict__ a, float* __restrict__ below, int m) {
  for (int r = 0; r < m; ++r) {
    float acc[IN];
    for (int i = 0; i < IN; ++i) acc[i] = 0.f;
    for (int o = 0; o < OUT; ++o) {
      const float go = g[r * OUT + o];
      for (int i = 0; i < IN; ++i) acc[i] += go * W[o * IN + i];
    }
    for (int i = 0; i < IN; ++i) below[r * IN + i] = acc[i] * (1.f - a[r * IN + i] * a[r * IN + i]);
  }
}

// Built with -ffast-math, so std::isfinite may be folded to true; test the exponent bits.
inline bool is_finite(float v) {
  std::uint32_t bits;
  std::memcpy(&bits, &v, sizeof bits);
  return (bits & 0x7f800000u) != 0x7f800000u;
}

template <int N>
inline void step_(float* __restrict__ w, const float* __restrict__ g, float s) {
  for (int k = 0; k < N; ++k) w[k] -= s * g[k];
}

template <int IN, int OUT>
inline void transpose(const float* __restrict__ W, float* __restrict__ WT) {
  for (int o = 0; o < OUT; ++o)
    for (int i = 0; i < IN; ++i) WT[i * OUT + o] = W[o * IN + i];
}

// All `steps` SGD steps of one task, in place on its weights (pointers into the stacked tensors).
// Returns the task's loss on all n points (weights full_w) before the first step.
// M > 0 fixes the minibatch size at compile time (the loops over points unroll); M = 0 reads m.
template <int D, int H, int M>
float adapt_task(float* const* w, const float* X, const float* Y, const float* full_w, int64_t n,
                 const int64_t* idx, const float* wts, int64_t steps, int m_runtime, float lr,
                 float max_norm) {
  const int m = M > 0 ? M : m_runtime;
  alignas(64) float W0[H * D], W0T[D * H], W1[H * H], W1T[H * H], W2[H * H], W2T[H * H], W3[H];
  alignas(64) float b0[H], b1[H], b2[H], b3[1];
  alignas(64) float gW0[H * D], gW0T[D * H], gW1[H * H], gW1T[H * H], gW2[H * H], gW2T[H * H];
  alignas(64) float gW3[H], gW3T[H], gb0[H], gb1[H], gb2[H], gb3[1];
  alignas(64) float x[kMaxBatch * D], a1[kMaxBatch * H], a2[kMaxBatch * H], a3[kMaxBatch * H];
  alignas(64) float out[kMaxBatch], g3[kMaxBatch], g2[kMaxBatch * H], g1[kMaxBatch * H],
      g0[kMaxBatch * H];
  std::copy(w[0], w[0] + H * D, W0);
  std::copy(w[1], w[1] + H, b0);
  std::copy(w[2], w[2] + H * H, W1);
  std::copy(w[3], w[3] + H, b1);
  std::copy(w[4], w[4] + H * H, W2);
  std::copy(w[5], w[5] + H, b2);
  std::copy(w[6], w[6] + H, W3);
  std::copy(w[7], w[7] + 1, b3);
  transpose<D, H>(W0, W0T);
  transpose<H, H>(W1, W1T);
  transpose<H, H>(W2, W2T);
  float loss0 = 0.f;
  for (int64_t start = 0; start < n; start += kMaxBatch) {
    const int rows = static_cast<int>(std::min<int64_t>(kMaxBatch, n - start));
    forward_layer<D, H, true>(X + start * D, W0T, b0, a1, rows);
    forward_layer<H, H, true>(a1, W1T, b1, a2, rows);
    forward_layer<H, H, true>(a2, W2T, b2, a3, rows);
    forward_layer<H, 1, false>(a3, W3, b3, out, rows);
    for (int r = 0; r < rows; ++r) {
      const float e = out[r] - Y[start + r];
      loss0 += full_w[start + r] * e * e;
    }
  }
  for (int64_t s = 0; s < steps; ++s) {
    const int64_t* ix = idx + s * m;
    const float* wt = wts + s * m;
    for (int r = 0; r < m; ++r)
      for (int j = 0; j < D; ++j) x[r * D + j] = X[ix[r] * D + j];
    forward_layer<D, H, true>(x, W0T, b0, a1, m);
    forward_layer<H, H, true>(a1, W1T, b1, a2, m);
    forward_layer<H, H, true>(a2, W2T, b2, a3, m);
    forward_layer<H, 1, false>(a3, W3, b3, out, m);  // a 1 x H matrix is its own transpose
    for (int r = 0; r < m; ++r) g3[r] = 2.f * wt[r] * (out[r] - Y[ix[r]]);
    float sq = layer_grad<H, 1>(a3, g3, gW3, gW3T, gb3, m);
    back_delta<H, 1>(g3, W3, a3, g2, m);
    sq += layer_grad<H, H>(a2, g2, gW2, gW2T, gb2, m);
    back_delta<H, H>(g2, W2, a2, g1, m);
    sq += layer_grad<H, H>(a1, g1, gW1, gW1T, gb1, m);
    back_delta<H, H>(g1, W1, a1, g0, m);
    sq += layer_grad<D, H>(x, g0, gW0, gW0T, gb0, m);
    const float norm = std::sqrt(sq);
    if (!is_finite(norm)) continue;  // an overflowed task skips the step, as in Python
    const float lr_s = lr * std::min(1.f, max_norm / (norm + 1e-12f));
    step_<H * D>(W0, gW0, lr_s);
    step_<D * H>(W0T, gW0T, lr_s);
    step_<H>(b0, gb0, lr_s);
    step_<H * H>(W1, gW1, lr_s);
    step_<H * H>(W1T, gW1T, lr_s);
    step_<H>(b1, gb1, lr_s);
    step_<H * H>(W2, gW2, lr_s);
    step_<H * H>(W2T, gW2T, lr_s);
    step_<H>(b2, gb2, lr_s);
    step_<H>(W3, gW3, lr_s);
    step_<1>(b3, gb3, lr_s);
  }
  std::copy(W0, W0 + H * D, w[0]);
  std::copy(b0, b0 + H, w[1]);
  std::copy(W1, W1 + H * H, w[2]);
  std::copy(b1, b1 + H, w[3]);
  std::copy(W2, W2 + H * H, w[4]);
  std::copy(b2, b2 + H, w[5]);
  std::copy(W3, W3 + H, w[6]);
  std::copy(b3, b3 + 1, w[7]);
  return loss0;
}

// Task t of the call, in place.
template <int D>
void adapt_one(const Inputs& in, int64_t t) {
  float* w[8];
  for (int k = 0; k < 8; ++k) w[k] = in.base[k] + t * in.stride[k];
  // The default minibatch of 10 points gets its own unrolled copy.
  auto task = in.m == 10 ? adapt_task<D, kHidden, 10> : adapt_task<D, kHidden, 0>;
  const int64_t n = in.n, sm = in.steps * in.m;
  in.loss0[t] = task(w, in.X + t * n * D, in.Y + t * n, in.full_w + t * n, n, in.idx + t * sm,
                     in.wts + t * sm, in.steps, in.m, in.lr, in.max_norm);
}

}  // namespace metaprior::per_task
