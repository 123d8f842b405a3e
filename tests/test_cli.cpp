// The plotting behind `tide sample --plot` and `tide plot` (flow/plot.h):
// coordinates, layers, colour maps and the PNG round trip, checked pixel by
// pixel against positions and colours computed here. The `tide` command
// itself is tested end to end by the scripts in tests/cli/ (CTest tests
// cli_end_to_end, cli_errors, cli_linear_field).
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "flow/plot.h"
#include "tensor/creation.h"

using tide::Tensor;
using tide::flow::Bounds;
using tide::flow::Canvas;
using tide::flow::Color;
using tide::flow::Plot;
namespace colors = tide::flow::colors;

namespace {

std::filesystem::path scratch(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() / "tide_test_plot";
  std::filesystem::create_directories(dir);
  return dir / name;
}

Tensor points(std::vector<double> xy) {
  const int64_t n = static_cast<int64_t>(xy.size() / 2);
  return tide::from_vector(xy, tide::Shape{n, 2});
}

int count_pixels(const Canvas& c, Color color) {
  int n = 0;
  for (int y = 0; y < c.height(); ++y) {
    for (int x = 0; x < c.width(); ++x) n += c.at(x, y) == color;
  }
  return n;
}

// The viridis anchors used by colormap, written out independently.
constexpr double kViridis[5][3] = {
    {68, 1, 84}, {59, 82, 139}, {33, 145, 140}, {94, 201, 98}, {253, 231, 37}};

Color expected_colormap(double v) {
  v = std::clamp(v, 0.0, 1.0);
  const double s = v * 4;
  const int i = std::min(3, static_cast<int>(s));
  const double f = s - i;
  auto c = [&](int k) {
    return static_cast<uint8_t>(
        std::lround(kViridis[i][k] + f * (kViridis[i + 1][k] - kViridis[i][k])));
  };
  return {c(0), c(1), c(2)};
}

}  // namespace

TEST_CASE("plot: PNG round trip keeps every pixel", "[plot]") {
  Canvas canvas(37, 23);
  for (int y = 0; y < 23; ++y) {
    for (int x = 0; x < 37; ++x) {
      canvas.set(x, y,
                 Color{static_cast<uint8_t>(7 * x), static_cast<uint8_t>(11 * y),
                       static_cast<uint8_t>((x * y) % 256)});
    }
  }
  const auto path = scratch("roundtrip.png");
  canvas.write_png(path);
  const Canvas back = Canvas::read_png(path);
  REQUIRE(back.width() == 37);
  REQUIRE(back.height() == 23);
  REQUIRE(back.pixels() == canvas.pixels());
  // No temporary file is left next to the target.
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(path.parent_path())) {
    files += entry.path().filename().string().rfind("roundtrip", 0) == 0;
  }
  REQUIRE(files == 1);
}

TEST_CASE("plot: scatter maps data coordinates to pixels, y upwards", "[plot]") {
  // 640 x 640 with a 48-pixel margin: the box spans pixels 48..592 on both
  // axes, 54.4 pixels per data unit for bounds [0, 10].
  Plot plot({.width = 640, .height = 640, .bounds = Bounds{0, 10, 0, 10}, .margin = 48});
  REQUIRE(plot.to_px(0) == Approx(48));
  REQUIRE(plot.to_px(10) == Approx(592));
  REQUIRE(plot.to_py(0) == Approx(592));
  REQUIRE(plot.to_py(10) == Approx(48));
  plot.scatter(points({2, 8}), colors::kRed, 2.0, 1.0);
  // (2, 8) -> (48 + 0.2 * 544, 592 - 0.8 * 544) = (156.8, 156.8): the pixel
  // whose centre (156.5, 156.5) is nearest is painted, the mirrored position
  // (y = 2) is not.
  REQUIRE(plot.canvas().at(156, 156) == colors::kRed);
  REQUIRE(plot.canvas().at(156, 483) == colors::kWhite);
  // A disc of radius 2 covers the pixels whose centres are within 2 pixels:
  // count them independently.
  int expected = 0;
  for (int y = 150; y < 164; ++y) {
    for (int x = 150; x < 164; ++x) {
      expected += std::hypot(x + 0.5 - 156.8, y + 0.5 - 156.8) <= 2.0;
    }
  }
  REQUIRE(count_pixels(plot.canvas(), colors::kRed) == expected);
}

TEST_CASE("plot: points outside the bounds are not drawn, overlays keep both colours", "[plot]") {
  Plot plot({.width = 200, .height = 200, .bounds = Bounds{-1, 1, -1, 1}, .margin = 20});
  plot.scatter(points({5, 5, -3, 0, 0, 1.5}), colors::kRed, 2.0, 1.0);
  REQUIRE(count_pixels(plot.canvas(), colors::kRed) == 0);
  plot.scatter(points({-0.5, 0}), colors::kGray, 3.0, 1.0);
  plot.scatter(points({0.5, 0}), colors::kBlue, 3.0, 1.0);
  REQUIRE(plot.canvas().at(static_cast<int>(plot.to_px(-0.5)), 100) == colors::kGray);
  REQUIRE(plot.canvas().at(static_cast<int>(plot.to_px(0.5)), 100) == colors::kBlue);
}

TEST_CASE("plot: automatic bounds cover the points with a margin", "[plot]") {
  const Bounds b = tide::flow::bounds_of({points({0, -1, 4, 3, 2, 1})}, 0.25);
  REQUIRE(b.x_min == Approx(-1));
  REQUIRE(b.x_max == Approx(5));
  REQUIRE(b.y_min == Approx(-2));
  REQUIRE(b.y_max == Approx(4));
  // A single point gets a unit box around it; undefined sets are skipped.
  const Bounds single = tide::flow::bounds_of({Tensor(), points({3, 3})}, 0.0);
  REQUIRE(single.x_min == Approx(2.5));
  REQUIRE(single.y_max == Approx(3.5));
  // The first point layer fixes the bounds of a plot without explicit ones.
  Plot plot({.width = 200, .height = 200, .margin = 20});
  plot.scatter(points({0, 0, 10, 20}));
  REQUIRE(plot.bounds().x_min == Approx(-0.5));
  REQUIRE(plot.bounds().y_max == Approx(21));
}

TEST_CASE("plot: colormap follows viridis", "[plot]") {
  for (double v : {0.0, 0.1, 0.25, 0.4, 0.5, 0.77, 1.0}) {
    REQUIRE(tide::flow::colormap(v) == expected_colormap(v));
  }
  REQUIRE(tide::flow::colormap(-3) == expected_colormap(0));
  REQUIRE(tide::flow::colormap(NAN) == expected_colormap(0));
  REQUIRE(tide::flow::colormap(7) == expected_colormap(1));
}

TEST_CASE("plot: density heat map colours each cell by its density", "[plot]") {
  // log p(x, y) = -((x - 2)^2 + (y + 1)^2) on [-5, 5]^2, 10 x 10 cells of
  // 50 x 50 pixels each (a 500-pixel box).
  const int res = 10;
  auto log_p = [](double x, double y) { return -((x - 2) * (x - 2) + (y + 1) * (y + 1)); };
  for (auto scale : {tide::flow::DensityScale::Linear, tide::flow::DensityScale::Log}) {
    Plot plot({.width = 600, .height = 600, .bounds = Bounds{-5, 5, -5, 5}, .margin = 50});
    int64_t calls = 0;
    plot.density(
        [&](const Tensor& grid) {
          ++calls;
          REQUIRE(grid.dtype() == tide::DType::Float64);
          const std::vector<double> v = grid.to_vector<double>();
          std::vector<double> out;
          for (size_t i = 0; i < v.size(); i += 2) out.push_back(log_p(v[i], v[i + 1]));
          return tide::from_vector(out);
        },
        res, scale, 10.0, 30);
    REQUIRE(calls == 4);  // 100 cells in chunks of 30
    // Cell centres and the largest log-density among them, computed here.
    double max_log_p = -INFINITY;
    for (int r = 0; r < res; ++r) {
      for (int c = 0; c < res; ++c) {
        max_log_p = std::max(max_log_p, log_p(-4.5 + c, 4.5 - r));
      }
    }
    for (int r = 0; r < res; ++r) {
      for (int c = 0; c < res; ++c) {
        const double lp = log_p(-4.5 + c, 4.5 - r);
        const double v = scale == tide::flow::DensityScale::Linear ? std::exp(lp - max_log_p)
                                                                   : (lp - (max_log_p - 10)) / 10;
        // The centre pixel of the cell (row r from the top).
        CAPTURE(r, c);
        REQUIRE(plot.canvas().at(50 + 50 * c + 25, 50 + 50 * r + 25) == expected_colormap(v));
      }
    }
  }
}

TEST_CASE("plot: trajectories draw a line from a black start to a coloured end", "[plot]") {
  // One path (0, 0) -> (1, 1) -> (2, 0) with 3 recorded times: [3, 1, 2].
  // Bounds [-1, 3] on a 240-pixel box from pixel 30: 60 pixels per unit, so
  // the path runs through pixels (90, 210) -> (150, 150) -> (210, 210).
  Plot plot({.width = 300, .height = 300, .bounds = Bounds{-1, 3, -1, 3}, .margin = 30});
  plot.trajectories(tide::from_vector(std::vector<double>{0, 0, 1, 1, 2, 0}, {3, 1, 2}),
                    colors::kOlive, colors::kBlue);
  const Canvas& c = plot.canvas();
  auto over_white = [](Color color, double alpha) {
    auto mix = [alpha](uint8_t v) {
      return static_cast<uint8_t>(std::lround(v * alpha + 255 * (1 - alpha)));
    };
    return Color{mix(color.r), mix(color.g), mix(color.b)};
  };
  // Next to the start (inside its disc, off the line): black at opacity 0.8.
  REQUIRE(c.at(89, 210) == over_white(colors::kBlack, 0.8));
  // Next to the end: blue at 0.8.
  REQUIRE(c.at(209, 210) == over_white(colors::kBlue, 0.8));
  // Half way along the first segment the line is olive at opacity 0.25.
  REQUIRE(c.at(120, 180) == over_white(colors::kOlive, 0.25));
  REQUIRE(c.at(180, 180) == over_white(colors::kOlive, 0.25));
  // Away from the path the image is untouched.
  REQUIRE(c.at(120, 210) == colors::kWhite);
}

TEST_CASE("plot: save draws the axes box and writes the file", "[plot]") {
  Plot plot({.width = 200, .height = 160, .bounds = Bounds{0, 1, 0, 1}, .margin = 30});
  const auto path = scratch("axes.png");
  plot.save(path);
  const Canvas back = Canvas::read_png(path);
  REQUIRE(back.width() == 200);
  REQUIRE(back.height() == 160);
  // The box corners and edges are black; the inside stays white.
  for (auto [x, y] : {std::pair{30, 30}, std::pair{170, 30}, std::pair{30, 130},
                      std::pair{170, 130}, std::pair{100, 30}, std::pair{30, 80}}) {
    REQUIRE(back.at(x, y) == colors::kBlack);
  }
  REQUIRE(back.at(100, 80) == colors::kWhite);
  // Ticks every 0.2 hang below the x axis: 0.4 is at pixel 30 + 0.4 * 140 = 86.
  REQUIRE(back.at(86, 133) == colors::kBlack);
  REQUIRE(back.at(93, 133) == colors::kWhite);
}

TEST_CASE("plot: bad input throws tide::Error naming the problem", "[plot]") {
  REQUIRE_THROWS_WITH(Canvas(0, 10), Catch::Contains("Canvas: size 0x10"));
  REQUIRE_THROWS_WITH(Canvas(100000, 10), Catch::Contains("out of range"));
  Plot plot({.width = 200, .height = 200, .margin = 20});
  REQUIRE_THROWS_AS(plot.scatter(tide::zeros({4, 3})), tide::Error);
  REQUIRE_THROWS_WITH(plot.scatter(tide::zeros({4, 3})),
                      Catch::Contains("Plot::scatter") && Catch::Contains("[4, 3]"));
  REQUIRE_THROWS_WITH(plot.density([](const Tensor& g) { return g; }),
                      Catch::Contains("Plot::density: the plot has no bounds"));
  REQUIRE_THROWS_WITH(plot.trajectories(tide::zeros({4, 2})),
                      Catch::Contains("Plot::trajectories") && Catch::Contains("[T, B, 2]"));
  REQUIRE_THROWS_WITH(
      Plot({.width = 200, .height = 200, .bounds = Bounds{1, 0, 0, 1}, .margin = 20}),
      Catch::Contains("x_min < x_max"));
  REQUIRE_THROWS_WITH(Plot({.width = 50, .height = 50, .margin = 40}),
                      Catch::Contains("too small for a margin"));
  Plot bounded({.width = 200, .height = 200, .bounds = Bounds{0, 1, 0, 1}, .margin = 20});
  REQUIRE_THROWS_WITH(bounded.density([](const Tensor&) { return tide::zeros({3}); }, 4),
                      Catch::Contains("returned float32[3] for 16 points"));
  REQUIRE_THROWS_WITH(Canvas::read_png(scratch("missing.png")),
                      Catch::Contains("read_png: cannot read") && Catch::Contains("missing.png"));
  REQUIRE_THROWS_WITH(Canvas(4, 4).write_png(scratch("no_dir") / "x.png"),
                      Catch::Contains("no_dir"));
}
