"""Where batch units run: worker processes on this machine, or a Ray cluster.

A unit is a whole episode (its missing chunks rendered, then assembled), or the chunks of one
of its scenes, rendered into the shared cache for the episode's unit to find. Units read and
write only the cache and the output folder, by absolute path, so any process that sees those
folders at the same paths (another core, another GPU, another machine) can run any unit, and a
unit that dies leaves every finished chunk and episode in place.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from talkstudio.cache import Cache
from talkstudio.errors import InputError, Problem
from talkstudio.progress import Reporter
from talkstudio.render import RenderOptions, render_scene_chunks, render_video

PARENT_POLL_S = 0.5  # how soon a worker notices that its batch was killed
STOP_GRACE_S = 5.0  # a stopped worker's time to clean up before it is ended regardless
LOOPBACK = "127.0.0.1"
WAIT_POLL_S = 0.5  # the longest a batch waits on its units before looking for a dropped Ctrl-C


@dataclass(frozen=True)
class Unit:
    episode: str
    script: Path  # absolute, like every path here: workers may run in other folders or on other machines
    target: Path
    cache: Path
    options: RenderOptions
    scene: str | None = None  # None: the whole episode, assembled; else only this scene's chunks
    gpu: bool = False  # the backend needs a GPU (Ray reserves one per unit)


def run_unit(unit: Unit) -> dict:
    """Run one unit; failures come back as results (with the message) so one episode cannot end a batch."""
    return {**_run_unit(unit), "worker": f"{socket.gethostname()}:{os.getpid()}"}


def _run_unit(unit: Unit) -> dict:
    started = time.perf_counter()
    cache, reporter = Cache(unit.cache), Reporter(quiet=True)
    try:
        if unit.scene is not None:
            chunks, rendered = render_scene_chunks(unit.script, [unit.scene], cache, reporter, unit.options)
            done = {"chunks": chunks, "rendered": rendered}
        else:
            result = render_video(unit.script, unit.target, cache, reporter, unit.options)
            done = {"chunks": result.chunks, "rendered": result.chunks - result.chunks_cached,
                    "duration": result.audio.cues["duration"], "up_to_date": result.up_to_date}
        return {"ok": True, "seconds": time.perf_counter() - started, **done}
    except InputError as error:
        return {"ok": False, "seconds": time.perf_counter() - started,
                "error": "\n".join(problem.render() for problem in error.problems)}
    except Exception as error:  # noqa: BLE001 - a crash fails this episode only; its log keeps the details
        log = unit.target.with_suffix("") / "error.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"{unit}\n\n{traceback.format_exc()}")
        return {"ok": False, "seconds": time.perf_counter() - started,
                "error": f"internal error: {type(error).__name__}: {error} (details in {log})"}


def crashed(error: BaseException) -> dict:
    """The result of a unit whose worker died under it."""
    return {"ok": False, "seconds": 0.0, "error": f"the worker running it failed: {type(error).__name__}: {error}"}


class LocalPool:
    """Worker processes on this machine; with GPU ids, one worker per GPU, each seeing only its own."""

    def __init__(self, workers: int, gpus: list[str]):
        self.gpus = gpus
        self.slots = len(gpus) or workers
        self.description = (f"{self.slots} local worker{'s' * (self.slots > 1)}"
                            + (f" on GPUs {','.join(gpus)}" if gpus else ""))
        self.executor = self._new_executor()
        self.owners: dict = {}  # handle -> the executor it was submitted to

    def _new_executor(self) -> ProcessPoolExecutor:
        context = multiprocessing.get_context("spawn")  # a forked copy of a process with threads can deadlock
        devices = context.Queue()
        for gpu in self.gpus:
            devices.put(gpu)
        return ProcessPoolExecutor(self.slots, mp_context=context, initializer=_start_worker,
                                   initargs=(os.getpid(), devices, bool(self.gpus)))

    def submit(self, unit: Unit):
        # submitting may spawn a worker; a Ctrl-C in the middle would leave it reading a closed pipe
        # (and print its traceback), so the interrupt waits until the submission is complete
        with _interrupt_deferred():
            handle = self.executor.submit(_run_in_worker, unit)
        self.owners[handle] = self.executor
        return handle

    def wait_any(self, handles: list) -> list:
        """The finished among `handles`; none when WAIT_POLL_S passes first (the batch checks for Ctrl-C)."""
        return list(wait(handles, timeout=WAIT_POLL_S, return_when=FIRST_COMPLETED)[0])

    def result(self, handle) -> dict:
        """The unit's result. A worker that died (killed, out of memory) breaks the whole process pool:
        then the pool is made again and the result says `lost`, so the batch can run the unit again."""
        owner = self.owners.pop(handle, None)
        try:
            return handle.result()
        except BrokenProcessPool as error:
            if owner is self.executor:  # the first news of this break: a fresh pool for what follows
                self.executor.shutdown(wait=False, cancel_futures=True)
                self.executor = self._new_executor()
            return {**crashed(error), "lost": True}
        except Exception as error:  # noqa: BLE001 - anything else the pool raises fails this unit
            return crashed(error)

    def stop(self, handles: list) -> None:
        """Submit nothing more and end the running units now (their finished chunks stay in the cache)."""
        self.executor.shutdown(wait=False, cancel_futures=True)
        for process in multiprocessing.active_children():  # the batch's own children: its workers
            process.terminate()

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)


@contextmanager
def _interrupt_deferred():
    """Ctrl-C during the block is raised when it ends (a signal mask would not do: any thread takes the signal)."""
    caught = []
    previous = signal.signal(signal.SIGINT, lambda *_: caught.append(True))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            raise KeyboardInterrupt


def _start_worker(parent: int, devices, pinned: bool) -> None:
    # Ctrl-C belongs to the batch, which stops its workers itself; a stop must still clean up
    # half-written files, which raising SystemExit in the worker does
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_cleanly)
    sys.unraisablehook = _exit_on_swallowed_stop
    if pinned:
        os.environ["CUDA_VISIBLE_DEVICES"] = devices.get()
    _exit_with_parent(parent)


_running = threading.Event()  # set while this worker renders a unit


def _exit_cleanly(signum: int, frame) -> None:
    if not _running.is_set():  # idle: nothing half-written, and an exception here would only print a traceback
        os._exit(128 + signum)
    threading.Timer(STOP_GRACE_S, os._exit, (128 + signum,)).start()  # in case the SystemExit is swallowed
    raise SystemExit(128 + signum)


def _exit_on_swallowed_stop(unraisable) -> None:
    """A stop that lands where Python ignores exceptions (a fork hook, a finaliser) still stops the worker.

    Without this Python prints the ignored SystemExit as a traceback and the worker renders on.
    """
    if isinstance(unraisable.exc_value, SystemExit):
        code = unraisable.exc_value.code
        os._exit(code if isinstance(code, int) else 1)
    sys.__unraisablehook__(unraisable)


def _run_in_worker(unit: Unit) -> dict:
    _running.set()
    try:
        return run_unit(unit)
    except SystemExit as stop:  # stopped: half-written files are cleaned up by now
        os._exit(stop.code if isinstance(stop.code, int) else 1)  # else the executor starts its next unit
    finally:
        _running.clear()


def _exit_with_parent(parent: int) -> None:
    """A killed batch must not leave workers rendering on: a re-run would render the same episodes twice.

    Linux tells a child the moment its parent dies (a unit takes well under a second on small
    episodes, so polling let a worker finish several more); elsewhere a thread polls.
    """
    if _signal_on_parent_death(signal.SIGTERM) and os.getppid() == parent:
        return
    threading.Thread(target=_poll_parent, args=(parent,), daemon=True).start()


def _signal_on_parent_death(signum: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(pr_set_pdeathsig, signum, 0, 0, 0) == 0


def _poll_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_S)
    os.kill(os.getpid(), signal.SIGTERM)


class RayPool:
    """Units as Ray tasks: one CPU each, and one GPU each for GPU backends. Ray keeps a worker
    process for the tasks that follow, so a backend's models load once per worker, not per unit."""

    def __init__(self, address: str, workers: int, gpu: bool = False):
        try:
            import ray
        except ImportError:
            raise InputError(Problem("--ray needs Ray, which is not installed",
                                     hint="pip install 'talkstudio[ray]'")) from None
        self.ray = ray
        self.owned = not ray.is_initialized()
        if self.owned:
            self._connect(address, workers)
        self.remote = ray.remote(run_unit)
        resources = ray.cluster_resources()
        self.slots = int(resources.get("CPU", 1))
        gpus = int(resources.get("GPU", 0))
        self.description = (f"Ray at {address} ({self.slots} CPUs, {gpus} GPUs)"
                            if address != "local" else f"a local Ray instance ({self.slots} CPUs)")
        if gpu and not gpus:  # else the units would wait for a GPU forever
            self.close()
            raise InputError(Problem(f"the backend needs a GPU and {self.description} has none", field="--ray",
                                     hint="join a node with GPUs to the cluster (ray start --address HEAD "
                                          "--num-gpus N), or render with --backend puppet"))

    def _connect(self, address: str, workers: int) -> None:
        if address not in ("auto", "local"):
            _check_reachable(address)
        options = {"num_cpus": workers} if address == "local" else {"address": address}
        try:
            with _loopback_only() if address == "local" else nullcontext():
                self.ray.init(**options, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
        except ConnectionError as error:
            raise InputError(Problem(f"cannot reach the Ray cluster at '{address}': {error}",
                                     hint="start one with `ray start --head`, or use --ray local")) from None
        if address == "local":
            self._refuse_unless_loopback()

    def _refuse_unless_loopback(self) -> None:
        exposed = sorted({node["NodeManagerAddress"] for node in self.ray.nodes()} - {LOOPBACK})
        if exposed:
            self.ray.shutdown()
            raise InputError(Problem(f"the local Ray instance would listen on {', '.join(exposed)}, not only on "
                                     f"{LOOPBACK}; Ray runs any code it is sent, so it was stopped", field="--ray",
                                     hint="use local workers (leave out --ray), or a cluster of your own"))

    def submit(self, unit: Unit):
        return self.remote.options(num_cpus=1, num_gpus=1 if unit.gpu else 0).remote(unit)

    def wait_any(self, handles: list) -> list:
        return self.ray.wait(handles, num_returns=1, timeout=WAIT_POLL_S)[0]

    def result(self, handle) -> dict:
        try:
            return self.ray.get(handle)
        except Exception as error:  # noqa: BLE001 - a worker or node lost fails its unit
            return crashed(error)

    def stop(self, handles: list) -> None:
        for handle in handles:
            self.ray.cancel(handle, force=True)

    def close(self) -> None:
        if self.owned:
            self.ray.shutdown()


@contextmanager
def _loopback_only():
    """A Ray instance started here listens on 127.0.0.1 only: Ray runs whatever code it is sent.

    Ray binds its servers to the network when it believes it may be a cluster, which on Linux it
    always does, and turns an explicit 127.0.0.1 into the machine's address; its single-machine
    setting (named for Windows and macOS) is what keeps every server on loopback. The processes
    Ray starts read it from the environment, the driver from the constant read at import.
    """
    from ray._private import ray_constants

    saved = os.environ.get(ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        if saved[0] is None:
            os.environ.pop(ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR, None)
        else:
            os.environ[ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR] = saved[0]
        ray_constants.ENABLE_RAY_CLUSTER = saved[1]


def _check_reachable(address: str) -> None:
    """Fail at once on an address nothing listens at: Ray itself retries for minutes."""
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except (OSError, ValueError) as error:
        raise InputError(Problem(f"cannot reach the Ray cluster at '{address}': {error}", field="--ray",
                                 hint="give the head node's HOST:PORT (ray start --head prints it), auto, "
                                      "or local")) from None
