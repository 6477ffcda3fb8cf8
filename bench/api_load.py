"""API load benchmark: wrk against ``btc-predictor serve --workers 2`` and a reference app.

Usage::

    python bench/api_load.py [--rounds 3] [--also-no-worker] [--profile] [--ablate]
        [--data-dir /tmp/apibench/data] [--database-url postgresql+psycopg://...]
        [--out bench/results/api_load.md]

Run by hand, not in CI; needs ``wrk`` (the Debian package). In one run it

- prepares a data dir once (ingest ``--csv``, train the default model, then every kind of
  PREPARED_KINDS beside it, not promoted) unless done; ``--database-url`` puts the data in
  that database instead of the data dir's SQLite file (an empty PostgreSQL database works);
- measures readiness: spawn ``serve`` and poll ``/health/ready`` every 20 ms (median of N);
- starts ``serve`` in its default configuration (embedded job worker on, text request log on
  stderr, here a file) and a minimal FastAPI app (one ``async def`` returning a constant,
  same uvicorn settings), warms every endpoint, then runs ``wrk -t2 -c32 -d10s`` and
  ``wrk -t2 -c4 -d10s`` (both ``--latency``), interleaved, ``--rounds`` times (median);
  endpoints: ``/predict``, the cached ``/api/v1/forecast``, a ``model=`` query of a kind that
  is not the active one, ``/api/v1/assets`` and the uncached mix (a wrk Lua script cycling
  horizon 1..30 x level 50..99 x every stored model kind: 1,500 distinct queries per kind);
- reads the RSS of every process of ``serve``; optionally profiles a worker with py-spy
  (``--profile``) and measures /predict of diagnostic variants of the app (``--ablate``);
- prints the table and writes the Markdown report with PASS/MISS per target (hand-written
  notes below the report's NOTES_MARKER line survive regeneration).

Every process it starts runs in its own session and is killed by process group at the end;
the measured part is bounded by HARD_LIMIT_S (SIGALRM).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import psutil

HOST = "127.0.0.1"
CLI = str(Path(sys.executable).with_name("btc-predictor"))
DEFAULT_CSV = Path("/work/shared/data/Bitstamp_BTCUSD_d.csv")
ENDPOINTS = {
    "reference /": "/",
    "/predict": "/predict",
    "/forecast h=7": "/api/v1/forecast?horizon=7",
    "/forecast model=drift h=7": "/api/v1/forecast?horizon=7&model=drift",
    "/api/v1/assets": "/api/v1/assets",
    "/risk h=7": "/api/v1/risk?horizon=7",  # the active risk model (issue 17)
    "uncached mix": "/api/v1/forecast",  # its queries come from MIX_SCRIPT
}
MIX = "uncached mix"
PREPARED_KINDS = ("naive", "drift")  # trained beside the default model (never promoted)
# wrk runs this per thread: each request is the next (horizon, level, kind) of the cycle, the
# two threads starting half a cycle apart. KINDS is filled in with the stored model kinds.
MIX_SCRIPT = """
local kinds = {KINDS}
local cycle = 30 * 50 * #kinds
local i = 0
local started = 0
function setup(thread)
  thread:set("offset", started * math.floor(cycle / 2))
  started = started + 1
end
function init(args)
  i = tonumber(wrk.thread:get("offset")) or 0
end
function request()
  local n = i % cycle
  i = i + 1
  local h = n % 30 + 1
  local level = math.floor(n / 30) % 50 + 50
  local kind = kinds[math.floor(n / 1500) + 1]
  return wrk.format("GET", "/api/v1/forecast?horizon=" .. h .. "&level=" .. level
    .. "&model=" .. kind)
end
"""
REFERENCE_APP = '''"""Reference: a minimal FastAPI app (one async endpoint returning a constant)."""
from fastapi import FastAPI

app = FastAPI()


@app.get("/")
async def root() -> dict[str, str]:
    return {"status": "ok"}
'''
DIAG_APP = '''"""Diagnostic variants of the product app, selected by BENCH_ABLATE flags."""
import gc
import logging
import os
import time
from typing import Any

from fastapi import FastAPI

from btc_predictor.api import app as api
from btc_predictor.api.routing import LabelledRoute

FLAGS = set(os.environ.get("BENCH_ABLATE", "").split(","))
log = logging.getLogger("btc_predictor.api")
GC = {"pid": os.getpid(), "collections": 0, "gen2": 0, "max_ms": 0.0, "total_ms": 0.0}
_gc_started = [0.0]


def gc_timer(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _gc_started[0] = time.perf_counter()
        return
    ms = (time.perf_counter() - _gc_started[0]) * 1000
    GC["collections"] += 1
    GC["gen2"] += info["generation"] == 2
    GC["max_ms"], GC["total_ms"] = max(GC["max_ms"], ms), GC["total_ms"] + ms


async def gc_report() -> dict[str, Any]:
    return GC


def factory() -> FastAPI:
    app = api.app_from_environment()
    if "no-log" in FLAGS:
        log.setLevel(logging.WARNING)
    if "no-envelope" in FLAGS:
        app.user_middleware = [m for m in app.user_middleware if m.cls is not api.Envelope]
    if "no-hot" in FLAGS:  # /predict and /forecast through their FastAPI declarations
        app.router.routes = [r for r in app.router.routes if not isinstance(r, LabelledRoute)
                             or r.path not in ("/predict", "/api/v1/forecast")]
    app.add_api_route("/bench/gc", gc_report)
    gc.callbacks.append(gc_timer)
    return app
'''
ABLATIONS = {
    "as shipped": "",
    "request log muted": "no-log",
    "no envelope middleware (no request id, log, cap, metrics)": "no-envelope",
    "hot paths off: FastAPI routing, dependencies, response model (as before 9cc7840)": "no-hot",
}
TARGET_RATIO, TARGET_P99_C32, TARGET_P99_C4, TARGET_READY_S, TARGET_RSS_MB = 0.8, 25, 5, 2, 200
# Issue 14: the uncached mix against the cached forecast, and /api/v1/assets.
TARGET_MIX_RATIO, TARGET_MIX_P99, TARGET_ASSETS_RPS = 0.5, 50, 1000
# Issue 17: the cached /api/v1/risk against the cached /api/v1/forecast.
TARGET_RISK_RATIO = 0.8
NOTES_MARKER = "<!-- hand-written notes below this line are kept when the file is regenerated -->"
HARD_LIMIT_S = 1800  # the whole run, waiting for a quiet machine excluded


@dataclass(frozen=True, slots=True)
class WrkResult:
    """One wrk run: throughput, latency percentiles (ms) and failures."""

    rps: float
    p50: float
    p99: float
    bad: int


@dataclass(frozen=True, slots=True)
class Proc:
    """One process of the server tree with its resident memory."""

    role: str
    pid: int
    rss_mb: float


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", type=Path, default=Path("/tmp/apibench/data"))
    p.add_argument(
        "--database-url",
        default=None,
        help="BTCP_DATABASE_URL for every process (e.g. an empty PostgreSQL database)",
    )
    p.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    p.add_argument("--epochs", type=int, default=5, help="training epochs when preparing")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    p.add_argument("--rounds", type=int, default=1, help="interleaved rounds (median)")
    p.add_argument("--starts", type=int, default=3, help="readiness starts (median)")
    p.add_argument("--also-no-worker", action="store_true", help="also BTCP_EMBEDDED_WORKER=false")
    p.add_argument("--profile", action="store_true", help="py-spy a worker under /predict load")
    p.add_argument("--ablate", action="store_true", help="/predict with parts switched off")
    p.add_argument("--max-load", type=float, default=1.0, help="wait until 1-min load is below")
    p.add_argument("--max-wait", type=int, default=1200, help="seconds to wait for that")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "api_load.md")
    return p.parse_args()


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def get(port: int, path: str, timeout: float = 2.0) -> int:
    """The status of one GET, or 0 when the server does not answer."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except OSError:
        return 0
    finally:
        conn.close()


def get_json(port: int, path: str) -> dict[str, Any]:
    """One GET decoded as a JSON object."""
    conn = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        conn.request("GET", path)
        payload: dict[str, Any] = json.loads(conn.getresponse().read())
        return payload
    finally:
        conn.close()


def wait_ready(port: int, path: str, timeout: float, interval: float = 0.02) -> float:
    """Seconds until ``path`` answers 200 (polled every ``interval``); raises on timeout."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if get(port, path, timeout=1.0) == 200:
            return time.perf_counter() - started
        time.sleep(interval)
    raise TimeoutError(f"{path} on port {port} not ready after {timeout:.0f} s")


def base_env(data_dir: Path, embedded: bool, database_url: str | None = None) -> dict[str, str]:
    """The environment minus inherited BTCP_* settings, plus the benchmark's few."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BTCP_")}
    env |= {"BTCP_DATA_DIR": str(data_dir), "BTCP_API_KEY": "bench-key"}
    if database_url:
        env["BTCP_DATABASE_URL"] = database_url
    env |= {"BTCP_EMBEDDED_WORKER": str(embedded).lower(), "BTCP_WORKER_PORT": str(free_port())}
    return env


def spawn(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in its own session with stdout and stderr appended to ``log``."""
    with log.open("ab") as sink:
        return subprocess.Popen(
            cmd, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate the process group of ``proc``, then kill it and any straggler."""
    try:
        family = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        family = []
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)
    _, alive = psutil.wait_procs(family, timeout=5)
    for child in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()


@contextlib.contextmanager
def running(cmd: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A started process tree that is always stopped on exit."""
    proc = spawn(cmd, env, log)
    try:
        yield proc
    finally:
        stop(proc)


def serve_cmd(port: int, workers: int) -> list[str]:
    """The product's server command."""
    return [CLI, "serve", "--host", HOST, "--port", str(port), "--workers", str(workers)]


def uvicorn_cmd(target: str, app_dir: Path, port: int, workers: int) -> list[str]:
    """An app under uvicorn with serve's settings (``module:factory()`` means a factory)."""
    factory = ["--factory"] if target.endswith("()") else []
    return [
        *(sys.executable, "-m", "uvicorn", target.removesuffix("()"), *factory),
        *("--app-dir", str(app_dir), "--host", HOST, "--port", str(port)),
        *("--workers", str(workers), "--log-level", "warning", "--no-access-log"),
    ]


def prepare(args: argparse.Namespace) -> None:
    """Ingest and train once (steps already done are skipped): the default model, promoted,
    then every kind of PREPARED_KINDS beside it."""
    args.data_dir.mkdir(parents=True, exist_ok=True)
    env = base_env(args.data_dir, False, args.database_url) | {
        "BTCP_TRAIN_EPOCHS": str(args.epochs)
    }
    stored = stored_kinds(env)
    steps = [] if stored else [["ingest", "--path", str(args.csv)], ["train"]]
    steps += [
        ["train", "--model", k, "--promote", "never"] for k in PREPARED_KINDS if k not in stored
    ]
    if stored and not stored_kinds(env, "risk"):  # a data dir prepared before risk models
        steps.append(["train", "--model", "har"])
    for step in steps:
        subprocess.run([CLI, *step], env=env, check=True, timeout=600, capture_output=True)


def stored_kinds(env: dict[str, str], family: str = "price") -> set[str]:
    """The model kinds of ``family`` with a stored version (``models list --json``; risk
    models do not forecast prices)."""
    done = subprocess.run(
        [CLI, "models", "list", "--json"], env=env, check=True, capture_output=True, timeout=120
    )
    return {row["model"] for row in json.loads(done.stdout) if row.get("family", "price") == family}


def mix_script(tmp: Path, env: dict[str, str]) -> Path:
    """The uncached mix's wrk script over every stored model kind."""
    kinds = ", ".join(f'"{kind}"' for kind in sorted(stored_kinds(env)))
    path = tmp / "mix.lua"
    path.write_text(MIX_SCRIPT.replace("{KINDS}", "{" + kinds + "}"))
    return path


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine has been busy since boot (/proc/stat)."""
    first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    user, nice, system, _, _, irq, softirq, steal = (int(v) for v in first[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    """CPU seconds of this process and of every descendant reaped so far."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


@dataclass(frozen=True, slots=True)
class Machine:
    """The measured tree, the load before, and other processes' CPU during the run."""

    load_before: float
    other_cpu_s: float
    wall_s: float
    tree: str


def wait_for_quiet(max_load: float, max_wait: int) -> float:
    """Poll the 1-minute load every minute until below ``max_load``; the final value."""
    deadline = time.monotonic() + max_wait
    while (load := os.getloadavg()[0]) >= max_load and time.monotonic() < deadline:
        print(f"load average {load:.2f} >= {max_load}: waiting a minute", flush=True)
        time.sleep(60)
    return os.getloadavg()[0]


def to_ms(text: str) -> float:
    """A wrk duration such as ``812.00us``, ``3.1ms`` or ``1.02s`` in milliseconds."""
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def parse_wrk(text: str) -> WrkResult:
    """Requests/s, p50, p99 and non-2xx/socket-error count from ``wrk --latency`` output."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    pct = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", text, re.MULTILINE))
    bad = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", text))
    bad += sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", text))
    return WrkResult(rps, to_ms(pct["50"]), to_ms(pct["99"]), bad)


def wrk(
    port: int, path: str, connections: int, threads: int, seconds: int, script: Path | None = None
) -> WrkResult:
    """One ``wrk --latency`` run against ``path`` (its requests made by ``script`` if given)."""
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script is not None:
        cmd += ["-s", str(script)]
    done = subprocess.run(
        [*cmd, f"http://{HOST}:{port}{path}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    )
    return parse_wrk(done.stdout)


def warm(port: int, path: str, threads: int, script: Path | None = None) -> None:
    """Fill both workers' caches: check one request, then 2 s of wrk at 8 connections (for
    the mix: its script, so each worker has made its one model run per kind)."""
    status = get(port, path, timeout=60)
    if status != 200:
        raise RuntimeError(f"GET {path} answered {status}: is a model trained and active?")
    wrk(port, path, 8, threads, 2, script)


def median(results: list[WrkResult]) -> WrkResult:
    """The per-field median of repeated runs (failures summed)."""
    return WrkResult(
        statistics.median(r.rps for r in results),
        statistics.median(r.p50 for r in results),
        statistics.median(r.p99 for r in results),
        sum(r.bad for r in results),
    )


Table = dict[tuple[str, int], WrkResult]


def measure(
    ports: dict[str, int], args: argparse.Namespace, scripts: dict[str, Path] | None = None
) -> Table:
    """Interleaved wrk runs of every endpoint at 32 and 4 connections, medians of rounds."""
    scripts = scripts or {}
    for name, port in ports.items():
        warm(port, ENDPOINTS[name], args.threads, scripts.get(name))
    runs: dict[tuple[str, int], list[WrkResult]] = {}
    for _ in range(args.rounds):
        for connections in (32, 4):
            for name, port in ports.items():
                result = wrk(
                    port,
                    ENDPOINTS[name],
                    connections,
                    args.threads,
                    args.duration,
                    scripts.get(name),
                )
                runs.setdefault((name, connections), []).append(result)
                print(f"  {name:<26} c{connections:<3} {result}", flush=True)
    return {key: median(values) for key, values in runs.items()}


def role(proc: psutil.Process, root_pid: int) -> str:
    """What a process of the serve tree is."""
    cmdline = " ".join(proc.cmdline())
    if proc.pid == root_pid:
        return "serve (uvicorn supervisor)"
    if "btc_predictor worker" in cmdline:
        return "embedded job worker"
    if "resource_tracker" in cmdline:
        return "multiprocessing resource tracker"
    return "uvicorn API worker" if "spawn_main" in cmdline else proc.name()


def tree_rss(root_pid: int) -> list[Proc]:
    """RSS (MB) of the serve process and every descendant."""
    root = psutil.Process(root_pid)
    return [
        Proc(role(p, root_pid), p.pid, p.memory_info().rss / 2**20)
        for p in [root, *root.children(recursive=True)]
    ]


@dataclass(frozen=True, slots=True)
class Start:
    """One fresh start of ``serve``: seconds to ``/health/ready`` 200, then one ``/predict``."""

    ready: float
    first_predict: float


def readiness(args: argparse.Namespace, env: dict[str, str], log: Path) -> list[Start]:
    """Spawn ``serve`` ``--starts`` times; time readiness and the first (cold) /predict."""
    starts = []
    for _ in range(args.starts):
        port = free_port()
        with running(serve_cmd(port, args.workers), env, log):
            ready = wait_ready(port, "/health/ready", timeout=60)
            began = time.perf_counter()
            ok = get(port, "/predict", timeout=60) == 200
            starts.append(Start(ready, time.perf_counter() - began if ok else float("nan")))
        time.sleep(1)
    return starts


def api_pids(root_pid: int) -> set[int]:
    """Pids of the uvicorn API workers under ``root_pid``."""
    return {p.pid for p in tree_rss(root_pid) if p.role == "uvicorn API worker"}


def py_spy() -> str | None:
    """The py-spy executable (PATH or next to this Python), if installed."""
    local = Path(sys.executable).with_name("py-spy")
    return shutil.which("py-spy") or (str(local) if local.exists() else None)


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds per thread id of a process."""
    return {t.id: t.user_time + t.system_time for t in psutil.Process(pid).threads()}


def profile(pid: int, port: int, args: argparse.Namespace, out: Path) -> list[str]:
    """py-spy (non-blocking) one worker during 8 s of /predict at c32; CPU split by thread."""
    spy = py_spy()
    if spy is None:
        return ["py-spy not installed (pip install py-spy)"]
    cmd = [spy, "record", "--pid", str(pid), "--duration", "8", "--rate", "200", "--nonblocking"]
    before = thread_cpu(pid)
    with subprocess.Popen(
        [*cmd, "--format", "raw", "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ) as spy_proc:
        time.sleep(0.5)
        wrk(port, "/predict", 32, args.threads, 8)
        spy_proc.wait(timeout=60)
    spent = {t: c - before.get(t, 0.0) for t, c in thread_cpu(pid).items()}
    loop, rest = spent.get(pid, 0.0), sum(spent.values()) - spent.get(pid, 0.0)
    head = (
        f"CPU in 8.5 s: event-loop thread {loop:.2f} s, {len(spent) - 1} other threads {rest:.2f} s"
    )
    return [head, *summarize_stacks(out.read_text())]


def summarize_stacks(raw: str) -> list[str]:
    """Self and inclusive shares of the event-loop thread's samples (py-spy raw stacks)."""
    leaves: Counter[str] = Counter()
    totals: Counter[str] = Counter()
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [short(f) for f in stack.split(";")]
        if not any("Server.run" in f for f in frames):
            continue  # threadpool threads: mostly parked in Condition.wait
        leaves[frames[-1]] += int(count)
        for frame in set(frames):
            totals[frame] += int(count)
    n = sum(leaves.values()) or 1
    lines = [f"{n} samples of the event-loop thread; self time (top 12):"]
    lines += [f"  {100 * c / n:5.1f}%  {f}" for f, c in leaves.most_common(12)]
    lines.append("inclusive time (top 30 below the 95% outer frames):")
    inner = [(f, c) for f, c in totals.most_common() if c < 0.95 * n][:30]
    lines += [f"  {100 * c / n:5.1f}%  {f}" for f, c in inner]
    return lines


def short(frame: str) -> str:
    """``func (/long/path/site-packages/pkg/mod.py:12)`` as ``func (pkg/mod.py:12)``."""
    return re.sub(r"\(\S*?(?:site-packages|src|lib/python3\.\d+)/", "(", frame)


def serve_config(args: argparse.Namespace, embedded: bool) -> str:
    """One line describing the measured server configuration."""
    worker = "on (default)" if embedded else "off (BTCP_EMBEDDED_WORKER=false)"
    return (
        f"`serve --workers {args.workers}`, embedded job worker {worker}, request log on "
        "(BTCP_LOG_FORMAT=text, the default: one INFO line per request on stderr, here "
        "appended to a file), uvicorn access log off (serve's own setting), forecast ledger "
        "on (rows queued once per model run and horizon, written in batches off the request "
        "path)"
    )


def verdict(ok: bool) -> str:
    """PASS or MISS."""
    return "PASS" if ok else "MISS"


TABLE_HEAD = [
    "| endpoint | c32 req/s | c32 p50 ms | c32 p99 ms | c4 req/s | c4 p50 ms | c4 p99 ms "
    "| req/s vs reference c32 / c4 | failed |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
]


def row(name: str, c32: WrkResult, c4: WrkResult, ref: Table) -> str:
    """One Markdown table row."""
    ratios = (
        f"{c32.rps / ref[('reference /', 32)].rps:.2f} / {c4.rps / ref[('reference /', 4)].rps:.2f}"
    )
    return (
        f"| {name} | {c32.rps:,.0f} | {c32.p50:.2f} | {c32.p99:.2f} | {c4.rps:,.0f} "
        f"| {c4.p50:.2f} | {c4.p99:.2f} | {ratios} | {c32.bad + c4.bad} |"
    )


def table_lines(table: Table) -> list[str]:
    """The Markdown result table, with each endpoint's ratio to the reference."""
    rows = [row(f"`{n}`", table[(n, 32)], table[(n, 4)], table) for n in ENDPOINTS]
    return [*TABLE_HEAD, *rows]


def targets(table: Table, ready_s: float, procs: list[Proc]) -> list[str]:
    """PASS/MISS per target of the issue."""
    ref, pred, pred4 = table[("reference /", 32)], table[("/predict", 32)], table[("/predict", 4)]
    api_rss = max(p.rss_mb for p in procs if p.role != "embedded job worker")
    return [
        f"- /predict throughput >= {TARGET_RATIO:.0%} of the reference at c32: "
        f"{pred.rps / ref.rps:.0%} -> **{verdict(pred.rps >= TARGET_RATIO * ref.rps)}**",
        f"- /predict p99 < {TARGET_P99_C32} ms at c32: {pred.p99:.2f} ms -> "
        f"**{verdict(pred.p99 < TARGET_P99_C32)}**",
        f"- /predict p99 < {TARGET_P99_C4} ms at c4: {pred4.p99:.2f} ms -> "
        f"**{verdict(pred4.p99 < TARGET_P99_C4)}**",
        f"- fresh server ready <= {TARGET_READY_S} s (median): {ready_s:.2f} s -> "
        f"**{verdict(ready_s <= TARGET_READY_S)}**",
        f"- every API process < {TARGET_RSS_MB} MB RSS (supervisor and uvicorn workers): "
        f"max {api_rss:.0f} MB -> **{verdict(api_rss < TARGET_RSS_MB)}**",
        *cache_targets(table),
    ]


def cache_targets(table: Table) -> list[str]:
    """PASS/MISS per target of issue 14 (the serving cache)."""
    mix, cached, assets = (
        table[(MIX, 32)],
        table[("/forecast h=7", 32)],
        table[("/api/v1/assets", 32)],
    )
    ratio = mix.rps / cached.rps
    return [
        f"- uncached mix >= {TARGET_MIX_RATIO:.0%} of the cached /api/v1/forecast at c32: "
        f"{ratio:.0%} -> **{verdict(ratio >= TARGET_MIX_RATIO)}**",
        f"- uncached mix p99 < {TARGET_MIX_P99} ms at c32: {mix.p99:.2f} ms -> "
        f"**{verdict(mix.p99 < TARGET_MIX_P99)}**",
        f"- /api/v1/assets >= {TARGET_ASSETS_RPS:,} req/s at c32: {assets.rps:,.0f} -> "
        f"**{verdict(assets.rps >= TARGET_ASSETS_RPS)}**",
        *risk_targets(table),
    ]


def risk_targets(table: Table) -> list[str]:
    """PASS/MISS per target of issue 17 (the cached risk endpoint)."""
    risk, cached = table[("/risk h=7", 32)], table[("/forecast h=7", 32)]
    ratio = risk.rps / cached.rps
    return [
        f"- /api/v1/risk?horizon=7 >= {TARGET_RISK_RATIO:.0%} of /api/v1/forecast?horizon=7 at "
        f"c32: {ratio:.0%} -> **{verdict(ratio >= TARGET_RISK_RATIO)}**",
    ]


def rss_lines(procs: list[Proc]) -> list[str]:
    """The process tree with RSS."""
    return [f"- {p.role} (pid {p.pid}): {p.rss_mb:.0f} MB" for p in procs]


@dataclass(slots=True)
class Run:
    """Everything one configuration measured."""

    config: str
    table: Table
    procs: list[Proc]
    log_lines: int
    restarts: int


@dataclass(frozen=True, slots=True)
class Variant:
    """/predict of one diagnostic variant, with the garbage collector's pauses."""

    name: str
    c32: WrkResult
    c4: WrkResult
    gc_max_ms: float
    gen2: int


Ablation = list[Variant]


def header(args: argparse.Namespace, machine: Machine) -> list[str]:
    """Title, command, machine and method."""
    return [
        "# API load benchmark",
        "",
        f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {machine.tree} by "
        f"`{command_line()}` "
        "(data prepared by the script: CSV ingest of Bitstamp BTC-USD daily, default "
        f"model `lstm` trained with {args.epochs} epochs and promoted, "
        f"{', '.join(f'`{k}`' for k in PREPARED_KINDS)} trained beside it; database: "
        f"{'PostgreSQL (`--database-url`)' if args.database_url else 'SQLite in the data dir'}). "
        "Uncached mix: a wrk Lua script cycling horizon 1..30 x level 50..99 x every stored "
        "model kind (`model=`), the two wrk threads half a cycle apart.",
        "",
        f"Machine: {os.cpu_count()} cores ({platform_note()}); 1-minute load average "
        f"{machine.load_before:.2f} right before the measured run; other processes used "
        f"{machine.other_cpu_s:.0f} CPU-seconds during its {machine.wall_s:.0f} s "
        f"({machine.other_cpu_s / machine.wall_s:.2f} cores on average; /proc/stat busy "
        f"time minus this benchmark's own processes). wrk {wrk_version()} on {HOST}, "
        f"`-t{args.threads}`, {args.duration} s per run, `--latency`; "
        f"{args.rounds} interleaved round(s) (median). Every endpoint was warmed first "
        "(one request, then 2 s of wrk at 8 connections, so both workers hold the forecast). "
        "Reference: a FastAPI app with one `async def` returning a constant, started with "
        f"serve's uvicorn settings: `uvicorn ref:app --workers {args.workers} --log-level "
        "warning --no-access-log`. At c4 the four keep-alive connections are split "
        "between the two workers by whichever accepts first (4/0 up to 2/2), so c4 "
        "throughput is bimodal from run to run (the reference: ~11k vs ~20k req/s); "
        "read c4 mainly for latency.",
        "",
    ]


def run_lines(run: Run) -> list[str]:
    """One configuration's table, log volume, worker restarts and RSS."""
    return [
        f"## {run.config}",
        "",
        *table_lines(run.table),
        "",
        f"Request-log lines written: {run.log_lines:,}. uvicorn workers replaced during the "
        f"load (health-check kills or crashes): {run.restarts}.",
        "",
        "RSS after the load:",
        "",
        *rss_lines(run.procs),
        "",
    ]


def readiness_lines(starts: list[Start]) -> list[str]:
    """Readiness of fresh starts and their first /predict."""
    ready = ", ".join(f"{s.ready:.2f}" for s in starts)
    first = ", ".join(f"{s.first_predict:.2f}" for s in starts)
    return [
        "## Readiness (embedded worker on)",
        "",
        f"Spawn of `serve` to `/health/ready` 200 (polled every 20 ms), {len(starts)} "
        f"starts: {ready} s; median **{statistics.median(s.ready for s in starts):.2f} s**. "
        f"The first `/predict` after that (model load, forecast, ledger row): {first} s.",
        "",
    ]


def ablation_lines(ablation: Ablation, ref: Table) -> list[str]:
    """Diagnostic variants of the product app (no code changed: overrides at start-up)."""
    if not ablation:
        return []
    head = [TABLE_HEAD[0] + " max GC pause ms | gen-2 GCs |", TABLE_HEAD[1] + "---:|---:|"]
    rows = [f"{row(v.name, v.c32, v.c4, ref)} {v.gc_max_ms:.1f} | {v.gen2} |" for v in ablation]
    return [
        "## Diagnosis: `/predict` with parts of the request path changed",
        "",
        "The product app built by `app_from_environment()` and started by uvicorn with "
        "serve's settings (no embedded worker), varied at start-up by a diagnostic factory "
        "this script writes (the product's code is not changed); medians of the rounds, "
        'ratios to the reference above. "request log muted": logger `btc_predictor.api` at '
        'WARNING. "no envelope": the request-envelope middleware of `api/app.py` removed. '
        '"hot paths off": `/predict` and `/api/v1/forecast` served by their FastAPI '
        "declarations (dependency injection, routing through the included routers, "
        "response-model validation), as before commit 9cc7840. GC columns: "
        "the longest collection and the number of gen-2 collections in the workers during "
        "the variant's runs (both workers when reached).",
        "",
        *head,
        *rows,
        "",
    ]


def report(
    args: argparse.Namespace,
    machine: Machine,
    starts: list[Start],
    runs: list[Run],
    extra: list[str],
) -> str:
    """The Markdown results file."""
    head = runs[0]
    lines = [*header(args, machine), *run_lines(head), *readiness_lines(starts)]
    lines += ["## Targets (headline: default configuration)", ""]
    lines += [*targets(head.table, statistics.median(s.ready for s in starts), head.procs), ""]
    for run in runs[1:]:
        lines += run_lines(run)
    return "\n".join([*lines, *extra])


def command_line() -> str:
    """How this run was started."""
    return " ".join(["python", "bench/api_load.py", *sys.argv[1:]])


def git(*cmd: str) -> str:
    """A read-only git command's output in this repository ("unknown" on failure)."""
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(["git", *cmd], cwd=root, capture_output=True, text=True, check=False)
    return done.stdout.strip() if done.returncode == 0 else "unknown"


def tree_state() -> tuple[str, int]:
    """The measured commit (and whether src/ differs from it), with a fingerprint of src/."""
    diff = git("diff", "HEAD", "--", "src")
    note = f"commit {git('rev-parse', '--short', 'HEAD')}"
    note += " with uncommitted changes in src/" if diff else " (src/ clean)"
    return note, hash((note, diff))


def platform_note() -> str:
    """CPU model and Python version."""
    model = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        "unknown CPU",
    )
    return f"{model}, Python {sys.version.split()[0]}"


def wrk_version() -> str:
    """wrk's version string."""
    done = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    return (done.stdout or done.stderr).split(" [")[0].removeprefix("wrk ").strip()


def count_requests(log: Path) -> int:
    """Request-log lines in a server log."""
    pattern = re.compile(r"btc_predictor\.api: (GET|POST|DELETE) ")
    return sum(1 for line in log.read_text(errors="replace").splitlines() if pattern.search(line))


def measure_config(
    args: argparse.Namespace, embedded: bool, tmp: Path, ref_port: int
) -> tuple[Run, list[str]]:
    """Start serve in one configuration and measure it next to the running reference."""
    port, log = free_port(), tmp / f"serve-{'worker' if embedded else 'noworker'}.log"
    env = base_env(args.data_dir, embedded, args.database_url)
    print(f"serve, embedded worker {'on' if embedded else 'off'}:", flush=True)
    with running(serve_cmd(port, args.workers), env, log) as proc:
        wait_ready(port, "/health/ready", timeout=60)
        before = api_pids(proc.pid)
        ports = {name: (ref_port if name == "reference /" else port) for name in ENDPOINTS}
        table = measure(ports, args, {MIX: mix_script(tmp, env)})
        procs = tree_rss(proc.pid)
        restarts = len(before - api_pids(proc.pid))
        spied = []
        if args.profile and embedded:
            pid = next(p.pid for p in procs if p.role == "uvicorn API worker")
            spied = profile(pid, port, args, tmp / "pyspy.txt")
    run = Run(serve_config(args, embedded), table, procs, count_requests(log), restarts)
    return run, spied


def gc_stats(port: int) -> tuple[float, int]:
    """Longest GC pause (ms) and gen-2 collections, over the workers a few GETs reach."""
    seen = {}
    for _ in range(12):
        stats = get_json(port, "/bench/gc")
        seen[stats["pid"]] = stats
    return max(s["max_ms"] for s in seen.values()), sum(s["gen2"] for s in seen.values())


def ablate(args: argparse.Namespace, tmp: Path) -> Ablation:
    """/predict at c32 and c4 for every diagnostic variant of the product app."""
    (tmp / "diag.py").write_text(DIAG_APP)
    results = []
    for name, flags in ABLATIONS.items():
        port = free_port()
        env = base_env(args.data_dir, False, args.database_url) | {"BENCH_ABLATE": flags}
        with running(uvicorn_cmd("diag:factory()", tmp, port, args.workers), env, tmp / "d.log"):
            wait_ready(port, "/health/ready", timeout=60)
            warm(port, "/predict", args.threads)
            runs = [
                [wrk(port, "/predict", c, args.threads, args.duration) for c in (32, 4)]
                for _ in range(args.rounds)
            ]
            c32, c4 = (median([r[i] for r in runs]) for i in (0, 1))
            variant = Variant(name, c32, c4, *gc_stats(port))
        print(f"  {variant}", flush=True)
        results.append(variant)
    return results


def profile_lines(spied: list[str]) -> list[str]:
    """The py-spy summary as a Markdown section."""
    if not spied:
        return []
    title = "## Profile: py-spy on one API worker, `/predict` at c32 (default configuration)"
    return [title, "", "```", *spied, "```", ""]


def keep_notes(out: Path, text: str) -> str:
    """``text`` plus the hand-written notes below NOTES_MARKER of the existing file."""
    old = out.read_text() if out.exists() else ""
    notes = old.split(NOTES_MARKER, 1)[1] if NOTES_MARKER in old else "\n"
    return f"{text}\n{NOTES_MARKER}{notes}"


def too_long(*_: object) -> NoReturn:
    """SIGALRM: abort the run (the context managers stop every process)."""
    raise TimeoutError(f"benchmark exceeded {HARD_LIMIT_S} s")


def measure_all(args: argparse.Namespace, tmp: Path) -> tuple[list[Start], list[Run], list[str]]:
    """Readiness, every configuration next to the reference, then the optional diagnosis."""
    (tmp / "ref.py").write_text(REFERENCE_APP)
    env = base_env(args.data_dir, True, args.database_url)
    starts = readiness(args, env, tmp / "readiness.log")
    print(f"readiness: {starts}", flush=True)
    ref_port = free_port()
    with running(uvicorn_cmd("ref:app", tmp, ref_port, args.workers), env, tmp / "ref.log"):
        wait_ready(ref_port, "/", timeout=60)
        configs = [True, False] if args.also_no_worker else [True]
        measured = [measure_config(args, embedded, tmp, ref_port) for embedded in configs]
    runs = [m[0] for m in measured]
    extra = ablation_lines(ablate(args, tmp), runs[0].table) if args.ablate else []
    return starts, runs, extra + profile_lines(measured[0][1])


def main() -> None:
    """Prepare, wait for a quiet machine, measure, print and write the report."""
    args = parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install -y wrk")
    prepare(args)
    load = wait_for_quiet(args.max_load, args.max_wait)
    signal.signal(signal.SIGALRM, too_long)
    signal.alarm(HARD_LIMIT_S)
    tree, busy, own, began = tree_state(), busy_cpu_seconds(), own_cpu_seconds(), time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="api_load_") as name:
            starts, runs, extra = measure_all(args, Path(name))
    finally:
        signal.alarm(0)
    other = (busy_cpu_seconds() - busy) - (own_cpu_seconds() - own)
    after = tree_state()
    note = tree[0] if after == tree else f"{tree[0]}, CHANGED during the run to {after[0]}"
    machine = Machine(load, max(other, 0.0), time.monotonic() - began, note)
    text = report(args, machine, starts, runs, extra)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(keep_notes(args.out, text))


if __name__ == "__main__":
    main()
