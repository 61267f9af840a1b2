"""`talkstudio batch`: templates x rows, every bad row at once, skipping finished work, kills, Ray."""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import ROOT, run_cli, start_cli
from talkstudio.batch import BatchSettings, check_batch, run_batch
from talkstudio.batch.rows import read_rows
from talkstudio.batch.runners import RayPool, Unit
from talkstudio.cache import Cache
from talkstudio.errors import InputError
from talkstudio.progress import Reporter
from talkstudio.render import RenderOptions, render_video

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

EXAMPLE = ROOT / "templates" / "interview"
TEMPLATE = """\
title: {{ ("Quick " ~ episode) | yaml }}
video:
  size: 256x144
cast:
{% include "host.yaml" %}
  guest: {name: {{ guest | yaml }}, image: {{ image | yaml }}, voice: {{ voice | yaml }}}
scenes:
  - id: ask
    lines:
      - host: {{ question | yaml }}
  - id: answer
    lines:
      - guest: {{ answer | yaml }}
"""
HOST = """\
  host:
    image: portraits/maya.png
    voice: ava
"""
COLUMNS = ["episode", "guest", "image", "voice", "question", "answer"]
ROWS = [
    ["q1", "Ada", "portraits/ada.png", "clara", "Why?", "Because: reasons."],
    ["q2", "Bo", "portraits/bo.png", "ben", "How?", "Slowly."],
    ["q3", "Cy", "portraits/cy.png", "raj", "When?", "Now."],
    ["q4", "Ada", "portraits/ada.png", "eve", "Where?", "Here."],
]


@pytest.fixture
def series(tmp_path):
    """A template folder (template, shared host part, portraits) apart from the output folder."""
    folder = tmp_path / "series"
    (folder / "portraits").mkdir(parents=True)
    for name in ("maya", "ada", "bo", "cy"):
        shutil.copy(ROOT / "casts" / f"{name}.png", folder / "portraits" / f"{name}.png")
    (folder / "episode.yaml.j2").write_text(TEMPLATE)
    (folder / "host.yaml").write_text(HOST)
    return folder


def _csv(path: Path, rows: list[list[str]], columns=COLUMNS) -> Path:
    import csv

    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows(rows)
    return path


def _report(out: Path) -> dict:
    return {e["episode"]: e for e in json.loads((out / "batch-report.json").read_text())["episodes"]}


def _chunk_files(cache: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in (cache / "chunks").rglob("*.mp4")}


def test_rows_from_csv_json_lines_and_yaml_fill_the_template_alike(series, tmp_path):
    rows = [dict(zip(COLUMNS, row)) for row in ROWS[:2]]
    csv_file = _csv(tmp_path / "rows.csv", ROWS[:2])
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    yaml_file = tmp_path / "rows.yaml"
    yaml_file.write_text("".join(f"- {json.dumps(row)}\n" for row in rows))

    screenplays = {}
    for data in (csv_file, jsonl, yaml_file):
        episodes = check_batch(series / "episode.yaml.j2", data, tmp_path / data.suffix[1:])
        assert [e.name for e in episodes] == ["q1", "q2"] and [e.scenes for e in episodes] == [["ask", "answer"]] * 2
        screenplays[data.suffix] = [e.script.read_text() for e in episodes]
    assert screenplays[".csv"] == screenplays[".jsonl"] == screenplays[".yaml"]
    assert [r.line for r in read_rows(csv_file)] == [2, 3] and [r.line for r in read_rows(yaml_file)] == [1, 2]
    # written to the output folder, the screenplay still finds the template's shared part and portraits
    text = screenplays[".csv"][0]
    assert "Because: reasons." in text and str(series / "portraits" / "maya.png") in text


def test_check_reports_every_bad_row_at_once_with_row_column_and_message(series, tmp_path):
    data = _csv(tmp_path / "rows.csv", [
        ROWS[0],
        ["q2", "Bo", "portraits/bo.png", "zorblax", "How?", "Slowly."],  # no such voice
        ["q3", "Cy", "portraits/nobody.png", "raj", "When?", "Now."],  # no such portrait
        ["q4", "Ada", "portraits/ada.png", "eve", "Where?"],  # a value short
        ["q1", "Ada", "portraits/ada.png", "eve", "Again?", "Yes."],  # an episode name twice
    ])
    result = run_cli("batch", series / "episode.yaml.j2", "--data", data, "-o", tmp_path / "out", "--check")
    assert result.returncode == 2, result.stderr
    errors = result.stderr
    assert f"{data}:3: voice: row 2:" in errors and "zorblax" in errors
    assert f"{data}:4: image: row 3:" in errors and "nobody.png" in errors and "template's folder" in errors
    assert f"{data}:5: answer: row 4 has no value for answer" in errors
    assert f"{data}:6: episode: row 5: episode 'q1' is also row 1's" in errors
    assert "row 1:" not in errors and "Traceback" not in errors
    assert not list((tmp_path / "out").glob("*.mp4"))


def test_a_column_the_template_needs_but_the_data_lacks_names_row_and_column(series, tmp_path):
    data = _csv(tmp_path / "rows.csv", [row[:5] for row in ROWS[:2]], COLUMNS[:5])
    with pytest.raises(InputError) as caught:
        check_batch(series / "episode.yaml.j2", data, tmp_path / "out")
    problems = caught.value.problems
    assert [(p.line, p.field) for p in problems] == [(2, "answer"), (3, "answer")]
    assert "the template uses 'answer' (episode.yaml.j2:13)" in problems[0].message


def test_example_batch_renders_then_skips_then_redoes_only_what_was_deleted(tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = ["batch", EXAMPLE / "episode.yaml.j2", "--data", EXAMPLE / "episodes.csv", "-o", out, "--cache", cache]
    first = run_cli(*args, "--workers", "2")
    assert first.returncode == 0, first.stderr[-2000:]
    report = _report(out)
    assert len(report) >= 4 and {e["status"] for e in report.values()} == {"rendered"}
    assert all(Path(e["output"]).stat().st_size > 0 and e["duration"] > 3 for e in report.values())
    chunks = _chunk_files(cache)

    again = run_cli(*args)
    assert again.returncode == 0 and {e["status"] for e in _report(out).values()} == {"up to date"}
    assert _chunk_files(cache) == chunks and "up to date" in again.stdout

    (out / "e02.mp4").unlink()
    redo = run_cli(*args)
    assert redo.returncode == 0, redo.stderr[-2000:]
    statuses = {name: e["status"] for name, e in _report(out).items()}
    assert statuses.pop("e02") == "rendered" and set(statuses.values()) == {"up to date"}
    assert _report(out)["e02"]["chunks_rendered"] == 0 and _chunk_files(cache) == chunks


def test_a_bad_row_fails_alone(series, tmp_path):
    from PIL import Image

    Image.new("RGB", (200, 200), (90, 120, 150)).save(series / "portraits" / "blank.png")
    data = _csv(tmp_path / "rows.csv", [
        ROWS[0],
        ["q2", "Bo", "portraits/bo.png", "ben", "How?", ""],  # invalid: nothing to say
        ["q3", "Cy", "portraits/blank.png", "raj", "When?", "Now."],  # valid, but the portrait has no face
    ])
    result = run_cli("batch", series / "episode.yaml.j2", "--data", data, "-o", tmp_path / "out",
                     "--cache", tmp_path / "cache")
    assert result.returncode == 2, result.stderr[-2000:]  # invalid rows outrank failures
    report = _report(tmp_path / "out")
    assert report["q1"]["status"] == "rendered" and (tmp_path / "out" / "q1.mp4").exists()
    assert report["q2"]["status"] == "invalid"
    assert "row 2" in report["q2"]["error"] and "empty text" in report["q2"]["error"]
    assert report["q3"]["status"] == "failed" and "no face found" in report["q3"]["error"]
    assert "Traceback" not in result.stderr


def _children(pid: int) -> list[int]:
    return [int(child) for task in Path(f"/proc/{pid}/task").iterdir()
            for child in (task / "children").read_text().split()]


def _wait_until_ended(pids: list[int]) -> None:
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{pid}").exists() and "Z" not in _state(pid) for pid in pids):
        assert time.monotonic() < deadline, "a worker rendered on after its batch was killed"
        time.sleep(0.05)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return "Z"


def _start_and_wait_for_one_episode(args: list[str], out: Path) -> subprocess.Popen:
    batch = start_cli(*args[2:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not ((out / "batch-report.json").exists() and "rendered" in
               {e["status"] for e in _report(out).values()}):
        assert time.monotonic() < deadline and batch.poll() is None
        time.sleep(0.05)
    return batch


def test_ctrl_c_stops_the_batch_and_keeps_what_is_finished(series, tmp_path):
    out = tmp_path / "out"
    args = [sys.executable, str(ROOT / "cli.py"), "batch", str(series / "episode.yaml.j2"),
            "--data", str(_csv(tmp_path / "rows.csv", ROWS)), "-o", str(out), "--cache", str(tmp_path / "cache")]
    batch = _start_and_wait_for_one_episode(args, out)
    batch.send_signal(signal.SIGINT)
    _, errors = batch.communicate(timeout=60)
    assert batch.returncode == 130 and "interrupted" in errors and "Traceback" not in errors
    statuses = {name: e["status"] for name, e in _report(out).items()}
    assert set(statuses.values()) == {"rendered", "interrupted"}
    assert all((out / f"{name}.mp4").exists() == (status == "rendered") for name, status in statuses.items())


def test_a_stop_that_python_would_swallow_still_ends_the_worker_quietly():
    # a stop can land inside a fork hook or a finaliser, where Python ignores exceptions
    program = textwrap.dedent("""
        import sys, time
        from talkstudio.batch import runners
        sys.unraisablehook = runners._exit_on_swallowed_stop
        class Finaliser:
            def __del__(self):
                raise SystemExit(143)
        Finaliser()
        time.sleep(5)
        print("rendered on")
    """)
    worker = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert worker.returncode == 143 and "rendered on" not in worker.stdout and "Traceback" not in worker.stderr


def test_a_killed_batch_resumes_without_rendering_anything_twice(series, tmp_path):
    out, cache = tmp_path / "out", tmp_path / "cache"
    data = _csv(tmp_path / "rows.csv", ROWS)
    args = [sys.executable, str(ROOT / "cli.py"), "batch", str(series / "episode.yaml.j2"), "--data", str(data),
            "-o", str(out), "--cache", str(cache), "--workers", "1"]
    batch = _start_and_wait_for_one_episode(args, out)
    workers = _children(batch.pid)
    batch.send_signal(signal.SIGKILL)  # the batch alone: its worker must notice and stop by itself
    batch.wait()
    _wait_until_ended(workers)
    before = _chunk_files(cache)
    finished = {name for name, e in _report(out).items() if e["status"] == "rendered"}
    assert 1 <= len(finished) < len(ROWS)

    rerun = run_cli(*args[2:])
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    report = _report(out)
    after = _chunk_files(cache)
    assert all(report[name]["status"] == "up to date" for name in finished)
    # an episode the worker completed in the moment before it was told of the kill is kept, so it is up to
    # date too; more would mean the worker rendered on (it polled for its parent once, and finished three)
    rest = [e["status"] for name, e in report.items() if name not in finished]
    assert rest.count("up to date") <= 1 and set(rest) <= {"rendered", "up to date"}
    assert all(after[path] == mtime for path, mtime in before.items())  # no finished chunk was redone
    assert sum(e["chunks_rendered"] for e in report.values()) == len(after) - len(before)


def test_scenes_of_one_episode_render_as_separate_units_with_the_same_result(series, tmp_path):
    data = _csv(tmp_path / "rows.csv", ROWS[:1])
    cache = tmp_path / "cache"
    result = run_batch(series / "episode.yaml.j2", data, tmp_path / "out", BatchSettings(workers=2, cache=cache),
                       Reporter(quiet=True))
    outcome, = result.outcomes
    assert outcome.status == "rendered" and outcome.chunks_rendered == outcome.chunks == 2  # one chunk per scene
    alone = render_video(tmp_path / "out" / "q1" / "screenplay.yaml", tmp_path / "alone.mp4", Cache(cache),
                         Reporter(quiet=True))
    assert alone.chunks_cached == alone.chunks == 2
    assert (tmp_path / "alone.mp4").read_bytes() == (tmp_path / "out" / "q1.mp4").read_bytes()


def _visible_gpu() -> tuple[int, str | None]:
    time.sleep(0.3)
    return os.getpid(), os.environ.get("CUDA_VISIBLE_DEVICES")


def test_gpu_workers_each_see_only_their_own_gpu():
    from talkstudio.batch.runners import LocalPool

    pool = LocalPool(workers=5, gpus=["3", "7"])
    try:
        seen = [pool.executor.submit(_visible_gpu).result(timeout=60) for _ in range(4)]
    finally:
        pool.close()
    assert pool.slots == 2 and {gpu for _, gpu in seen} <= {"3", "7"}
    assert len({pid: gpu for pid, gpu in seen}) == len(set(seen))  # a worker keeps its one GPU


def test_a_local_ray_instance_runs_the_same_units(series, tmp_path):
    ray = pytest.importorskip("ray")
    data = _csv(tmp_path / "rows.csv", ROWS[:3])
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    try:
        address = ray.get_runtime_context().gcs_address
        result = run_batch(series / "episode.yaml.j2", data, tmp_path / "out",
                           BatchSettings(ray=address, cache=tmp_path / "cache"), Reporter(quiet=True))
    finally:
        ray.shutdown()
    assert result.exit_code == 0 and "Ray" in result.runner
    assert [o.status for o in result.outcomes] == ["rendered"] * 3
    assert all((tmp_path / "out" / f"q{n}.mp4").stat().st_size > 0 for n in (1, 2, 3))
    workers = {worker for outcome in result.outcomes for worker in outcome.workers}
    assert 1 <= len(workers) <= 2  # Ray keeps its worker processes (one per CPU here) from unit to unit
    assert _report(tmp_path / "out")["q1"]["workers"]


def test_a_local_ray_instance_listens_on_loopback_only(tmp_path):
    pytest.importorskip("ray")
    pool = RayPool("local", 1)
    try:
        missing = tmp_path / "missing.yaml"
        result = pool.result(pool.submit(Unit("e", missing, tmp_path / "e.mp4", tmp_path / "cache", RenderOptions())))
        assert not result["ok"] and result["worker"]  # a worker ran it, so it listens too
        addresses = _listening_addresses(_descendants(os.getpid()))
    finally:
        pool.close()
    assert addresses and all(address.is_loopback for address in addresses), addresses


def test_doctor_says_what_a_ray_cluster_exposes(tmp_path):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=1, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    try:
        address = ray.get_runtime_context().gcs_address
        node = ray.nodes()[0]["NodeManagerAddress"]
        doctor = run_cli("doctor", "--ray", address)
    finally:
        ray.shutdown()
    assert doctor.returncode == 0, doctor.stderr[-2000:]
    lines = doctor.stdout.splitlines()
    assert any(f"ray node {node}" in line and "reachable from" in line for line in lines)
    authentication = next(line for line in lines if "ray authentication" in line)
    token = os.environ.get("RAY_AUTH_MODE", "token") == "token"  # Ray asks for one unless told not to
    assert ("token required" in authentication) == token


def test_ray_exposure_names_who_can_reach_an_address():
    from talkstudio.doctor import _reach

    assert _reach("127.0.0.1") == _reach("::1") == "this machine only"
    assert _reach("10.1.2.3") == _reach("http://192.168.0.2:8265") == "the local network"
    assert _reach("8.8.8.8") == "the internet"
    assert _reach("head.example.org") == "wherever 'head.example.org' resolves"


def _descendants(root: int) -> set[int]:
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError):
            continue
    found, grew = {root}, True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in found} - found
        found |= more
        grew = bool(more)
    return found - {root}


def _listening_addresses(pids: set[int]) -> list:
    """The local addresses of the TCP sockets that `pids` listen on, from /proc (no `ss` needed)."""
    import ipaddress

    inodes = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").glob("*"):
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    addresses = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            fields = row.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: listening
                raw = bytes.fromhex(fields[1].split(":")[0])
                native = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))  # words in host order
                address = ipaddress.ip_address(native)
                addresses.append(getattr(address, "ipv4_mapped", None) or address)
    return addresses


def test_on_ray_a_gpu_backends_units_share_one_process_per_gpu(write_script, tmp_path):
    """A GPU backend's models load once per GPU: Ray keeps the worker process that holds the GPU."""
    ray = pytest.importorskip("ray")
    from talkstudio.batch.runners import RayPool, Unit
    from talkstudio.render import RenderOptions

    script = write_script("cast: {ana: {voice: ava}}\nscenes:\n  - lines: [{ana: Hello there.}]\n")
    units = [Unit(f"e{k}", script, tmp_path / f"e{k}.mp4", tmp_path / "cache", RenderOptions(), gpu=True)
             for k in range(3)]
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    try:
        pool = RayPool("auto", 2)
        handles = [pool.submit(unit) for unit in units]
        results = []
        while handles:
            for handle in pool.wait_any(handles):
                handles.remove(handle)
                results.append(pool.result(handle))
        pool.close()
    finally:
        ray.shutdown()
    assert all(result["ok"] for result in results), results
    assert len({result["worker"] for result in results}) == 1


def test_on_ray_a_gpu_backend_needs_a_cluster_with_gpus(tmp_path):
    ray = pytest.importorskip("ray")
    from talkstudio.batch.runners import RayPool

    ray.init(num_cpus=1, num_gpus=0, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    try:
        with pytest.raises(InputError) as raised:
            RayPool("auto", 1, gpu=True)
    finally:
        ray.shutdown()
    assert "needs a GPU" in str(raised.value.problems[0].render()) and "--backend puppet" in raised.value.problems[0].render()


def test_bad_data_files_exit_2_with_the_place(series, tmp_path):
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text(textwrap.dedent("""\
        {"episode": "q1", "guest": "Ada"}
        [1, 2]
        """))
    result = run_cli("batch", series / "episode.yaml.j2", "--data", jsonl, "-o", tmp_path / "out", "--check")
    assert result.returncode == 2 and f"{jsonl}:2: row 2 should be a JSON object" in result.stderr
    odd = tmp_path / "rows.txt"
    odd.write_text("x\n")
    result = run_cli("batch", series / "episode.yaml.j2", "--data", odd, "--check")
    assert result.returncode == 2 and "unknown data format '.txt'" in result.stderr
    (series / "broken.yaml.j2").write_text("title: {{ guest }\n")
    result = run_cli("batch", series / "broken.yaml.j2", "--data", _csv(tmp_path / "r.csv", ROWS[:1]), "--check")
    assert result.returncode == 2 and "broken.yaml.j2:1: template:" in result.stderr


def test_batch_help_names_its_options():
    result = run_cli("batch", "--help")
    assert result.returncode == 0
    for option in ("--data", "--check", "--workers", "--gpus", "--ray", "--cache", "talkstudio[ray]"):
        assert option in result.stdout


def test_a_template_cannot_run_code_or_read_through_a_link(series, tmp_path):
    """Templates are sandboxed: no Python objects, no shell; an include that links out of the folder fails."""
    marker = tmp_path / "ran"
    (series / "episode.yaml.j2").write_text(TEMPLATE.replace(
        "title: {{", "# {{ ''.__class__.__mro__[1].__subclasses__() }} "
        f"{{{{ cycler.__init__.__globals__.os.system('touch {marker}') }}}}\ntitle: {{{{"))
    data = _csv(tmp_path / "rows.csv", ROWS[:1])
    result = run_cli("batch", series / "episode.yaml.j2", "--data", data, "-o", tmp_path / "out", "--check")
    assert result.returncode == 2 and not marker.exists() and "unsafe" in result.stderr + result.stdout
    secret = tmp_path / "secret.yaml"
    secret.write_text("  host: {voice: ava}\n")
    (series / "host.yaml").unlink()
    (series / "host.yaml").symlink_to(secret)
    (series / "episode.yaml.j2").write_text(TEMPLATE)
    result = run_cli("batch", series / "episode.yaml.j2", "--data", data, "-o", tmp_path / "out2", "--check")
    assert result.returncode == 2 and "outside the template's folder" in result.stderr


def test_rows_whose_names_cannot_be_files_fail_alone(series, tmp_path):
    data = _csv(tmp_path / "rows.csv", [ROWS[0], ["x" * 300, *ROWS[1][1:]], ["batch-report.json", *ROWS[2][1:]]])
    result = run_cli("batch", series / "episode.yaml.j2", "--data", data, "-o", tmp_path / "out", "--check")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "over 120" in result.stderr and "the batch's report" in result.stderr
    assert (tmp_path / "out" / "q1" / "screenplay.yaml").is_file()  # the good row was written and checked


def test_a_killed_worker_fails_no_other_episode(series, tmp_path):
    """A worker killed mid-render (out of memory, a signal) breaks the process pool: the pool is made
    again and the units it held run once more, so the batch still finishes every episode."""
    out = tmp_path / "out"
    args = [sys.executable, str(ROOT / "cli.py"), "batch", str(series / "episode.yaml.j2"),
            "--data", str(_csv(tmp_path / "rows.csv", ROWS)), "-o", str(out), "--cache", str(tmp_path / "cache"),
            "--workers", "2"]
    batch = _start_and_wait_for_one_episode(args, out)
    workers = [pid for pid in _children(batch.pid) if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text()]
    assert workers, "no worker process found"
    os.kill(workers[0], signal.SIGKILL)
    _, errors = batch.communicate(timeout=300)
    statuses = {name: e["status"] for name, e in _report(out).items()}
    assert batch.returncode == 0 and set(statuses.values()) == {"rendered"}, (statuses, errors[-2000:])
    assert all((out / f"{name}.mp4").exists() for name in statuses)


def test_row_values_cannot_reach_files_outside_the_template_and_data_folders(series, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(ROOT / "casts" / "bo.png", elsewhere / "bo.png")
    (tmp_path / "data").mkdir()
    data = _csv(tmp_path / "data" / "rows.csv", [ROWS[0], ["q2", "Bo", str(elsewhere / "bo.png"), "ben", "How?", "Slowly."],
                                                 ["q3", "Cy", "../elsewhere/bo.png", "raj", "When?", "Now."]])
    result = run_cli("batch", series / "episode.yaml.j2", "--data", data, "-o", tmp_path / "out", "--check")
    assert result.returncode == 2 and result.stderr.count("leads outside the template's folder") == 2, result.stderr
    assert f"{data}:3: image: row 2:" in result.stderr and "--any-path" in result.stderr
    trusted = run_cli("batch", series / "episode.yaml.j2", "--data", data, "-o", tmp_path / "out", "--check",
                      "--any-path")
    assert trusted.returncode == 0, trusted.stderr
