// The inner loop of batched Reptile for one architecture, compiled for the CPU it runs on.
//
// Network: d inputs -> H -> H -> H -> 1 with tanh, weights `W_l: out x in` as in metaprior.nets.
// Each task runs all of its SGD steps with its weights held in local arrays (a few tens of KB,
// so they stay in L1/L2) instead of one batched matmul per layer and step over all B tasks.
// Every loop has compile-time bounds, so the compiler unrolls and vectorises it; each weight is
// kept in both layouts (W and its transpose) so that every loop runs along a contiguous axis.
// Tasks are independent: they are split into equal chunks over torch.get_num_threads() threads
// (std::thread: at::parallel_for would need this library built against torch's OpenMP), and
// the result does not depend on the number of threads.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

namespace {

constexpr int kMaxBatch = 64;  // points per minibatch (metaprior.cpu_kernel.MAX_BATCH)

// tanh as the ratio of an odd degree-13 and an even degree-6 polynomial on [-7.9, 7.9] (the
// minimax coefficients Eigen uses for its float tanh); clamped outside, where tanh is 1 to
// float precision. Max abs error 3.4e-7 against tanh in float64 (checked on a 2e6-point grid),
// and only multiply-adds and one division, so it vectorises without a call to exp.
inline float tanh_rational(float x) {
  const float c = std::min(std::max(x, -7.90531110763549805f), 7.90531110763549805f);
  const float x2 = c * c;
  float p = -2.76076847742355e-16f;
  p = p * x2 + 2.00018790482477e-13f;
  p = p * x2 - 8.60467152213735e-11f;
  p = p * x2 + 5.12229709037114e-08f;
  p = p * x2 + 1.48572235717979e-05f;
  p = p * x2 + 6.37261928875436e-04f;
  p = p * x2 + 4.89352455891786e-03f;
  float q = 1.19825839466702e-06f;
  q = q * x2 + 1.18534705686654e-04f;
  q = q * x2 + 2.26843463243900e-03f;
  q = q * x2 + 4.89352518554385e-03f;
  return c * p / q;
}

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
      for (int o = 0; o < OUT; ++o) acc[o] = tanh_rational(acc[o]);
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

// Built with -ffast-math (which lets the compiler vectorise exp), so std::isfinite may be
// folded to true; test the exponent bits instead.
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

template <int D>
void run(std::vector<torch::Tensor>& params, const torch::Tensor& X, const torch::Tensor& Y,
         const torch::Tensor& full_w, const torch::Tensor& idx, const torch::Tensor& wts,
         double lr, double max_norm, torch::Tensor& loss0) {
  const int64_t B = X.size(0), n = X.size(1), steps = idx.size(1);
  const int m = static_cast<int>(idx.size(2));
  std::vector<float*> base;
  std::vector<int64_t> stride;
  for (auto& p : params) {
    base.push_back(p.data_ptr<float>());
    stride.push_back(p.stride(0));
  }
  const float* Xp = X.data_ptr<float>();
  const float* Yp = Y.data_ptr<float>();
  const int64_t* Ip = idx.data_ptr<int64_t>();
  const float* Wp = wts.data_ptr<float>();
  const float* Fp = full_w.data_ptr<float>();
  float* Lp = loss0.data_ptr<float>();
  auto work = [&](int64_t lo, int64_t hi) {
    float* w[8];
    for (int64_t t = lo; t < hi; ++t) {
      for (int k = 0; k < 8; ++k) w[k] = base[k] + t * stride[k];
      // The default minibatch of 10 points gets its own unrolled copy.
      auto task = m == 10 ? adapt_task<D, 32, 10> : adapt_task<D, 32, 0>;
      Lp[t] = task(w, Xp + t * n * D, Yp + t * n, Fp + t * n, n, Ip + t * steps * m,
                   Wp + t * steps * m, steps, m, static_cast<float>(lr),
                   static_cast<float>(max_norm));
    }
  };
  const int64_t threads = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), B));
  const int64_t chunk = (B + threads - 1) / threads;
  std::vector<std::thread> pool;
  for (int64_t k = 1; k < threads; ++k)
    pool.emplace_back(work, std::min(B, k * chunk), std::min(B, (k + 1) * chunk));
  work(0, std::min(B, chunk));
  for (auto& th : pool) th.join();
}

}  // namespace

// params: 8 contiguous float32 tensors, stacked over B tasks, adapted in place.
// X: B x n x d, Y: B x n, full_w: B x n loss weights of all points (float32, contiguous);
// idx: B x steps x m point indices (int64) and wts: B x steps x m per-point loss weights
// (float32), zero for padding. Returns the B losses on all points before adaptation.
torch::Tensor adapt_sgd(std::vector<torch::Tensor> params, torch::Tensor X, torch::Tensor Y,
                        torch::Tensor full_w, torch::Tensor idx, torch::Tensor wts, double lr,
                        double max_norm) {
  TORCH_CHECK(params.size() == 8, "adapt_sgd: expected 8 weight tensors, got ", params.size());
  TORCH_CHECK(idx.size(2) <= kMaxBatch, "adapt_sgd: minibatch larger than ", kMaxBatch);
  auto loss0 = torch::empty({X.size(0)}, X.options());
  switch (X.size(2)) {
    case 1: run<1>(params, X, Y, full_w, idx, wts, lr, max_norm, loss0); break;
    case 2: run<2>(params, X, Y, full_w, idx, wts, lr, max_norm, loss0); break;
    case 3: run<3>(params, X, Y, full_w, idx, wts, lr, max_norm, loss0); break;
    case 4: run<4>(params, X, Y, full_w, idx, wts, lr, max_norm, loss0); break;
    case 5: run<5>(params, X, Y, full_w, idx, wts, lr, max_norm, loss0); break;
    case 6: run<6>(params, X, Y, full_w, idx, wts, lr, max_norm, loss0); break;
    default: TORCH_CHECK(false, "adapt_sgd: input dimension ", X.size(2), " not compiled");
  }
  return loss0;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("adapt_sgd", &adapt_sgd, "SGD inner loop of B tasks, d -> 32 -> 32 -> 32 -> 1 tanh MLP");
}
