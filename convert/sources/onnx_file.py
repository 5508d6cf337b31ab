"""ONNX files as sources: the graph is the model; the reference is ONNX Runtime on the original file."""

from __future__ import annotations

from pathlib import Path

from edgeml.errors import SourceError
from edgeml.hashing import sha256_file

from ..onnx_utils import onnx_module, schema_from_onnx
from ..options import ConvertOptions, Task
from ..text import name_dims
from .base import SourceModel
from .onnx_ml import classifier_view, session_runner
from .tasks import guess_task


class OnnxFileLoader:
    name = "onnx"
    description = "ONNX model files (.onnx)"

    def matches(self, source: str) -> bool:
        return source.lower().endswith(".onnx")

    def load(self, source: str, options: ConvertOptions) -> SourceModel:
        path = Path(source)
        if not path.is_file():
            raise SourceError(f"source {path} not found")
        onnx = onnx_module()
        try:
            model = onnx.load_model(str(path))
            onnx.checker.check_model(model)
        except Exception as exc:  # onnx raises DecodeError/ValidationError/... for corrupt files
            raise SourceError(f"{path} is not a valid ONNX model: {str(exc).splitlines()[0][:200]}") from None
        from edgeml.runtime.backends import BackendOptions, get_backend

        model, ml = classifier_view(model)  # ai.onnx.ml classifiers: ZipMap -> tensor, task from the operator
        run = session_runner(model) if ml and ml.rewritten else get_backend("onnxruntime").load(path, BackendOptions()).run
        schema = name_dims(schema_from_onnx(model), model)  # dim_params -> named dynamic axes (convert/text.py)
        classifier = ml if ml and ml.task == Task.CLASSIFICATION else None
        task, score_output = (ml.task, ml.score_output) if classifier and options.task is None else guess_task(schema, options.task)
        return SourceModel(
            kind=self.name, framework="onnx", framework_version=f"opset {model.opset_import[0].version}",
            path=path, sha256=sha256_file(path), onnx_model=model, schema=schema, task=task,
            reference=run, labels=options.labels, score_output=score_output, label_output=classifier.label_output if classifier else None,
        )


LOADER = OnnxFileLoader()
