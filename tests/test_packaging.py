"""The installed package claims only its own name: engines/, reports/ and spark_jobs/ install as
dien_batch.engines, dien_batch.reports and dien_batch.spark_jobs."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_installs_no_generic_top_level_names(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path), str(ROOT)], check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("dien_batch-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"dien_batch"}, top
    for needed in ("dien_batch/engines/onnx_engine.py", "dien_batch/reports/templates/report.html",
                   "dien_batch/spark_jobs/log4j2.properties", "dien_batch/model/recurrence.cpp",
                   "dien_batch/model/attention.cpp", "dien_batch/model/kernels.h", "dien_batch/model/zoo/dien.py"):
        assert needed in names, needed


def test_generic_names_do_not_import_outside_the_checkout(tmp_path):
    code = ("import importlib.util, dien_batch.engines, dien_batch.reports, dien_batch.spark_jobs; "
            "print([importlib.util.find_spec(n) is None for n in ('engines', 'reports', 'spark_jobs')])")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[True, True, True]"
