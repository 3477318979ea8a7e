"""Run benchmark children round robin: every implementation once per round, each in its own process, so
that a drift in the machine's speed (this VM's moves by ±15% within minutes) hits every row alike."""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path


def run_rounds(names: list[str], repeats: int, command: Callable[[str], list[str]], cwd: Path,
               env: Callable[[str], dict | None] = lambda name: None, rate: str = "") -> dict[str, list[dict]]:
    """{name: [the JSON each child printed last, one per round]}; a child that fails is reported and dropped."""
    results: dict[str, list[dict]] = {}
    failed: set[str] = set()
    for repeat in range(repeats):
        for name in names:
            if name in failed:
                continue
            out = subprocess.run([sys.executable, *command(name)], capture_output=True, text=True, cwd=cwd,
                                 env=env(name))
            if out.returncode:
                print(f"{name} failed: {out.stderr[-800:]}", flush=True)
                failed.add(name)
                continue
            results.setdefault(name, []).append(json.loads(out.stdout.strip().splitlines()[-1]))
            shown = f" {results[name][-1][rate]:,.0f} {rate}" if rate else ""
            print(f"round {repeat + 1}: {name}{shown}", flush=True)
    return results


def machine_line() -> str:
    """The load average (run benchmarks on an idle machine) and the CPU: its model and widest vector
    instructions, which set what the fused kernels can reach (figures from AVX-512 and AVX2 machines differ
    by 2-3x)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    except OSError:
        pass
    isa = next((name for flag, name in (("avx512f", "AVX-512"), ("avx2", "AVX2"), ("sse4_2", "SSE4.2"))
                if flag in flags), "unknown ISA")
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"load average before: {load} (1, 5, 15 min); {os.cpu_count()} CPUs, {model}, {isa}"


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB since its program started: VmHWM, which exec resets.
    getrusage's ru_maxrss survives exec, so a child forked from a bench that holds gigabytes reports the
    bench's size (a 10M-pair `dien-batch score` read 1,676 MB that way, 793 MB started from a shell, with
    its resident memory sampled at 590-790 MB throughout)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
