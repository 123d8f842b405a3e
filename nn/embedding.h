// Time embeddings: a scalar time t per sample -> a feature vector, for
// networks that condition on t (velocity fields, score networks).
//
// Both accept t as [N] or [N, 1] and return [N, dim] (a 0-d t gives [dim]).
// Integer t (diffusion timesteps) is converted to float32 first.
#pragma once

#include "nn/module.h"

namespace tide::nn {

// The sinusoidal embedding of guided-diffusion, as copied into torchcfm
// (torchcfm/models/unet/nn.py, timestep_embedding): with half = dim / 2 and
//   freq_i = exp(-ln(max_period) * i / half),  i = 0 .. half - 1,
// the output row for time t is
//   [cos(t freq_0), ..., cos(t freq_{half-1}), sin(t freq_0), ..., sin(t freq_{half-1})]
// (cosines first), plus one zero column when dim is odd. There are no
// parameters or buffers (torchcfm computes the frequencies on the fly), so it
// adds nothing to a state dict. t is used as given: scale it first if the
// model expects timesteps in [0, 1000].
class SinusoidalTimeEmbedding : public Module {
 public:
  explicit SinusoidalTimeEmbedding(int64_t dim, double max_period = 10000.0);
  Tensor forward(const Tensor& t) override;
  int64_t dim() const { return dim_; }
  std::string type_name() const override { return "SinusoidalTimeEmbedding"; }

 protected:
  std::string extra_repr() const override;

 private:
  int64_t dim_;
  double max_period_;
};

// Gaussian random Fourier features (Tancik et al. 2020), in the form of
// score_sde's GaussianFourierProjection: a fixed buffer "W" [dim / 2] with
// entries ~ N(0, scale^2), drawn once from `gen`, and
//   out = [sin(2 pi t W_0), ..., sin(2 pi t W_{k-1}), cos(2 pi t W_0), ..., cos(2 pi t W_{k-1})]
// (sines first), k = dim / 2. W is a buffer: saved in the state dict, never
// trained. dim must be even.
class GaussianFourierFeatures : public Module {
 public:
  GaussianFourierFeatures(int64_t dim, double scale, Generator& gen = default_generator());
  Tensor forward(const Tensor& t) override;
  const Tensor& W() const { return W_; }
  std::string type_name() const override { return "GaussianFourierFeatures"; }

 protected:
  std::string extra_repr() const override;

 private:
  int64_t dim_;
  double scale_;
  Tensor W_;
};

}  // namespace tide::nn
