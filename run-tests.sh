#!/usr/bin/env bash
# Runs the whole ServeSharp test suite from a fresh clone: installs the Debian packages the tests use
# (PyTorch/torchvision/ONNX for reference outputs and test models, scikit-image photographs, curl, grpcio with protoc and
# gRPC's Python plugin for the Python gRPC client test, openssl for the TLS certificates of the HTTPS and gRPC TLS tests,
# headless Chromium for the playground page's tests, a JDK to read config snapshots with java.util.Properties as
# TorchServe does),
# builds everything, and runs every test in two stages: the main suite, then the container stage (podman, runc and
# mmdebstrap installed as needed: builds the image offline and runs it as KServe would; a few minutes the first time,
# as it makes the Debian root filesystem). SERVESHARP_SKIP_CONTAINER_STAGE=1 leaves the second stage out (CI runs it).
# Exit code is the tests' exit code.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

# Debian's python3-grpc-tools bundles protoc 3.5, too old for proto3 `optional` (TorchServe's inference.proto has it):
# the test generates the Python stubs with Debian's protoc (protobuf-compiler) and grpc_python_plugin instead.
debian_packages=(python3-torch python3-torchvision python3-onnx python3-skimage python3-pil python3-scipy curl
    python3-grpcio protobuf-compiler protobuf-compiler-grpc openssl chromium openjdk-17-jdk-headless)
if ! /usr/bin/python3 -c "import torch, torchvision, onnx, skimage, PIL, scipy, grpc" 2>/dev/null \
    || ! command -v curl >/dev/null || ! command -v openssl >/dev/null || ! command -v protoc >/dev/null || ! [ -x /usr/bin/grpc_python_plugin ] \
    || ! [ -x /usr/bin/chromium ] || ! command -v javac >/dev/null; then
    echo "run-tests: installing Debian packages: ${debian_packages[*]}"
    sudo_cmd=""
    [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${debian_packages[@]}" >/dev/null
fi

dotnet build ServeSharp.sln -c Release --nologo -v quiet "-clp:ErrorsOnly;NoSummary"

log=$(mktemp)
set +e
dotnet test ServeSharp.sln -c Release --no-build --nologo --filter "FullyQualifiedName!~ServeSharp.Tests.Deploy.ContainerTests" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e

# The container stage: the image built offline and run with KServe's arguments (tests/ServeSharp.Tests/Deploy/ContainerTests.cs).
if [ "${SERVESHARP_SKIP_CONTAINER_STAGE:-}" != 1 ]; then
    echo "run-tests: container stage"
    container_packages=()
    command -v podman >/dev/null || container_packages+=(podman)
    [ -x /usr/sbin/runc ] || container_packages+=(runc)
    command -v mmdebstrap >/dev/null || container_packages+=(mmdebstrap)
    if [ "${#container_packages[@]}" -gt 0 ]; then
        echo "run-tests: installing Debian packages: ${container_packages[*]}"
        sudo_cmd=""
        [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
        $sudo_cmd apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${container_packages[@]}" >/dev/null
    fi
    rm -f .build/container/measurements.txt
    set +e
    SERVESHARP_CONTAINER_TESTS=1 dotnet test ServeSharp.sln -c Release --no-build --nologo \
        --filter "FullyQualifiedName~ServeSharp.Tests.Deploy.ContainerTests" 2>&1 | tee -a "$log"
    container_status=${PIPESTATUS[0]}
    set -e
    [ -f .build/container/measurements.txt ] && sed 's/^/run-tests: container: /' .build/container/measurements.txt
    [ "$container_status" -ne 0 ] && status=$container_status
fi

# A plain closing line: "N passed, N failed, N skipped" summed over the test assemblies (skipped tests say why above:
# the GPU tests on machines without one).
awk '/(Passed|Failed)! +- +Failed: +[0-9]+, +Passed: +[0-9]+/ {
        gsub(",", ""); for (i = 1; i <= NF; i++) { if ($i == "Failed:") f += $(i+1); if ($i == "Passed:") p += $(i+1); if ($i == "Skipped:") s += $(i+1) }
     } END { printf "%d passed, %d failed, %d skipped\n", p, f, s }' "$log"
rm -f "$log"
exit "$status"
