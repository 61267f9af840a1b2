"""Shared by tests/test_bindyouravatar_identity.py and the script that made its reference fixtures (run
outside the project against the original's code): deterministic stand-in weights, tiny ONNX face
recognisers and synthetic face pictures."""

from __future__ import annotations

import numpy as np


def seeded_state(state: dict, seed: int = 0) -> dict:
    """Stand-in weights for a conv/BatchNorm network, drawn in sorted key order from one generator, so two
    networks with the same names and shapes (ours and facexlib's BiSeNet) get the same tensors."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    out = {}
    for key in sorted(state):
        shape = state[key].shape
        if key.endswith("num_batches_tracked"):
            out[key] = torch.zeros((), dtype=torch.long)
        elif key.endswith("running_var"):
            out[key] = 0.5 + torch.rand(shape, generator=generator)
        elif key.endswith(("running_mean", "bias")):
            out[key] = 0.1 * torch.randn(shape, generator=generator)
        elif len(shape) == 1:  # BatchNorm scale
            out[key] = 0.5 + torch.rand(shape, generator=generator)
        else:
            fan_in = int(np.prod(shape[1:]))
            out[key] = torch.randn(shape, generator=generator) * (2.0 / fan_in) ** 0.5
    return out


def tiny_recogniser(mxnet_names: bool = False, seed: int = 0, features: int = 16) -> bytes:
    """An ONNX model shaped like glintr100 at its input ([None, 3, 112, 112] -> [None, features]): a strided
    conv, flatten, a dense layer. With `mxnet_names` it starts with nodes named like an MXNet conversion
    (_minusscalar0, _mulscalar0: x - 127.5, * 1/128), which makes insightface use mean 0 and std 1."""
    import onnx
    from onnx import TensorProto, helper

    rng = np.random.default_rng(seed)
    conv = (rng.standard_normal((4, 3, 8, 8)) / 14).astype(np.float32)
    dense = (rng.standard_normal((4 * 14 * 14, features)) / 28).astype(np.float32)
    bias = rng.standard_normal(features).astype(np.float32)
    initial = [helper.make_tensor("conv_w", TensorProto.FLOAT, conv.shape, conv.ravel()),
               helper.make_tensor("dense_w", TensorProto.FLOAT, dense.shape, dense.ravel()),
               helper.make_tensor("dense_b", TensorProto.FLOAT, bias.shape, bias)]
    nodes, source = [], "data"
    if mxnet_names:
        initial += [helper.make_tensor("mean", TensorProto.FLOAT, [], [127.5]),
                    helper.make_tensor("scale", TensorProto.FLOAT, [], [0.0078125])]
        nodes += [helper.make_node("Sub", ["data", "mean"], ["centred"], name="_minusscalar0"),
                  helper.make_node("Mul", ["centred", "scale"], ["scaled"], name="_mulscalar0")]
        source = "scaled"
    nodes += [helper.make_node("Conv", [source, "conv_w"], ["c"], name="Conv_0", strides=[8, 8]),
              helper.make_node("Flatten", ["c"], ["f"], name="Flatten_1", axis=1),
              helper.make_node("Gemm", ["f", "dense_w", "dense_b"], ["fc1"], name="Gemm_2")]
    graph = helper.make_graph(
        nodes, "tiny_recogniser",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, ["None", 3, 112, 112])],
        [helper.make_tensor_value_info("fc1", TensorProto.FLOAT, ["None", features])], initial)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def synthetic_face(height: int, width: int, landmarks: np.ndarray, seed: int = 0) -> np.ndarray:
    """RGB uint8 [height, width, 3]: a smooth background, a head (hair, skin, neck, shirt) built around the
    five landmarks (eyes, nose, mouth corners), drawn with integer OpenCV primitives so it compresses well."""
    import cv2

    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width]
    image = np.stack([40 + 120 * xs / width, 90 + 60 * ys / height, 160 - 80 * xs / width], -1).astype(np.uint8)
    image = np.ascontiguousarray(image)
    eye_l, eye_r, nose, mouth_l, mouth_r = np.asarray(landmarks, np.float64)
    eye_mid, mouth_mid = (eye_l + eye_r) / 2, (mouth_l + mouth_r) / 2
    span = np.linalg.norm(eye_r - eye_l)
    angle = float(np.degrees(np.arctan2(*(eye_r - eye_l)[::-1])))
    centre = eye_mid + (mouth_mid - eye_mid) * 0.35
    down = (mouth_mid - eye_mid) / max(np.linalg.norm(mouth_mid - eye_mid), 1e-6)

    def pt(p):
        return int(round(p[0])), int(round(p[1]))

    shirt = tuple(int(v) for v in rng.integers(30, 220, 3))
    cv2.ellipse(image, pt(centre + down * span * 3.2), (int(span * 2.6), int(span * 1.6)), angle, 0, 360, shirt, -1)
    cv2.rectangle(image, pt(centre + down * span * 0.8 - [span * 0.45, 0]), pt(centre + down * span * 2.2 + [span * 0.45, 0]),
                  (200, 160, 130), -1)
    cv2.ellipse(image, pt(centre - down * span * 0.35), (int(span * 1.25), int(span * 1.45)), angle, 0, 360, (60, 40, 30), -1)
    cv2.ellipse(image, pt(centre), (int(span * 1.0), int(span * 1.35)), angle, 0, 360, (225, 185, 160), -1)
    for eye in (eye_l, eye_r):
        cv2.ellipse(image, pt(eye), (int(span * 0.22), int(span * 0.1)), angle, 0, 360, (250, 250, 250), -1)
        cv2.circle(image, pt(eye), int(span * 0.08), (70, 50, 40), -1)
    cv2.circle(image, pt(nose), int(span * 0.1), (200, 150, 130), -1)
    cv2.line(image, pt(mouth_l), pt(mouth_r), (160, 60, 70), max(int(span * 0.08), 1))
    return image


def png(image: np.ndarray) -> bytes:
    import cv2

    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(image[..., ::-1]))
    assert ok
    return encoded.tobytes()


def unpng(data) -> np.ndarray:
    import cv2

    return np.ascontiguousarray(cv2.imdecode(np.frombuffer(bytes(data), np.uint8), cv2.IMREAD_COLOR)[..., ::-1])
