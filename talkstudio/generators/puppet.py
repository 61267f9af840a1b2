"""The puppet: animates each face of the stage in place, on the CPU, many times faster than real time.

For every on-stage character the scene's own voice track drives the mouth:
frame energy (normalised per speaker) opens the jaw, high-frequency energy
(fricatives) holds it half-shut, and phoneme events, where the TTS gives them,
close the lips for p/b/m, narrow them for rounded vowels and widen them for
spread ones. The mouth is made of the picture itself: the lips part along the
face mesh's lip contours (the upper lip lifts a little, the lower lip, chin and
jaw drop, the cheeks and neck stretch), and the opening is shaded in the face's
own colours, without an outline. On top: blinks at natural intervals, idle head
sway and breathing, a small bob with emphasis while speaking, and nods while
listening when someone else finishes a phrase. Every warp is zero off the
person (the stage's people mask) and outside the character's region, so the
background, panel borders and gutters never move.

All motion is a function of the scene time, the audio and the seed, so chunks
rendered apart join without seams and the same inputs give the same frames.
Per frame, one `cv2.remap` of each character's moving area applies every warp.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from talkstudio.faces import FaceGeometry
from talkstudio.generators import GENERATORS, SPEECH_LEVEL_DB, ChunkRequest

VERSION = "puppet-2"

# mouth
OPEN_RANGE_DB = 24.0  # from closed to fully open, below a loud syllable
LOUD_ABOVE_SPEECH_DB = 4.0  # a loud syllable's 50 ms level, above the voiced speech level
MAX_JAW_DROP = 0.4  # of the mouth width
UPPER_LIP_LIFT = 0.15  # of the jaw drop
# eyes
BLINK_MEAN_S, BLINK_MIN_S = 3.6, 0.8
BLINK_CLOSE_S, BLINK_HOLD_S, BLINK_OPEN_S = 0.06, 0.05, 0.11
# head motion, in face widths
HEAD_REACH = 0.08  # the farthest sway, bob, nod and breath together carry a point
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
class _Lips:
    """The mouth along the columns of a patch: where it parts and how far each column opens."""
    x0: int  # first column of `line` and `profile`, in stage pixels
    line: np.ndarray  # y where upper and lower lip part, per column
    profile: np.ndarray  # 0..1: share of the jaw drop that opens this column (0 beyond the corners)
    centre: float  # x of the mouth's middle
    colour: np.ndarray  # the lips' own colour (RGB float)
    skin: np.ndarray
    was_open: bool  # the picture already shows the mouth open (teeth): no teeth are shaded in


@dataclass
class _Rig:
    name: str
    face: FaceGeometry
    patch: tuple[int, int, int, int]  # x0, y0, x1, y1 in the stage: what the warp reads
    moving: tuple[int, int, int, int]  # x0, y0, x1, y1 in the stage: the only pixels it may change
    grid_x: np.ndarray  # identity map of `moving`, in patch pixels
    grid_y: np.ndarray
    head: np.ndarray  # weight of head motion over `moving` (0 off the person and at the patch's edge)
    spread: np.ndarray  # weight of mouth widening / narrowing over `moving` (times x distance from the mouth)
    jaw: np.ndarray  # over the patch: downward shift per pixel of jaw drop (negative above the lip line)
    jaw_box: tuple[int, int, int, int]  # x0, y0, x1, y1 in `moving`'s pixels: where the jaw can reach
    lips: _Lips
    mouth_box: tuple[int, int, int, int]  # x0, y0, x1, y1 in the stage: where the lips can part
    max_drop: float  # the largest jaw drop (pixels) that the jaw field stretches without folding
    lid_colours: tuple[tuple[int, int, int], tuple[int, int, int]]

    def draw(self, frame: np.ndarray, stage: np.ndarray, pose: Pose) -> None:
        import cv2

        fw = self.face.box[2]
        drop = pose.jaw * self.max_drop
        hx, hy = pose.head[0] * fw, (pose.head[1] + pose.breath) * fw  # the head rides on the breath
        map_x = cv2.scaleAdd(self.head, -hx, self.grid_x)
        if abs(pose.width - 1.0) > 1e-3:
            map_x = cv2.scaleAdd(self.spread, -(pose.width - 1.0), map_x)
        map_y = cv2.scaleAdd(self.head, -hy, self.grid_y)
        opening = drop > 0.05
        if opening:
            self._open_jaw(map_x, map_y, drop)
        x0, y0, x1, y1 = self.patch
        mx0, my0, mx1, my1 = self.moving
        source = np.ascontiguousarray(stage[y0:y1, x0:x1])
        frame[my0:my1, mx0:mx1] = cv2.remap(source, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        if opening:
            self._cavity(frame, drop, pose.width, hx, hy)
        if pose.blink > 0.05:
            self._eyelids(frame, pose.blink, hx, hy)

    def _open_jaw(self, map_x: np.ndarray, map_y: np.ndarray, drop: float) -> None:
        """Add the jaw's drop to the head's map: the jaw field is read where the head map points, so
        the lips part exactly where the head has carried them (the field steps at the lip line)."""
        import cv2

        bx0, by0, bx1, by1 = self.jaw_box
        moved = cv2.remap(self.jaw, map_x[by0:by1, bx0:bx1], map_y[by0:by1, bx0:bx1], cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        map_y[by0:by1, bx0:bx1] -= drop * moved

    def _cavity(self, frame: np.ndarray, drop: float, width: float, hx: float, hy: float) -> None:
        """The opening between the parted lips: a dark interior in the colours of this face, lit from
        the front (darker under the upper lip and at the corners), with soft shading for the upper
        teeth and the tongue when it is wide open; edges anti-aliased against the lips, no outline."""
        lips = self.lips
        bx0, by0, bx1, by1 = self.mouth_box
        cols = np.arange(bx0, bx1, dtype=np.float32)
        source_cols = lips.centre + (cols - hx - lips.centre) / width
        index = np.clip(np.round(source_cols - lips.x0).astype(int), 0, len(lips.line) - 1)
        profile = np.where((source_cols >= lips.x0) & (source_cols < lips.x0 + len(lips.line)),
                           lips.profile[index], 0.0).astype(np.float32)
        gap = (drop * profile).astype(np.float32)
        top = lips.line[index] + hy - UPPER_LIP_LIFT * gap
        bottom = top + gap
        # only the rows and columns this frame's opening touches
        open_cols = np.flatnonzero(gap > 0.05)
        if not len(open_cols):
            return
        c0, c1 = open_cols[0], open_cols[-1] + 1
        r0 = max(int(np.floor(top[c0:c1].min() - 1)), by0)
        r1 = min(int(np.ceil(bottom[c0:c1].max() + 2)), by1)
        if r1 <= r0:
            return
        profile, gap, top, bottom = profile[c0:c1], gap[c0:c1], top[c0:c1], bottom[c0:c1]
        bx0, bx1, by0, by1 = bx0 + c0, bx0 + c1, r0, r1
        rows = np.arange(by0, by1, dtype=np.float32)[:, None]
        # each pixel's share of the opening, over a footprint a little wider than the pixel (soft, as a lens is)
        cover = np.clip((np.minimum(bottom, rows + 0.7) - np.maximum(top, rows - 0.7)) / 1.4, 0, 1)
        if not cover.any():
            return
        depth = np.clip((rows - top) / np.maximum(gap, 1.0), 0, 1)  # 0 under the upper lip .. 1 on the lower
        across = np.clip(1 - profile, 0, 1)[None, :]  # 0 mid-mouth .. 1 at the corners
        # the interior: the lips' colour in shadow, darkest under the upper lip and in the corners
        light = (0.45 + 0.55 * np.clip(depth / 0.7, 0, 1)) * (1 - 0.5 * across)
        colour = (lips.colour * 0.26 + 3.0) * light[..., None]
        # a narrow parting is the lips' own shadow rather than a dark hole
        narrow = np.clip((gap - 1.0) / 4.0, 0, 1)[None, :, None]
        colour = colour * narrow + lips.colour * 0.55 * (1 - narrow)
        wide = np.clip((drop - 0.1 * self.face.mouth_width) / (0.2 * self.face.mouth_width), 0, 1)
        if wide > 0:
            middle = np.clip(1 - 1.5 * across, 0, 1)
            tongue = np.clip((depth - 0.5) / 0.5, 0, 1) ** 0.7 * middle
            colour += (lips.colour * 0.62 - colour) * (0.65 * wide * tongue)[..., None]
            teeth_colour = np.clip(0.4 * lips.skin + np.array([130.0, 126, 120]), 0, 255)
            lower_teeth = np.clip(1 - (1 - depth) / 0.12, 0, 1) * middle
            colour += (teeth_colour * 0.8 - colour) * (0.3 * wide * lower_teeth)[..., None]
            if not lips.was_open:  # teeth the picture does not show already
                upper_teeth = np.clip(1 - depth / 0.28, 0, 1) * middle
                colour += (teeth_colour - colour) * (0.5 * wide * upper_teeth)[..., None]
        region = frame[by0:by1, bx0:bx1]
        alpha = cover[..., None]
        region[:] = np.clip(region * (1 - alpha) + colour * alpha + 0.5, 0, 255).astype(np.uint8)

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
            region = stage.regions.get(name, (0, 0, stage.size[0], stage.size[1]))
            _rigs[key] = _make_rig(name, face, stage.image, region, stage.people)
        rigs.append(_rigs[key])
    return rigs


def _smoothstep(edge0, edge1, v):
    t = np.clip((v - edge0) / np.maximum(edge1 - edge0, 1e-6), 0, 1)
    return t * t * (3 - 2 * t)


def _make_rig(name: str, face: FaceGeometry, stage: np.ndarray, region: tuple[int, int, int, int],
              people: np.ndarray | None) -> _Rig:
    x, y, w, h = face.box
    rx0, ry0, rx1, ry1 = region
    x0, x1 = int(max(x - 0.45 * w, rx0)), int(min(x + 1.45 * w, rx1))
    y0, y1 = int(max(y - 0.6 * h, ry0)), int(min(face.chin[1] + 0.6 * h, ry1))
    gy, gx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    cx, cy = face.centre
    lips = _lips(face, stage, x0, x1)
    line = np.interp(gx[0], np.arange(lips.x0, lips.x0 + len(lips.line)), lips.line).astype(np.float32)[None, :]
    profile = np.interp(gx[0], np.arange(lips.x0, lips.x0 + len(lips.line)), lips.profile,
                        left=0, right=0).astype(np.float32)[None, :]
    person = _person_weight(people, (x0, y0, x1, y1), w)
    # nothing moves at the patch's edge, so panel borders, gutters and what lies beyond stay still
    margin = max(3.0, 0.02 * w)
    edge = (_smoothstep(x0, x0 + margin, gx) * (1 - _smoothstep(x1 - 1 - margin, x1 - 1, gx))
            * _smoothstep(y0, y0 + margin, gy) * (1 - _smoothstep(y1 - 1 - margin, y1 - 1, gy)))

    # head: the face and hair, fading out before the patch edge, and only where the person is
    head = 1 - _smoothstep(0.7, 1.05, np.hypot((gx - cx) / (0.95 * w), (gy - cy) / (1.05 * h)))
    head *= 1 - _smoothstep(face.chin[1] + 0.2 * h, face.chin[1] + 0.55 * h, gy)
    head = _still_below(head * edge * person)

    jaw = _jaw_field(face, lips.centre, line, profile, gx, gy, y1 - margin - 1) * edge * person
    jaw = np.where(np.abs(jaw) < 0.01, 0, jaw).astype(np.float32)
    mw = face.mouth_width
    spread = (gx - lips.centre) * np.exp(-(((gx - lips.centre) / (0.8 * mw)) ** 2 + ((gy - line) / (0.6 * mw)) ** 2))
    spread *= edge * person
    spread = _still_below(np.abs(spread), 0.01 * mw) * np.sign(spread)
    # the head carries the jaw: the jaw field is read up to a head's motion away from where it is set
    reach = int(np.ceil(HEAD_REACH * w)) + 2
    moving = _bounds((head > 0) | (spread != 0) | _grown(jaw != 0, reach))
    if moving is None:
        moving = (0, 0, 1, 1)
    mx0, my0, mx1, my1 = moving
    jaw_box = _bounds(_grown(jaw != 0, reach)[my0:my1, mx0:mx1]) or (0, 0, 0, 0)

    def crop(field):
        return np.ascontiguousarray(field[my0:my1, mx0:mx1], dtype=np.float32)

    lid_colours = tuple(_lid_colour(stage, face, eye) for eye in face.eyes)
    max_drop = min(_unfolded_drop(jaw, line, gy, profile > 0), MAX_JAW_DROP * mw)
    return _Rig(name, face, (x0, y0, x1, y1), (x0 + mx0, y0 + my0, x0 + mx1, y0 + my1), crop(gx - x0),
                crop(gy - y0), crop(head), crop(spread), jaw, jaw_box, lips,
                _mouth_box(lips, face, max_drop, (x0, y0, x1, y1)), max_drop, lid_colours)


def _jaw_field(face: FaceGeometry, centre: float, line: np.ndarray, profile: np.ndarray, gx: np.ndarray,
               gy: np.ndarray, lowest: float) -> np.ndarray:
    """Downward shift per pixel of jaw drop. Below the lip line the lower lip drops with its share of
    the opening, the chin and jaw with all of it, the neck stretching below (never lower than
    `lowest`); above it the upper lip lifts a little. Across the mouth the field steps at the lip line
    (the lips part there); beyond the corners it is smooth."""
    _, _, w, h = face.box
    chin = face.chin[1]
    # across: the jaw's width above the chin, the neck's below it (the shoulders never move)
    off_centre = np.abs(gx - centre)
    jaw_x = 1 - _smoothstep(0.35 * w, 0.62 * w, off_centre)
    neck_x = 1 - _smoothstep(0.16 * w, 0.3 * w, off_centre)
    jaw_x += (neck_x - jaw_x) * _smoothstep(chin - 0.05 * h, chin + 0.1 * h, gy)
    central = np.sqrt(profile)  # 1 mid-mouth, 0 at the corners and over the cheeks
    ramp_from = line + central * (0.75 * face.lip_height + 1)  # the lower lip itself moves as one
    ramp_to = chin + (1 - central) * 0.15 * h  # the cheeks stretch over a taller band
    lower = profile + (jaw_x - profile) * _smoothstep(ramp_from, ramp_to, gy)
    lower *= 1 - _smoothstep(chin, max(min(chin + 0.4 * h, lowest), chin + 1), gy)
    upper = profile * _smoothstep(face.nose[1], line - 0.55 * face.lip_height, gy)
    return np.where(gy >= line, (1 - UPPER_LIP_LIFT) * lower, -UPPER_LIP_LIFT * upper)


def _bounds(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    rows, cols = np.nonzero(mask)
    if not len(rows):
        return None
    return int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1


def _grown(mask: np.ndarray, pixels: int) -> np.ndarray:
    import cv2

    return cv2.dilate(mask.astype(np.uint8), np.ones((2 * pixels + 1, 2 * pixels + 1), np.uint8)) > 0


def _still_below(weight: np.ndarray, floor: float = 0.01) -> np.ndarray:
    """Weights too small to move a pixel visibly become exactly zero, so those pixels stay bit-identical."""
    return np.where(weight < floor, 0, weight)


def _person_weight(people: np.ndarray | None, patch, face_width: float) -> np.ndarray:
    x0, y0, x1, y1 = patch
    if people is None:
        return np.ones((y1 - y0, x1 - x0), np.float32)
    import cv2

    mask = people[y0:y1, x0:x1].astype(np.float32) / 255
    # zero from the person's outline outwards, rising to full weight a little inside it
    return _smoothstep(0.5, 1.0, cv2.GaussianBlur(mask, (0, 0), max(1.0, 0.07 * face_width)))


def _unfolded_drop(jaw: np.ndarray, line: np.ndarray, gy: np.ndarray, in_span: np.ndarray) -> float:
    """The largest drop for which every column of the jaw field still maps in order (no row shown
    twice), away from the parting itself, which the cavity covers."""
    slope = np.diff(jaw, axis=0)
    parting = np.abs(gy[1:] - line) < 1.5
    slope = np.where(parting & in_span, 0, slope)
    steepest = float(slope.max(initial=0))
    return 0.8 / steepest if steepest > 0 else float("inf")


def _mouth_box(lips: _Lips, face: FaceGeometry, max_drop: float, patch) -> tuple[int, int, int, int]:
    """Where the lips can part, in the stage: the mouth's columns and the rows from the upper lip's
    highest lift to the lower lip's lowest drop, with room for the head's motion and mouth widening."""
    x0, y0, x1, y1 = patch
    span = np.flatnonzero(lips.profile > 0)
    first, last = (span[0], span[-1]) if len(span) else (0, len(lips.line) - 1)
    pad = HEAD_REACH * face.box[2] + 2
    left = lips.x0 + first - 0.15 * face.mouth_width - pad
    right = lips.x0 + last + 0.15 * face.mouth_width + pad
    top = float(lips.line[first:last + 1].min()) - UPPER_LIP_LIFT * max_drop - pad
    bottom = float(lips.line[first:last + 1].max()) + max_drop + pad
    return (int(np.clip(left, x0, x1)), int(np.clip(top, y0, y1)),
            int(np.clip(right + 1, x0, x1)), int(np.clip(bottom + 1, y0, y1)))


def _lips(face: FaceGeometry, stage: np.ndarray, x0: int, x1: int) -> _Lips:
    """The lip line and opening profile per column, and the lips' colours, from the mesh's contours
    (or from the mouth's proportions when the face was not meshed)."""
    inner_top, inner_bottom, outer_top, outer_bottom = face.lips or _proportional_lips(face)
    cols = np.arange(x0, x1, dtype=np.float64)

    def along(run):
        xs, ys = np.array(run, np.float64).T
        order = np.argsort(xs)
        return np.interp(cols, xs[order], ys[order])

    top, bottom = along(inner_top), along(inner_bottom)
    # the lips part just above the lower lip: teeth already showing stay with the upper jaw
    line = top + 0.75 * np.maximum(bottom - top, 0)
    left, right = inner_top[0][0], inner_top[-1][0]
    centre, half = (left + right) / 2, max((right - left) / 2, 1.0)
    profile = np.clip(1 - ((cols - centre) / half) ** 2, 0, 1) ** 0.55
    colour = _lip_colour(stage, face, outer_top, inner_top, inner_bottom, outer_bottom)
    skin = np.array(_sample(stage, (face.nose[0], (face.nose[1] + face.mouth[1]) / 2), 0.06 * face.box[2]),
                    np.float32)
    opened = float(np.median(np.maximum(bottom - top, 0)[np.abs(cols - centre) < 0.4 * half]))
    return _Lips(x0, line.astype(np.float32), profile.astype(np.float32), float(centre), colour, skin,
                 opened > 0.08 * face.mouth_width)


def _proportional_lips(face: FaceGeometry):
    """Lip contours of a closed mouth from the mouth's centre, width and lip height."""
    mx, my = face.mouth
    half, lip = face.mouth_width / 2, face.lip_height
    xs = mx + half * np.linspace(-1, 1, 11)
    bulge = np.sqrt(np.clip(1 - ((xs - mx) / half) ** 2, 0, 1))
    line = tuple((float(x), float(my)) for x in xs)
    return (line, line, tuple((float(x), float(my - 0.45 * lip * b)) for x, b in zip(xs, bulge)),
            tuple((float(x), float(my + 0.55 * lip * b)) for x, b in zip(xs, bulge)))


def _lip_colour(stage, face: FaceGeometry, outer_top, inner_top, inner_bottom, outer_bottom) -> np.ndarray:
    """The median colour of the pixels between the outer and inner contours (both lips)."""
    import cv2

    mask = np.zeros(stage.shape[:2], np.uint8)
    for outer, inner in ((outer_top, inner_top), (outer_bottom, inner_bottom)):
        polygon = np.array(list(outer) + list(inner)[::-1], np.float32)
        cv2.fillPoly(mask, [np.round(polygon).astype(np.int32)], 255)
    pixels = stage[mask > 0]
    if len(pixels) < 4:
        return np.array(_sample(stage, face.mouth, 0.15 * face.mouth_width), np.float32)
    return np.median(pixels, axis=0).astype(np.float32)


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
