#include "nn/safetensors.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <vector>

#include "nn/atomic_file.h"
#include "tensor/kernels.h"

namespace tide::io {

static_assert(std::endian::native == std::endian::little,
              "safetensors and .npy I/O assume a little-endian host");

// ---------------------------------------------------------------------------
// 16-bit floats
// ---------------------------------------------------------------------------

float f16_to_float(uint16_t h) {
  uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exponent = (h >> 10) & 0x1Fu;
  uint32_t mantissa = h & 0x3FFu;
  if (exponent == 0x1F) {  // infinity or NaN: keep the payload
    return std::bit_cast<float>(sign | 0x7F800000u | (mantissa << 13));
  }
  if (exponent == 0) {  // zero or subnormal: mantissa * 2^-24, exact in float
    float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
    return sign ? -magnitude : magnitude;
  }
  // Normal: rebias the exponent from 15 to 127 and widen the mantissa.
  return std::bit_cast<float>(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

float bf16_to_float(uint16_t bits) {
  return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16);
}

uint16_t float_to_f16(float value) {
  uint32_t x = std::bit_cast<uint32_t>(value);
  auto sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  uint32_t magnitude = x & 0x7FFFFFFFu;
  if (magnitude > 0x7F800000u) return sign | 0x7E00u;  // NaN -> quiet NaN
  // 65520 = 0x477FF000 is halfway between the largest half (65504) and 2^16;
  // ties go to even, which is infinity.
  if (magnitude >= 0x477FF000u) return sign | 0x7C00u;
  if (magnitude >= 0x38800000u) {  // >= 2^-14: a normal half
    // Rebias the exponent (127 -> 15: subtract 112 << 23) and drop 13 mantissa
    // bits, rounding to nearest even. A carry out of the mantissa correctly
    // bumps the exponent.
    uint32_t odd = (magnitude >> 13) & 1u;
    return sign | static_cast<uint16_t>((magnitude - 0x38000000u + 0x0FFFu + odd) >> 13);
  }
  // Below 2^-14 the half is subnormal: value = m * 2^-24 for an integer m.
  if (magnitude <= 0x33000000u) return sign;  // <= 2^-25 rounds to zero (a tie goes to 0)
  uint32_t exponent = magnitude >> 23;        // 102 .. 112
  uint32_t significand = (magnitude & 0x7FFFFFu) | 0x800000u;  // 24 bits
  uint32_t shift = 126 - exponent;                             // 14 .. 24
  uint32_t m = significand >> shift;
  uint32_t rest = significand & ((1u << shift) - 1);
  uint32_t half = 1u << (shift - 1);
  if (rest > half || (rest == half && (m & 1u))) ++m;  // may carry into the smallest normal
  return sign | static_cast<uint16_t>(m);
}

uint16_t float_to_bf16(float value) {
  uint32_t x = std::bit_cast<uint32_t>(value);
  if ((x & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((x >> 16) | 0x0040u);  // NaN
  // Round the low 16 bits to nearest even; overflow rounds up into infinity.
  uint32_t odd = (x >> 16) & 1u;
  return static_cast<uint16_t>((x + 0x7FFFu + odd) >> 16);
}

namespace {

// Rounds a double to float with "round to odd": truncate, then set the lowest
// mantissa bit if anything was lost. A float has at least two more mantissa
// bits than F16 or BF16, so rounding this result to nearest-even in 16 bits
// gives exactly the correctly rounded result of the original double.
float round_to_odd_float(double value) {
  float f = static_cast<float>(value);
  if (std::isnan(value) || static_cast<double>(f) == value) return f;
  if (std::fabs(static_cast<double>(f)) > std::fabs(value)) f = std::nextafter(f, 0.0f);
  return std::bit_cast<float>(std::bit_cast<uint32_t>(f) | 1u);
}

}  // namespace

uint16_t double_to_f16(double value) {
  return float_to_f16(round_to_odd_float(value));
}
uint16_t double_to_bf16(double value) {
  return float_to_bf16(round_to_odd_float(value));
}

// ---------------------------------------------------------------------------
// dtypes
// ---------------------------------------------------------------------------

const char* safetensors_dtype_name(SafetensorsDType dtype) {
  switch (dtype) {
    case SafetensorsDType::BOOL:
      return "BOOL";
    case SafetensorsDType::I64:
      return "I64";
    case SafetensorsDType::F16:
      return "F16";
    case SafetensorsDType::BF16:
      return "BF16";
    case SafetensorsDType::F32:
      return "F32";
    case SafetensorsDType::F64:
      return "F64";
  }
  return "?";
}

int safetensors_dtype_size(SafetensorsDType dtype) {
  switch (dtype) {
    case SafetensorsDType::BOOL:
      return 1;
    case SafetensorsDType::F16:
    case SafetensorsDType::BF16:
      return 2;
    case SafetensorsDType::F32:
      return 4;
    case SafetensorsDType::I64:
    case SafetensorsDType::F64:
      return 8;
  }
  return 0;
}

namespace {

using nlohmann::json;

constexpr SafetensorsDType kAllDTypes[] = {SafetensorsDType::BOOL, SafetensorsDType::I64,
                                           SafetensorsDType::F16,  SafetensorsDType::BF16,
                                           SafetensorsDType::F32,  SafetensorsDType::F64};

// dtypes of the format that Tide has no use for yet: named in the error so the
// user knows the file is fine but unsupported.
constexpr const char* kUnsupportedDTypes[] = {"U8",  "I8",      "I16",     "U16",     "I32",
                                              "U32", "U64",     "F8_E5M2", "F8_E4M3", "F8_E8M0",
                                              "F4",  "F6_E2M3", "F6_E3M2", "C64"};

DType tide_dtype_for(SafetensorsDType dtype) {
  switch (dtype) {
    case SafetensorsDType::BOOL:
      return DType::Bool;
    case SafetensorsDType::I64:
      return DType::Int64;
    case SafetensorsDType::F16:
    case SafetensorsDType::BF16:
    case SafetensorsDType::F32:
      return DType::Float32;
    case SafetensorsDType::F64:
      return DType::Float64;
  }
  return DType::Float32;
}

SafetensorsDType safetensors_dtype_for(DType dtype) {
  switch (dtype) {
    case DType::Bool:
      return SafetensorsDType::BOOL;
    case DType::Int64:
      return SafetensorsDType::I64;
    case DType::Float32:
      return SafetensorsDType::F32;
    case DType::Float64:
      return SafetensorsDType::F64;
  }
  return SafetensorsDType::F32;
}

// The byte offset of the first invalid UTF-8 sequence, or npos. Rejects what
// Rust's str::from_utf8 rejects: overlong forms, surrogates, > U+10FFFF.
size_t find_invalid_utf8(std::string_view s) {
  size_t i = 0;
  const size_t n = s.size();
  auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  auto continuation = [&](size_t k) { return k < n && (byte(k) & 0xC0) == 0x80; };
  while (i < n) {
    unsigned char c = byte(i);
    if (c < 0x80) {
      ++i;
    } else if (c >= 0xC2 && c <= 0xDF) {
      if (!continuation(i + 1)) return i;
      i += 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      if (!continuation(i + 1) || !continuation(i + 2)) return i;
      unsigned char c1 = byte(i + 1);
      if (c == 0xE0 && c1 < 0xA0) return i;   // overlong
      if (c == 0xED && c1 >= 0xA0) return i;  // UTF-16 surrogate
      i += 3;
    } else if (c >= 0xF0 && c <= 0xF4) {
      if (!continuation(i + 1) || !continuation(i + 2) || !continuation(i + 3)) return i;
      unsigned char c1 = byte(i + 1);
      if (c == 0xF0 && c1 < 0x90) return i;   // overlong
      if (c == 0xF4 && c1 >= 0x90) return i;  // above U+10FFFF
      i += 4;
    } else {
      return i;  // a stray continuation byte, or 0xC0, 0xC1, 0xF5..0xFF
    }
  }
  return std::string_view::npos;
}

// A JSON value's type, for "expected X, got Y" messages.
const char* json_type(const json& j) {
  if (j.is_number_unsigned()) return "a non-negative integer";
  if (j.is_number_integer()) return "a negative integer";
  if (j.is_number_float()) return "a non-integer or out-of-range number";
  return j.type_name();
}

// One tensor's entry in the header, validated.
struct TensorEntry {
  std::string name;
  SafetensorsDType dtype;
  Shape shape;
  uint64_t begin = 0, end = 0;  // relative to the data buffer
};

// Everything read_safetensors needs to report where it is.
struct Context {
  const ByteSource& src;
  uint64_t data_start = 0;  // file offset of the data buffer (8 + N)

  template <typename... Args>
  [[noreturn]] void error(fmt::format_string<Args...> format, Args&&... args) const {
    fail("{}: '{}': {}", src.op(), src.name(), fmt::format(format, std::forward<Args>(args)...));
  }
};

// Parses the header JSON, refusing duplicate keys (which JSON libraries
// otherwise resolve silently, letting a file say two things at once) and
// absurd nesting.
json parse_header_json(const Context& ctx, const std::string& text) {
  constexpr int kMaxDepth = 16;
  std::vector<std::set<std::string>> keys_per_object;
  json::parser_callback_t callback = [&](int depth, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        if (depth >= kMaxDepth)
          ctx.error("header: JSON nested more than {} levels deep", kMaxDepth);
        if (event == json::parse_event_t::object_start) keys_per_object.emplace_back();
        break;
      case json::parse_event_t::object_end:
        keys_per_object.pop_back();
        break;
      case json::parse_event_t::key: {
        const auto& key = parsed.get_ref<const std::string&>();
        if (!keys_per_object.back().insert(key).second) {
          if (depth == 1) ctx.error("header: tensor name '{}' appears twice", key);
          ctx.error("header: key '{}' appears twice in one JSON object", key);
        }
        break;
      }
      default:
        break;
    }
    return true;
  };
  try {
    return json::parse(text, callback);
  } catch (const json::exception& e) {
    ctx.error("header (bytes 8..{}) is not valid JSON: {}", 8 + text.size(), e.what());
  }
}

// A JSON array of non-negative integers that fit in int64 (shape entries and
// offsets both need this).
std::vector<uint64_t> read_uint_array(const Context& ctx, const std::string& name,
                                      const char* field, const json& value) {
  if (!value.is_array())
    ctx.error("tensor '{}': field '{}' must be an array of non-negative integers, got {}", name,
              field, json_type(value));
  std::vector<uint64_t> out;
  for (size_t i = 0; i < value.size(); ++i) {
    const json& v = value[i];
    if (!v.is_number_unsigned())
      ctx.error("tensor '{}': {}[{}] must be a non-negative integer, got {} ({})", name, field, i,
                json_type(v), v.dump());
    auto u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      ctx.error("tensor '{}': {}[{}] = {} does not fit in int64", name, field, i, u);
    out.push_back(u);
  }
  return out;
}

SafetensorsDType parse_dtype(const Context& ctx, const std::string& name, const json& value) {
  if (!value.is_string())
    ctx.error("tensor '{}': field 'dtype' must be a string, got {}", name, json_type(value));
  const auto& s = value.get_ref<const std::string&>();
  for (SafetensorsDType d : kAllDTypes)
    if (s == safetensors_dtype_name(d)) return d;
  for (const char* u : kUnsupportedDTypes)
    if (s == u)
      ctx.error(
          "tensor '{}': dtype '{}' is valid safetensors but not supported by Tide "
          "(supported: BOOL, I64, F16, BF16, F32, F64)",
          name, s);
  ctx.error("tensor '{}': unknown dtype '{}' (supported: BOOL, I64, F16, BF16, F32, F64)", name, s);
}

TensorEntry parse_entry(const Context& ctx, const std::string& name, const json& info,
                        uint64_t buffer_size) {
  if (!info.is_object())
    ctx.error("tensor '{}': expected an object with dtype, shape and data_offsets, got {}", name,
              json_type(info));
  for (const auto& [key, _] : info.items()) {
    if (key != "dtype" && key != "shape" && key != "data_offsets")
      ctx.error("tensor '{}': unexpected field '{}' (expected dtype, shape, data_offsets)", name,
                key);
  }
  for (const char* field : {"dtype", "shape", "data_offsets"}) {
    if (!info.contains(field)) ctx.error("tensor '{}': missing field '{}'", name, field);
  }
  TensorEntry entry;
  entry.name = name;
  entry.dtype = parse_dtype(ctx, name, info["dtype"]);

  std::vector<uint64_t> dims = read_uint_array(ctx, name, "shape", info["shape"]);
  if (dims.size() > static_cast<size_t>(kMaxDims))
    ctx.error("tensor '{}': shape has {} dimensions; Tide supports at most {}", name, dims.size(),
              kMaxDims);
  entry.shape = Shape(dims.begin(), dims.end());
  // Checked products: a shape such as [2^40, 2^40] must be an error, not a
  // wrapped-around small number that happens to match the byte count.
  int64_t numel = 1;
  for (uint64_t d : dims) {
    if (__builtin_mul_overflow(numel, static_cast<int64_t>(d), &numel))
      ctx.error("tensor '{}': shape {} has more elements than fit in int64", name, entry.shape);
  }
  int64_t nbytes = 0;
  if (__builtin_mul_overflow(numel, int64_t{safetensors_dtype_size(entry.dtype)}, &nbytes))
    ctx.error("tensor '{}': shape {} of {} needs more bytes than fit in int64", name, entry.shape,
              safetensors_dtype_name(entry.dtype));

  std::vector<uint64_t> offsets = read_uint_array(ctx, name, "data_offsets", info["data_offsets"]);
  if (offsets.size() != 2)
    ctx.error("tensor '{}': data_offsets must be [begin, end], got {} numbers", name,
              offsets.size());
  entry.begin = offsets[0];
  entry.end = offsets[1];
  if (entry.end < entry.begin)
    ctx.error("tensor '{}': data_offsets [{}, {}] end before they begin", name, entry.begin,
              entry.end);
  if (entry.end > buffer_size)
    ctx.error(
        "tensor '{}': data_offsets [{}, {}] (file bytes {}..{}) run past the end of the "
        "{}-byte data buffer (file bytes {}..{})",
        name, entry.begin, entry.end, ctx.data_start + entry.begin, ctx.data_start + entry.end,
        buffer_size, ctx.data_start, ctx.data_start + buffer_size);
  if (entry.end - entry.begin != static_cast<uint64_t>(nbytes))
    ctx.error(
        "tensor '{}': data_offsets [{}, {}] hold {} bytes but {} {} needs {} ({} elements "
        "of {} bytes)",
        name, entry.begin, entry.end, entry.end - entry.begin, safetensors_dtype_name(entry.dtype),
        entry.shape, nbytes, numel, safetensors_dtype_size(entry.dtype));
  return entry;
}

MetadataMap parse_metadata(const Context& ctx, const json& value) {
  MetadataMap out;
  if (value.is_null()) return out;  // the reference reader treats null as absent
  if (!value.is_object())
    ctx.error("header: __metadata__ must be an object of strings, got {}", json_type(value));
  for (const auto& [key, v] : value.items()) {
    if (!v.is_string())
      ctx.error("header: __metadata__['{}'] must be a string, got {} ({})", key, json_type(v),
                v.dump());
    out[key] = v.get<std::string>();
  }
  return out;
}

// Reads one tensor's bytes into a new CPU tensor, converting 16-bit floats.
Tensor read_tensor(const Context& ctx, const TensorEntry& e) {
  std::string what = fmt::format("tensor '{}' (data_offsets [{}, {}])", e.name, e.begin, e.end);
  uint64_t offset = ctx.data_start + e.begin;
  size_t nbytes = e.end - e.begin;
  Tensor t = empty(e.shape, {.dtype = tide_dtype_for(e.dtype)});
  int64_t n = t.numel();
  switch (e.dtype) {
    case SafetensorsDType::F32:
    case SafetensorsDType::F64:
    case SafetensorsDType::I64:
      ctx.src.read_at(offset, t.raw_data(), nbytes, what);
      break;
    case SafetensorsDType::BOOL: {
      // Any byte other than 0 or 1 would be an invalid C++ bool: normalise.
      auto* p = static_cast<uint8_t*>(t.raw_data());
      ctx.src.read_at(offset, p, nbytes, what);
      for (int64_t i = 0; i < n; ++i) p[i] = p[i] != 0;
      break;
    }
    case SafetensorsDType::F16:
    case SafetensorsDType::BF16: {
      std::vector<uint16_t> bits(static_cast<size_t>(n));
      ctx.src.read_at(offset, bits.data(), nbytes, what);
      float* dst = t.data_ptr<float>();
      bool is_f16 = e.dtype == SafetensorsDType::F16;
      for (int64_t i = 0; i < n; ++i)
        dst[i] = is_f16 ? f16_to_float(bits[i]) : bf16_to_float(bits[i]);
      break;
    }
  }
  return t;
}

SafetensorsFile parse(const ByteSource& src) {
  Context ctx{src};
  const uint64_t file_size = src.size();
  if (file_size < 8)
    ctx.error("file has {} bytes, fewer than the 8-byte header length field", file_size);
  uint8_t length_bytes[8];
  src.read_at(0, length_bytes, 8, "header length");
  uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | length_bytes[i];
  if (header_size > kSafetensorsMaxHeaderBytes)
    ctx.error("header length {} (bytes 0..8) exceeds the limit of {} bytes", header_size,
              kSafetensorsMaxHeaderBytes);
  if (header_size > file_size - 8)
    ctx.error(
        "header length {} (bytes 0..8) runs past the end of the file: the header would end "
        "at byte {} but the file has {} bytes",
        header_size, 8 + header_size, file_size);
  ctx.data_start = 8 + header_size;
  const uint64_t buffer_size = file_size - ctx.data_start;

  std::string text = src.read_string(8, header_size, "header");
  size_t bad = find_invalid_utf8(text);
  if (bad != std::string_view::npos)
    ctx.error("header is not valid UTF-8 (invalid byte 0x{:02x} at file byte {})",
              static_cast<unsigned char>(text[bad]), 8 + bad);
  json header = parse_header_json(ctx, text);
  if (!header.is_object()) ctx.error("header must be a JSON object, got {}", json_type(header));

  SafetensorsFile file;
  std::vector<TensorEntry> entries;
  for (const auto& [name, value] : header.items()) {
    if (name == "__metadata__") {
      file.metadata = parse_metadata(ctx, value);
    } else {
      entries.push_back(parse_entry(ctx, name, value, buffer_size));
    }
  }

  // The tensors must tile the data buffer: sorted by offset, each begins where
  // the previous one ended, and the last ends at the end of the file.
  std::sort(entries.begin(), entries.end(), [](const TensorEntry& a, const TensorEntry& b) {
    return std::tie(a.begin, a.end, a.name) < std::tie(b.begin, b.end, b.name);
  });
  uint64_t covered = 0;
  const TensorEntry* previous = nullptr;
  for (const TensorEntry& e : entries) {
    if (e.begin < covered)
      ctx.error(
          "tensors '{}' (data_offsets [{}, {}]) and '{}' (data_offsets [{}, {}]) overlap "
          "(file bytes {}..{})",
          previous->name, previous->begin, previous->end, e.name, e.begin, e.end,
          ctx.data_start + e.begin, ctx.data_start + covered);
    if (e.begin > covered)
      ctx.error(
          "data buffer bytes [{}, {}) (file bytes {}..{}) belong to no tensor: a gap before "
          "tensor '{}'",
          covered, e.begin, ctx.data_start + covered, ctx.data_start + e.begin, e.name);
    covered = e.end;
    previous = &e;
  }
  if (covered != buffer_size)
    ctx.error(
        "data buffer bytes [{}, {}) (file bytes {}..{}) after the last tensor belong to no "
        "tensor",
        covered, buffer_size, ctx.data_start + covered, file_size);

  // Everything is consistent; the total allocated is the buffer size, which
  // is at most the file size.
  for (const TensorEntry& e : entries) {
    file.tensors.emplace(e.name, read_tensor(ctx, e));
    file.stored_dtypes.emplace(e.name, e.dtype);
  }
  return file;
}

}  // namespace

SafetensorsFile read_safetensors(const std::filesystem::path& path) {
  InputFile file(path, "read_safetensors");
  return parse(file);
}

SafetensorsFile parse_safetensors(std::string_view bytes, const std::string& name) {
  MemorySource src(bytes, name, "read_safetensors");
  return parse(src);
}

// ---------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------

namespace {

struct PlannedTensor {
  std::string name;
  Tensor data;  // contiguous, on the CPU
  SafetensorsDType dtype;
  uint64_t nbytes = 0;
};

// The bytes of one tensor in its stored dtype.
void write_tensor_bytes(AtomicFileWriter& out, const PlannedTensor& p) {
  const Tensor& t = p.data;
  if (p.dtype == SafetensorsDType::F16 || p.dtype == SafetensorsDType::BF16) {
    bool is_f16 = p.dtype == SafetensorsDType::F16;
    std::vector<uint16_t> bits(static_cast<size_t>(t.numel()));
    if (t.dtype() == DType::Float64) {
      const double* src = t.data_ptr<double>();
      for (size_t i = 0; i < bits.size(); ++i)
        bits[i] = is_f16 ? double_to_f16(src[i]) : double_to_bf16(src[i]);
    } else {
      const float* src = t.data_ptr<float>();
      for (size_t i = 0; i < bits.size(); ++i)
        bits[i] = is_f16 ? float_to_f16(src[i]) : float_to_bf16(src[i]);
    }
    out.write(bits.data(), bits.size() * 2);
    return;
  }
  // Same dtype as the tensor (conversions between Tide dtypes happened already).
  if (p.nbytes > 0) out.write(t.raw_data(), p.nbytes);
}

}  // namespace

void write_safetensors(const std::filesystem::path& path, const TensorMap& tensors,
                       const MetadataMap& metadata, const SafetensorsWriteOptions& options) {
  const std::string op = "write_safetensors";
  const std::string where = path.string();
  // Names and metadata go into JSON, which must be valid UTF-8.
  auto check_utf8 = [&](const std::string& s, const char* what) {
    size_t bad = find_invalid_utf8(s);
    if (bad == std::string::npos) return;
    // Show the string with bytes >= 0x80 escaped, so the message itself stays
    // valid UTF-8.
    std::string shown;
    for (char c : s) {
      auto u = static_cast<unsigned char>(c);
      shown += u < 0x80 ? std::string(1, c) : fmt::format("\\x{:02x}", u);
    }
    fail("{}: '{}': {} '{}' is not valid UTF-8 (byte {})", op, where, what, shown, bad);
  };
  for (const auto& [key, value] : metadata) {
    check_utf8(key, "metadata key");
    check_utf8(value, "metadata value");
  }

  if (options.float_dtype) {
    SafetensorsDType d = *options.float_dtype;
    TIDE_CHECK(d == SafetensorsDType::F16 || d == SafetensorsDType::BF16 ||
                   d == SafetensorsDType::F32 || d == SafetensorsDType::F64,
               "{}: '{}': float_dtype must be a floating-point dtype, got {}", op, where,
               safetensors_dtype_name(d));
  }

  std::vector<PlannedTensor> plan;
  for (const auto& [name, tensor] : tensors) {
    check_utf8(name, "tensor name");
    TIDE_CHECK(name != "__metadata__",
               "{}: '{}': '__metadata__' is reserved and cannot name a "
               "tensor",
               op, where);
    TIDE_CHECK(tensor.defined(), "{}: '{}': tensor '{}' is undefined", op, where, name);
    PlannedTensor p;
    p.name = name;
    p.dtype = safetensors_dtype_for(tensor.dtype());
    if (options.float_dtype && tensor.is_floating_point()) p.dtype = *options.float_dtype;
    // A contiguous CPU copy in the dtype whose bytes we write (F16/BF16 are
    // converted element by element from float32 or float64 while writing).
    Tensor data = kernels::contiguous(kernels::to_device(tensor, Device::cpu()));
    if (p.dtype == SafetensorsDType::F32) data = kernels::to_dtype(data, DType::Float32);
    if (p.dtype == SafetensorsDType::F64) data = kernels::to_dtype(data, DType::Float64);
    p.data = data;
    p.nbytes = static_cast<uint64_t>(data.numel()) * safetensors_dtype_size(p.dtype);
    plan.push_back(std::move(p));
  }
  // Like the reference writer: larger elements first, then by name, so every
  // tensor starts at a multiple of its element size.
  std::stable_sort(plan.begin(), plan.end(), [](const PlannedTensor& a, const PlannedTensor& b) {
    int sa = safetensors_dtype_size(a.dtype), sb = safetensors_dtype_size(b.dtype);
    return sa != sb ? sa > sb : a.name < b.name;
  });

  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json meta = nlohmann::ordered_json::object();
    for (const auto& [key, value] : metadata) meta[key] = value;
    header["__metadata__"] = std::move(meta);
  }
  uint64_t offset = 0;
  for (const PlannedTensor& p : plan) {
    nlohmann::ordered_json shape = nlohmann::ordered_json::array();
    for (int64_t d : p.data.shape()) shape.push_back(d);
    header[p.name] = {{"dtype", safetensors_dtype_name(p.dtype)},
                      {"shape", std::move(shape)},
                      {"data_offsets", {offset, offset + p.nbytes}}};
    offset += p.nbytes;
  }
  std::string text = header.dump();
  // Pad with spaces so the data buffer starts at a multiple of 8 bytes.
  text.append((8 - text.size() % 8) % 8, ' ');

  write_file_atomically(path, op, [&](AtomicFileWriter& out) {
    uint64_t n = text.size();
    uint8_t length_bytes[8];
    for (int i = 0; i < 8; ++i) length_bytes[i] = static_cast<uint8_t>(n >> (8 * i));
    out.write(length_bytes, 8);
    out.write(text);
    for (const PlannedTensor& p : plan) write_tensor_bytes(out, p);
  });
}

}  // namespace tide::io
