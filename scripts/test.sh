#!/usr/bin/env bash
# Installs what is missing, builds Tide with its tests (Release, into build/)
# and runs the whole suite with CTest, including install_consumer, which
# installs Tide and builds a separate project against it.
#
# Environment: TIDE_BUILD_DIR (default build), TIDE_JOBS (default: CPU count).
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR=${TIDE_BUILD_DIR:-build}
JOBS=${TIDE_JOBS:-$(nproc)}

./scripts/setup.sh
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DTIDE_BUILD_TESTS=ON
cmake --build "$BUILD_DIR" -j "$JOBS"
ctest --test-dir "$BUILD_DIR" --output-on-failure -j2
