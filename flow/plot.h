// Small PNG plots for 2-D flows: sample scatter plots (optionally over
// reference samples), log-density heat maps on a grid, and trajectories.
//
// There is no plotting library underneath: a Canvas is a plain RGB pixel
// buffer, a Plot maps data coordinates onto it inside an axes box with tick
// marks and small numeric tick labels, and the layers are drawn in the order
// they are added (a heat map first, then trajectories, then points). Files are
// PNG, encoded by libpng and written atomically (temporary file + rename), so
// a reader never sees a half-written image.
//
//   tide::flow::Plot plot({.bounds = tide::flow::Bounds{-5, 5, -5, 5}});
//   plot.density([&](const Tensor& grid) { return model_log_density(grid); });
//   plot.scatter(data, tide::flow::colors::kGray);
//   plot.scatter(samples, tide::flow::colors::kBlue);
//   plot.save("samples.png");
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace tide::flow {

struct Color {
  uint8_t r = 0, g = 0, b = 0;
  friend bool operator==(const Color&, const Color&) = default;
};

namespace colors {
inline constexpr Color kWhite{255, 255, 255};
inline constexpr Color kBlack{0, 0, 0};
inline constexpr Color kGray{150, 150, 150};
inline constexpr Color kBlue{31, 119, 180};    // matplotlib's first colours, so
inline constexpr Color kOrange{255, 127, 14};  // plots look familiar
inline constexpr Color kGreen{44, 160, 44};
inline constexpr Color kRed{214, 39, 40};
inline constexpr Color kOlive{188, 189, 34};
}  // namespace colors

// A width x height RGB image, row-major from the top-left pixel.
class Canvas {
 public:
  Canvas(int width, int height, Color background = colors::kWhite);

  int width() const { return width_; }
  int height() const { return height_; }
  // Out-of-range pixels are ignored by set/blend (shapes may be clipped) and
  // rejected by at().
  Color at(int x, int y) const;
  void set(int x, int y, Color color);
  // color * alpha + old * (1 - alpha), alpha in [0, 1].
  void blend(int x, int y, Color color, double alpha);
  void fill_rect(int x0, int y0, int x1, int y1, Color color);  // inclusive corners
  // A line with integer end points (Bresenham), optionally translucent.
  void line(int x0, int y0, int x1, int y1, Color color, double alpha = 1.0);
  // A filled disc of the given radius in pixels.
  void disc(double cx, double cy, double radius, Color color, double alpha = 1.0);
  // Text in a built-in 3x5 pixel font, magnified `scale` times; (x, y) is the
  // top-left corner. Digits, '-', '.', '+', 'e' and space only.
  void text(int x, int y, const std::string& s, Color color, int scale = 2);
  static int text_width(const std::string& s, int scale = 2);

  // Encodes as an 8-bit RGB PNG and writes it atomically.
  void write_png(const std::filesystem::path& path) const;
  // Reads any PNG (converted to 8-bit RGB); for tests and tools.
  static Canvas read_png(const std::filesystem::path& path);

  const std::vector<uint8_t>& pixels() const { return pixels_; }

 private:
  int width_, height_;
  std::vector<uint8_t> pixels_;  // r, g, b per pixel
};

// The data rectangle a plot shows.
struct Bounds {
  double x_min = -1, x_max = 1, y_min = -1, y_max = 1;
};

// The bounding box of the rows of one or more [N, 2] point sets (undefined
// tensors are skipped; non-finite points ignored), widened by `margin` times
// its size on every side. A degenerate box is widened to size 1.
Bounds bounds_of(const std::vector<Tensor>& point_sets, double margin = 0.05);

// Maps a density grid's values to colours.
enum class DensityScale {
  Linear,  // colour by p / max p (what FFJORD's figures show)
  Log,     // colour by log p, clipped to [max log p - log_range, max log p]
};

struct PlotOptions {
  int width = 640;  // the whole image, in pixels
  int height = 640;
  // The data rectangle; unset: the bounds of the first layer that has points
  // (scatter or trajectories). A heat map needs bounds, so set them or add a
  // point layer before it.
  std::optional<Bounds> bounds;
  int margin = 48;  // pixels around the axes box, for the tick labels
  bool ticks = true;
};

// A 2-D plot. Layers are drawn when added, in order.
class Plot {
 public:
  explicit Plot(const PlotOptions& options = {});

  // Points of an [N, 2] tensor (any float dtype, any device) as discs of
  // `radius` pixels with the given opacity.
  Plot& scatter(const Tensor& points, Color color = colors::kBlue, double radius = 1.5,
                double alpha = 0.6);

  // A heat map of log_density over a resolution x resolution grid of cell
  // centres spanning the bounds. log_density receives a float64 [G, 2] batch
  // of points and returns [G] log-densities (any float dtype); it is called on
  // chunks of at most `chunk` rows. -inf (zero density) is allowed.
  Plot& density(const std::function<Tensor(const Tensor& points)>& log_density,
                int resolution = 160, DensityScale scale = DensityScale::Linear,
                double log_range = 10.0, int64_t chunk = 4096);

  // Trajectories from a [T, B, 2] tensor: a translucent polyline per sample
  // (at most max_paths of them, evenly picked), the starts in black and the
  // ends in `end_color`, as in torchcfm's figures.
  Plot& trajectories(const Tensor& trajectory, Color line_color = colors::kOlive,
                     Color end_color = colors::kBlue, int64_t max_paths = 2000);

  // Draws the axes box and ticks (once) and writes the PNG atomically.
  void save(const std::filesystem::path& path);

  const Bounds& bounds() const { return bounds_; }
  const Canvas& canvas() const { return canvas_; }
  // Data coordinates to pixel coordinates (pixel centres at integers + 0.5).
  double to_px(double x) const;
  double to_py(double y) const;

 private:
  void ensure_bounds(const Tensor& points);
  void draw_axes();

  PlotOptions options_;
  Canvas canvas_;
  Bounds bounds_;
  bool bounds_fixed_ = false;
  bool axes_drawn_ = false;
};

// The colour of v in [0, 1] on a viridis-like map (dark blue to yellow).
Color colormap(double v);

}  // namespace tide::flow
