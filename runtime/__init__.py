"""edgeml.runtime: load a bundle on a device and predict with it.

    >>> from edgeml.runtime import load
    >>> model = load("mlp-1.0", verify_key="edgeml.pub")
    >>> model.predict(x)["probabilities"]

Importing this package loads numpy and edgeml's core only; an inference engine is imported when a
model that needs it is loaded.
"""

from __future__ import annotations

from .model import InferenceError, Model, ModelInfo, load

__all__ = ["load", "Model", "ModelInfo", "InferenceError"]
