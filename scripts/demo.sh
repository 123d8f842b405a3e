#!/usr/bin/env bash
# Installs what is missing, builds Tide (Release, into build/) and runs the
# demo: examples/autograd_demo.cpp, which fits a curve with gradient descent
# and takes a gradient of a gradient.
#
# Environment: TIDE_BUILD_DIR (default build), TIDE_JOBS (default: CPU count).
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR=${TIDE_BUILD_DIR:-build}
JOBS=${TIDE_JOBS:-$(nproc)}
# The program this script builds and runs.
DEMO_TARGET=autograd_demo

./scripts/setup.sh
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DTIDE_BUILD_EXAMPLES=ON
cmake --build "$BUILD_DIR" -j "$JOBS" --target "$DEMO_TARGET"
echo
"$BUILD_DIR/examples/$DEMO_TARGET"
