"""The puppet: animates each face of the stage in place, on the CPU, many times faster than real time.

For every on-stage character the scene's own voice track drives the mouth:
frame energy (normalised per speaker) opens the jaw, high-frequency energy
(fricatives) holds it half-shut, and phoneme events, where the TTS gives them,
close the lips for p/b/m, narrow them for rounded vowels and widen them for
spread ones. The jaw is a smooth downward warp of the lower face with the
mouth interior (teeth, tongue) drawn into the gap. On top: blinks at natural
intervals, idle head sway and breathing, a small bob with emphasis while
speaking, and nods while listening when someone else finishes a phrase.

All motion is a function of the scene time, the audio and the seed, so chunks
rendered apart join without seams and the same inputs give the same frames.
Per frame, one `cv2.remap` of each character's patch applies every warp.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from talkstudio.faces import FaceGeometry
from talkstudio.generators import GENERATORS, SPEECH_LEVEL_DB, ChunkRequest

VERSION = "puppet-1"

# mouth
OPEN_RANGE_DB = 24.0  # from closed to fully open, below a loud syllable
LOUD_ABOVE_SPEECH_DB = 4.0  # a loud syllable's 50 ms level, above the voiced speech level
MAX_JAW_DROP = 0.45  # of the mouth width
UPPER_LIP_LIFT = 0.15  # of the jaw drop
# eyes
BLINK_MEAN_S, BLINK_MIN_S = 3.6, 0.8
BLINK_CLOSE_S, BLINK_HOLD_S, BLINK_OPEN_S = 0.06, 0.05, 0.11
# head motion, in face widths
SWAY = 0.012
SPEAKING_BOB = 0.018
NOD_DEPTH, NOD_S = 0.035, 0.6
BREATH_DEPTH, BREATH_PERIOD_S = 0.006, 4.2

CLOSED_LIPS = {"p", "b", "m"}
LABIODENTAL = {"f", "v"}
ROUNDED = ("u", "ʊ", "o", "ɔ", "w", "ɒ")
SPREAD = ("i", "ɪ", "e", "ɛ", "æ")


class PuppetGenerator:
    info = GENERATORS["puppet"]

    def __init__(self):
        import cv2

        # the encoder runs beside the drawing on a small machine: one OpenCV thread avoids contention
        cv2.setNumThreads(1)

    def version(self) -> str:
        return VERSION

    def generate(self, request: ChunkRequest) -> np.ndarray:
        return np.stack([frame.copy() for frame in self.frames(request)])

    def frames(self, request: ChunkRequest) -> Iterator[np.ndarray]:
        """Frames drawn one after another into one buffer (each valid until the next)."""
        stage = request.stage
        motion = _WindowMotion(request)
        rigs = _rigs_for(stage)
        frame = np.empty_like(stage.image)
        for i in range(request.frame_num):
            np.copyto(frame, stage.image)
            scene_frame = request.start_frame + i
            for rig in rigs:
                rig.draw(frame, stage.image, motion.pose(rig.name, scene_frame))
            yield frame


# --- motion: curves over the scene's frames ----------------------------------------------

@dataclass
class Pose:
    jaw: float  # 0 closed .. 1 fully open
    width: float  # mouth width factor, 1 = rest
    blink: float  # 0 open .. 1 closed
    head: tuple[float, float]  # offset in face widths
    breath: float  # body offset in face widths


class _WindowMotion:
    """Motion curves over the request's audio window: the chunk's frames and the context around them.

    Audio-driven motion depends only on the window's audio; blinks, sway and breathing are
    functions of the scene time and the seed. So a chunk's frames depend on exactly what its
    cache key holds, and chunks drawn apart join without a seam.
    """

    def __init__(self, request: ChunkRequest):
        fps, rate = request.fps, request.rate
        self.first = request.audio_start_frame
        names = list(request.stage.faces)
        samples = max((len(a) for a in request.audio.values()), default=0)
        frames = max(int(np.ceil(samples / rate * fps)), request.start_frame + request.frame_num - self.first)
        self.jaw, self.width, self.head, self.breath, self.blink = {}, {}, {}, {}, {}
        for name in names:
            audio = request.audio.get(name)
            self.jaw[name], self.width[name] = _mouth(audio, _frame_db(audio, rate, fps, frames), rate, fps, frames,
                                                      request.phonemes.get(name, []))
        speaking = {n: _smooth(self.jaw[n], 6) for n in names}
        t = (self.first + np.arange(frames)) / fps
        for name in names:
            rng = np.random.default_rng(_seed(request.seed, name))
            phase = rng.uniform(0, 2 * np.pi, 5)
            sway_x = SWAY * (np.sin(2 * np.pi * 0.23 * t + phase[0]) + 0.5 * np.sin(2 * np.pi * 0.61 * t + phase[1]))
            sway_y = 0.6 * SWAY * np.sin(2 * np.pi * 0.17 * t + phase[2])
            bob = SPEAKING_BOB * np.diff(np.concatenate([[0], _smooth(speaking[name], 4)])) * 6
            others = [speaking[o] for o in names if o != name]
            nods = _nods(speaking[name], others, fps) if others else np.zeros(frames)
            self.head[name] = np.stack([sway_x, sway_y + bob + nods], axis=1)
            self.breath[name] = BREATH_DEPTH * np.sin(2 * np.pi * t / BREATH_PERIOD_S + phase[3])
            self.blink[name] = _blinks(rng, self.first + frames, fps)[self.first:]

    def pose(self, name: str, frame: int) -> Pose:
        f = min(max(frame - self.first, 0), len(self.jaw[name]) - 1)
        return Pose(float(self.jaw[name][f]), float(self.width[name][f]), float(self.blink[name][f]),
                    (float(self.head[name][f, 0]), float(self.head[name][f, 1])), float(self.breath[name][f]))


def _seed(seed: int, name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "little")


def _frame_db(samples, rate: int, fps: float, frames: int) -> np.ndarray:
    """RMS level (dBFS) of a 50 ms window around each frame's time."""
    if samples is None or not len(samples):
        return np.full(frames, -120.0)
    centres = ((np.arange(frames) + 0.5) / fps * rate).astype(np.int64)
    half = int(0.025 * rate)
    power = np.concatenate([[0.0], np.cumsum(samples.astype(np.float64) ** 2)])
    lo = np.clip(centres - half, 0, len(samples))
    hi = np.clip(centres + half, 0, len(samples))
    mean = (power[hi] - power[lo]) / np.maximum(hi - lo, 1)
    return 10 * np.log10(mean + 1e-12)


def _high_band_ratio(samples, rate: int, fps: float, frames: int) -> np.ndarray:
    """Share of energy above ~3 kHz around each frame (fricatives have most of theirs there)."""
    if samples is None or not len(samples):
        return np.zeros(frames)
    diff = np.diff(samples.astype(np.float64), prepend=0.0)  # a first difference leans to high frequencies
    whole = 10 ** (_frame_db(samples, rate, fps, frames) / 10)
    high = 10 ** (_frame_db(diff, rate, fps, frames) / 10)
    return np.clip(high / (whole * (2 * np.pi * 3000 / rate) ** 2 + 1e-12) / 4, 0, 1)


def _mouth(samples, level_db, rate, fps, frames, phonemes) -> tuple[np.ndarray, np.ndarray]:
    loud = SPEECH_LEVEL_DB + LOUD_ABOVE_SPEECH_DB  # voices arrive at a common speech level
    jaw = np.clip((level_db - (loud - OPEN_RANGE_DB)) / OPEN_RANGE_DB, 0, 1) ** 0.9
    jaw *= 1 - 0.5 * np.clip((_high_band_ratio(samples, rate, fps, frames) - 0.35) / 0.4, 0, 1)
    width = np.ones(frames)
    for symbol, start, end in phonemes:
        a, b = int(start * fps), max(int(np.ceil(end * fps)), int(start * fps) + 1)
        base = symbol.strip("ːˈˌ")
        if base in CLOSED_LIPS:
            jaw[a:b] *= 0.15
        elif base in LABIODENTAL:
            jaw[a:b] *= 0.35
        elif base.startswith(ROUNDED):
            width[a:b] = 0.82
        elif base.startswith(SPREAD):
            width[a:b] = 1.08
    jaw = _attack_release(jaw, attack=0.7, release=0.45)
    return jaw, _smooth(width, 2)


def _attack_release(x: np.ndarray, attack: float, release: float) -> np.ndarray:
    out = np.empty_like(x)
    level = 0.0
    for i, v in enumerate(x):
        level += (attack if v > level else release) * (v - level)
        out[i] = level
    return out


def _smooth(x: np.ndarray, frames: int) -> np.ndarray:
    if frames <= 1 or len(x) < 2:
        return x.copy()
    kernel = np.hanning(2 * frames + 1)
    kernel /= kernel.sum()
    return np.convolve(np.pad(x, frames, mode="edge"), kernel, mode="valid")


def _blinks(rng: np.random.Generator, frames: int, fps: float) -> np.ndarray:
    closed = np.zeros(frames)
    t = np.arange(frames) / fps
    at = rng.uniform(0.3, 2.5)
    while at < frames / fps:
        for i in range(max(int((at - 0.05) * fps), 0), min(int((at + 0.3) * fps) + 1, frames)):
            dt = t[i] - at
            if 0 <= dt < BLINK_CLOSE_S:
                closed[i] = max(closed[i], dt / BLINK_CLOSE_S)
            elif BLINK_CLOSE_S <= dt < BLINK_CLOSE_S + BLINK_HOLD_S:
                closed[i] = 1.0
            elif 0 <= dt - BLINK_CLOSE_S - BLINK_HOLD_S < BLINK_OPEN_S:
                closed[i] = max(closed[i], 1 - (dt - BLINK_CLOSE_S - BLINK_HOLD_S) / BLINK_OPEN_S)
        # sometimes a quick double blink
        at += 0.25 if rng.random() < 0.12 else max(rng.gamma(3.0, BLINK_MEAN_S / 3.0), BLINK_MIN_S)
    # at 25 fps a 0.2 s blink is five frames: make sure the closed frame is not skipped
    return np.clip(closed * 1.25, 0, 1)


def _nods(own: np.ndarray, others: list[np.ndarray], fps: float) -> np.ndarray:
    """A small nod when someone else ends a phrase while this character is quiet.

    Each decision looks only at the audio shortly before and after it (not at earlier nods),
    so chunks that see the same stretch of audio decide the same way.
    """
    nods = np.zeros(len(own))
    talking = np.max(others, axis=0) > 0.25
    length, pause = int(NOD_S * fps), int(0.3 * fps)
    ends = [i for i in range(1, len(own)) if talking[i - 1] and not talking[i:i + pause].any()]
    shape = NOD_DEPTH * np.sin(np.linspace(0, np.pi, length))
    for i in ends:
        recent = any(i - 2 * length < j < i for j in ends)  # one nod for a burst of short phrases
        if own[i] < 0.1 and not recent:
            end = min(i + length, len(own))
            nods[i:end] += shape[:end - i]
    return nods


# --- drawing: one character's rig ---------------------------------------------------------

@dataclass
class _Rig:
    name: str
    face: FaceGeometry
    patch: tuple[int, int, int, int]  # x0, y0, x1, y1 in the stage
    grid_x: np.ndarray  # identity map of the patch, in patch pixels
    grid_y: np.ndarray
    head: np.ndarray  # weight of head motion per patch pixel
    mouth: np.ndarray  # downward shift per pixel of jaw drop: the jaw and chin, and the upper lip's lift
    spread: np.ndarray  # weight of mouth widening / narrowing (times x distance from the mouth)
    lid_colours: tuple[tuple[int, int, int], tuple[int, int, int]]
    interior: tuple[tuple[int, int, int], tuple[int, int, int], tuple[int, int, int]]  # cavity, teeth, tongue

    def draw(self, frame: np.ndarray, stage: np.ndarray, pose: Pose) -> None:
        import cv2

        fw = self.face.box[2]
        drop = pose.jaw * MAX_JAW_DROP * self.face.mouth_width
        hx, hy = pose.head[0] * fw, pose.head[1] * fw
        hy += pose.breath * fw  # the head rides on the breath
        map_x = cv2.scaleAdd(self.head, -hx, self.grid_x)
        if abs(pose.width - 1.0) > 1e-3:
            map_x = cv2.scaleAdd(self.spread, -(pose.width - 1.0), map_x)
        map_y = cv2.scaleAdd(self.head, -hy, self.grid_y)
        if drop > 0.05:
            map_y = cv2.scaleAdd(self.mouth, -drop, map_y)
        x0, y0, x1, y1 = self.patch
        source = np.ascontiguousarray(frame[y0:y1, x0:x1])
        frame[y0:y1, x0:x1] = cv2.remap(source, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        if drop > 0.6:
            self._mouth_interior(frame, drop, pose, hx, hy)
        if pose.blink > 0.05:
            self._eyelids(frame, pose.blink, hx, hy)

    def _mouth_interior(self, frame, drop, pose, hx, hy) -> None:
        """The opening between the lips: a dark cavity, the upper teeth and the tongue, with soft edges."""
        import cv2

        f = self.face
        mx, my = f.mouth[0] + hx, f.mouth[1] + hy
        top = my - UPPER_LIP_LIFT * drop
        half_w = 0.5 * f.mouth_width * pose.width * 0.72
        half_h = (1 + UPPER_LIP_LIFT) * drop / 2
        x0, y0 = int(mx - half_w) - 3, int(top) - 3
        x1, y1 = int(mx + half_w) + 4, int(top + 2 * half_h) + 4
        region = frame[max(y0, 0):y1, max(x0, 0):x1]
        if region.size == 0:
            return
        ox, oy = max(x0, 0), max(y0, 0)

        def shape(cy, ax, ay, start, end):
            mask = np.zeros(region.shape[:2], np.uint8)
            cv2.ellipse(mask, (int(round((mx - ox) * 4)), int(round((cy - oy) * 4))),
                        (max(int(round(ax * 4)), 1), max(int(round(ay * 4)), 1)), 0, start, end, 255, -1,
                        cv2.LINE_AA, shift=2)
            return mask

        cavity_mask = shape(top + half_h, half_w, half_h, 0, 360)
        cavity, teeth, tongue = self.interior
        layers = [(cavity_mask, cavity)]
        if half_h > 2:
            teeth_h = min(0.6 * half_h, 0.1 * f.mouth_width)
            layers.append((np.minimum(shape(top, half_w * 0.8, teeth_h, 0, 180), cavity_mask), teeth))
            layers.append((np.minimum(shape(top + 2 * half_h, half_w * 0.6, half_h * 0.5, 180, 360), cavity_mask),
                           tongue))
        _blend(region, layers)

    def _eyelids(self, frame, closed, hx, hy) -> None:
        """Lids of the skin's colour coming down over the eyes, with a soft lash line at their edge."""
        ew, eh = self.face.eye_size
        for (ex, ey), lid in zip(self.face.eyes, self.lid_colours):
            cx, cy = ex + hx, ey + hy
            rx, ry = 0.62 * ew, 0.85 * eh + 1
            x0, y0 = max(int(cx - rx - 3), 0), max(int(cy - ry - 3), 0)
            region = frame[y0:int(cy + ry + 4), x0:int(cx + rx + 4)]
            if region.size == 0:
                continue
            yy, xx = np.mgrid[y0:y0 + region.shape[0], x0:x0 + region.shape[1]].astype(np.float32)
            inside = np.clip(1.5 * (1 - np.sqrt(((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2)) * rx, 0, 1)
            lid_edge = cy - ry + 2 * ry * closed
            cover = inside * np.clip(lid_edge - yy + 0.5, 0, 1)
            layers = [((cover * 255).astype(np.uint8), lid)]
            if closed > 0.3:
                lash = inside * np.clip(1 - np.abs(yy - lid_edge) / max(1.0, 0.1 * eh), 0, 1) * 0.6
                layers.append(((lash * 255).astype(np.uint8), tuple(int(c * 0.45) for c in lid)))
            _blend(region, layers)


def _blend(region: np.ndarray, layers: list[tuple[np.ndarray, tuple[int, int, int]]]) -> None:
    """Paint colours into `region` in order, each through its 0-255 mask (softened by a slight blur)."""
    import cv2

    out = region.astype(np.float32)
    for mask, colour in layers:
        alpha = cv2.GaussianBlur(mask, (3, 3), 0.7).astype(np.float32)[..., None] / 255
        out = out * (1 - alpha) + np.array(colour, np.float32) * alpha
    region[:] = np.clip(out + 0.5, 0, 255).astype(np.uint8)


_rigs: dict[tuple[str, str], _Rig] = {}


def _rigs_for(stage) -> list[_Rig]:
    """Each on-stage character's rig, built once per stage."""
    rigs = []
    for name, face in stage.faces.items():
        key = (stage.key, name)
        if key not in _rigs:
            if len(_rigs) > 32:
                _rigs.pop(next(iter(_rigs)))
            _rigs[key] = _make_rig(name, face, stage.image)
        rigs.append(_rigs[key])
    return rigs


def _make_rig(name: str, face: FaceGeometry, stage: np.ndarray) -> _Rig:
    height, width = stage.shape[:2]
    x, y, w, h = face.box
    x0, x1 = int(max(x - 0.35 * w, 0)), int(min(x + 1.35 * w, width))
    y0, y1 = int(max(y - 0.4 * h, 0)), int(min(face.chin[1] + 0.55 * h, height))
    gy, gx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    mx, my = face.mouth
    mw = face.mouth_width
    cx, cy = face.centre

    def smoothstep(edge0, edge1, v):
        t = np.clip((v - edge0) / (edge1 - edge0), 0, 1)
        return t * t * (3 - 2 * t)

    # head: everything around the face, fading out before the patch edge
    head = (1 - smoothstep(0.55, 1.0, np.hypot((gx - cx) / (0.95 * w), (gy - cy) / (1.05 * h))))
    head *= 1 - smoothstep(y1 - 0.15 * h, y1, gy)
    chin_y = face.chin[1]
    # jaw: the lower lip and chin move down together; the neck below stretches. The lips part
    # sharply at the lip line, while away from the mouth the cheeks stretch over a taller band.
    lip_gap = 0.12 * face.lip_height + 0.5
    away = np.clip((np.abs(gx - mx) - 0.5 * mw) / (0.62 * w - 0.5 * mw), 0, 1)
    soft = lip_gap + away ** 1.5 * 0.45 * h
    jaw_y = smoothstep(my - 0.5 - 0.4 * soft, my + soft, gy) * (1 - smoothstep(chin_y, chin_y + 0.45 * h, gy))
    jaw_x = 1 - smoothstep(0.62 * mw, 0.62 * w, np.abs(gx - mx))
    jaw = jaw_y * jaw_x
    # upper lip: lifts a little between nose and lip line
    nose_y = face.nose[1]
    lip = smoothstep(nose_y, my - lip_gap, gy) * (1 - smoothstep(my - 0.5, my + 0.5, gy)) * jaw_x
    spread = (gx - mx) * np.exp(-(((gx - mx) / (0.8 * mw)) ** 2 + ((gy - my) / (0.6 * mw)) ** 2))
    lid_colours = tuple(_lid_colour(stage, face, eye) for eye in face.eyes)
    skin = _sample(stage, (face.nose[0], (face.nose[1] + my) / 2), 0.08 * w)
    mouth = jaw - UPPER_LIP_LIFT * lip
    return _Rig(name, face, (x0, y0, x1, y1), gx - x0, gy - y0, head.astype(np.float32),
                mouth.astype(np.float32), spread.astype(np.float32), lid_colours,
                ((40, 16, 20), (214, 208, 196), tuple(int(c) for c in (np.array(skin) * [0.85, 0.45, 0.45] + [60, 10, 10]).clip(0, 255))))


def _sample(image, point, radius) -> tuple[int, int, int]:
    x, y = int(point[0]), int(point[1])
    r = max(int(radius), 1)
    region = image[max(y - r, 0):y + r + 1, max(x - r, 0):x + r + 1].reshape(-1, 3)
    return tuple(int(v) for v in np.median(region, axis=0)) if len(region) else (180, 140, 120)


def _lid_colour(stage, face: FaceGeometry, eye) -> tuple[int, int, int]:
    """The upper lid's skin: the brighter pixels of a strip just above the eye (brows and lashes are darker)."""
    ew, eh = face.eye_size
    x0, x1 = int(eye[0] - 0.4 * ew), int(eye[0] + 0.4 * ew) + 1
    y0, y1 = int(eye[1] - 1.6 * eh), int(eye[1] - 0.6 * eh) + 1
    strip = stage[max(y0, 0):max(y1, 1), max(x0, 0):max(x1, 1)].reshape(-1, 3).astype(np.float32)
    if not len(strip):
        return _sample(stage, (eye[0], eye[1] + 1.4 * eh), 0.12 * ew)
    luminance = strip @ np.array([0.299, 0.587, 0.114], np.float32)
    skin = strip[luminance >= np.percentile(luminance, 60)]
    return tuple(int(c) for c in np.median(skin, axis=0) * 0.95)
