"""Batch speed: 8 short episodes of the example series with 1 worker, 2 workers, and on a local Ray instance.

Each run is a fresh `talkstudio batch` process with a fresh cache and output folder, timed as a
user would see it (start-up included). The Ray run goes to an instance this script starts with
as many CPUs as the 2-worker run has (its start is not timed; connecting to it is). Every
episode is different (its guest, question and take number), so no chunk is shared between them.
Prints wall times, the speed-ups over 1 worker, the seconds of video made per second, and how
many cores the local runs kept busy (CPU seconds over wall seconds).
Run: python benchmarks/bench_batch.py  (the Ray run needs pip install 'talkstudio[ray]')
"""

import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERIES = ROOT / "templates" / "interview"
EPISODES = 8
WORKERS = 2


def write_rows(path: Path) -> None:
    with open(SERIES / "episodes.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        for n in range(EPISODES):
            row = dict(rows[n % len(rows)])
            row.update(episode=f"b{n + 1:02d}", guest_name=f"{row['guest_name']} {n + 1}",
                       question=f"{row['question']} Take {n + 1}.")
            writer.writerow(row)


def batch(data: Path, folder: Path, *options: str) -> tuple[float, float, float]:
    """Wall seconds of one batch, the CPU seconds of its processes (Ray's workers are not ours to count),
    and the seconds of video it made."""
    started, cpu = time.perf_counter(), _children_cpu()
    subprocess.run([sys.executable, str(ROOT / "cli.py"), "batch", str(SERIES / "episode.yaml.j2"), "--data", str(data),
                    "-o", str(folder / "out"), "--cache", str(folder / "cache"), "--quiet", *options], check=True)
    took, cpu = time.perf_counter() - started, _children_cpu() - cpu
    report = json.loads((folder / "out" / "batch-report.json").read_text())
    assert report["counts"] == {"rendered": EPISODES}, report["counts"]
    return took, cpu, sum(episode["duration"] for episode in report["episodes"])


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    print(f"{EPISODES} episodes of {SERIES.relative_to(ROOT)}/, {os.cpu_count()} CPU cores")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "rows.csv"
        write_rows(data)
        runs = {"1 worker": (), f"{WORKERS} workers": ("--workers", str(WORKERS))}
        times, cpus = {}, {}
        for name, options in runs.items():
            times[name], cpus[name], video = batch(data, tmp / name.replace(" ", "-"), *options)
        try:
            import ray
        except ImportError:
            print("ray is not installed: pip install 'talkstudio[ray]' for the Ray run")
        else:
            ray.init(num_cpus=WORKERS, include_dashboard=False, logging_level="WARNING")
            try:
                name = f"Ray, {WORKERS} CPUs"
                times[name], _, video = batch(data, tmp / "ray", "--ray", ray.get_runtime_context().gcs_address)
            finally:
                ray.shutdown()
    single = times["1 worker"]
    for name, took in times.items():
        busy = f"  {cpus[name] / took:4.2f} cores busy" if name in cpus else ""
        print(f"{name:14s} {took:6.2f} s  speed-up {single / took:4.2f}x  "
              f"{video / took:5.2f} s of video per second{busy}")


if __name__ == "__main__":
    main()
