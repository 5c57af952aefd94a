#!/bin/bash
# gpu_prepare.sh — on a development machine (this project's libraries installed, nvcc, no
# GPU needed): builds etx for a GPU machine that cannot install etx's libraries (no
# internet there) and gathers what benchmarks/gpu_check.sh runs into gpu-bundle/: the etx
# binary (its `etx bench` is the decode benchmark), the native kernel test suites, and in gpu-bundle/deps/ the
# shared libraries they need beyond glibc, the C/C++ runtimes and the CUDA toolkit.
# The bundle is ~63 MB (OpenBLAS alone is 36 MB), over what travels to a lent machine
# beside the ~27 MB tree (64 MiB), so it is also packed as build-gpu-carry/bundle.tar.xz
# (~10 MB; git-ignored): carry build-gpu-carry, and gpu_check.sh unpacks it.
#
#     benchmarks/gpu_prepare.sh [ARCH]      # ARCH: CUDA architecture, default 90 (H100/H200)
#     device run: carry ["build-gpu-carry"], command: ETX_COMMIT=<sha> benchmarks/gpu_check.sh
set -eu
cd "$(dirname "$0")/.."
ARCH=${1:-90}
PROGRAMS="etx test_selftest_gpu test_exact_math_gpu test_gemm_gpu test_layer_kernels_gpu test_sampling_kernels_gpu
          test_cuda_backend_gpu test_advance_gpu test_batching_gpu test_engine_gpu test_nonfinite_gpu test_samples_gpu
          test_tp_gpu"
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DETX_NATIVE=OFF -DCMAKE_CUDA_ARCHITECTURES="$ARCH" > /dev/null
cmake --build build-gpu -j"$(nproc)" --target $PROGRAMS
rm -rf gpu-bundle
mkdir -p gpu-bundle/deps
for p in $PROGRAMS; do cp build-gpu/$p gpu-bundle/; done
for lib in $(ldd gpu-bundle/etx gpu-bundle/test_*_gpu | awk '/=> \// {print $3}' | sort -u); do
    case "$(basename "$lib")" in
        libc.so*|libm.so*|libpthread*|libdl*|librt*|ld-linux*|libstdc++*|libgcc_s*|libz.so*|libudev*) ;;
        libcuda.so*|libcudart*|libcublas*|libnvidia*) ;;
        *) cp -L "$lib" gpu-bundle/deps/ ;;
    esac
done
git rev-parse --short HEAD > gpu-bundle/COMMIT
echo "$ARCH" > gpu-bundle/ARCH
pwd > gpu-bundle/SRCDIR # the tests' fixture paths are compiled in relative to this directory
mkdir -p build-gpu-carry
tar -cJf build-gpu-carry/bundle.tar.xz gpu-bundle
du -sh gpu-bundle build-gpu-carry/bundle.tar.xz
echo "gpu_prepare: gpu-bundle/ ready for sm_$ARCH; carry build-gpu-carry (bundle.tar.xz) to a lent machine"
