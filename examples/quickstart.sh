#!/usr/bin/env bash
# Train two small models, convert them into signed bundles at fp32/fp16/int8, verify them, and show
# that a changed byte is caught. Everything is written under ${1:-./edgeml-quickstart}.
set -euo pipefail
DIR="${1:-edgeml-quickstart}"
rm -rf "$DIR" && mkdir -p "$DIR"
python "$(dirname "$0")/make_models.py" "$DIR"
edgeml keys generate --out "$DIR/keys"
edgeml convert "$DIR/digits.pt2" --name digits --version 1.0.0 --to onnx --precision fp32,fp16,int8 \
    --calibration "$DIR/digits_calibration.npz" --validation "$DIR/digits_validation.npz" \
    --sign-key "$DIR/keys/edgeml.key" --out "$DIR/bundles/digits-1.0.0"
edgeml convert "$DIR/customers.joblib" --name customers --version 1.0.0 --precision fp32,fp16,int8 \
    --calibration "$DIR/customers.csv" --sign-key "$DIR/keys/edgeml.key" --out "$DIR/bundles/customers-1.0.0"
edgeml inspect "$DIR/bundles/digits-1.0.0" --verify-key "$DIR/keys/edgeml.pub"
edgeml inspect "$DIR/bundles/customers-1.0.0" --verify-key "$DIR/keys/edgeml.pub"
echo "--- changing one byte of an artifact; inspect must refuse it:"
cp -r "$DIR/bundles/digits-1.0.0" "$DIR/tampered"
python - "$DIR/tampered/artifacts/model.int8.onnx" <<'PY'
import sys; p = sys.argv[1]; b = bytearray(open(p, "rb").read()); b[len(b) // 2] ^= 1; open(p, "wb").write(b)
PY
if edgeml inspect "$DIR/tampered" --verify-key "$DIR/keys/edgeml.pub"; then echo "tampering NOT detected"; exit 1; fi
echo "quickstart done: bundles in $DIR/bundles"
