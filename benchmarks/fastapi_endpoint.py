"""The baseline for `serve_vs_fastapi.py`: the FastAPI + uvicorn + onnxruntime endpoint users write by hand.

Same request and response bodies as `edgeml serve` (Open Inference Protocol JSON), pydantic models
for the request, one onnxruntime session, a plain `def` handler (FastAPI runs it in its thread pool,
so the event loop is not blocked by inference). Access log off, as `edgeml serve` has none.

    python benchmarks/fastapi_endpoint.py MODEL.onnx --name mlp [--port 8000] [--threads 1]
"""

from __future__ import annotations

import argparse
import socket
import sys
from typing import Any

import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel

DATATYPES = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32}
OIP_NAMES = {np.dtype(np.float32): "FP32", np.dtype(np.float64): "FP64", np.dtype(np.int64): "INT64",
             np.dtype(np.int32): "INT32"}


class InputTensor(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[Any]


class RequestedOutput(BaseModel):
    name: str


class InferRequest(BaseModel):
    id: str | None = None
    inputs: list[InputTensor]
    outputs: list[RequestedOutput] | None = None


def make_app(model_path: str, name: str, threads: int | None) -> FastAPI:
    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    session = ort.InferenceSession(model_path, so, providers=["CPUExecutionProvider"])
    output_names = [o.name for o in session.get_outputs()]
    app = FastAPI()

    @app.get("/v2/health/ready")
    def ready() -> dict:
        return {"ready": True}

    @app.post(f"/v2/models/{name}/infer")
    def infer(request: InferRequest) -> dict:
        try:
            feeds = {t.name: np.asarray(t.data, dtype=DATATYPES[t.datatype]).reshape(t.shape) for t in request.inputs}
            values = session.run(output_names, feeds)
        except Exception as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from None
        wanted = [o.name for o in request.outputs] if request.outputs else output_names
        outputs = dict(zip(output_names, values))
        response: dict[str, Any] = {"model_name": name, "model_version": "1"}
        if request.id is not None:
            response["id"] = request.id
        response["outputs"] = [{"name": n, "shape": list(outputs[n].shape), "datatype": OIP_NAMES[outputs[n].dtype],
                                "data": outputs[n].reshape(-1).tolist()} for n in wanted]
        return response

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--name", default="mlp")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 = any free port (the URL is printed on stderr)")
    parser.add_argument("--threads", type=int)
    args = parser.parse_args()
    app = make_app(args.model, args.name, args.threads)
    # As uvicorn binds it itself (proto set, so asyncio turns on TCP_NODELAY for each connection).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    print(f"fastapi endpoint at http://{args.host}:{sock.getsockname()[1]}", file=sys.stderr, flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
