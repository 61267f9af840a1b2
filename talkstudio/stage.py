"""The stage: a scene's picture at the video size, and which face belongs to whom.

Either the scene gives a stage image holding all its characters (faces are
found and bound to the on-stage characters left to right, or placed by hand
with `faces:`), or the stage is composed from the cast portraits: one panel
per character (1 to 4) on a background colour or image. A character without
an image gets a portrait drawn for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from talkstudio.cache import content_key, file_digest
from talkstudio.errors import InputError, Problem
from talkstudio.faces import FaceCache, FaceGeometry, InsightFace, face_in_box
from talkstudio.screenplay import COLOUR_PATTERN, Scene, Screenplay

DEFAULT_BACKGROUND = "#1e2230"
PANEL_GAP = 0.025  # of the shorter side, around and between panels


@dataclass
class Stage:
    image: np.ndarray  # (height, width, 3) uint8 RGB at the video size
    faces: dict[str, FaceGeometry]  # on-stage character -> face, in stage pixels
    key: str  # content hash of the picture and the binding

    @property
    def size(self) -> tuple[int, int]:
        return self.image.shape[1], self.image.shape[0]


def on_stage(scene: Scene) -> list[str]:
    """Who is on stage, left to right: the scene's cast, or its speakers in order of first line."""
    if scene.cast:
        return list(scene.cast)
    return list(dict.fromkeys(line.speaker for line in scene.lines))


def build_stage(screenplay: Screenplay, scene: Scene, cache=None) -> Stage:
    """The scene's picture and faces; with a cache, faces found once are never searched for again."""
    size = screenplay.video.size
    characters = on_stage(scene)
    faces_cache = FaceCache(cache, _insightface(screenplay))
    if scene.stage is not None:
        image, faces = _given_stage(screenplay, scene, characters, size, faces_cache)
    else:
        image, faces = _composed_stage(screenplay, scene, characters, size, faces_cache)
    key = content_key({"image": content_key({"pixels": _digest(image)}),
                       "faces": {k: v.as_dict() for k, v in faces.items()}})
    return Stage(image, faces, key)


def _digest(image: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()


def load_image(path: Path) -> np.ndarray:
    """RGB uint8, EXIF orientation applied."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as opened:
            return np.asarray(ImageOps.exif_transpose(opened).convert("RGB")).copy()
    except OSError as e:
        raise InputError(Problem(f"cannot read image: {e}", file=path, hint="save it as PNG or JPEG")) from None


def cover(image: np.ndarray, width: int, height: int, focus: tuple[float, float] | None = None):
    """Scale `image` to cover width x height and crop around `focus`; return it with (scale, dx, dy)."""
    import cv2

    h, w = image.shape[:2]
    scale = max(width / w, height / h)
    scaled = cv2.resize(image, (max(round(w * scale), width), max(round(h * scale), height)),
                        interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    fx, fy = focus if focus else (w / 2, h / 2)
    x0 = int(np.clip(fx * scale - width / 2, 0, scaled.shape[1] - width))
    y0 = int(np.clip(fy * scale - height / 2, 0, scaled.shape[0] - height))
    return scaled[y0:y0 + height, x0:x0 + width].copy(), (scale, -x0, -y0)


_insightface_detectors: dict = {}


def _insightface(screenplay: Screenplay) -> InsightFace | None:
    """The InsightFace detector when the screenplay (or TALKSTUDIO_INSIGHTFACE_ROOT) names a model root."""
    import os

    settings = screenplay.video.faces
    root = settings.insightface_root or os.environ.get("TALKSTUDIO_INSIGHTFACE_ROOT")
    if not root:
        return None
    key = (str(root), settings.det_thresh)
    if key not in _insightface_detectors:
        _insightface_detectors[key] = InsightFace(Path(root), settings.det_thresh)
    return _insightface_detectors[key]


def _given_stage(screenplay: Screenplay, scene: Scene, characters: list[str], size, faces_cache: FaceCache):
    width, height = size
    original = load_image(scene.stage)
    image, (scale, dx, dy) = cover(original, width, height)
    faces: dict[str, FaceGeometry] = {}
    for name, box in scene.faces.items():
        x, y, w, h = box
        faces[name] = face_in_box(image, (x * scale + dx, y * scale + dy, w * scale, h * scale),
                                  faces_cache=faces_cache)
    unplaced = [c for c in characters if c not in faces]
    found = [f for f in faces_cache.detect(image) if not any(_overlaps(f, g) for g in faces.values())]
    if len(found) < len(unplaced):
        raise InputError(Problem(
            f"scene '{scene.id}': found {len(found)} face(s) in the stage image {scene.stage.name} "
            f"but {len(unplaced)} character(s) to place ({', '.join(unplaced)})",
            file=screenplay.file,
            hint=f"give the boxes by hand in the scene, in pixels of the image: faces: {{{unplaced[-1]}: [x, y, width, height]}}"
                 + ("" if scene.cast else ", or list who is on stage with cast: [...]"),
        ))
    # the largest faces are the characters; bind them left to right
    chosen = sorted(sorted(found, key=lambda f: -f.box[2] * f.box[3])[:len(unplaced)], key=lambda f: f.centre[0])
    faces.update(zip(unplaced, chosen))
    return image, faces


def _overlaps(a: FaceGeometry, b: FaceGeometry) -> bool:
    ax, ay, aw, ah = a.box
    bx, by, bw, bh = b.box
    return not (ax + aw < bx or bx + bw < ax or ay + ah < by or by + bh < ay)


def panel_rects(count: int, width: int, height: int) -> list[tuple[int, int, int, int]]:
    """Panels (x, y, w, h) for 1 to 4 characters: a row of up to three, a 2x2 grid for four."""
    gap = round(PANEL_GAP * min(width, height))
    columns, rows = (count, 1) if count <= 3 else (2, 2)
    cell_w = (width - gap * (columns + 1)) // columns
    cell_h = (height - gap * (rows + 1)) // rows
    return [(gap + c * (cell_w + gap), gap + r * (cell_h + gap), cell_w, cell_h)
            for r in range(rows) for c in range(columns)][:count]


def _composed_stage(screenplay: Screenplay, scene: Scene, characters: list[str], size, faces_cache: FaceCache):
    width, height = size
    if not 1 <= len(characters) <= 4:
        raise InputError(Problem(
            f"scene '{scene.id}' puts {len(characters)} characters on stage; a composed stage holds 1 to 4",
            file=screenplay.file,
            hint="list at most four in the scene's cast: [...], or give a stage: image holding everyone"))
    image = _background(scene.background or DEFAULT_BACKGROUND, width, height)
    faces = {}
    for name, (x, y, w, h) in zip(characters, panel_rects(len(characters), width, height)):
        portrait, face = _portrait(screenplay, name, faces_cache)
        panel, (scale, dx, dy) = cover(portrait, w, h, focus=face.centre)
        image[y:y + h, x:x + w] = panel
        faces[name] = face.transformed(scale, dx + x, dy + y)
    return image, faces


def _background(background: str, width: int, height: int) -> np.ndarray:
    if COLOUR_PATTERN.match(background):
        hex_digits = background[1:]
        if len(hex_digits) == 3:
            hex_digits = "".join(c * 2 for c in hex_digits)
        colour = [int(hex_digits[i:i + 2], 16) for i in (0, 2, 4)]
        return np.full((height, width, 3), colour, np.uint8)
    return cover(load_image(Path(background)), width, height)[0]


def _portrait(screenplay: Screenplay, name: str, faces_cache: FaceCache) -> tuple[np.ndarray, FaceGeometry]:
    character = screenplay.cast[name]
    if character.image is None:
        from talkstudio.portraits import FACE_BOX

        image = _drawn_portrait(name)
        return image, face_in_box(image, FACE_BOX, faces_cache=faces_cache)
    image = _load_cached(character.image, file_digest(character.image))
    if character.face is not None:
        return image, face_in_box(image, character.face, faces_cache=faces_cache)
    faces = faces_cache.detect(image)
    if not faces:
        raise InputError(Problem(
            f"no face found in {name}'s image {character.image.name}", file=screenplay.file,
            hint=f"give the face box by hand under cast: {name}: face: [x, y, width, height] (pixels of the image)"))
    return image, max(faces, key=lambda f: f.box[2] * f.box[3])


@lru_cache(maxsize=32)
def _drawn_portrait(name: str) -> np.ndarray:
    from talkstudio.portraits import Look, draw_portrait

    return draw_portrait(Look.from_name(name))


@lru_cache(maxsize=32)
def _load_cached(path: Path, digest: str) -> np.ndarray:
    return load_image(path)
