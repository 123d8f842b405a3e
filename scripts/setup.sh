#!/usr/bin/env bash
# Installs the Debian 12 packages Tide needs to build and test, skipping those
# already installed. Uses sudo only when not run as root.
#
#   ./scripts/setup.sh          build + test dependencies
#   ./scripts/setup.sh --bench  also the (large) packages the benchmarks compare against
set -euo pipefail

# ---------------------------------------------------------------------------
# The package lists: the one place to add a dependency.
# ---------------------------------------------------------------------------
PACKAGES=(
  cmake g++ make            # toolchain
  libdnnl-dev               # oneDNN: the CPU backend's kernels
  ocl-icd-opencl-dev        # OpenCL loader, which Debian's oneDNN CMake package looks for
  libfmt-dev                # formatting (a public dependency of Tide's headers)
  catch2                    # test framework (v2)
  libcli11-dev              # command-line parsing for the tools
  nlohmann-json3-dev        # JSON (configs, metadata)
  libpng-dev                # image output
  libbenchmark-dev          # Google Benchmark (bench/)
  clang libclang-rt-14-dev  # libFuzzer and ThreadSanitizer (scripts/fuzz.sh, scripts/test_tsan.sh)
)
# Only with --bench: the reference implementations the benchmarks compare against.
BENCH_PACKAGES=(
  python3-numpy
  python3-torch
  libopenblas0-openmp
)

with_bench=0
for arg in "$@"; do
  case "$arg" in
    --bench) with_bench=1 ;;
    -h | --help)
      sed -n '2,6p' "$0"
      exit 0
      ;;
    *)
      echo "setup.sh: unknown argument '$arg' (expected --bench)" >&2
      exit 2
      ;;
  esac
done
wanted=("${PACKAGES[@]}")
if ((with_bench)); then wanted+=("${BENCH_PACKAGES[@]}"); fi

if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "setup.sh: not a Debian-based system; install the equivalents of these yourself:"
  echo "  ${wanted[*]}"
  exit 0
fi

missing=()
for pkg in "${wanted[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
  if [[ "$status" != "installed" ]]; then missing+=("$pkg"); fi
done

if ((${#missing[@]} == 0)); then
  echo "setup.sh: all ${#wanted[@]} required packages are already installed; nothing to do."
  exit 0
fi

echo "setup.sh: installing missing packages: ${missing[*]}"
if [[ $(id -u) -eq 0 ]]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1; then
  sudo=(sudo)
else
  echo "setup.sh: not root and sudo is not available; as root run:" >&2
  echo "  apt-get update && apt-get install -y ${missing[*]}" >&2
  exit 1
fi
"${sudo[@]}" apt-get update
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
