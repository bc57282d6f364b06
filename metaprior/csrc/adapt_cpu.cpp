// The inner loop of batched Reptile for the default network, compiled for the CPU it runs on.
//
// Tasks go in groups of 16 through the interleaved loop (adapt_lanes.h); the few left over
// (fewer than kMinLanes) go one at a time through the per-task loop (adapt_task.h), which is
// faster than a mostly empty vector. Work units are split into equal chunks over
// torch.get_num_threads() threads (std::thread: at::parallel_for would need this library built
// against torch's OpenMP); the result does not depend on the number of threads.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <memory>
#include <thread>
#include <vector>

#include "adapt_lanes.h"
#include "adapt_task.h"
#include "common.h"

namespace {

using metaprior::Inputs;

// A partial group of this many tasks or more still beats the per-task loop (measured: a full
// group of 16 adapts about 2.4x as many tasks per second as the per-task loop).
constexpr int kMinLanes = 7;

struct Unit {
  int64_t t0;
  int tasks;   // tasks from t0
  bool group;  // interleaved (else one task, per-task loop)
};

template <int D>
void run(const Inputs& in) {
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
      1, std::min<size_t>(static_cast<size_t>(at::get_num_threads()), units.size()));
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
// (float32), zero for padding. Returns the B losses on all points before adaptation.
torch::Tensor adapt_sgd(std::vector<torch::Tensor> params, torch::Tensor X, torch::Tensor Y,
                        torch::Tensor full_w, torch::Tensor idx, torch::Tensor wts, double lr,
                        double max_norm) {
  TORCH_CHECK(params.size() == 8, "adapt_sgd: expected 8 weight tensors, got ", params.size());
  TORCH_CHECK(idx.size(2) <= metaprior::kMaxBatch, "adapt_sgd: minibatch larger than ",
              metaprior::kMaxBatch);
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
  switch (X.size(2)) {
    case 1: run<1>(in); break;
    case 2: run<2>(in); break;
    case 3: run<3>(in); break;
    case 4: run<4>(in); break;
    case 5: run<5>(in); break;
    case 6: run<6>(in); break;
    default: TORCH_CHECK(false, "adapt_sgd: input dimension ", X.size(2), " not compiled");
  }
  return loss0;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("adapt_sgd", &adapt_sgd, "SGD inner loop of B tasks, d -> 32 -> 32 -> 32 -> 1 tanh MLP");
}
