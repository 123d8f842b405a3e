#include "flow/plot.h"

#include <png.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <string>

#include "nn/atomic_file.h"
#include "tensor/creation.h"

namespace tide::flow {

// ---------------------------------------------------------------------------
// Canvas
// ---------------------------------------------------------------------------

namespace {

// Large enough for any sensible figure, small enough that a typo in a size
// flag cannot ask for gigabytes.
constexpr int kMaxSide = 16384;

// The built-in 3x5 font: each glyph is 5 rows of 3 bits (bit 2 = left column).
struct Glyph {
  char c;
  std::array<uint8_t, 5> rows;
};
constexpr std::array<Glyph, 15> kFont{{
    {'0', {7, 5, 5, 5, 7}},
    {'1', {2, 6, 2, 2, 7}},
    {'2', {7, 1, 7, 4, 7}},
    {'3', {7, 1, 7, 1, 7}},
    {'4', {5, 5, 7, 1, 1}},
    {'5', {7, 4, 7, 1, 7}},
    {'6', {7, 4, 7, 5, 7}},
    {'7', {7, 1, 1, 1, 1}},
    {'8', {7, 5, 7, 5, 7}},
    {'9', {7, 5, 7, 1, 7}},
    {'-', {0, 0, 7, 0, 0}},
    {'.', {0, 0, 0, 0, 2}},
    {'+', {0, 2, 7, 2, 0}},
    {'e', {2, 5, 7, 4, 3}},
    {' ', {0, 0, 0, 0, 0}},
}};

const Glyph* find_glyph(char c) {
  for (const Glyph& g : kFont) {
    if (g.c == c) return &g;
  }
  return nullptr;
}

}  // namespace

Canvas::Canvas(int width, int height, Color background) : width_(width), height_(height) {
  TIDE_CHECK(width > 0 && height > 0 && width <= kMaxSide && height <= kMaxSide,
             "Canvas: size {}x{} is out of range (each side must be in [1, {}])", width, height,
             kMaxSide);
  pixels_.resize(static_cast<size_t>(width) * height * 3);
  for (size_t i = 0; i < pixels_.size(); i += 3) {
    pixels_[i] = background.r;
    pixels_[i + 1] = background.g;
    pixels_[i + 2] = background.b;
  }
}

Color Canvas::at(int x, int y) const {
  TIDE_CHECK(x >= 0 && y >= 0 && x < width_ && y < height_,
             "Canvas::at: pixel ({}, {}) is outside the {}x{} canvas", x, y, width_, height_);
  const size_t i = (static_cast<size_t>(y) * width_ + x) * 3;
  return {pixels_[i], pixels_[i + 1], pixels_[i + 2]};
}

void Canvas::set(int x, int y, Color color) {
  blend(x, y, color, 1.0);
}

void Canvas::blend(int x, int y, Color color, double alpha) {
  if (x < 0 || y < 0 || x >= width_ || y >= height_) return;
  alpha = std::clamp(alpha, 0.0, 1.0);
  const size_t i = (static_cast<size_t>(y) * width_ + x) * 3;
  auto mix = [alpha](uint8_t old, uint8_t c) {
    return static_cast<uint8_t>(std::lround(c * alpha + old * (1.0 - alpha)));
  };
  pixels_[i] = mix(pixels_[i], color.r);
  pixels_[i + 1] = mix(pixels_[i + 1], color.g);
  pixels_[i + 2] = mix(pixels_[i + 2], color.b);
}

void Canvas::fill_rect(int x0, int y0, int x1, int y1, Color color) {
  for (int y = std::max(0, y0); y <= std::min(height_ - 1, y1); ++y) {
    for (int x = std::max(0, x0); x <= std::min(width_ - 1, x1); ++x) set(x, y, color);
  }
}

void Canvas::line(int x0, int y0, int x1, int y1, Color color, double alpha) {
  // Bresenham: step along the longer axis, one pixel per step.
  const int dx = std::abs(x1 - x0), dy = -std::abs(y1 - y0);
  const int sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
  int err = dx + dy;
  while (true) {
    blend(x0, y0, color, alpha);
    if (x0 == x1 && y0 == y1) break;
    const int e2 = 2 * err;
    if (e2 >= dy) {
      err += dy;
      x0 += sx;
    }
    if (e2 <= dx) {
      err += dx;
      y0 += sy;
    }
  }
}

void Canvas::disc(double cx, double cy, double radius, Color color, double alpha) {
  const int x_lo = static_cast<int>(std::floor(cx - radius));
  const int x_hi = static_cast<int>(std::ceil(cx + radius));
  const int y_lo = static_cast<int>(std::floor(cy - radius));
  const int y_hi = static_cast<int>(std::ceil(cy + radius));
  // A pixel belongs to the disc when its centre (x + 0.5, y + 0.5) does; tiny
  // discs still cover the pixel they sit in.
  const double r2 = std::max(radius * radius, 0.25);
  for (int y = y_lo; y <= y_hi; ++y) {
    for (int x = x_lo; x <= x_hi; ++x) {
      const double ddx = x + 0.5 - cx, ddy = y + 0.5 - cy;
      if (ddx * ddx + ddy * ddy <= r2) blend(x, y, color, alpha);
    }
  }
}

void Canvas::text(int x, int y, const std::string& s, Color color, int scale) {
  for (char c : s) {
    if (const Glyph* g = find_glyph(c)) {
      for (int row = 0; row < 5; ++row) {
        for (int col = 0; col < 3; ++col) {
          if (g->rows[row] & (4 >> col)) {
            fill_rect(x + col * scale, y + row * scale, x + (col + 1) * scale - 1,
                      y + (row + 1) * scale - 1, color);
          }
        }
      }
    }
    x += 4 * scale;  // 3 columns of glyph + 1 of spacing
  }
}

int Canvas::text_width(const std::string& s, int scale) {
  return s.empty() ? 0 : static_cast<int>(s.size()) * 4 * scale - scale;
}

void Canvas::write_png(const std::filesystem::path& path) const {
  // libpng's "simplified API" encodes a whole image from memory, with no
  // setjmp/longjmp error handling to get wrong.
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  image.width = static_cast<png_uint_32>(width_);
  image.height = static_cast<png_uint_32>(height_);
  image.format = PNG_FORMAT_RGB;
  png_alloc_size_t size = 0;
  // The first call only computes an upper bound on the encoded size.
  if (!png_image_write_to_memory(&image, nullptr, &size, 0, pixels_.data(), 0, nullptr)) {
    fail("write_png: cannot encode a {}x{} image for '{}': {}", width_, height_, path.string(),
         image.message);
  }
  std::string encoded(size, '\0');
  if (!png_image_write_to_memory(&image, encoded.data(), &size, 0, pixels_.data(), 0, nullptr)) {
    fail("write_png: cannot encode a {}x{} image for '{}': {}", width_, height_, path.string(),
         image.message);
  }
  encoded.resize(size);
  io::write_file_atomically(path, "write_png",
                            [&](io::AtomicFileWriter& out) { out.write(encoded); });
}

Canvas Canvas::read_png(const std::filesystem::path& path) {
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_file(&image, path.c_str())) {
    fail("read_png: cannot read '{}': {}", path.string(), image.message);
  }
  if (image.width == 0 || image.height == 0 || image.width > kMaxSide || image.height > kMaxSide) {
    png_image_free(&image);
    fail("read_png: '{}' is {}x{}, outside [1, {}] per side", path.string(), image.width,
         image.height, kMaxSide);
  }
  image.format = PNG_FORMAT_RGB;
  Canvas canvas(static_cast<int>(image.width), static_cast<int>(image.height));
  // A white background for images with transparency.
  png_color background{255, 255, 255};
  if (!png_image_finish_read(&image, &background, canvas.pixels_.data(), 0, nullptr)) {
    fail("read_png: cannot decode '{}': {}", path.string(), image.message);
  }
  return canvas;
}

// ---------------------------------------------------------------------------
// Plot
// ---------------------------------------------------------------------------

namespace {

// The rows of an [N, 2] tensor as host float64, x and y interleaved.
std::vector<double> host_points(const Tensor& points, const char* op) {
  TIDE_CHECK(points.defined(), "{}: the points tensor is undefined", op);
  TIDE_CHECK(points.is_floating_point() && points.dim() == 2 && points.size(1) == 2,
             "{}: expected 2-D points as a floating-point [N, 2] tensor, got {}", op,
             points.describe());
  return points.to_vector<double>();
}

// A "nice" tick spacing (1, 2 or 5 times a power of ten) giving about
// `target` ticks over `range`.
double nice_step(double range, int target) {
  const double raw = range / target;
  const double power = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0}) {
    if (m * power >= raw) return m * power;
  }
  return 10.0 * power;
}

std::string tick_label(double value, double step) {
  if (std::abs(value) < step * 1e-6) value = 0;  // no "-0" or "1e-17"
  return fmt::format("{:g}", value);
}

}  // namespace

Bounds bounds_of(const std::vector<Tensor>& point_sets, double margin) {
  double x_min = std::numeric_limits<double>::infinity(), x_max = -x_min;
  double y_min = x_min, y_max = -x_min;
  for (const Tensor& set : point_sets) {
    if (!set.defined()) continue;
    // Trajectories [T, B, 2] count as T * B points.
    TIDE_CHECK(set.is_floating_point() && set.dim() >= 1 && set.size(-1) == 2,
               "bounds_of: expected floating-point points [..., 2], got {}", set.describe());
    const std::vector<double> v = set.to_vector<double>();
    for (size_t i = 0; i + 1 < v.size(); i += 2) {
      if (!std::isfinite(v[i]) || !std::isfinite(v[i + 1])) continue;
      x_min = std::min(x_min, v[i]);
      x_max = std::max(x_max, v[i]);
      y_min = std::min(y_min, v[i + 1]);
      y_max = std::max(y_max, v[i + 1]);
    }
  }
  if (!(x_min <= x_max)) return {};  // no finite points at all
  auto widen = [margin](double& lo, double& hi) {
    double size = hi - lo;
    if (size <= 0) {
      lo -= 0.5;
      hi += 0.5;
      size = 1;
    }
    lo -= margin * size;
    hi += margin * size;
  };
  widen(x_min, x_max);
  widen(y_min, y_max);
  return {x_min, x_max, y_min, y_max};
}

Color colormap(double v) {
  // Five anchors of matplotlib's viridis, interpolated linearly.
  static constexpr std::array<Color, 5> kAnchors{
      {{68, 1, 84}, {59, 82, 139}, {33, 145, 140}, {94, 201, 98}, {253, 231, 37}}};
  if (!(v > 0)) return kAnchors.front();  // also NaN
  if (v >= 1) return kAnchors.back();
  const double s = v * (kAnchors.size() - 1);
  const size_t i = static_cast<size_t>(s);
  const double f = s - i;
  auto lerp = [f](uint8_t a, uint8_t b) {
    return static_cast<uint8_t>(std::lround(a + f * (b - a)));
  };
  return {lerp(kAnchors[i].r, kAnchors[i + 1].r), lerp(kAnchors[i].g, kAnchors[i + 1].g),
          lerp(kAnchors[i].b, kAnchors[i + 1].b)};
}

Plot::Plot(const PlotOptions& options) : options_(options), canvas_(options.width, options.height) {
  TIDE_CHECK(
      options.margin >= 0 && 2 * options.margin + 16 <= std::min(options.width, options.height),
      "Plot: a {}x{} image is too small for a margin of {} pixels", options.width, options.height,
      options.margin);
  if (options.bounds) {
    const Bounds& b = *options.bounds;
    TIDE_CHECK(std::isfinite(b.x_min) && std::isfinite(b.x_max) && std::isfinite(b.y_min) &&
                   std::isfinite(b.y_max) && b.x_min < b.x_max && b.y_min < b.y_max,
               "Plot: bounds need x_min < x_max and y_min < y_max (finite), got x [{}, {}], y "
               "[{}, {}]",
               b.x_min, b.x_max, b.y_min, b.y_max);
    bounds_ = b;
    bounds_fixed_ = true;
  }
}

double Plot::to_px(double x) const {
  const double left = options_.margin, right = options_.width - options_.margin;
  return left + (x - bounds_.x_min) / (bounds_.x_max - bounds_.x_min) * (right - left);
}

double Plot::to_py(double y) const {
  // Pixel rows grow downwards, data y upwards.
  const double top = options_.margin, bottom = options_.height - options_.margin;
  return bottom - (y - bounds_.y_min) / (bounds_.y_max - bounds_.y_min) * (bottom - top);
}

void Plot::ensure_bounds(const Tensor& points) {
  if (bounds_fixed_) return;
  bounds_ = bounds_of({points});
  bounds_fixed_ = true;
}

Plot& Plot::scatter(const Tensor& points, Color color, double radius, double alpha) {
  const std::vector<double> v = host_points(points, "Plot::scatter");
  ensure_bounds(points);
  const int left = options_.margin, top = options_.margin;
  const int right = options_.width - options_.margin, bottom = options_.height - options_.margin;
  for (size_t i = 0; i + 1 < v.size(); i += 2) {
    const double px = to_px(v[i]), py = to_py(v[i + 1]);
    // Points outside the axes box (or not finite) are not drawn.
    if (!(px >= left && px <= right && py >= top && py <= bottom)) continue;
    canvas_.disc(px, py, radius, color, alpha);
  }
  return *this;
}

Plot& Plot::density(const std::function<Tensor(const Tensor& points)>& log_density, int resolution,
                    DensityScale scale, double log_range, int64_t chunk) {
  TIDE_CHECK(resolution >= 2 && resolution <= 4096,
             "Plot::density: resolution {} is out of range [2, 4096]", resolution);
  TIDE_CHECK(chunk >= 1, "Plot::density: chunk must be positive, got {}", chunk);
  TIDE_CHECK(log_range > 0, "Plot::density: log_range must be positive, got {}", log_range);
  TIDE_CHECK(bounds_fixed_,
             "Plot::density: the plot has no bounds yet; set PlotOptions::bounds or add a point "
             "layer first");
  // The grid: cell centres, row 0 at the top (largest y), like the image.
  const int64_t cells = static_cast<int64_t>(resolution) * resolution;
  std::vector<double> grid(cells * 2);
  for (int r = 0; r < resolution; ++r) {
    for (int c = 0; c < resolution; ++c) {
      const size_t i = (static_cast<size_t>(r) * resolution + c) * 2;
      grid[i] = bounds_.x_min + (c + 0.5) / resolution * (bounds_.x_max - bounds_.x_min);
      grid[i + 1] = bounds_.y_max - (r + 0.5) / resolution * (bounds_.y_max - bounds_.y_min);
    }
  }
  std::vector<double> log_p;
  log_p.reserve(cells);
  for (int64_t start = 0; start < cells; start += chunk) {
    const int64_t n = std::min(chunk, cells - start);
    std::vector<double> part(grid.begin() + start * 2, grid.begin() + (start + n) * 2);
    const Tensor values = log_density(from_vector(part, Shape{n, 2}));
    TIDE_CHECK(values.defined() && values.is_floating_point() && values.numel() == n,
               "Plot::density: the log-density function returned {} for {} points; expected "
               "[{}] floating point",
               values.defined() ? values.describe() : std::string("an undefined tensor"), n, n);
    const std::vector<double> v = values.to_vector<double>();
    log_p.insert(log_p.end(), v.begin(), v.end());
  }
  double max_log_p = -std::numeric_limits<double>::infinity();
  for (double v : log_p) {
    if (std::isfinite(v)) max_log_p = std::max(max_log_p, v);
  }
  std::vector<Color> cell_colors(cells, colormap(0));
  if (std::isfinite(max_log_p)) {
    for (int64_t i = 0; i < cells; ++i) {
      const double v = log_p[i];
      if (std::isnan(v)) continue;
      const double level = scale == DensityScale::Linear
                               ? std::exp(v - max_log_p)
                               : (v - (max_log_p - log_range)) / log_range;
      cell_colors[i] = colormap(level);
    }
  }
  // Paint every pixel of the axes box with the colour of the cell it falls in.
  const int left = options_.margin, top = options_.margin;
  const int box_w = options_.width - 2 * options_.margin;
  const int box_h = options_.height - 2 * options_.margin;
  for (int y = 0; y < box_h; ++y) {
    const int r = std::min(resolution - 1, y * resolution / box_h);
    for (int x = 0; x < box_w; ++x) {
      const int c = std::min(resolution - 1, x * resolution / box_w);
      canvas_.set(left + x, top + y, cell_colors[static_cast<size_t>(r) * resolution + c]);
    }
  }
  return *this;
}

Plot& Plot::trajectories(const Tensor& trajectory, Color line_color, Color end_color,
                         int64_t max_paths) {
  TIDE_CHECK(trajectory.defined() && trajectory.is_floating_point() && trajectory.dim() == 3 &&
                 trajectory.size(2) == 2,
             "Plot::trajectories: expected a floating-point [T, B, 2] tensor, got {}",
             trajectory.defined() ? trajectory.describe() : std::string("an undefined tensor"));
  TIDE_CHECK(max_paths >= 1, "Plot::trajectories: max_paths must be positive, got {}", max_paths);
  ensure_bounds(trajectory);
  const int64_t steps = trajectory.size(0), batch = trajectory.size(1);
  const std::vector<double> v = trajectory.to_vector<double>();
  auto point = [&](int64_t s, int64_t b) {
    const size_t i = static_cast<size_t>(s * batch + b) * 2;
    return std::pair<double, double>{to_px(v[i]), to_py(v[i + 1])};
  };
  const int64_t paths = std::min(batch, max_paths);
  const int left = options_.margin, top = options_.margin;
  const int right = options_.width - options_.margin, bottom = options_.height - options_.margin;
  auto inside = [&](std::pair<double, double> p) {
    return p.first >= left && p.first <= right && p.second >= top && p.second <= bottom;
  };
  // Evenly spaced samples when there are more paths than we draw.
  auto pick = [&](int64_t k) { return k * batch / paths; };
  for (int64_t k = 0; k < paths; ++k) {
    const int64_t b = pick(k);
    for (int64_t s = 0; s + 1 < steps; ++s) {
      const auto p = point(s, b), q = point(s + 1, b);
      // Segments leaving the box are skipped rather than clipped: simple, and
      // with fixed bounds only outliers are affected.
      if (!inside(p) || !inside(q)) continue;
      canvas_.line(static_cast<int>(p.first), static_cast<int>(p.second), static_cast<int>(q.first),
                   static_cast<int>(q.second), line_color, 0.25);
    }
  }
  for (int64_t k = 0; k < paths; ++k) {
    const int64_t b = pick(k);
    const auto start = point(0, b), end = point(steps - 1, b);
    if (inside(start)) canvas_.disc(start.first, start.second, 1.5, colors::kBlack, 0.8);
    if (inside(end)) canvas_.disc(end.first, end.second, 1.5, end_color, 0.8);
  }
  return *this;
}

void Plot::draw_axes() {
  const int left = options_.margin, top = options_.margin;
  const int right = options_.width - options_.margin, bottom = options_.height - options_.margin;
  // Clear the margins (layers may have drawn into them), then the box.
  canvas_.fill_rect(0, 0, options_.width - 1, top - 1, colors::kWhite);
  canvas_.fill_rect(0, bottom + 1, options_.width - 1, options_.height - 1, colors::kWhite);
  canvas_.fill_rect(0, 0, left - 1, options_.height - 1, colors::kWhite);
  canvas_.fill_rect(right + 1, 0, options_.width - 1, options_.height - 1, colors::kWhite);
  canvas_.line(left, top, right, top, colors::kBlack);
  canvas_.line(left, bottom, right, bottom, colors::kBlack);
  canvas_.line(left, top, left, bottom, colors::kBlack);
  canvas_.line(right, top, right, bottom, colors::kBlack);
  if (!options_.ticks) return;
  constexpr int kTick = 5, kScale = 2, kGap = 4;
  const double x_step = nice_step(bounds_.x_max - bounds_.x_min, 5);
  for (double x = std::ceil(bounds_.x_min / x_step) * x_step; x <= bounds_.x_max + 1e-9 * x_step;
       x += x_step) {
    const int px = static_cast<int>(std::lround(to_px(x)));
    canvas_.line(px, bottom, px, bottom + kTick, colors::kBlack);
    const std::string label = tick_label(x, x_step);
    canvas_.text(px - Canvas::text_width(label, kScale) / 2, bottom + kTick + kGap, label,
                 colors::kBlack, kScale);
  }
  const double y_step = nice_step(bounds_.y_max - bounds_.y_min, 5);
  for (double y = std::ceil(bounds_.y_min / y_step) * y_step; y <= bounds_.y_max + 1e-9 * y_step;
       y += y_step) {
    const int py = static_cast<int>(std::lround(to_py(y)));
    canvas_.line(left - kTick, py, left, py, colors::kBlack);
    const std::string label = tick_label(y, y_step);
    canvas_.text(left - kTick - kGap - Canvas::text_width(label, kScale), py - 5 * kScale / 2,
                 label, colors::kBlack, kScale);
  }
}

void Plot::save(const std::filesystem::path& path) {
  if (!axes_drawn_) {
    draw_axes();
    axes_drawn_ = true;
  }
  canvas_.write_png(path);
}

}  // namespace tide::flow
