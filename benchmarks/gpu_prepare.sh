#!/bin/bash
# gpu_prepare.sh — on a development machine (this project's libraries installed, nvcc, no
# GPU needed): builds build-gpu/ for a GPU machine that cannot install etx's libraries
# (no internet), and copies the shared libraries the binaries need into build-gpu/deps/,
# so benchmarks/gpu_check.sh can run there. Carry build-gpu/ with the working tree.
#
#     benchmarks/gpu_prepare.sh [ARCH]      # ARCH: CUDA architecture, default 90 (H100/H200)
set -eu
cd "$(dirname "$0")/.."
ARCH=${1:-90}
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DETX_NATIVE=OFF -DCMAKE_CUDA_ARCHITECTURES="$ARCH" > /dev/null
cmake --build build-gpu -j"$(nproc)" --target etx bench_gpu_decode test_selftest_gpu test_layer_kernels_gpu \
    test_sampling_kernels_gpu test_cuda_backend_gpu
mkdir -p build-gpu/deps
# the libraries outside the CUDA toolkit and glibc that the binaries load
for lib in $(ldd build-gpu/etx build-gpu/test_*_gpu build-gpu/bench_gpu_decode | awk '/=> \// {print $3}' | sort -u); do
    case "$lib" in
        */libc.so*|*/libm.so*|*/libpthread*|*/libdl*|*/librt*|*/ld-linux*|*/libcuda.so*|*/libcudart*|*/libcublas*) ;;
        *) cp -L "$lib" build-gpu/deps/ ;;
    esac
done
git rev-parse --short HEAD > build-gpu/COMMIT
echo "$ARCH" > build-gpu/ARCH
du -sh build-gpu/deps build-gpu/etx
echo "gpu_prepare: build-gpu/ ready for sm_$ARCH (carry it: run(..., carry=[\"build-gpu\"]))"
