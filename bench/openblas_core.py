"""Make Debian's PyTorch use a fast OpenBLAS kernel on virtual machines.

Debian's python3-torch does its float32 matmuls through the system BLAS
(libopenblas0-openmp). OpenBLAS picks its kernels from the CPU model it
reads with cpuid; on a virtual machine that reports a generic "Intel Xeon
Processor" it falls back to its oldest kernel ("Prescott", SSE3), which ran
1024x1024 matmuls at 11 GFLOP/s on this project's build machine against
53 GFLOP/s with the AVX-512 kernel. A benchmark against that PyTorch would
flatter Tide, so every comparison script imports this module before torch:
it sets OPENBLAS_CORETYPE from the instruction sets the CPU really has,
unless the caller already chose one.
"""
import os


def choose_openblas_core():
    if "OPENBLAS_CORETYPE" in os.environ:
        return os.environ["OPENBLAS_CORETYPE"]
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f
                          if line.startswith("flags")), [])
    except OSError:
        return None
    core = None
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= set(flags):
        core = "SkylakeX"
    elif {"avx2", "fma"} <= set(flags):
        core = "Haswell"
    if core:
        os.environ["OPENBLAS_CORETYPE"] = core
    return core


OPENBLAS_CORE = choose_openblas_core()
