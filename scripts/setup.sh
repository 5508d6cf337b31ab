#!/usr/bin/env bash
# One setup for developers, the README and CI: system packages, the CPU build of PyTorch, then edgeml[all,test].
# Installs into the active Python environment (activate a virtualenv first if you want one).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
export PIP_ROOT_USER_ACTION=ignore

apt_packages=(mosquitto mosquitto-clients chromium chromium-driver postgresql)
missing=()
for p in "${apt_packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# The broker is started by the tests on a free port, never as a system service.
systemctl disable --now mosquitto >/dev/null 2>&1 || true
systemctl disable --now postgresql >/dev/null 2>&1 || true

# PyTorch first, pinned to the CPU build: an unpinned torch resolves to a multi-GB CUDA build.
# Elsewhere, take torch from PyTorch's CPU-only wheel index first (README: "PyTorch").
quiet_pip() { "$PY" -m pip install -q "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
quiet_pip "torch==${EDGEML_TORCH_VERSION:-2.13.0}"
quiet_pip -e ".[all,test]"
# The PyTorch -> LiteRT converter (TFLite for PyTorch transformers). Installed without its declared
# dependencies: resolving them would downgrade pydantic/typing_extensions/anyio under the fleet stack;
# these exact versions work together with the rest of .[all] (tests/test_convert_tflite_transformers.py).
quiet_pip --no-deps litert-torch==0.10.0 litert-converter==0.5.0 ai-edge-quantizer==0.10.0 torchao==0.18.0 \
    xdsl==0.28.0 jax==0.10.2 jaxlib==0.10.2 immutabledict==4.2.1 ordered-set==4.1.0 lark==1.3.1 multipledispatch==1.0.0
"$PY" -c "import edgeml.convert, edgeml.runtime" || { echo "edgeml did not install"; exit 1; }
echo "edgeml set up: $("$PY" -m pip show edgeml 2>/dev/null | grep ^Version)"
