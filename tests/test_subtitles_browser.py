"""The WebVTT sidecar read back by a real browser (Chromium, headless) through the video's <track>."""

import shutil
import subprocess

import pytest

from conftest import ROOT, run_cli

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")

PAGE = """<!doctype html><html><body>
<video id="v" src="o.mp4" muted><track kind="captions" src="o.vtt" srclang="en" default></video>
<pre id="out">waiting</pre>
<script>
const v = document.getElementById('v');
v.textTracks[0].mode = 'hidden';
setTimeout(() => {
  const cues = Array.from(v.textTracks[0].cues || []);
  document.getElementById('out').textContent = cues.map(c =>
    [c.startTime.toFixed(3), c.endTime.toFixed(3), c.getCueAsHTML().textContent.replace(/\\n/g, ' / ')].join('|')).join('\\n');
}, 2500);
</script></body></html>"""


@pytest.mark.skipif(BROWSER is None, reason="no Chromium on this machine (Debian: apt-get install chromium)")
def test_a_browser_reads_every_cue_with_its_speaker(tmp_path):
    shutil.copy(ROOT / "casts" / "maya.png", tmp_path / "ana.png")
    shutil.copy(ROOT / "casts" / "theo.png", tmp_path / "ben.png")
    script = tmp_path / "s.yaml"
    script.write_text("video: {size: 320x240}\nsubtitles: {captions: karaoke}\ncast:\n"
                      "  ana: {name: Ana, image: ana.png, voice: ava}\n  ben: {name: Ben, image: ben.png, voice: dan}\n"
                      "scenes:\n  - lines:\n      - ana: Good morning <everyone> & welcome, this is a test of the subtitles.\n"
                      "      - ben: Thank you.\n        overlap: 0.5\n", encoding="utf-8")
    assert run_cli("render", script, "-o", tmp_path / "o.mp4", "--cache", tmp_path / "c", "-q").returncode == 0
    (tmp_path / "page.html").write_text(PAGE)
    dom = subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files",
                          "--virtual-time-budget=6000", "--dump-dom", (tmp_path / "page.html").as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    shown = dom.split('<pre id="out">')[1].split("</pre>")[0].replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    cues = [line.split("|") for line in shown.splitlines()]
    assert len(cues) >= 2, shown
    text = " ".join(cue[2] for cue in cues)
    assert "Ana: Good morning <everyone> & welcome," in text and "Ben: Thank you." in text
    assert all(float(end) > float(start) for start, end, _ in cues)
