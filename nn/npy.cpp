#include "nn/npy.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <vector>

#include "nn/atomic_file.h"
#include "nn/safetensors.h"  // f16_to_float
#include "tensor/kernels.h"

namespace tide::io {

static_assert(std::endian::native == std::endian::little, ".npy I/O assumes a little-endian host");

namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr size_t kMagicLength = 6;
// NumPy's own reader refuses headers over 10000 bytes unless told otherwise;
// we allow more, but a bound there must be.
constexpr uint64_t kMaxHeaderBytes = 1 << 20;

// How the elements are stored in the file, and the Tide dtype they load as.
struct NpyElement {
  const char* descr;
  int itemsize;
  DType dtype;
};
constexpr NpyElement kElements[] = {
    {"<f4", 4, DType::Float32}, {"<f8", 8, DType::Float64}, {"<i8", 8, DType::Int64},
    {"|b1", 1, DType::Bool},    {"<f2", 2, DType::Float32},  // converted to float32
    {"<i4", 4, DType::Int64},                                // converted to int64
};

struct NpyHeader {
  const NpyElement* element = nullptr;
  bool fortran_order = false;
  Shape shape;
};

// Everything an error message needs to say where it is.
struct Context {
  const ByteSource& src;
  template <typename... Args>
  [[noreturn]] void error(fmt::format_string<Args...> format, Args&&... args) const {
    fail("{}: '{}': {}", src.op(), src.name(), fmt::format(format, std::forward<Args>(args)...));
  }
};

// A strict parser for the one kind of Python literal an .npy header holds:
// a dict with string keys whose values are strings, True/False or tuples of
// non-negative integers. Anything else is an error; nothing is evaluated.
class HeaderParser {
 public:
  HeaderParser(const Context& ctx, std::string_view text, uint64_t file_offset)
      : ctx_(ctx), text_(text), file_offset_(file_offset) {}

  NpyHeader parse() {
    NpyHeader header;
    bool seen_descr = false, seen_order = false, seen_shape = false;
    expect('{');
    skip_space();
    while (peek() != '}') {
      size_t key_pos = pos_;
      std::string key = parse_string();
      expect(':');
      if (key == "descr") {
        check_once(seen_descr, key, key_pos);
        skip_space();
        if (peek() == '[') error("descr is a list: structured (record) dtypes are not supported");
        size_t value_pos = pos_;
        header.element = element_for(parse_string(), value_pos);
      } else if (key == "fortran_order") {
        check_once(seen_order, key, key_pos);
        header.fortran_order = parse_bool();
      } else if (key == "shape") {
        check_once(seen_shape, key, key_pos);
        header.shape = parse_shape();
      } else {
        pos_ = key_pos;
        error(
            "unexpected key '{}' (an .npy header has exactly 'descr', 'fortran_order' and "
            "'shape')",
            key);
      }
      skip_space();
      if (peek() == ',') {
        ++pos_;
        skip_space();
      } else if (peek() != '}') {
        error("expected ',' or '}}' after the value of '{}'", key);
      }
    }
    ++pos_;  // '}'
    skip_space();
    if (pos_ != text_.size()) error("unexpected text after the closing '}}'");
    if (!seen_descr) error("missing key 'descr'");
    if (!seen_order) error("missing key 'fortran_order'");
    if (!seen_shape) error("missing key 'shape'");
    return header;
  }

 private:
  template <typename... Args>
  [[noreturn]] void error(fmt::format_string<Args...> format, Args&&... args) const {
    // Show the header (shortened) so the user can see what is wrong.
    std::string shown(text_.substr(0, 200));
    for (char& c : shown)
      if (c == '\n') c = ' ';
    ctx_.error("header: {} at file byte {} (header: {}{})",
               fmt::format(format, std::forward<Args>(args)...), file_offset_ + pos_, shown,
               text_.size() > 200 ? "..." : "");
  }

  char peek() const { return pos_ < text_.size() ? text_[pos_] : '\0'; }

  void skip_space() {
    while (pos_ < text_.size() && std::strchr(" \t\n\r\f\v", text_[pos_]) != nullptr) ++pos_;
  }

  void expect(char c) {
    skip_space();
    if (pos_ >= text_.size()) error("unexpected end of header, expected '{}'", c);
    if (text_[pos_] != c) unexpected(fmt::format("'{}'", c));
    ++pos_;
  }

  [[noreturn]] void unexpected(const std::string& expected) const {
    if (pos_ >= text_.size()) error("unexpected end of header, expected {}", expected);
    auto c = static_cast<unsigned char>(text_[pos_]);
    if (c < 0x20 || c >= 0x7F) error("unexpected byte 0x{:02x}, expected {}", c, expected);
    error("unexpected character '{}', expected {}", static_cast<char>(c), expected);
  }

  void check_once(bool& seen, const std::string& key, size_t key_pos) {
    if (seen) {
      pos_ = key_pos;
      error("key '{}' appears twice", key);
    }
    seen = true;
  }

  // 'text' or "text", without escapes (no valid header needs them).
  std::string parse_string() {
    skip_space();
    char quote = peek();
    if (quote != '\'' && quote != '"') unexpected("a quoted string");
    size_t start = ++pos_;
    while (pos_ < text_.size() && text_[pos_] != quote) {
      if (text_[pos_] == '\\') error("escape sequences are not supported in header strings");
      if (text_[pos_] == '\n') error("unterminated string");
      ++pos_;
    }
    if (pos_ >= text_.size()) error("unterminated string");
    return std::string(text_.substr(start, pos_++ - start));
  }

  bool parse_bool() {
    skip_space();
    if (text_.substr(pos_, 4) == "True") {
      pos_ += 4;
      return true;
    }
    if (text_.substr(pos_, 5) == "False") {
      pos_ += 5;
      return false;
    }
    unexpected("True or False for 'fortran_order'");
  }

  // A Python tuple of non-negative integers: (), (3,), (2, 3), (2, 3,).
  Shape parse_shape() {
    expect('(');
    std::vector<int64_t> dims;
    bool trailing_comma = false;
    skip_space();
    while (peek() != ')') {
      dims.push_back(parse_dim());
      skip_space();
      trailing_comma = false;
      if (peek() == ',') {
        ++pos_;
        trailing_comma = true;
        skip_space();
      } else if (peek() != ')') {
        unexpected("',' or ')' in the shape tuple");
      }
    }
    ++pos_;  // ')'
    if (dims.size() == 1 && !trailing_comma)
      error("shape ({}) is a parenthesised integer, not a tuple; a 1-D shape is written ({},)",
            dims[0], dims[0]);
    if (dims.size() > static_cast<size_t>(kMaxDims))
      error("shape has {} dimensions; Tide supports at most {}", dims.size(), kMaxDims);
    return Shape(dims);
  }

  int64_t parse_dim() {
    skip_space();
    if (peek() == '-') error("negative shape entry");
    if (peek() < '0' || peek() > '9') unexpected("a non-negative integer in the shape tuple");
    int64_t value = 0;
    size_t start = pos_;
    while (peek() >= '0' && peek() <= '9') {
      int digit = peek() - '0';
      if (value > (std::numeric_limits<int64_t>::max() - digit) / 10) {
        pos_ = start;
        error("shape entry does not fit in int64");
      }
      value = value * 10 + digit;
      ++pos_;
    }
    if (peek() == 'L') ++pos_;  // Python 2 long literal, written by old NumPy
    return value;
  }

  const NpyElement* element_for(const std::string& descr, size_t value_pos) {
    for (const NpyElement& e : kElements)
      if (descr == e.descr) return &e;
    pos_ = value_pos;
    if (!descr.empty() && descr[0] == '>')
      error(
          "big-endian data ('{}') is not supported; save it little-endian, e.g. "
          "np.save(path, a.astype(a.dtype.newbyteorder('<')))",
          descr);
    error("unsupported dtype '{}' (supported: '<f4', '<f8', '<i8', '|b1', '<f2', '<i4')", descr);
  }

  const Context& ctx_;
  std::string_view text_;
  uint64_t file_offset_;
  size_t pos_ = 0;
};

Tensor parse(const ByteSource& src) {
  Context ctx{src};
  const uint64_t file_size = src.size();
  if (file_size < kMagicLength + 2)
    ctx.error("file has {} bytes, too short for the .npy magic string and version", file_size);
  char preamble[kMagicLength + 2];
  src.read_at(0, preamble, sizeof(preamble), "magic string");
  if (std::memcmp(preamble, kMagic, kMagicLength) != 0)
    ctx.error("not an .npy file: bytes 0..6 are not the magic string \\x93NUMPY");
  int major = static_cast<unsigned char>(preamble[6]);
  int minor = static_cast<unsigned char>(preamble[7]);
  if (!((major == 1 || major == 2 || major == 3) && minor == 0))
    ctx.error("unsupported .npy format version {}.{} (bytes 6..8); supported: 1.0, 2.0, 3.0", major,
              minor);

  // Version 1.0 stores the header length in 2 bytes, later versions in 4.
  const uint64_t length_bytes = major == 1 ? 2 : 4;
  const uint64_t header_start = kMagicLength + 2 + length_bytes;
  if (file_size < header_start)
    ctx.error("file has {} bytes, too short for the {}-byte header length of version {}.0",
              file_size, length_bytes, major);
  uint8_t length_le[4] = {0, 0, 0, 0};
  src.read_at(kMagicLength + 2, length_le, length_bytes, "header length");
  uint64_t header_size = 0;
  for (int i = static_cast<int>(length_bytes) - 1; i >= 0; --i)
    header_size = (header_size << 8) | length_le[i];
  if (header_size > kMaxHeaderBytes)
    ctx.error("header length {} (bytes 8..{}) exceeds the limit of {} bytes", header_size,
              header_start, kMaxHeaderBytes);
  if (header_size > file_size - header_start)
    ctx.error(
        "header length {} runs past the end of the file: the header would end at byte {} "
        "but the file has {} bytes",
        header_size, header_start + header_size, file_size);
  std::string text = src.read_string(header_start, header_size, "header");
  // Versions 1.0 and 2.0 are latin-1 and 3.0 is UTF-8, but the header of any
  // array Tide can hold is plain ASCII: anything else is a dtype we refuse.
  for (size_t i = 0; i < text.size(); ++i) {
    auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x80)
      ctx.error(
          "header contains the non-ASCII byte 0x{:02x} at file byte {} (only plain "
          "dtypes with ASCII headers are supported)",
          c, header_start + i);
  }
  NpyHeader header = HeaderParser(ctx, text, header_start).parse();

  // The data: exactly numel * itemsize bytes after the header. Checked
  // arithmetic, so a shape like (2**40, 2**40) is an error and not a wrap.
  const uint64_t data_start = header_start + header_size;
  int64_t numel = 1;
  for (int64_t d : header.shape)
    if (__builtin_mul_overflow(numel, d, &numel))
      ctx.error("shape {} has more elements than fit in int64", header.shape);
  int64_t nbytes = 0;
  if (__builtin_mul_overflow(numel, int64_t{header.element->itemsize}, &nbytes))
    ctx.error("shape {} of '{}' needs more bytes than fit in int64", header.shape,
              header.element->descr);
  const uint64_t available = file_size - data_start;
  if (available < static_cast<uint64_t>(nbytes))
    ctx.error(
        "truncated data: shape {} of '{}' needs {} bytes (file bytes {}..{}) but the file "
        "ends at byte {}",
        header.shape, header.element->descr, nbytes, data_start, data_start + nbytes, file_size);
  if (available > static_cast<uint64_t>(nbytes))
    ctx.error(
        "data length mismatch: shape {} of '{}' needs {} bytes (file bytes {}..{}) but {} "
        "bytes follow the header (file bytes {}..{})",
        header.shape, header.element->descr, nbytes, data_start, data_start + nbytes, available,
        data_start, file_size);

  // A Fortran-order array of shape (a, b, c) is laid out like a C-order array
  // of shape (c, b, a): read it that way, then reverse the dims.
  Shape stored_shape = header.shape;
  if (header.fortran_order) std::reverse(stored_shape.begin(), stored_shape.end());
  Tensor t = empty(stored_shape, {.dtype = header.element->dtype});
  const std::string what = fmt::format("data of shape {}", header.shape);
  const std::string descr = header.element->descr;
  if (descr == "<f2") {
    std::vector<uint16_t> bits(static_cast<size_t>(numel));
    src.read_at(data_start, bits.data(), static_cast<size_t>(nbytes), what);
    float* dst = t.data_ptr<float>();
    for (int64_t i = 0; i < numel; ++i) dst[i] = f16_to_float(bits[i]);
  } else if (descr == "<i4") {
    std::vector<int32_t> values(static_cast<size_t>(numel));
    src.read_at(data_start, values.data(), static_cast<size_t>(nbytes), what);
    int64_t* dst = t.data_ptr<int64_t>();
    for (int64_t i = 0; i < numel; ++i) dst[i] = values[i];
  } else {
    src.read_at(data_start, t.raw_data(), static_cast<size_t>(nbytes), what);
    if (t.dtype() == DType::Bool) {  // only 0 and 1 are valid C++ bools
      auto* p = static_cast<uint8_t*>(t.raw_data());
      for (int64_t i = 0; i < numel; ++i) p[i] = p[i] != 0;
    }
  }
  if (header.fortran_order && t.dim() > 1) {
    std::vector<int64_t> reversed;
    for (int i = t.dim() - 1; i >= 0; --i) reversed.push_back(i);
    t = kernels::contiguous(kernels::permute(t, reversed));
  }
  return t;
}

// Python's repr of a tuple of ints: (), (3,), (2, 3).
std::string python_tuple(const Shape& shape) {
  if (shape.size() == 1) return fmt::format("({},)", shape[0]);
  return fmt::format("({})", fmt::join(shape.begin(), shape.end(), ", "));
}

const char* descr_for(DType dtype) {
  switch (dtype) {
    case DType::Float32:
      return "<f4";
    case DType::Float64:
      return "<f8";
    case DType::Int64:
      return "<i8";
    case DType::Bool:
      return "|b1";
  }
  return "?";
}

}  // namespace

Tensor read_npy(const std::filesystem::path& path) {
  InputFile file(path, "read_npy");
  return parse(file);
}

Tensor parse_npy(std::string_view bytes, const std::string& name) {
  MemorySource src(bytes, name, "read_npy");
  return parse(src);
}

void write_npy(const std::filesystem::path& path, const Tensor& tensor,
               const NpyWriteOptions& options) {
  const std::string op = "write_npy";
  TIDE_CHECK(tensor.defined(), "{}: '{}': the tensor is undefined", op, path.string());
  TIDE_CHECK(options.version >= 0 && options.version <= 3,
             "{}: '{}': format version must be 1, 2 or 3 (or 0 for automatic), got {}", op,
             path.string(), options.version);
  Tensor data = kernels::contiguous(kernels::to_device(tensor, Device::cpu()));

  // Exactly the bytes NumPy writes (numpy.lib.format._write_array_header):
  // the dict with sorted keys and a trailing ", ", 21 - len(str(shape[0]))
  // spare spaces (room to grow the first axis in place), then spaces and a
  // newline up to the next multiple of 64 bytes (a full 64 if already there).
  std::string dict = fmt::format("{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}",
                                 descr_for(data.dtype()), python_tuple(data.shape()));
  if (data.dim() > 0) {
    size_t digits = std::to_string(data.shape()[0]).size();
    dict.append(digits < 21 ? 21 - digits : 0, ' ');
  }
  int version = options.version;
  if (version == 0) version = kMagicLength + 2 + 2 + dict.size() + 1 + 64 > 65535 ? 2 : 1;
  const size_t preamble = kMagicLength + 2 + (version == 1 ? 2 : 4);
  const size_t unpadded = preamble + dict.size() + 1;  // + '\n'
  dict.append(64 - unpadded % 64, ' ');
  dict.push_back('\n');
  TIDE_CHECK(version != 1 || dict.size() <= 65535,
             "{}: '{}': the header needs {} bytes, more than format 1.0 allows", op, path.string(),
             dict.size());

  write_file_atomically(path, op, [&](AtomicFileWriter& out) {
    out.write(kMagic, kMagicLength);
    const char version_bytes[2] = {static_cast<char>(version), 0};
    out.write(version_bytes, 2);
    uint32_t n = static_cast<uint32_t>(dict.size());
    uint8_t length_le[4];
    for (int i = 0; i < 4; ++i) length_le[i] = static_cast<uint8_t>(n >> (8 * i));
    out.write(length_le, version == 1 ? 2 : 4);
    out.write(dict);
    size_t nbytes = static_cast<size_t>(data.numel()) * dtype_size(data.dtype());
    if (nbytes > 0) out.write(data.raw_data(), nbytes);
  });
}

}  // namespace tide::io
