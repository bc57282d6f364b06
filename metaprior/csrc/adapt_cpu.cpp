// The inner loop of batched Reptile for the default network, compiled once per instruction set
// (variants.h: the -m flags of the build pick the vector width and the register tiles).
//
// Tasks go in groups of kLanes through the interleaved loop (adapt_lanes.h); the few left over
// (fewer than kMinLanes) go one at a time through the per-task loop (adapt_task.h), which is
// faster than a mostly empty vector. Work units are split into equal chunks over the threads
// the caller asks for (metaprior.cpu_kernel.threads(); std::thread: at::parallel_for would need
// this library built against torch's OpenMP); the result does not depend on the number of
// threads.
#include <torch/extension.h>

#include <algorithm>
#include <memory>
#include <thread>
#include <vector>

#include "adapt_lanes.h"
#include "adapt_task.h"
#include "common.h"
#include "variants.h"

namespace {

using metaprior::Inputs;

// A partial group of this many tasks or more still beats the per-task loop (measured with 16
// lanes: a full group adapts about 2.4x as many tasks per second as the per-task loop, so 7 of
// 16 lanes break even; the same share of the lanes on other widths).
constexpr int kMinLanes = (7 * metaprior::lanes::kLanes + 15) / 16;

// Input widths compiled; other widths up to kMaxDim run at the next one, with zero inputs and
// zero first-layer weights in the extra columns. Those add exact zeros to every sum (their
// gradient is sum(delta * 0) = 0, so they stay zero), so the result is the unpadded one; the
// cost is a wider first layer, small next to the two 32 x 32 layers.
constexpr int kWidths[] = {1, 2, 3, 4, 5, 6, 8, 12, 16, 24, 32};
constexpr int kMaxDim = 32;

struct Unit {
  int64_t t0;
  int tasks;   // tasks from t0
  bool group;  // interleaved (else one task, per-task loop)
};

template <int D>
void run(const Inputs& in, int64_t n_threads) {
  std::vector<Unit> units;
  int64_t t = 0;
  for (; t + metaprior::lanes::kLanes <= in.B; t += metaprior::lanes::kLanes)
    units.push_back({t, metaprior::lanes::kLanes, true});
  const int rest = static_cast<int>(in.B - t);
  if (rest >= kMinLanes) {
    units.push_back({t, rest, true});
  } else {
    for (int k = 0; k < rest; ++k) units.push_back({t + k, 1, false});
  }
  auto work = [&](size_t lo, size_t hi) {
    std::unique_ptr<metaprior::lanes::Group<D, metaprior::kHidden>> G;
    for (size_t u = lo; u < hi; ++u) {
      if (!units[u].group) {
        metaprior::per_task::adapt_one<D>(in, units[u].t0);
        continue;
      }
      if (!G) G = std::make_unique<metaprior::lanes::Group<D, metaprior::kHidden>>();
      metaprior::lanes::adapt_group<D, metaprior::kHidden>(*G, in, units[u].t0, units[u].tasks);
    }
  };
  const size_t threads = std::max<size_t>(
      1, std::min<size_t>(static_cast<size_t>(std::max<int64_t>(1, n_threads)), units.size()));
  const size_t chunk = (units.size() + threads - 1) / threads;
  std::vector<std::thread> pool;
  for (size_t k = 1; k < threads; ++k)
    pool.emplace_back(work, std::min(units.size(), k * chunk),
                      std::min(units.size(), (k + 1) * chunk));
  work(0, std::min(units.size(), chunk));
  for (auto& th : pool) th.join();
}

}  // namespace

// params: 8 contiguous float32 tensors, stacked over B tasks, adapted in place.
// X: B x n x d, Y: B x n, full_w: B x n loss weights of all points (float32, contiguous);
// idx: B x steps x m point indices (int64) and wts: B x steps x m per-point loss weights
// (float32), zero for padding. threads: how many to split the tasks over. Returns the B losses
// on all points before adaptation.
torch::Tensor adapt_sgd(std::vector<torch::Tensor> params, torch::Tensor X, torch::Tensor Y,
                        torch::Tensor full_w, torch::Tensor idx, torch::Tensor wts, double lr,
                        double max_norm, int64_t threads) {
  TORCH_CHECK(params.size() == 8, "adapt_sgd: expected 8 weight tensors, got ", params.size());
  TORCH_CHECK(idx.size(2) <= metaprior::kMaxBatch, "adapt_sgd: minibatch larger than ",
              metaprior::kMaxBatch);
  const int64_t d = X.size(2);
  TORCH_CHECK(d >= 1 && d <= kMaxDim, "adapt_sgd: input dimension ", d, " not compiled");
  int width = kMaxDim;
  for (int w : kWidths) {
    if (w >= d) {
      width = w;
      break;
    }
  }
  torch::Tensor first = params[0];  // B x H x d, gets the padded copy's columns back
  if (width != d) {
    X = torch::constant_pad_nd(X, {0, width - d}).contiguous();
    params[0] = torch::constant_pad_nd(first, {0, width - d}).contiguous();
  }
  auto loss0 = torch::empty({X.size(0)}, X.options());
  Inputs in;
  for (auto& p : params) {
    in.base.push_back(p.data_ptr<float>());
    in.stride.push_back(p.stride(0));
  }
  in.X = X.data_ptr<float>();
  in.Y = Y.data_ptr<float>();
  in.full_w = full_w.data_ptr<float>();
  in.wts = wts.data_ptr<float>();
  in.idx = idx.data_ptr<int64_t>();
  in.B = X.size(0);
  in.n = X.size(1);
  in.steps = idx.size(1);
  in.m = static_cast<int>(idx.size(2));
  in.lr = static_cast<float>(lr);
  in.max_norm = static_cast<float>(max_norm);
  in.loss0 = loss0.data_ptr<float>();
  switch (width) {
    case 1: run<1>(in, threads); break;
    case 2: run<2>(in, threads); break;
    case 3: run<3>(in, threads); break;
    case 4: run<4>(in, threads); break;
    case 5: run<5>(in, threads); break;
    case 6: run<6>(in, threads); break;
    case 8: run<8>(in, threads); break;
    case 12: run<12>(in, threads); break;
    case 16: run<16>(in, threads); break;
    case 24: run<24>(in, threads); break;
    case 32: run<32>(in, threads); break;
    default: TORCH_CHECK(false, "adapt_sgd: input width ", width, " not compiled");
  }
  if (width != d) first.copy_(params[0].narrow(2, 0, d));
  return loss0;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("adapt_sgd", &adapt_sgd, "SGD inner loop of B tasks, d -> 32 -> 32 -> 32 -> 1 tanh MLP");
  m.attr("isa") = METAPRIOR_ISA;
  m.attr("lanes") = metaprior::lanes::kLanes;
  m.attr("rows") = metaprior::lanes::kRows;
  m.attr("tile") = metaprior::lanes::kTile;
  m.attr("grad_tile") = metaprior::lanes::kGradTile;
  m.attr("max_dim") = kMaxDim;
}
