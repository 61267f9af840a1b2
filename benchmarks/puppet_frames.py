"""Frames of the default render to look at: the examples at the frames where faults were reported, whole
and as close-ups of each mouth, written as PNG files into one folder.

Uses only the command line and the render's stages.json, so the same script run on an older checkout
makes the "before" pictures:  python benchmarks/puppet_frames.py OUT_DIR
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
# (example, frames at 25 fps): where the issue saw a seam, a lip line across the open mouth, a panel
# edge bending, a cartoon mouth on a photograph; and both sides of the first chunk boundary
LOOKS = {"podcast": [50, 80, 81, 130], "narrator": [80, 81, 250], "photo-interview": [60, 95, 120],
         "radio-play": [50, 130]}


def render(example: str, folder: Path) -> Path:
    target = folder / f"{example}.mp4"
    subprocess.run([sys.executable, str(ROOT / "cli.py"), "render", str(ROOT / "scripts_examples" / f"{example}.yaml"),
                    "-o", str(target), "--cache", str(folder / "cache"), "-q"], check=True, cwd=ROOT)
    return target


def main(out: Path) -> None:
    import cv2

    from talkstudio.assemble import read_frames

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for example, wanted in LOOKS.items():
            target = render(example, Path(tmp))
            faces = json.loads((target.with_suffix("") / "stages.json").read_text())
            first_scene = next(iter(faces.values()))
            for index, frame in enumerate(read_frames(target, (832, 480))):
                if index not in wanted:
                    continue
                bgr = np.ascontiguousarray(frame[..., ::-1])
                cv2.imwrite(str(out / f"{example}-{index}.png"), bgr)
                for name, face in first_scene.items():
                    x, y, w, h = map(int, face["box"])
                    crop = bgr[max(y + h // 3, 0):y + h + h // 5, max(x - w // 6, 0):x + w + w // 6]
                    if crop.size:
                        cv2.imwrite(str(out / f"{example}-{index}-{name}-mouth.png"),
                                    cv2.resize(crop, None, fx=3, fy=3, interpolation=cv2.INTER_NEAREST))
                if index >= max(wanted):
                    break
    print(f"frames in {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "puppet-frames"))
