"""`talkstudio review`: the local page's server (token, Host, files), edits written back, and the page
driven in headless Chromium."""

import json
import re
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, run_cli

pytest.importorskip("starlette")
pytest.importorskip("ruamel.yaml")

SHOW = """\
# a short show, to review
title: Review test
video: {size: 320x240}
cast:
  ana: {name: Ana, image: ana.png, voice: ava}   # the host
  ben: {name: Ben, image: ben.png, voice: dan}
scenes:
  - id: opening
    lines:
      - ana: Good morning, and welcome to the show.
      - ben: Thank you, it is good to be here.
      # the last line, the one we will edit
      - ana: Let us begin.
  - id: later
    lines:
      - ben: So tell me about the lighthouse, and the keeper who lived there all those years.
      - ana: He lived alone for forty winters, and he never once let the lamp go out.
      - ben: Not once?
"""


@pytest.fixture
def show(tmp_path):
    shutil.copy(ROOT / "casts" / "maya.png", tmp_path / "ana.png")
    shutil.copy(ROOT / "casts" / "theo.png", tmp_path / "ben.png")
    (tmp_path / "show.yaml").write_text(SHOW)
    return tmp_path / "show.yaml"


def _client(show, target=None, read_only=False, signed_in=True):
    """A client of the review app for `show` (rendered to `target`), signed in unless asked not to."""
    from talkstudio.cache import Cache
    from talkstudio.review.session import Session

    session = Session(show, target or show.with_suffix(".mp4"), Cache(show.parent / "cache"), read_only=read_only)
    return _app_client(session, signed_in), session


def _app_client(sessions, signed_in=True):
    from starlette.testclient import TestClient

    from talkstudio.review.app import make_app

    client = TestClient(make_app(sessions, "secret", 8123), base_url="http://127.0.0.1:8123")
    if signed_in:
        assert client.get("/?token=secret").status_code == 200  # the page, and its cookie
    return client


def _edit_line(client, scene, line, changes, version=None):
    """Post an edit of one line, onto the file's current version unless another is given."""
    version = version or client.get("/api/state").json()["version"]
    return client.post("/api/line", json={"scene": scene, "line": line, "changes": changes, "version": version})


def test_every_request_needs_the_token_and_this_servers_host(show):
    client, _ = _client(show, signed_in=False)
    assert client.get("/api/state").status_code == 403  # no token
    assert client.get("/?token=wrong").status_code == 403
    assert client.get("/?token=secret").status_code == 200  # the page, and its cookie
    assert client.get("/api/state").status_code == 200
    assert client.get("/api/state", headers={"host": "attacker.example:8123"}).status_code == 403  # DNS rebinding
    assert client.get("/api/state", headers={"host": "127.0.0.1:9999"}).status_code == 403


def test_only_the_renders_own_files_are_served(show):
    client, _ = _client(show)
    for asked in ("/media/..%2Fshow.yaml", "/media/show.yaml", "/media/track-..%2F..%2Fshow.yaml",
                  "/static/..%2Fapp.py", "/static/session.py"):
        assert client.get(asked).status_code == 404, asked
    assert client.get("/static/app.js").status_code == 200


def test_an_edit_is_written_back_keeping_the_files_comments_and_layout(show):
    client, session = _client(show)
    version = client.get("/api/state").json()["version"]
    answer = _edit_line(client, 0, 2, {"text": "Let us start."}, version)
    assert answer.status_code == 200
    assert show.read_text() == SHOW.replace("Let us begin.", "Let us start.")  # nothing else moved
    stale = _edit_line(client, 0, 2, {"text": "x"}, version)
    assert stale.status_code == 409 and "changed since" in stale.json()["problems"][0]  # the other tab's edit
    bad = _edit_line(client, 0, 2, {"pause": -3}, answer.json()["version"])
    assert bad.status_code == 422 and bad.json()["lines"] == [13] and "pause" in bad.json()["problems"][0]
    assert "show.yaml:13:" in bad.json()["problems"][0]  # at the line as the file has it
    assert "Let us start." in show.read_text() and "-3" not in show.read_text()  # refused: the file as it was
    moved = _edit_line(client, 0, 0, {"speaker": "ben"}, answer.json()["version"])
    assert moved.status_code == 200 and "      - ben: Good morning" in show.read_text()


BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


@pytest.mark.skipif(not (BROWSER and DRIVER), reason="no Chromium and chromedriver (Debian: apt-get install "
                                                     "chromium chromium-driver)")
def test_the_page_in_a_browser_shows_the_lanes_and_an_edit_rerenders_only_its_chunk(show, tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    video, cache = tmp_path / "show.mp4", tmp_path / "cache"
    assert run_cli("render", show, "-o", video, "--cache", cache, "-q").returncode == 0
    server = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "review", str(show), "-o", str(video),
                               "--cache", str(cache), "--no-browser", "--port", "0"],
                              stdout=subprocess.PIPE, text=True, cwd=ROOT)
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900"):
        options.add_argument(argument)
    options.binary_location = BROWSER
    browser = None
    try:
        url = re.search(r"http://\S+", server.stdout.readline())[0]
        browser = webdriver.Chrome(options=options, service=Service(DRIVER))
        browser.get(url)
        WebDriverWait(browser, 30).until(lambda b: len(b.find_elements(By.CSS_SELECTOR, ".cue")) >= 3)
        cues = json.loads((tmp_path / "show" / "cues.json").read_text())
        lanes = browser.find_elements(By.CSS_SELECTOR, ".lane")
        assert [lane.get_attribute("data-speaker") for lane in lanes] == [s["id"] for s in cues["speakers"]]
        assert [c.text for c in browser.find_elements(By.CSS_SELECTOR, ".cue")] == \
            [c["text"] for s in cues["speakers"] for c in cues["cues"] if c["speaker"] == s["id"]]
        assert [row.get_attribute("data-cast") for row in browser.find_elements(By.CSS_SELECTOR, ".voice")] == \
            ["ana", "ben"]  # a voice panel per character
        waves = browser.find_elements(By.CSS_SELECTOR, "canvas.wave")
        WebDriverWait(browser, 10).until(lambda b: all(w.get_attribute("data-drawn") for w in waves))
        assert len(waves) == 2 and all(int(w.get_attribute("data-drawn")) > 100 for w in waves)  # a waveform a lane
        browser.save_screenshot(str(tmp_path / "before.png"))
        last = browser.find_elements(By.CSS_SELECTOR, ".line")[-1]
        text = last.find_element(By.CSS_SELECTOR, "input[data-field=text]")
        text.clear()
        text.send_keys("Not even once?")
        last.find_element(By.TAG_NAME, "button").click()
        WebDriverWait(browser, 120).until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-renders"))
        log = browser.find_element(By.ID, "log").text
        rendered, chunks = map(int, re.search(r"rendered (\d+) of (\d+) chunks", log).groups())
        assert chunks >= 4 and rendered <= 2, log  # only the chunks the edited line's audio reaches
        foretold = re.search(r"will render (\d+) of (\d+) chunks", log)
        assert foretold and (int(foretold[1]), int(foretold[2])) == (rendered, chunks), log  # said before it began
        WebDriverWait(browser, 30).until(lambda b: len(b.find_elements(By.CSS_SELECTOR, ".chunk")) == chunks)
        WebDriverWait(browser, 30).until(
            lambda b: all(c.get_attribute("data-cached") == "true" for c in b.find_elements(By.CSS_SELECTOR, ".chunk")))
        WebDriverWait(browser, 30).until(lambda b: all(  # every chunk's thumbnail loaded
            t.get_attribute("naturalWidth") not in (None, "0") for t in b.find_elements(By.CSS_SELECTOR, ".chunk img")))
        assert "Not even once?" in [c.text for c in browser.find_elements(By.CSS_SELECTOR, ".cue")]
        assert browser.execute_script("return document.getElementById('video').src").startswith("http://127.0.0.1")
        assert show.read_text() == SHOW.replace("Not once?", "Not even once?")
        browser.save_screenshot(str(tmp_path / "after.png"))
    finally:
        if browser is not None:
            browser.quit()
        server.terminate()
        server.wait(timeout=30)


def test_a_line_is_auditioned_with_another_voice_before_it_is_kept(show):
    from scipy.io import wavfile

    client, session = _client(show)
    before = show.read_text()
    heard = client.post("/api/audition", json={"speaker": "ana", "text": "Let us begin.", "voice": {"id": "dan"},
                                               "delivery": "whispering"})
    assert heard.status_code == 200
    rate, samples = wavfile.read(session.work_dir / "audition.wav")
    assert len(samples) / rate > 0.3
    assert client.get("/media/audition.wav").status_code == 200
    assert show.read_text() == before  # nothing kept
    bad = client.post("/api/audition", json={"speaker": "ana", "text": "Hi.", "voice": {"id": "nobody"}})
    assert bad.status_code == 422 and "nobody" in bad.json()["problems"][0]


def test_a_characters_voice_is_set_from_the_page(show):
    client, _ = _client(show)
    version = client.get("/api/state").json()["version"]
    done = client.post("/api/voice", json={"cast": "ben", "changes": {"rate": 1.2, "pitch": -2}, "version": version})
    assert done.status_code == 200
    text = show.read_text()
    assert "ben: {name: Ben, image: ben.png, voice: {id: dan, rate: 1.2, pitch: -2}}" in text  # flow style kept
    assert text.replace("voice: {id: dan, rate: 1.2, pitch: -2}", "voice: dan") == SHOW  # nothing else moved
    state = client.get("/api/state").json()
    assert state["cast"]["ben"]["voice"]["rate"] == 1.2
    bad = client.post("/api/voice", json={"cast": "ben", "changes": {"rate": 99}, "version": state["version"]})
    assert bad.status_code == 422 and bad.json()["lines"] == [6] and "rate" in bad.json()["problems"][0]


def test_a_batch_folder_makes_every_episode_reviewable(show, tmp_path):
    from talkstudio.cache import Cache
    from talkstudio.review import batch_sessions

    other = tmp_path / "other.yaml"
    other.write_text(SHOW.replace("Review test", "Other episode"))
    report = {"episodes": [{"episode": "first", "screenplay": str(show), "status": "rendered"},
                           {"episode": "second", "screenplay": str(other), "status": "rendered"}]}
    (tmp_path / "batch-report.json").write_text(json.dumps(report))
    client = _app_client(batch_sessions(tmp_path, Cache(tmp_path / "cache")))
    first = client.get("/api/state").json()
    assert first["episodes"] == ["first", "second"] and first["script"] == "show.yaml"
    assert client.get("/api/state?episode=second").json()["script"] == "other.yaml"
    assert client.get("/api/state?episode=nobody").status_code == 404


def test_a_podcast_episode_is_reviewed_as_recorded(show, tmp_path):
    video = tmp_path / "episode.mp4"
    assert run_cli("render", show, "-o", video, "--cache", tmp_path / "cache", "-q").returncode == 0
    client, _ = _client(show, target=video, read_only=True)
    state = client.get("/api/state").json()
    cues = json.loads((tmp_path / "episode" / "cues.json").read_text())["cues"]
    assert state["read_only"] and [line["text"] for scene in state["scenes"] for line in scene["lines"]] == \
        [c["text"] for c in cues]
    before = show.read_text()
    refused = _edit_line(client, 0, 0, {"text": "x"}, state["version"])
    assert refused.status_code == 422 and "as it was recorded" in refused.json()["problems"][0]
    assert client.post("/api/render").status_code == 409 and show.read_text() == before


def test_delivery_words_are_written_as_the_yaml_shorthand(show):
    client, _ = _client(show)
    done = _edit_line(client, 0, 1, {"delivery": "whispering, slowly"})
    assert done.status_code == 200
    assert "      - ben: Thank you, it is good to be here.\n        delivery: whispering, slowly\n" in show.read_text()
    state = client.get("/api/state").json()
    assert state["scenes"][0]["lines"][1]["delivery"] == {"rate": 0.8, "whisper": True}


def test_renders_asked_for_during_a_render_are_queued_not_lost(show, monkeypatch):
    import threading

    from talkstudio import render as render_module

    client, session = _client(show)
    gate, calls = threading.Event(), []

    def slow_render(*args, **kwargs):  # a GPU backend's pace: the page must stay responsive meanwhile
        calls.append(time_now())
        gate.wait(10)
        raise render_module.InputError(render_module.Problem("stopped here"))

    def time_now():
        import time

        return time.monotonic()

    monkeypatch.setattr(render_module, "render_video", slow_render)
    assert client.post("/api/render").json() == {"render": "started"}
    assert client.get("/api/state").status_code == 200  # responsive during the render
    assert client.post("/api/render").json() == {"render": "queued"}
    assert client.post("/api/render").json() == {"render": "queued"}  # one more render covers both
    gate.set()
    deadline = time_now() + 10
    while (session.rendering or len(calls) < 2) and time_now() < deadline:
        gate.set()
        threading.Event().wait(0.05)
    assert len(calls) == 2 and not session.queued
