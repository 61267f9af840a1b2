"""Render speed, edit cost and memory of `talkstudio render` with the puppet, on this machine.

Prints, each measured in this run:
  0. a one-minute two-person episode with photograph portraits, median of 3 cold runs (empty
     cache: speech, faces, picture, encoding and assembly), at 832x480, 25 fps (target: 10x);
  1. real-time factor of whole renders of the examples and of a generated two-minute episode;
  2. the render's time against encoding the same frames alone with the same encoder settings
     (target: within 2x);
  3. re-rendering after an edit in the last of three scenes, against the full render (target <= 15%);
  4. peak memory of a 1-minute and a 10-minute render (target: within 1.2x).
Run: python benchmarks/bench_render.py [--quick]   (--quick skips the 10-minute render)
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SENTENCES = [
    "So tell me what happened after the storm.",
    "Well, the harbour was full of driftwood, and nobody could get a boat out until noon.",
    "That sounds like a long morning.",
    "It was. But the bakery stayed open, so we all sat there and waited with coffee.",
    "Of course they did. Nothing closes that bakery.",
    "Not even the flood of ninety two, if you believe the owner.",
    "I believe every word she says about bread and none about the weather.",
    "Fair enough. Shall we get to the letters from listeners?",
]


def episode(minutes: float, scenes: int, folder: Path, portraits: tuple[Path, Path] | None = None) -> Path:
    """A two-host screenplay of about `minutes`, in `scenes` scenes (drawn portraits unless given)."""
    maya, theo = portraits or (ROOT / "casts/maya.png", ROOT / "casts/theo.png")
    lines_per_scene = max(int(minutes * 60 / 3.2 / scenes), 2)
    text = ["video: {size: 832x480}", "cast:", f"  maya: {{image: {maya}, voice: ava}}",
            f"  theo: {{image: {theo}, voice: dan}}", "scenes:"]
    n = 0
    for s in range(scenes):
        text += [f"  - id: part-{s + 1}", "    lines:"]
        for _ in range(lines_per_scene):
            speaker = "maya" if n % 2 == 0 else "theo"
            text.append(f'      - {speaker}: "{SENTENCES[n % len(SENTENCES)]} ({n})"')
            n += 1
    path = folder / f"episode-{minutes:g}min{'-photos' if portraits else ''}.yaml"
    path.write_text("\n".join(text) + "\n")
    return path


PEAK_MEMORY = ("import sys, cli; rc = cli.main(sys.argv[1:]);"
               "print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]);"
               "sys.exit(rc)")


def render(script: Path, target: Path, cache: Path) -> tuple[float, int]:
    """Wall seconds and peak memory (MiB, the render process's own high-water mark) of one render."""
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", PEAK_MEMORY, "render", str(script), "-o", str(target),
                             "--cache", str(cache), "-q"], cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode:
        raise SystemExit(result.stderr)
    return seconds, int(result.stdout.split()[-1]) // 1024


def duration_of(target: Path) -> float:
    import json

    return json.loads((target.with_suffix("") / "cues.json").read_text())["duration"]


def encode_alone(video: Path) -> float:
    """Seconds to encode the video's frames again with the chunk encoder's settings, from raw frames
    decoded beforehand (untimed), in one ffmpeg process: the encoder's own cost for these frames."""
    from talkstudio.assemble import VIDEO_CODEC_ARGS
    from talkstudio.audio_io import ffmpeg_exe
    from talkstudio.assemble import probe

    width, height = map(int, re.search(r", (\d+)x(\d+)", probe(video)["report"]).groups())
    raw = video.with_suffix(".yuv")
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-i", str(video), "-map", "0:v", "-f", "rawvideo",
                    "-pix_fmt", "yuv420p", str(raw)], check=True)
    try:
        started = time.perf_counter()
        subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "yuv420p",
                        "-s", f"{width}x{height}", "-r", "25", "-i", str(raw), *VIDEO_CODEC_ARGS, "-f", "mp4",
                        str(video.with_suffix(".again.mp4"))], check=True)
        return time.perf_counter() - started
    finally:
        raw.unlink(missing_ok=True)


def photographs(folder: Path) -> tuple[Path, Path]:
    """Two photograph portraits of different framing: the shipped NASA photograph, and a tight
    mirrored crop of it (a bigger face in a smaller picture)."""
    from PIL import Image, ImageOps

    photo = Image.open(ROOT / "casts/astronaut.png").convert("RGB")
    tight = ImageOps.mirror(photo.crop((150, 10, 450, 310))).resize((400, 400), Image.LANCZOS)
    tight.save(folder / "tight.png")
    return ROOT / "casts/astronaut.png", folder / "tight.png"


def camera_photographs(folder: Path) -> tuple[Path, Path]:
    """The same two portraits as a camera writes them: 9-megapixel JPEGs."""
    from PIL import Image

    small = photographs(folder)
    sizes = [(3000, 3000), (2400, 3200)]
    paths = []
    for index, (path, size) in enumerate(zip(small, sizes)):
        paths.append(folder / f"camera-{index}.jpg")
        Image.open(path).convert("RGB").resize(size, Image.LANCZOS).save(paths[-1], quality=92)
    return paths[0], paths[1]


def cold_runs(script: Path, folder: Path, name: str) -> None:
    runs = [render(script, folder / f"{name}-{run}.mp4", folder / f"cache-{name}-{run}")[0] for run in range(3)]
    video = duration_of(folder / f"{name}-0.mp4")
    median = sorted(runs)[1]
    print(f"   {name}: {video:.1f} s of video in {', '.join(f'{r:.1f}' for r in runs)} s: "
          f"median {video / median:.1f}x real time")


def main() -> None:
    quick = "--quick" in sys.argv
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        print("0. one minute, two people on photographs, 3 cold runs each")
        cold_runs(episode(1, 1, tmp, photographs(tmp)), tmp, "photos")
        (tmp / "camera").mkdir()
        cold_runs(episode(1, 1, tmp / "camera", camera_photographs(tmp / "camera")), tmp, "camera-photos")

        print("1-2. whole renders, fresh cache (speech, faces, chunks, encoding, assembly)")
        jobs = sorted((ROOT / "scripts_examples").glob("*.yaml")) + [episode(2, 2, tmp)]
        for script in jobs:
            target = tmp / "out" / f"{script.stem}.mp4"
            seconds, _ = render(script, target, tmp / f"cache-{script.stem}")
            video = duration_of(target)
            encoding = encode_alone(target)
            print(f"   {script.stem:18s} {video:6.1f} s of video in {seconds:5.1f} s: {video / seconds:4.1f}x real time;"
                  f" {seconds / encoding:4.1f}x the time of encoding its frames alone ({encoding:.1f} s)")

        print("3. edit in the last of three scenes")
        script = episode(1.5, 3, tmp)
        full, _ = render(script, tmp / "edit.mp4", tmp / "cache-edit")
        script.write_text(_edit_last_line(script.read_text()))
        edited, _ = render(script, tmp / "edit.mp4", tmp / "cache-edit")
        print(f"   full render {full:.1f} s, after the edit {edited:.1f} s: {edited / full:.0%} of the full render")

        print("4. peak memory")
        one, rss_one = render(episode(1, 1, tmp), tmp / "m1.mp4", tmp / "cache-m1")
        print(f"   1-minute render: {rss_one} MiB ({one:.1f} s)")
        if not quick:
            ten, rss_ten = render(episode(10, 10, tmp), tmp / "m10.mp4", tmp / "cache-m10")
            print(f"   10-minute render: {rss_ten} MiB ({ten:.1f} s, {600 / ten:.1f}x real time): "
                  f"{rss_ten / rss_one:.2f}x the 1-minute peak")


def _edit_last_line(text: str) -> str:
    """Add a word to the last line (which ends with its closing quote)."""
    lines = text.rstrip("\n").split("\n")
    lines[-1] = lines[-1][:-1] + ' Edited."'
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
