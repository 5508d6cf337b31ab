"""Precision transforms of ONNX graphs, each delegating to the ecosystem's own tool."""
