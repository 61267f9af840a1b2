"""Portraits drawn by code: the project's own cast, and a face for any character without an image.

A portrait is a head-and-shoulders painting with soft shading, drawn so that
an ordinary face detector finds it (eyes with whites and irises, brows, a
shaded nose, lips). The same parameters always give the same pixels.

    python -m talkstudio.portraits casts/     # redraws the shipped cast portraits
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SIZE = 512

SKIN = [(224, 187, 160), (198, 151, 118), (160, 112, 80), (118, 80, 56), (236, 205, 180), (180, 130, 96)]
HAIR = [(40, 30, 25), (90, 60, 35), (20, 18, 18), (150, 110, 60), (120, 120, 120), (110, 45, 25)]
EYES = [(70, 50, 35), (60, 90, 120), (60, 100, 70), (40, 30, 25)]
SHIRTS = [(60, 90, 150), (150, 60, 60), (70, 120, 90), (200, 170, 80), (90, 70, 120), (60, 60, 60)]
BACKDROPS = [(70, 80, 100), (100, 90, 80), (60, 95, 95), (95, 80, 105)]


@dataclass(frozen=True)
class Look:
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    eyes: tuple[int, int, int]
    shirt: tuple[int, int, int]
    backdrop: tuple[int, int, int]
    long_hair: bool
    face_width: float  # relative, around 1.0

    @staticmethod
    def from_name(name: str) -> Look:
        """A stable look for a name: the same cast id always gets the same face."""
        h = hashlib.sha256(name.encode()).digest()
        return Look(SKIN[h[0] % len(SKIN)], HAIR[h[1] % len(HAIR)], EYES[h[2] % len(EYES)],
                    SHIRTS[h[3] % len(SHIRTS)], BACKDROPS[h[4] % len(BACKDROPS)], bool(h[5] % 2),
                    0.92 + (h[6] / 255) * 0.16)


# The face of every portrait, in pixels of the SIZE x SIZE image: [x, y, width, height].
FACE_BOX = (150, 120, 212, 260)


def _shade(color, factor):
    return tuple(int(min(255, max(0, c * factor))) for c in color)


def draw_portrait(look: Look, size: int = SIZE) -> np.ndarray:
    """RGB uint8 image (size x size) of a head and shoulders."""
    import cv2

    s = SIZE
    img = np.zeros((s, s, 3), np.float32)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    backdrop = np.array(look.backdrop, np.float32)
    img[:] = backdrop * (0.75 + 0.35 * (1 - yy / s))[..., None]
    img = img.astype(np.uint8).copy()
    aa = cv2.LINE_AA
    cx, cy = 256, 240
    ax, ay = int(100 * look.face_width), 128

    # hair behind the head, then shoulders and neck in front of it
    if look.long_hair:
        cv2.ellipse(img, (cx, cy + 40), (ax + 38, ay + 70), 0, 0, 360, _shade(look.hair, 0.9), -1, aa)
    cv2.ellipse(img, (cx, 560), (230, 150), 0, 180, 360, look.shirt, -1, aa)
    cv2.rectangle(img, (cx - 42, cy + 90), (cx + 42, 440), _shade(look.skin, 0.82), -1, aa)
    cv2.ellipse(img, (cx, 432), (44, 26), 0, 0, 180, _shade(look.skin, 0.82), -1, aa)
    cv2.ellipse(img, (cx, cy - 10), (ax + 18, ay + 20), 0, 180, 360, look.hair, -1, aa)
    # ears
    for side in (-1, 1):
        cv2.ellipse(img, (cx + side * (ax - 4), cy + 10), (16, 30), 0, 0, 360, _shade(look.skin, 0.9), -1, aa)
    # the face, shaded towards its edge
    face = np.zeros((s, s), np.uint8)
    cv2.ellipse(face, (cx, cy), (ax, ay), 0, 0, 360, 255, -1, aa)
    r = np.sqrt(((xx - cx) / ax) ** 2 + ((yy - cy - 10) / ay) ** 2)
    shade = np.clip(1.08 - 0.28 * r ** 2, 0.6, 1.1)
    skin = np.array(look.skin, np.float32)[None, None] * shade[..., None]
    alpha = (face.astype(np.float32) / 255)[..., None]
    img = (img * (1 - alpha) + skin * alpha).astype(np.uint8)
    # fringe
    cv2.ellipse(img, (cx, cy - ay + 38), (ax + 4, 52), 0, 180, 360, look.hair, -1, aa)
    cv2.ellipse(img, (cx - 30, cy - ay + 44), (ax - 30, 30), 12, 180, 360, look.hair, -1, aa)
    # brows, eyes
    for side in (-1, 1):
        ex = cx + side * 44
        cv2.ellipse(img, (ex, cy - 48), (30, 10), 0, 200 if side < 0 else 200, 340, _shade(look.hair, 0.8), 5, aa)
        cv2.ellipse(img, (ex, cy - 22), (25, 12), 0, 0, 360, (245, 242, 238), -1, aa)
        cv2.circle(img, (ex, cy - 22), 10, look.eyes, -1, aa)
        cv2.circle(img, (ex, cy - 22), 5, (15, 12, 10), -1, aa)
        cv2.circle(img, (ex + 3, cy - 25), 2, (255, 255, 255), -1, aa)
        cv2.ellipse(img, (ex, cy - 22), (25, 12), 0, 180, 360, _shade(look.skin, 0.45), 2, aa)
    # nose: a shadow down one side and the nostrils
    cv2.line(img, (cx + 8, cy - 10), (cx + 14, cy + 36), _shade(look.skin, 0.78), 4, aa)
    cv2.ellipse(img, (cx, cy + 40), (22, 10), 0, 0, 180, _shade(look.skin, 0.7), 3, aa)
    for side in (-1, 1):
        cv2.circle(img, (cx + side * 9, cy + 42), 4, _shade(look.skin, 0.5), -1, aa)
    # lips, closed
    lip = _shade((190, 95, 95), 0.55 + 0.45 * np.mean(look.skin) / 255)
    mouth_y = cy + 76
    cv2.ellipse(img, (cx, mouth_y + 3), (34, 11), 0, 0, 180, lip, -1, aa)
    cv2.ellipse(img, (cx - 12, mouth_y), (21, 8), 0, 180, 360, _shade(lip, 0.9), -1, aa)
    cv2.ellipse(img, (cx + 12, mouth_y), (21, 8), 0, 180, 360, _shade(lip, 0.9), -1, aa)
    cv2.line(img, (cx - 34, mouth_y + 1), (cx + 34, mouth_y + 1), _shade(lip, 0.5), 2, aa)
    img = cv2.GaussianBlur(img, (0, 0), 1.2)
    if size != SIZE:
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    return img


def draw_group(looks: list[Look], size: tuple[int, int] = (1280, 720),
               backdrop: tuple[int, int, int] = (92, 104, 120)) -> np.ndarray:
    """Several people side by side in one picture, as a stage photo would hold them."""
    import cv2

    width, height = size
    yy = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    image = (np.array(backdrop, np.float32) * (1.1 - 0.3 * yy) * np.ones((1, width, 1), np.float32)).astype(np.uint8)
    person = int(min(height * 0.95, width / len(looks) * 1.15))
    for i, look in enumerate(looks):
        portrait = draw_portrait(look)
        plain = draw_portrait(Look(look.skin, look.hair, look.eyes, look.shirt, look.backdrop, look.long_hair,
                                   look.face_width), size=SIZE)
        # the figure is what differs from its own plain backdrop
        ramp = np.linspace(1.1, 0.75, SIZE, dtype=np.float32)[:, None, None]
        ground = (np.array(look.backdrop, np.float32) * ramp).astype(np.int16)
        mask = (np.abs(plain.astype(np.int16) - ground).sum(axis=2) > 24).astype(np.float32)
        mask = cv2.GaussianBlur(cv2.erode(mask, np.ones((3, 3), np.uint8)), (0, 0), 1.5)
        figure = cv2.resize(portrait, (person, person), interpolation=cv2.INTER_AREA)
        alpha = cv2.resize(mask, (person, person), interpolation=cv2.INTER_AREA)[..., None]
        cx = int(width * (i + 0.5) / len(looks))
        x0, y0 = cx - person // 2, height - person
        region = image[y0:y0 + person, max(x0, 0):x0 + person]
        left = max(-x0, 0)
        fig, a = figure[:, left:left + region.shape[1]], alpha[:, left:left + region.shape[1]]
        region[:] = (fig * a + region * (1 - a)).astype(np.uint8)
    return image


CAST = {
    "maya": Look((224, 187, 160), (90, 60, 35), (60, 90, 120), (150, 60, 60), (70, 80, 100), True, 0.95),
    "theo": Look((160, 112, 80), (20, 18, 18), (40, 30, 25), (60, 90, 150), (100, 90, 80), False, 1.06),
    "ada": Look((236, 205, 180), (110, 45, 25), (60, 100, 70), (70, 120, 90), (60, 95, 95), True, 0.93),
    "bo": Look((198, 151, 118), (120, 120, 120), (70, 50, 35), (200, 170, 80), (95, 80, 105), False, 1.08),
    "cy": Look((118, 80, 56), (40, 30, 25), (40, 30, 25), (90, 70, 120), (70, 80, 100), False, 0.98),
    "narrator": Look((180, 130, 96), (150, 110, 60), (60, 90, 120), (60, 60, 60), (100, 90, 80), True, 0.96),
}


def main(folder: str) -> None:
    import cv2

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    pictures = {name: draw_portrait(look) for name, look in CAST.items()}
    pictures["lighthouse-keepers"] = draw_group([CAST["ada"], CAST["bo"], CAST["cy"]])
    for name, picture in pictures.items():
        cv2.imwrite(str(out / f"{name}.png"), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
        print(out / f"{name}.png")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "casts")
