"""Faces: where they are in an image, and the few points the generators need.

Detection uses the face detector and 478-point face mesh that mediapipe 0.10.21
ships (full-range detector, so small faces in group photos are found too). A
`FaceGeometry` is what the rest of the project sees: the box, the eyes, the
mouth and the chin, in pixels. It is built from mesh landmarks when the mesh
finds the face, else from the detector's keypoints, else from proportions of
a box given by hand, so a drawn character with a hand-placed box still works.
"""

from __future__ import annotations

import os
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from talkstudio.errors import InputError, Problem

# mesh landmark indices (canonical mediapipe face mesh topology)
MOUTH_LEFT, MOUTH_RIGHT, LIP_TOP, LIP_BOTTOM = 61, 291, 13, 14
OUTER_LIP_TOP, OUTER_LIP_BOTTOM = 0, 17
EYES = ((33, 133, 159, 145), (362, 263, 386, 374))  # (outer/inner corner, corner, top, bottom) per eye
CHIN, NOSE_TIP = 152, 1
# the lips' contours, image-left corner to image-right corner (the inner ones run 78 -> 308)
INNER_LIP_TOP = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
INNER_LIP_BOTTOM = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
OUTER_LIP_TOP_LINE = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
OUTER_LIP_BOTTOM_LINE = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
DETECTION_THRESHOLD = 0.5
CROP_MARGIN = 0.6  # context around a detected box when running the mesh on the crop


@dataclass(frozen=True)
class FaceGeometry:
    box: tuple[float, float, float, float]  # x, y, width, height
    eyes: tuple[tuple[float, float], tuple[float, float]]  # centres, image-left first
    eye_size: tuple[float, float]  # width, height of an open eye
    mouth: tuple[float, float]  # centre of the lip line
    mouth_width: float
    lip_height: float  # closed lips, top of the upper to bottom of the lower
    chin: tuple[float, float]
    nose: tuple[float, float]
    source: str  # "mesh", "detector" or "box"
    # the lip contours from the mesh (inner top, inner bottom, outer top, outer bottom), each a run of
    # points from one corner to the other; None when the face was not meshed
    lips: tuple[tuple[tuple[float, float], ...], ...] | None = None

    @property
    def centre(self) -> tuple[float, float]:
        x, y, w, h = self.box
        return x + w / 2, y + h / 2

    def transformed(self, scale: float, dx: float, dy: float) -> FaceGeometry:
        """The same face after the image is scaled by `scale` and shifted by (dx, dy)."""

        def p(point):
            return point[0] * scale + dx, point[1] * scale + dy

        x, y, w, h = self.box
        lips = tuple(tuple(p(point) for point in line) for line in self.lips) if self.lips else None
        return FaceGeometry((x * scale + dx, y * scale + dy, w * scale, h * scale), (p(self.eyes[0]), p(self.eyes[1])),
                            (self.eye_size[0] * scale, self.eye_size[1] * scale), p(self.mouth),
                            self.mouth_width * scale, self.lip_height * scale, p(self.chin), p(self.nose), self.source,
                            lips)

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def from_landmarks(points: np.ndarray) -> FaceGeometry:
    """Geometry from 478 (or 468) mesh landmarks in pixels."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    eyes = []
    sizes = []
    for a, b, top, bottom in EYES:
        eyes.append(tuple((points[a] + points[b]) / 2))
        sizes.append((np.linalg.norm(points[a] - points[b]), np.linalg.norm(points[top] - points[bottom])))
    eyes.sort()
    width, height = np.mean(sizes, axis=0)
    mouth = (points[LIP_TOP] + points[LIP_BOTTOM]) / 2
    return FaceGeometry(
        box=(float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])),
        eyes=(tuple(map(float, eyes[0])), tuple(map(float, eyes[1]))),
        eye_size=(float(width), float(max(height, width * 0.3))),
        mouth=(float(mouth[0]), float(mouth[1])),
        mouth_width=float(np.linalg.norm(points[MOUTH_LEFT] - points[MOUTH_RIGHT])),
        lip_height=float(np.linalg.norm(points[OUTER_LIP_TOP] - points[OUTER_LIP_BOTTOM])),
        chin=tuple(map(float, points[CHIN])),
        nose=tuple(map(float, points[NOSE_TIP])),
        source="mesh",
        lips=tuple(_run(points, line) for line in (INNER_LIP_TOP, INNER_LIP_BOTTOM, OUTER_LIP_TOP_LINE,
                                                   OUTER_LIP_BOTTOM_LINE)),
    )


def _run(points: np.ndarray, indices) -> tuple[tuple[float, float], ...]:
    """Landmarks along a contour, ordered from the image-left end."""
    run = [(float(points[i][0]), float(points[i][1])) for i in indices]
    return tuple(run if run[0][0] <= run[-1][0] else run[::-1])


def from_box(box: tuple[float, float, float, float], source: str = "box") -> FaceGeometry:
    """Geometry from a face box alone, by the proportions of a frontal face."""
    x, y, w, h = map(float, box)
    eye_y = y + 0.40 * h
    return FaceGeometry(
        box=(x, y, w, h),
        eyes=((x + 0.30 * w, eye_y), (x + 0.70 * w, eye_y)),
        eye_size=(0.22 * w, 0.08 * h),
        mouth=(x + 0.5 * w, y + 0.78 * h),
        mouth_width=0.36 * w,
        lip_height=0.08 * h,
        chin=(x + 0.5 * w, y + h),
        nose=(x + 0.5 * w, y + 0.62 * h),
        source=source,
    )


@contextmanager
def quiet_native_logs():
    """Silence what mediapipe's C++ side prints straight to the process's stderr (TFLite and absl
    start-up chatter that no setting turns off); Python errors still arrive as exceptions."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class _Models:
    """mediapipe's detector and mesh, loaded once per process (they are not thread-safe)."""

    def __init__(self):
        with quiet_native_logs():
            import mediapipe as mp

            self.lock = threading.Lock()
            self.detector = mp.solutions.face_detection.FaceDetection(model_selection=1,
                                                                      min_detection_confidence=DETECTION_THRESHOLD)
            self.mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1,
                                                        refine_landmarks=True, min_detection_confidence=0.3)
            self.segmentation = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0)


_models: _Models | None = None


def _get_models() -> _Models:
    global _models
    if _models is None:
        _models = _Models()
    return _models


def _models_or_none() -> _Models | None:
    try:
        return _get_models()
    except ImportError:
        return None


FACES_VERSION = "mediapipe-0.10.21-2"  # 2: lip contours
INSIGHTFACE_MODEL = "buffalo_l"


class InsightFace:
    """InsightFace's detector (SCRFD + 5 keypoints) from a local model root, as AnyTalker binds faces.

    The models are downloaded by users (non-commercial licence): ROOT/models/buffalo_l/det_10g.onnx.
    """

    def __init__(self, root: Path, det_thresh: float = 0.5):
        self.root, self.det_thresh = Path(root), det_thresh
        folder = self.root / "models" / INSIGHTFACE_MODEL
        if not list(folder.glob("det_*.onnx")):
            raise InputError(Problem(
                f"no InsightFace detector in {folder} (expected det_10g.onnx of the {INSIGHTFACE_MODEL} pack)",
                hint=f"download {INSIGHTFACE_MODEL}.zip from the InsightFace model zoo and unpack it into {folder}, "
                     "or remove video.faces.insightface_root to use the bundled mediapipe detector"))
        try:
            from insightface.app import FaceAnalysis
        except ImportError:
            raise InputError(Problem("video.faces.insightface_root is set but insightface is not installed",
                                     hint="pip install 'talkstudio[insightface]'")) from None
        self._app = FaceAnalysis(name=INSIGHTFACE_MODEL, root=str(self.root), allowed_modules=["detection"],
                                 providers=["CPUExecutionProvider"])
        self._app.prepare(ctx_id=-1, det_thresh=det_thresh, det_size=(640, 640))

    @property
    def identity(self) -> dict:
        from talkstudio.cache import file_digest

        return {"insightface": file_digest(self.root / "models" / INSIGHTFACE_MODEL), "det_thresh": self.det_thresh}

    def detect(self, image: np.ndarray) -> list[FaceGeometry]:
        faces = []
        for found in self._app.get(np.ascontiguousarray(image[..., ::-1])):
            x0, y0, x1, y1 = map(float, found.bbox)
            # keypoints: left eye, right eye, nose, left and right mouth corners
            eye_a, eye_b, nose, mouth_a, mouth_b = (tuple(map(float, p)) for p in found.kps)
            base = from_box((x0, y0, x1 - x0, y1 - y0), source="insightface")
            mouth = ((mouth_a[0] + mouth_b[0]) / 2, (mouth_a[1] + mouth_b[1]) / 2)
            width = float(np.hypot(mouth_a[0] - mouth_b[0], mouth_a[1] - mouth_b[1]))
            faces.append(FaceGeometry(base.box, tuple(sorted((eye_a, eye_b))), base.eye_size, mouth, width,
                                      base.lip_height, base.chin, nose, "insightface"))
        return sorted(faces, key=lambda f: f.centre[0])


class FaceCache:
    """Finds faces (mediapipe, or InsightFace when configured) and remembers them by image content,
    so a re-render never runs a detector again."""

    def __init__(self, cache=None, insightface: InsightFace | None = None):
        self.cache = cache
        self.insightface = insightface

    def detect(self, image: np.ndarray) -> list[FaceGeometry]:
        task = self.insightface.identity if self.insightface else {"detect": DETECTION_THRESHOLD}
        finder = self.insightface.detect if self.insightface else detect_faces
        return self.get(image, task, lambda: finder(image))

    def people(self, image: np.ndarray) -> np.ndarray | None:
        """Where people are in the image (uint8, 255 on a person; scaled down for a large image),
        remembered by content; None without mediapipe."""
        if self.cache is None:
            return people_mask(image) if _models_or_none() else None
        import cv2

        from talkstudio.cache import atomic_write, content_key, pixels_digest

        key = content_key({"version": PEOPLE_VERSION, "shape": list(image.shape), "image": pixels_digest(image)})
        stored = self.cache.lookup("people", key, ".png")
        if stored is not None:  # a mask that does not decode is made again
            mask = cv2.imread(str(stored), cv2.IMREAD_GRAYSCALE)
            if mask is not None:
                return mask
        if _models_or_none() is None:
            return None
        mask = people_mask(image)
        _, encoded = cv2.imencode(".png", mask)
        with atomic_write(self.cache.path("people", key, ".png"), sealed=True) as f:
            f.write(encoded.tobytes())
        return mask

    def get(self, image: np.ndarray, task: dict, compute) -> list[FaceGeometry]:
        if self.cache is None:
            return compute()
        import json

        from talkstudio.cache import atomic_write, content_key, pixels_digest

        key = content_key({"version": FACES_VERSION, "task": task, "shape": list(image.shape),
                           "image": pixels_digest(image)})
        stored = self.cache.lookup("faces", key, ".json")
        if stored is not None:
            return [FaceGeometry(**_tuples(d)) for d in json.loads(stored.read_text())]
        faces = compute()
        with atomic_write(self.cache.path("faces", key, ".json"), "w", sealed=True) as f:
            json.dump([face.as_dict() for face in faces], f)
        return faces


def _tuples(d: dict) -> dict:
    def fix(v):
        return tuple(fix(x) for x in v) if isinstance(v, list) else v

    return {k: fix(v) for k, v in d.items()}


PEOPLE_VERSION = "mediapipe-selfie-0-2"  # 2: at most PEOPLE_MASK_SIDE
PEOPLE_MASK_SIDE = 640  # the model reads 256x256: a larger mask only costs memory and time


def people_mask(image: np.ndarray) -> np.ndarray:
    """mediapipe's selfie segmentation: uint8, 255 where a person (head, hair, shoulders) is, at most
    PEOPLE_MASK_SIDE pixels on its longer side (the caller scales it to where it is used)."""
    import cv2

    models = _get_models()
    scale = min(1.0, PEOPLE_MASK_SIDE / max(image.shape[:2]))
    if scale < 1:
        size = (max(round(image.shape[1] * scale), 1), max(round(image.shape[0] * scale), 1))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    with models.lock, quiet_native_logs():
        result = models.segmentation.process(np.ascontiguousarray(image))
    return np.clip(result.segmentation_mask * 255 + 0.5, 0, 255).astype(np.uint8)


def detect_faces(image: np.ndarray) -> list[FaceGeometry]:
    """Every face in an RGB uint8 image, left to right (mediapipe)."""
    models = _models_or_none()
    if models is None:
        raise InputError(Problem("finding faces needs mediapipe 0.10.21, which is not installed (Python 3.13+ "
                                 "has no build of it)",
                                 hint="give every face box by hand (cast: face: / scene: faces:) or use Python 3.12"))
    height, width = image.shape[:2]
    with models.lock, quiet_native_logs():
        result = models.detector.process(np.ascontiguousarray(image))
    faces = []
    for detection in result.detections or []:
        rel = detection.location_data.relative_bounding_box
        box = (rel.xmin * width, rel.ymin * height, rel.width * width, rel.height * height)
        faces.append(face_in_box(image, box, detection))
    return sorted(faces, key=lambda f: f.centre[0])


def face_in_box(image: np.ndarray, box, detection=None, faces_cache: FaceCache | None = None) -> FaceGeometry:
    """Geometry of the face inside `box`: mesh on the crop, else detector keypoints, else proportions."""
    if faces_cache is not None:
        return faces_cache.get(image, {"box": [float(v) for v in box]}, lambda: [face_in_box(image, box)])[0]
    models = _models_or_none()
    if models is None:
        return from_box(box)
    height, width = image.shape[:2]
    x, y, w, h = box
    margin = CROP_MARGIN * max(w, h)
    x0, y0 = int(max(x - margin, 0)), int(max(y - margin, 0))
    x1, y1 = int(min(x + w + margin, width)), int(min(y + h + margin, height))
    crop = np.ascontiguousarray(image[y0:y1, x0:x1])
    if crop.size:
        with models.lock, quiet_native_logs():
            mesh = models.mesh.process(crop)
        if mesh.multi_face_landmarks:
            points = np.array([(p.x * (x1 - x0) + x0, p.y * (y1 - y0) + y0)
                               for p in mesh.multi_face_landmarks[0].landmark], np.float64)
            geometry = from_landmarks(points)
            cx, cy = geometry.centre
            if x - margin <= cx <= x + w + margin and y - margin <= cy <= y + h + margin:
                return geometry
    if detection is not None:
        return _from_keypoints(box, detection, width, height)
    return from_box(box)


def _from_keypoints(box, detection, width: int, height: int) -> FaceGeometry:
    """Detector keypoints: right eye, left eye, nose tip, mouth centre, right ear, left ear."""
    k = [(p.x * width, p.y * height) for p in detection.location_data.relative_keypoints]
    base = from_box(box, source="detector")
    eyes = tuple(sorted(k[:2]))
    return FaceGeometry(base.box, eyes, base.eye_size, k[3], base.mouth_width, base.lip_height, base.chin, k[2],
                        "detector")
