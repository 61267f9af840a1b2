"""The stage: a scene's picture at the video size, and which face belongs to whom.

Either the scene gives a stage image holding all its characters (faces are
found and bound to the on-stage characters left to right, or placed by hand
with `faces:`), or the stage is composed from the cast portraits: one panel
per character (1 to 4) on a background colour or image. A character without
an image gets a portrait drawn for them.

Composed stages frame people whole: the grid is chosen for the number of
people and the video's aspect, and each portrait is cropped only outside its
head (hair, forehead, chin and neck stay), then fitted into its cell; what
the portrait does not fill shows the scene's background. Each character may
move only inside their own region (their panel), and only where the person
is (a segmentation mask), so backgrounds, borders and gutters stay still.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from talkstudio.cache import content_key, file_digest, pixels_digest
from talkstudio.errors import InputError, Problem
from talkstudio.faces import FaceCache, FaceGeometry, InsightFace, face_in_box
from talkstudio.screenplay import COLOUR_PATTERN, Scene, Screenplay

DEFAULT_BACKGROUND = "#1e2230"
PANEL_GAP = 0.025  # of the shorter side, around and between panels
HEAD_AND_SHOULDERS = 1.0  # width / height of the picture a panel is laid out for (a video-call tile)
# around a face box (in face widths / heights): what a panel must show, and what it shows when it can
SAFE = {"left": 0.3, "right": 0.3, "top": 0.5, "bottom": 0.3}
PREFERRED = {"left": 0.9, "right": 0.9, "top": 0.7, "bottom": 1.0}
SOFT_UPSCALE = 1.3  # portraits enlarged more than this are reported: their pixels do not hold the detail
STAGE_VERSION = 2  # 2: framing keeps heads, regions and people masks


@dataclass
class Stage:
    image: np.ndarray  # (height, width, 3) uint8 RGB at the video size
    faces: dict[str, FaceGeometry]  # on-stage character -> face, in stage pixels
    key: str  # content hash of the picture and the binding
    # where each character may move: (x0, y0, x1, y1), their panel or the whole picture
    regions: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)
    people: np.ndarray | None = None  # (height, width) uint8, 255 where a person is; None if unknown
    warnings: list[str] = field(default_factory=list)

    @property
    def size(self) -> tuple[int, int]:
        return self.image.shape[1], self.image.shape[0]


def on_stage(scene: Scene, screenplay: Screenplay | None = None) -> list[str]:
    """Who is on stage, left to right: the scene's cast, or its speakers in order of first line; never a
    voice-only character, nor one who is only heard off screen in this scene."""
    if scene.cast:
        return list(scene.cast)
    voice_only = {c for c, character in screenplay.cast.items() if character.voice_only} if screenplay else set()
    return list(dict.fromkeys(line.speaker for line in scene.lines
                              if not line.offscreen and line.speaker not in voice_only))


def build_stage(screenplay: Screenplay, scene: Scene, cache=None) -> Stage:
    """The scene's picture and faces; with a cache, faces found once are never searched for again."""
    size = screenplay.video.size
    characters = on_stage(scene, screenplay)
    faces_cache = FaceCache(cache, _insightface(screenplay))
    warnings: list[str] = []
    if scene.stage is not None:
        image, faces = _given_stage(screenplay, scene, characters, size, faces_cache)
        regions = {name: (0, 0, size[0], size[1]) for name in faces}
        people = _at_size(faces_cache.people(image), size)
    else:
        image, faces, regions, people = _composed_stage(screenplay, scene, characters, size, faces_cache, warnings)
    key = content_key({"version": STAGE_VERSION, "image": content_key({"pixels": pixels_digest(image)}),
                       "faces": {k: v.as_dict() for k, v in faces.items()},
                       "regions": {k: list(v) for k, v in regions.items()},
                       "people": None if people is None else pixels_digest(people)})
    return Stage(image, faces, key, regions, people, warnings)


def load_image(path: Path) -> np.ndarray:
    """RGB uint8, EXIF orientation applied."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as opened:
            return np.asarray(ImageOps.exif_transpose(opened).convert("RGB")).copy()
    except (OSError, ValueError, Image.DecompressionBombError) as e:
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
        _check_box(box, original, f"scene '{scene.id}' faces: {name}:", scene.stage, screenplay.file)
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


def _check_box(box, image: np.ndarray, field: str, image_file: Path, file: Path) -> None:
    """A face box given by hand must lie inside its image (a few pixels over the edge are forgiven)."""
    x, y, w, h = box
    height, width = image.shape[:2]
    slack = 0.05 * max(w, h)
    if w <= 0 or h <= 0 or x < -slack or y < -slack or x + w > width + slack or y + h > height + slack:
        raise InputError(Problem(f"{field} [{x}, {y}, {w}, {h}] is not inside {image_file.name}, which is "
                                 f"{width}x{height} pixels", file=file,
                                 hint="give [x, y, width, height] in pixels of that image"))


def _overlaps(a: FaceGeometry, b: FaceGeometry) -> bool:
    ax, ay, aw, ah = a.box
    bx, by, bw, bh = b.box
    return not (ax + aw < bx or bx + bw < ax or ay + ah < by or by + bh < ay)


def panel_rects(count: int, width: int, height: int) -> list[tuple[int, int, int, int]]:
    """Cells (x, y, w, h) for 1 to 4 people: the grid that shows head-and-shoulders pictures largest
    in this frame (a row on a wide frame, a column on a tall one, 2x2 when that is larger); a short
    last row is centred."""
    gap = round(PANEL_GAP * min(width, height))

    def fitted_area(columns: int, rows: int) -> float:
        cell_w, cell_h = (width - gap * (columns + 1)) / columns, (height - gap * (rows + 1)) / rows
        return min(cell_w, cell_h * HEAD_AND_SHOULDERS) * min(cell_h, cell_w / HEAD_AND_SHOULDERS)

    grids = [(c, -(-count // c)) for c in range(1, count + 1)]
    columns, rows = max(grids, key=lambda grid: (round(fitted_area(*grid)), -grid[1]))
    cell_w = (width - gap * (columns + 1)) // columns
    cell_h = (height - gap * (rows + 1)) // rows
    cells = []
    for index in range(count):
        row, column = divmod(index, columns)
        in_row = min(columns, count - row * columns)
        indent = (columns - in_row) * (cell_w + gap) // 2
        cells.append((gap + indent + column * (cell_w + gap), gap + row * (cell_h + gap), cell_w, cell_h))
    return cells


def portrait_crop(image_size: tuple[int, int], face: FaceGeometry, cell: tuple[int, int]) -> tuple[int, int, int, int]:
    """The part of a portrait (x0, y0, x1, y1) to show in a cell of `cell` (width, height) pixels.

    It starts from the head and shoulders around the face, grows towards the cell's shape where
    the picture has more to show, and shrinks towards it only down to the head itself (hair,
    chin and neck), never into it, and never below the cell's size (which would enlarge it):
    what still differs from the cell's shape is left to the fit.
    """
    width, height = image_size
    aspect = cell[0] / cell[1]
    x, y, w, h = face.box
    chin = max(face.chin[1], y + h)

    def around(margins):
        return [max(x - margins["left"] * w, 0), max(y - margins["top"] * h, 0),
                min(x + w + margins["right"] * w, width), min(chin + margins["bottom"] * h, height)]

    safe, crop = around(SAFE), around(PREFERRED)
    cx = (safe[0] + safe[2]) / 2
    crop_w, crop_h = crop[2] - crop[0], crop[3] - crop[1]
    if crop_w < crop_h * aspect:  # too tall: show more width, else cut from the bottom, then the top
        crop[0], crop[2] = _span(cx, min(crop_h * aspect, width), 0, width)
        crop_h = crop[3] - crop[1]
        excess = crop_h - max((crop[2] - crop[0]) / aspect, min(cell[1], crop_h))
        if excess > 0:
            below = min(excess, crop[3] - safe[3])
            crop[3] -= below
            crop[1] += min(excess - below, safe[1] - crop[1])
    else:  # too wide: cut the sides towards the head, then show more height (below the face first)
        keep = max(crop_h * aspect, safe[2] - safe[0], min(cell[0], crop_w))
        crop[0], crop[2] = _span(cx, min(keep, crop_w), crop[0], crop[2])
        wanted = min((crop[2] - crop[0]) / aspect, height)
        if wanted > crop_h:
            crop[3] = min(crop[1] + wanted, height)
            crop[1] = max(crop[3] - wanted, 0)
    return tuple(int(round(v)) for v in crop)


def _span(centre: float, length: float, lo: float, hi: float) -> tuple[float, float]:
    """An interval of `length` around `centre`, moved to lie within [lo, hi]."""
    start = min(max(centre - length / 2, lo), hi - length)
    return max(start, lo), min(start + length, hi)


def _composed_stage(screenplay: Screenplay, scene: Scene, characters: list[str], size, faces_cache: FaceCache,
                    warnings: list[str]):
    import cv2

    width, height = size
    if not 1 <= len(characters) <= 4:
        raise InputError(Problem(
            f"scene '{scene.id}' puts {len(characters)} characters on stage; a composed stage holds 1 to 4",
            file=screenplay.file,
            hint="list at most four in the scene's cast: [...], or give a stage: image holding everyone"))
    image = _background(scene.background or DEFAULT_BACKGROUND, width, height)
    people = np.zeros((height, width), np.uint8)
    known = True
    faces, regions = {}, {}
    for name, (cx, cy, cw, ch) in zip(characters, panel_rects(len(characters), width, height)):
        portrait, face = _portrait(screenplay, name, faces_cache)
        x0, y0, x1, y1 = portrait_crop((portrait.shape[1], portrait.shape[0]), face, (cw, ch))
        scale = min(cw / (x1 - x0), ch / (y1 - y0))
        pw, ph = min(round((x1 - x0) * scale), cw), min(round((y1 - y0) * scale), ch)
        px, py = cx + (cw - pw) // 2, cy + (ch - ph) // 2
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
        image[py:py + ph, px:px + pw] = cv2.resize(portrait[y0:y1, x0:x1], (pw, ph), interpolation=interpolation)
        faces[name] = face.transformed(scale, px - x0 * scale, py - y0 * scale)
        regions[name] = (px, py, px + pw, py + ph)
        mask = _at_size(faces_cache.people(portrait), (portrait.shape[1], portrait.shape[0]))
        if mask is None:
            known = False
        else:
            people[py:py + ph, px:px + pw] = cv2.resize(mask[y0:y1, x0:x1], (pw, ph), interpolation=cv2.INTER_LINEAR)
        if scale > SOFT_UPSCALE:
            warnings.append(f"{name}'s portrait is enlarged {scale:.1f}x to fill its panel in scene '{scene.id}' "
                            f"and will look soft: give an image with the head at least {round(face.box[3] * scale)} "
                            f"px tall, or a smaller video size")
    return image, faces, regions, (people if known else None)


def _at_size(mask: np.ndarray | None, size: tuple[int, int]) -> np.ndarray | None:
    """A people mask scaled to `size` (width, height) of the picture it belongs to."""
    import cv2

    if mask is None or (mask.shape[1], mask.shape[0]) == tuple(size):
        return mask
    return cv2.resize(mask, tuple(size), interpolation=cv2.INTER_LINEAR)


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
        _check_box(character.face, image, f"cast: {name}: face:", character.image, screenplay.file)
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
