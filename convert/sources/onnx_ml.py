"""ONNX files holding an ai.onnx.ml classifier (skl2onnx, onnxmltools: trees, SVMs, linear models).

Their outputs are a label tensor and class scores, often wrapped in a ZipMap (a sequence of maps, which
no edge runtime hands back as a tensor and whose element type is not a tensor dtype). `classifier_view`
drops a ZipMap that ends the graph (its input tensor takes the output's name) and reads the task from
the operator itself: classification, with the label and score outputs named.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..options import Task

ML = "ai.onnx.ml"
CLASSIFIER_OPS = frozenset({"TreeEnsembleClassifier", "SVMClassifier", "LinearClassifier"})


@dataclass(frozen=True)
class MlClassifier:
    label_output: str
    score_output: str
    rewritten: bool  # a ZipMap was removed: run the reference on the rewritten graph
    task: Task = Task.CLASSIFICATION


def classifier_view(model: Any) -> tuple[Any, MlClassifier | None]:
    outputs = {o.name for o in model.graph.output}
    rewritten = False
    for node in list(model.graph.node):
        if node.op_type == "ZipMap" and node.domain == ML and node.output[0] in outputs:
            rewritten = True
            _drop_zipmap(model, node)
    for node in model.graph.node:
        if node.op_type in CLASSIFIER_OPS and node.domain == ML and len(node.output) == 2:
            label, scores = (_follow(model, name) for name in node.output)
            if label in outputs and scores in outputs:
                return model, MlClassifier(label, scores, rewritten)
    return model, (MlClassifier("", "", True, Task.OTHER) if rewritten else None)


def _follow(model: Any, name: str) -> str:
    """Through the Identity/Cast nodes converters put between an operator and the graph output."""
    for _ in range(8):
        nxt = [n for n in model.graph.node if name in n.input]
        if len(nxt) != 1 or nxt[0].op_type not in ("Identity", "Cast"):
            return name
        name = nxt[0].output[0]
    return name


def _drop_zipmap(model: Any, zipmap: Any) -> None:
    import onnx

    name, inner = zipmap.output[0], zipmap.input[0]
    model.graph.node.remove(zipmap)
    for node in model.graph.node:
        node.output[:] = [name if o == inner else o for o in node.output]
        node.input[:] = [name if i == inner else i for i in node.input]
    for vi in model.graph.output:
        if vi.name == name:
            vi.type.CopyFrom(onnx.helper.make_tensor_type_proto(onnx.TensorProto.FLOAT, [None, None]))


def session_runner(model: Any):
    """ONNX Runtime on an in-memory graph, returning {output name: array}."""
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]

    def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(names, session.run(names, feeds)))

    return run
