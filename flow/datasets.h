// The 2-D toy data sets, with the exact recipes of
// shared/reference/flow-matching.md, section 9: the distribution, structure,
// scales and row order of the reference code, drawn from a tide::Generator (so
// deterministic per seed, but not numpy's or PyTorch's random streams).
//
// FFJORD's eight (rtqichen/ffjord `lib/toy_data.py`), under their own names:
//   swissroll, circles, rings, moons, 8gaussians, pinwheel, 2spirals, checkerboard
// torchcfm's two (atong01/conditional-flow-matching `torchcfm/utils.py`):
//   cfm-8gaussians (radius 5, per-coordinate std 0.1^(1/4)),
//   cfm-moons (evenly spaced, unshuffled arcs, uniform diagonal noise).
//
// Row counts follow the recipes: pinwheel returns 5 * (n / 5) rows and
// 2spirals 2 * (n / 2) rows (integer division), as FFJORD does; every other
// set returns n rows. Unlike FFJORD, an unknown name is an error (FFJORD
// silently falls back to 8gaussians).
//
// Loading data from files is in nn/npy.h and nn/csv.h.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "tensor/generator.h"
#include "tensor/tensor.h"

namespace tide::flow {

// All valid names, in the order listed above.
const std::vector<std::string>& dataset_names();

// Draws points of the named set: a [rows, 2] tensor of the given dtype (the
// recipes are evaluated in float64 and converted).
Tensor sample_dataset(std::string_view name, int64_t n, Generator& gen,
                      DType dtype = DType::Float32);

// Whether the set's true density has a closed form here: the Gaussian
// mixtures (8gaussians, cfm-8gaussians) and checkerboard.
bool has_log_density(std::string_view name);

// The true log-density (nats) at points x [N, 2] as float64 [N]: exact
// mixture log-densities for 8gaussians and cfm-8gaussians, and log(1/32) on
// checkerboard's 8 squares (-inf off them). Throws for sets without one.
Tensor dataset_log_density(std::string_view name, const Tensor& x);

}  // namespace tide::flow
