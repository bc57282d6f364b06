// What both inner loops share: the network's sizes, the tanh they use, the finite test and the
// inputs of one call. Network: d inputs -> H -> H -> H -> 1 with tanh, weights `W_l: out x in`
// as in metaprior.nets.
#pragma once

#include <cstdint>
#include <vector>

namespace metaprior {

constexpr int kHidden = 32;    // the compiled width (metaprior.cpu_kernel.HIDDEN)
constexpr int kMaxBatch = 64;  // points per minibatch (metaprior.cpu_kernel.MAX_BATCH)

// tanh as the ratio of an odd degree-13 and an even degree-6 polynomial on [-7.9, 7.9] (the
// minimax coefficients Eigen uses for its float tanh); clamped outside, where tanh is 1 to
// float precision. Max abs error 3.4e-7 against tanh in float64 (checked on a 2e6-point grid),
// and only multiply-adds and one division, so it vectorises without a call to exp.
// T is float or a GCC vector of floats (the same expressions act lane by lane).
template <typename T>
inline T tanh_rational(T x) {
  const float hi = 7.90531110763549805f;
  T c = x < hi ? x : T{} + hi;
  c = c > -hi ? c : T{} - hi;
  const T x2 = c * c;
  T p = T{} - 2.76076847742355e-16f;
  p = p * x2 + 2.00018790482477e-13f;
  p = p * x2 - 8.60467152213735e-11f;
  p = p * x2 + 5.12229709037114e-08f;
  p = p * x2 + 1.48572235717979e-05f;
  p = p * x2 + 6.37261928875436e-04f;
  p = p * x2 + 4.89352455891786e-03f;
  T q = T{} + 1.19825839466702e-06f;
  q = q * x2 + 1.18534705686654e-04f;
  q = q * x2 + 2.26843463243900e-03f;
  q = q * x2 + 4.89352518554385e-03f;
  return c * p / q;
}

// One call: B tasks' stacked weights (adapted in place), data and minibatch schedule.
struct Inputs {
  std::vector<float*> base;     // the 8 stacked weight tensors
  std::vector<int64_t> stride;  // their task strides
  const float *X, *Y, *full_w, *wts;  // B x n x d, B x n, B x n, B x steps x m
  const int64_t* idx;                 // B x steps x m
  int64_t B, n, steps;
  int m;
  float lr, max_norm;
  float* loss0;  // B: loss on all points before the first step
};

}  // namespace metaprior
