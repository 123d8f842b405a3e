// safetensors: the tensor file format of Hugging Face and PyTorch ecosystems
// (https://github.com/huggingface/safetensors).
//
// Layout of a file:
//   bytes [0, 8)        N, the header length, a little-endian uint64
//   bytes [8, 8 + N)    the header: a UTF-8 JSON object
//                         {"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
//                          "__metadata__": {"format": "pt"}}
//                       (writers pad it with spaces to a multiple of 8 bytes)
//   bytes [8 + N, end)  the data buffer; data_offsets are relative to its start
//
// Tensors are stored little-endian in C (row-major) order. Their byte ranges
// must tile the data buffer exactly: no overlaps, no gaps, nothing after the
// last tensor. The reader checks all of that (and every other field) before it
// allocates anything, so a corrupt or hostile file gives a tide::Error naming
// the file, the tensor and the byte offsets, never a crash or a huge
// allocation.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "tensor/tensor.h"

namespace tide::io {

// The element types Tide reads and writes. F16 and BF16 have no Tide dtype:
// they are converted to float32 when read, and produced from float32/float64
// (rounding to nearest, ties to even) when written.
enum class SafetensorsDType { BOOL, I64, F16, BF16, F32, F64 };

// The string used in the header: "F32", "BF16", ...
const char* safetensors_dtype_name(SafetensorsDType dtype);
// Bytes per element.
int safetensors_dtype_size(SafetensorsDType dtype);

// Name -> tensor, sorted by name: the same type as nn::StateDict, so a file's
// tensors can be passed straight to Module::load_state_dict.
using TensorMap = std::map<std::string, Tensor>;
// The free-form "__metadata__" string map.
using MetadataMap = std::map<std::string, std::string>;

struct SafetensorsFile {
  TensorMap tensors;
  MetadataMap metadata;
  // The dtype each tensor had in the file (F16/BF16 tensors load as float32).
  std::map<std::string, SafetensorsDType> stored_dtypes;
};

// The reference implementation's limit on the header length.
inline constexpr uint64_t kSafetensorsMaxHeaderBytes = 100'000'000;

// Reads a whole file into CPU tensors.
SafetensorsFile read_safetensors(const std::filesystem::path& path);
// The same from bytes in memory; `name` labels error messages. For tests and
// fuzzers.
SafetensorsFile parse_safetensors(std::string_view bytes, const std::string& name = "<memory>");

struct SafetensorsWriteOptions {
  // When set, every floating-point tensor is stored with this dtype (F16 or
  // BF16 to halve the file, F32 or F64 to convert). Unset: each tensor keeps
  // its own dtype.
  std::optional<SafetensorsDType> float_dtype;
};

// Writes tensors (from any device, any strides) and metadata atomically.
// Tensors are laid out like the reference writer: by decreasing element size,
// then by name, so each tensor's data is aligned to its element size.
void write_safetensors(const std::filesystem::path& path, const TensorMap& tensors,
                       const MetadataMap& metadata = {},
                       const SafetensorsWriteOptions& options = {});

// --- 16-bit floats -------------------------------------------------------
// IEEE half precision (F16: 1 sign, 5 exponent, 10 mantissa bits) and bfloat16
// (BF16: the top 16 bits of a float32). Conversions to 16 bits round to
// nearest, ties to even; overflow gives infinity and NaN stays NaN.
float f16_to_float(uint16_t bits);
float bf16_to_float(uint16_t bits);
uint16_t float_to_f16(float value);
uint16_t float_to_bf16(float value);
// Rounded once, directly from double (not via float, which could round twice).
uint16_t double_to_f16(double value);
uint16_t double_to_bf16(double value);

}  // namespace tide::io
