"""edgeml.convert: sources to ONNX, per-format exporters and quantizers, validation, signed bundles."""

import os as _os

# TensorFlow's C++ start-up chatter (oneDNN notes, CUDA stubs) is noise for a converter; the user's
# own setting wins. Set before any exporter imports tensorflow.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

