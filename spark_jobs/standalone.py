"""A real Spark standalone cluster (one master, one worker) on 127.0.0.1, from the installed pyspark.

For the tests and for trying `--master spark://...` on one machine; a user's own cluster replaces it.
The pyspark wheel has no `sbin/start-*.sh`, so the daemons are started with its `bin/spark-class`:

    python -m dien_batch.spark_jobs.standalone start --dir /tmp/spark-cluster   # prints the master URL
    dien-batch build-features --master spark://127.0.0.1:PORT ...
    python -m dien_batch.spark_jobs.standalone stop --dir /tmp/spark-cluster

`start` returns once the worker has registered with the master (or fails with the daemons' log
tail); `stop` ends both daemons and the executors they launched (each runs in its own process group).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path

from dien_batch.errors import UsageError

from .session import find_java

STATE = "cluster.json"
MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"


@dataclass(frozen=True)
class Cluster:
    master_url: str
    web_url: str
    pids: tuple[int, ...]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spark_class() -> Path:
    import pyspark

    return Path(pyspark.__file__).parent / "bin" / "spark-class"


def _environment() -> dict[str, str]:
    env = dict(os.environ, SPARK_LOCAL_IP="127.0.0.1", SPARK_NO_DAEMONIZE="1",
               PYSPARK_PYTHON=os.environ.get("PYSPARK_PYTHON", sys.executable))
    env.pop("SPARK_HOME", None)  # spark-class finds the wheel's own jars
    return env


def _daemon(args: list[str], log: Path) -> subprocess.Popen:
    with open(log, "ab") as fh:
        return subprocess.Popen([str(_spark_class()), *args], stdout=fh, stderr=subprocess.STDOUT,
                                env=_environment(), start_new_session=True)


def _alive_workers(web_url: str) -> int:
    try:
        with urllib.request.urlopen(f"{web_url}/json/", timeout=2) as response:
            state = json.load(response)
    except (OSError, ValueError):
        return 0
    return sum(1 for w in state.get("workers", []) if w.get("state") == "ALIVE")


def _tail(path: Path, lines: int = 15) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def start(directory: str | Path, cores: int = 2, memory: str = "3g", timeout: float = 120.0) -> Cluster:
    """Start a master and one worker; return once the worker is registered."""
    find_java()
    root = Path(directory)
    (root / "work").mkdir(parents=True, exist_ok=True)
    port, web_port, worker_web = _free_port(), _free_port(), _free_port()
    master_url, web_url = f"spark://127.0.0.1:{port}", f"http://127.0.0.1:{web_port}"
    master = _daemon([MASTER_CLASS, "--host", "127.0.0.1", "--port", str(port), "--webui-port", str(web_port)],
                     root / "master.log")
    worker = _daemon([WORKER_CLASS, master_url, "--host", "127.0.0.1", "--cores", str(cores), "--memory", memory,
                      "--webui-port", str(worker_web), "--work-dir", str(root / "work")], root / "worker.log")
    cluster = Cluster(master_url, web_url, (master.pid, worker.pid))
    (root / STATE).write_text(json.dumps(asdict(cluster)))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _alive_workers(web_url) >= 1:
            return cluster
        if master.poll() is not None or worker.poll() is not None:
            break
        time.sleep(0.5)
    stop(root)
    raise UsageError(f"the standalone cluster did not come up within {timeout:.0f} s; master log:\n"
                     f"{_tail(root / 'master.log')}\nworker log:\n{_tail(root / 'worker.log')}")


def stop(directory: str | Path, grace: float = 10.0) -> None:
    """Stop the daemons recorded in directory (and the executors in their process groups)."""
    state = Path(directory) / STATE
    if not state.exists():
        return
    pids = json.loads(state.read_text())["pids"]
    for pid in reversed(pids):  # the worker first: it takes its executors down with it
        with suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for pid in pids:
        while time.monotonic() < deadline and _group_alive(pid):
            time.sleep(0.2)
        if _group_alive(pid):
            os.killpg(pid, signal.SIGKILL)
            killed = time.monotonic() + 5.0
            while time.monotonic() < killed and _group_alive(pid):
                time.sleep(0.1)
    state.unlink()


def _group_alive(pgid: int) -> bool:
    """Whether any process of the group is left; reaps the leader if it is our exited child (a zombie
    would otherwise count as alive)."""
    with suppress(ChildProcessError):
        os.waitpid(pgid, os.WNOHANG)
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@contextmanager
def running(directory: str | Path, **kwargs):
    """`with running(dir) as cluster:` a started cluster, stopped on the way out whatever happens."""
    cluster = start(directory, **kwargs)
    try:
        yield cluster
    finally:
        stop(directory)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dien_batch.spark_jobs.standalone", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("--dir", required=True, help="state and logs of the cluster")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--memory", default="3g")
    args = parser.parse_args(argv)
    if args.action == "start":
        try:
            print(start(args.dir, args.cores, args.memory).master_url)
        except UsageError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    else:
        stop(args.dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
