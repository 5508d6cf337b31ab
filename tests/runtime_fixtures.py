"""Bundles and an HTTP client for the runtime and serve tests.

Bundles are built once per test process (cached), from tiny scikit-learn models trained in code:
a 16-feature MLP (fp32 + int8, unsigned) and a signed tabular pipeline with a string column and a
column name containing a space. Tests that modify a bundle work on a copy (`copy_bundle`).
"""

from __future__ import annotations

import atexit
import functools
import http.client
import json
import shutil
import socket
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

N_FEATURES = 16


@dataclass(frozen=True)
class Bundles:
    root: Path
    mlp: Path  # input "input" float32 [?, 16]; outputs label, probabilities; fp32 + int8; unsigned
    tabular: Path  # inputs age, income_level (feature "income level"), city (string); signed
    public_key: Path
    other_public_key: Path  # a key that did not sign anything


def _train_mlp(root: Path) -> tuple[Path, Path]:
    import joblib
    from sklearn.neural_network import MLPClassifier

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, N_FEATURES)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = MLPClassifier((32,), max_iter=200, random_state=0).fit(X, y)
    joblib.dump(model, root / "mlp.joblib")
    np.savez(root / "mlp_calibration.npz", input=X, label=y)
    return root / "mlp.joblib", root / "mlp_calibration.npz"


def _train_tabular(root: Path) -> tuple[Path, Path]:
    import joblib
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(1)
    n = 200
    df = pd.DataFrame({"age": rng.normal(40, 10, n), "income level": rng.normal(5, 2, n),
                       "city": rng.choice(["paris", "oslo", "rome"], n)})
    y = ((df["income level"] > 5) ^ (df["city"] == "oslo")).astype(int)
    pre = ColumnTransformer([
        ("num", Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler())]), ["age", "income level"]),
        ("cat", OneHotEncoder(handle_unknown="ignore"), ["city"]),
    ])
    pipe = Pipeline([("pre", pre), ("clf", LogisticRegression())]).fit(df, y)
    joblib.dump(pipe, root / "tabular.joblib")
    df.assign(label=y).to_csv(root / "tabular.csv", index=False)
    return root / "tabular.joblib", root / "tabular.csv"


@functools.cache
def bundles() -> Bundles:
    from edgeml.convert.options import ConvertOptions, Precision
    from edgeml.convert.pipeline import convert
    from edgeml.signing import generate_keypair

    root = Path(tempfile.mkdtemp(prefix="edgeml-runtime-tests-"))
    atexit.register(shutil.rmtree, root, True)
    private, public = generate_keypair(root / "keys")
    _, other_public = generate_keypair(root / "other-keys")
    mlp_src, mlp_cal = _train_mlp(root)
    tab_src, tab_csv = _train_tabular(root)
    mlp = convert(ConvertOptions(source=str(mlp_src), out=root / "mlp-1.0", name="mlp", version="1.0",
                                 precisions=[Precision.FP32, Precision.INT8], calibration=mlp_cal, latency_runs=5)).bundle
    tab = convert(ConvertOptions(source=str(tab_src), out=root / "tabular-2", name="tabular", version="2",
                                 calibration=tab_csv, sign_key=private, latency_runs=5)).bundle
    return Bundles(root, mlp, tab, public, other_public)


def copy_bundle(src: Path, dest_dir: Path, name: str | None = None) -> Path:
    return Path(shutil.copytree(src, dest_dir / (name or src.name)))


def edit_manifest(bundle: Path, edit) -> None:
    """Change manifest.json in place (the signature, if any, no longer matches)."""
    path = bundle / "manifest.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data, indent=2))


def samples(bundle: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    with np.load(bundle / "samples.npz") as data:
        inputs = {k[len("input/"):]: data[k] for k in data.files if k.startswith("input/")}
        outputs = {k[len("output/"):]: data[k] for k in data.files if k.startswith("output/")}
    return inputs, outputs


class Client:
    """A keep-alive HTTP client returning (status, parsed JSON or text); TCP or Unix socket."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url
        self.timeout = timeout
        self.conn = self._connect()

    def _connect(self) -> http.client.HTTPConnection:
        if self.url.startswith("unix:"):
            return _UnixConnection(self.url[len("unix:"):], self.timeout)
        host, port = self.url[len("http://"):].rsplit(":", 1)
        return http.client.HTTPConnection(host, int(port), timeout=self.timeout)

    def request(self, method: str, path: str, body: Any = None, raw: bytes | None = None) -> tuple[int, Any, dict]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        headers = {"Content-Type": "application/json"} if data is not None else {}
        try:
            self.conn.request(method, path, body=data, headers=headers)
            response = self.conn.getresponse()
        except (ConnectionError, http.client.RemoteDisconnected):
            self.conn.close()
            self.conn = self._connect()
            self.conn.request(method, path, body=data, headers=headers)
            response = self.conn.getresponse()
        payload = response.read()
        if response.getheader("Connection", "").lower() == "close":
            self.conn.close()
            self.conn = self._connect()
        ctype = response.getheader("Content-Type", "")
        parsed = json.loads(payload) if ctype.startswith("application/json") and payload else payload.decode()
        return response.status, parsed, dict(response.getheaders())

    def get(self, path: str) -> tuple[int, Any]:
        status, body, _ = self.request("GET", path)
        return status, body

    def post(self, path: str, body: Any = None, raw: bytes | None = None) -> tuple[int, Any]:
        status, body, _ = self.request("POST", path, body, raw)
        return status, body

    def close(self) -> None:
        self.conn.close()


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.socket_path)
        self.sock = sock


def infer_body(feeds: dict[str, np.ndarray], outputs: list[str] | None = None, request_id: str | None = None) -> dict:
    """An Open Inference Protocol request for numpy feeds."""
    from edgeml.dtypes import from_numpy

    body: dict[str, Any] = {"inputs": [
        {"name": k, "shape": list(v.shape), "datatype": from_numpy(v.dtype).oip, "data": v.reshape(-1).tolist()}
        for k, v in feeds.items()
    ]}
    if outputs is not None:
        body["outputs"] = [{"name": n} for n in outputs]
    if request_id is not None:
        body["id"] = request_id
    return body
