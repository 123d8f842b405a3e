// Training checkpoints (nn/checkpoint.h): resuming from a checkpoint gives
// bit-identical parameters to an uninterrupted run, and bad checkpoints or
// mismatched objects give errors naming the file and the part.
#include <catch2/catch.hpp>

#include <memory>
#include <string>
#include <vector>

#include "nn/checkpoint.h"
#include "nn/layers.h"
#include "nn/optim.h"
#include "nn/safetensors.h"
#include "tensor/kernels.h"
#include "test_io_util.h"
#include "tide.h"

using tide::Generator;
using tide::Shape;
using tide::Tensor;
using tide::test::TempDir;
namespace nn = tide::nn;

namespace {

// A small training run: a Linear-Tanh-Dropout-Linear regression with Adam, a
// cosine schedule and an EMA. The generator draws the initial weights, every
// batch and every dropout mask, so a resumed run only matches if the
// generator state is restored too.
struct Run {
  Generator gen;
  std::shared_ptr<nn::Sequential> model;
  std::unique_ptr<nn::Adam> optimizer;
  std::unique_ptr<nn::CosineAnnealingLR> scheduler;
  std::unique_ptr<nn::EMA> ema;
  int64_t step = 0;

  explicit Run(uint64_t seed) : gen(seed) {
    model = std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::Module>>{
        std::make_shared<nn::Linear>(nn::LinearOptions{.in = 2, .out = 16, .generator = &gen}),
        std::make_shared<nn::Tanh>(), std::make_shared<nn::Dropout>(0.2, gen),
        std::make_shared<nn::Linear>(nn::LinearOptions{.in = 16, .out = 1, .generator = &gen})});
    optimizer = std::make_unique<nn::Adam>(model->parameters(),
                                           nn::AdamOptions{.lr = 1e-2, .weight_decay = 1e-4});
    scheduler = std::make_unique<nn::CosineAnnealingLR>(*optimizer, 20);
    ema = std::make_unique<nn::EMA>(*model, nn::EMAOptions{.decay = 0.9, .warmup = true});
  }

  void train(int steps) {
    for (int i = 0; i < steps; ++i) {
      Tensor x = tide::randn({8, 2}, gen);
      // target: sin(x0) * x1
      Tensor y =
          tide::mul(tide::sin(tide::kernels::slice(x, 1, 0, 1)), tide::kernels::slice(x, 1, 1, 2));
      Tensor loss = tide::mean(tide::square(model->forward(x) - y));
      optimizer->zero_grad();
      tide::backward(loss);
      optimizer->step();
      scheduler->step();
      ema->update();
      ++step;
    }
  }

  nn::Checkpoint checkpoint() {
    return {.model = model.get(),
            .optimizer = optimizer.get(),
            .ema = ema.get(),
            .scheduler = scheduler.get(),
            .generator = &gen,
            .step = step};
  }
};

void require_same_tensors(const std::vector<Tensor>& a, const std::vector<Tensor>& b) {
  REQUIRE(a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    INFO("tensor " << i);
    REQUIRE(a[i].shape() == b[i].shape());
    REQUIRE(a[i].to_vector<double>() == b[i].to_vector<double>());  // bit-identical floats
  }
}

}  // namespace

TEST_CASE("checkpoint: resuming gives bit-identical parameters", "[io][checkpoint]") {
  constexpr int kTotal = 12, kSplit = 5;
  TempDir dir;
  auto path = dir / "ckpt.safetensors";

  Run uninterrupted(42);
  uninterrupted.train(kTotal);

  Run first(42);
  first.train(kSplit);
  nn::Checkpoint saved = first.checkpoint();
  saved.metadata = {{"config", "{\"width\": 16}"}};
  nn::save_checkpoint(path, saved);

  // Fresh objects with a different seed: everything must come from the file.
  Run resumed(7);
  nn::Checkpoint target = resumed.checkpoint();
  nn::load_checkpoint(path, target);
  REQUIRE(target.step == kSplit);
  REQUIRE(target.metadata == std::map<std::string, std::string>{{"config", "{\"width\": 16}"}});
  REQUIRE(resumed.gen.state() == first.gen.state());
  resumed.step = target.step;
  resumed.train(kTotal - kSplit);

  require_same_tensors(resumed.model->parameters(), uninterrupted.model->parameters());
  require_same_tensors(resumed.ema->shadow(), uninterrupted.ema->shadow());
  REQUIRE(resumed.optimizer->step_count() == uninterrupted.optimizer->step_count());
  REQUIRE(resumed.optimizer->lr() == uninterrupted.optimizer->lr());
  REQUIRE(resumed.gen.state() == uninterrupted.gen.state());
  // The run really trained: parameters moved away from the initial values.
  Run untrained(42);
  REQUIRE(untrained.model->parameters()[0].to_vector<double>() !=
          uninterrupted.model->parameters()[0].to_vector<double>());
  // And the save left no temporary behind.
  REQUIRE(dir.entries() == std::vector<std::string>{"ckpt.safetensors"});
}

TEST_CASE("checkpoint: the file is plain safetensors with prefixed names", "[io][checkpoint]") {
  TempDir dir;
  Run run(3);
  run.train(2);
  Generator big(0);
  big.set_state({.seed = UINT64_MAX, .offset = (uint64_t{1} << 63) + 5});  // beyond int64
  nn::Checkpoint c = run.checkpoint();
  c.generator = &big;
  nn::save_checkpoint(dir / "c.safetensors", c);

  auto file = tide::io::read_safetensors(dir / "c.safetensors");
  REQUIRE(file.metadata.at("tide.format") == "checkpoint");
  REQUIRE(file.metadata.at("tide.parts") == "model,optim,ema,sched,generator");
  REQUIRE(file.metadata.at("tide.optimizer") == "Adam");
  for (const auto& [name, value] : run.model->state_dict()) {
    INFO(name);
    REQUIRE(file.tensors.count("model." + name) == 1);
    REQUIRE(file.tensors.at("model." + name).to_vector<double>() == value.to_vector<double>());
  }
  for (const auto& [name, value] : run.optimizer->state_dict())
    REQUIRE(file.tensors.count("optim." + name) == 1);
  for (const auto& [name, value] : run.ema->state_dict())
    REQUIRE(file.tensors.count("ema." + name) == 1);
  REQUIRE(file.tensors.at("step").to_vector<int64_t>() == std::vector<int64_t>{2});

  // uint64 generator state survives the trip through int64 tensors.
  Generator restored(0);
  nn::Checkpoint only_gen{.generator = &restored};
  nn::load_checkpoint(dir / "c.safetensors", only_gen);
  REQUIRE(restored.state() == big.state());
  REQUIRE(only_gen.step == 2);
}

TEST_CASE("checkpoint: loading only some parts, and missing parts", "[io][checkpoint]") {
  TempDir dir;
  Run run(5);
  run.train(3);
  nn::save_checkpoint(dir / "model_only.safetensors", {.model = run.model.get(), .step = 3});

  // The model alone loads into a fresh model.
  Run other(6);
  nn::Checkpoint model_only{.model = other.model.get()};
  nn::load_checkpoint(dir / "model_only.safetensors", model_only);
  require_same_tensors(other.model->parameters(), run.model->parameters());

  // Asking for parts that were not saved names them.
  nn::Checkpoint want_optim{.optimizer = other.optimizer.get()};
  REQUIRE_THROWS_WITH(nn::load_checkpoint(dir / "model_only.safetensors", want_optim),
                      Catch::Contains("load_checkpoint") &&
                          Catch::Contains("model_only.safetensors") &&
                          Catch::Contains("has no optimizer state (saved parts: model)"));
  nn::Checkpoint want_gen{.generator = &other.gen};
  REQUIRE_THROWS_WITH(nn::load_checkpoint(dir / "model_only.safetensors", want_gen),
                      Catch::Contains("has no generator state"));
}

TEST_CASE("checkpoint: mismatched objects and foreign files are refused", "[io][checkpoint]") {
  TempDir dir;
  Run run(5);
  run.train(1);
  nn::save_checkpoint(dir / "c.safetensors", run.checkpoint());

  SECTION("a model of another shape lists the mismatched keys") {
    Generator gen(1);
    nn::Sequential wider{
        std::make_shared<nn::Linear>(nn::LinearOptions{.in = 2, .out = 32, .generator = &gen})};
    nn::Checkpoint c{.model = &wider};
    REQUIRE_THROWS_WITH(nn::load_checkpoint(dir / "c.safetensors", c),
                        Catch::Contains("load_checkpoint") && Catch::Contains("model: ") &&
                            Catch::Contains("0.weight"));
  }
  SECTION("an optimizer of another type") {
    Run other(2);
    nn::SGD sgd(other.model->parameters(), {.lr = 0.1});
    nn::Checkpoint c{.optimizer = &sgd};
    REQUIRE_THROWS_WITH(nn::load_checkpoint(dir / "c.safetensors", c),
                        Catch::Contains("holds Adam state, but the optimizer is SGD"));
  }
  SECTION("a plain safetensors file is not a checkpoint") {
    tide::io::write_safetensors(dir / "plain.safetensors", {{"w", tide::ones({2})}});
    Run other(2);
    nn::Checkpoint c = other.checkpoint();
    REQUIRE_THROWS_WITH(nn::load_checkpoint(dir / "plain.safetensors", c),
                        Catch::Contains("is not a Tide checkpoint"));
  }
  SECTION("unexpected tensors and reserved metadata") {
    auto file = tide::io::read_safetensors(dir / "c.safetensors");
    file.tensors["extra"] = tide::ones({1});
    tide::io::write_safetensors(dir / "edited.safetensors", file.tensors, file.metadata);
    Run other(2);
    nn::Checkpoint c{.model = other.model.get()};
    REQUIRE_THROWS_WITH(nn::load_checkpoint(dir / "edited.safetensors", c),
                        Catch::Contains("unexpected tensor 'extra'"));
    nn::Checkpoint bad = run.checkpoint();
    bad.metadata["tide.format"] = "mine";
    REQUIRE_THROWS_WITH(nn::save_checkpoint(dir / "x.safetensors", bad),
                        Catch::Contains("metadata key 'tide.format' is reserved"));
  }
  SECTION("a corrupt file gives the reader's error") {
    std::string bytes = tide::test::read_bytes(dir / "c.safetensors");
    tide::test::write_bytes(dir / "cut.safetensors", bytes.substr(0, bytes.size() - 3));
    Run other(2);
    nn::Checkpoint c = other.checkpoint();
    REQUIRE_THROWS_WITH(nn::load_checkpoint(dir / "cut.safetensors", c),
                        Catch::Contains("read_safetensors") && Catch::Contains("cut.safetensors"));
  }
}
