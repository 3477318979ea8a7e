"""One place that builds SparkSessions with settings that work on small machines and on clusters."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from dien_batch.errors import UsageError

LOG4J = Path(__file__).with_name("log4j2.properties")


def find_java() -> str:
    """The java binary Spark will use, or a UsageError that says how to get one."""
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home and (Path(home) / "bin" / "java").exists() else shutil.which("java")
    if not java:
        raise UsageError("Java is missing: Spark needs Java 17 or newer. Debian/Ubuntu: "
                         "sudo apt-get install openjdk-17-jre-headless (or set JAVA_HOME)")
    text = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    try:
        major = int(text.split('"')[1].split(".")[0])
    except (IndexError, ValueError):
        major = 0
    if major < 17:
        raise UsageError(f"{java} is Java {major or 'of unknown version'}; Spark 4 needs Java 17 or newer")
    return java


JVM_NOISE = ("WARNING: Using incubator modules",)  # printed by every Spark 4 JVM at start; not the user's concern


def _start_quiet_gateway(master: str, app: str, settings: dict[str, str]) -> None:
    """Start the JVM ourselves with its stderr piped through a filter that drops the start-up noise
    above and forwards everything else (errors included) to our stderr."""
    import threading
    from subprocess import PIPE

    from pyspark import SparkConf, SparkContext
    from pyspark.java_gateway import launch_gateway

    if SparkContext._gateway is not None or "PYSPARK_GATEWAY_PORT" in os.environ:
        return
    conf = SparkConf().setMaster(master).setAppName(app).setAll(list(settings.items()))
    gateway = launch_gateway(conf, popen_kwargs={"stderr": PIPE})
    proc = gateway.proc

    def forward():
        for raw in iter(proc.stderr.readline, b""):
            line = raw.decode(errors="replace")
            if not line.startswith(JVM_NOISE):
                sys.stderr.write(line)
                sys.stderr.flush()

    threading.Thread(target=forward, name="spark-stderr", daemon=True).start()
    SparkContext._ensure_initialized(gateway=gateway, conf=conf)


def parse_conf(pairs: tuple[str, ...] | list[str]) -> dict[str, str]:
    """`--spark-conf KEY=VALUE` options as a dict (they override the settings below)."""
    conf = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key.strip().startswith("spark."):
            raise UsageError(f"--spark-conf: expected spark.KEY=VALUE, got '{pair}'")
        conf[key.strip()] = value.strip()
    return conf


def spark_session(master: str = "local[2]", *, app: str = "dien-batch", driver_memory: str = "4g",
                  shuffle_partitions: int | None = None, conf: dict[str, str] | None = None):
    """Get or create the session. Local masters bind to 127.0.0.1 and keep the UI off."""
    find_java()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    local = master.startswith("local")
    java_opts = f"-Dlog4j.configurationFile=file:{LOG4J}"
    settings = {
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.adaptive.enabled": "true",
        "spark.sql.shuffle.partitions": str(shuffle_partitions or (4 if local else 200)),
        "spark.driver.memory": driver_memory,
        "spark.driver.extraJavaOptions": java_opts,
        "spark.executor.extraJavaOptions": java_opts,
        "spark.sql.parquet.compression.codec": "zstd",
        # No .crc side files next to the outputs: they go stale when anyone rewrites a file.
        "spark.hadoop.fs.file.impl": "org.apache.hadoop.fs.RawLocalFileSystem",
        "spark.hadoop.fs.file.impl.disable.cache": "true",
        **(conf or {}),
    }
    if local:
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        settings.update({"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1"})
    _start_quiet_gateway(master, app, settings)
    builder = SparkSession.builder.master(master).appName(app)
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


class Persisted:
    """The frames one job caches (memory, spilling to disk): `keep(df)` persists and returns df;
    `release()` unpersists them all."""

    def __init__(self):
        self.frames = []

    def __call__(self, df):
        from pyspark import StorageLevel

        self.frames.append(df.persist(StorageLevel.MEMORY_AND_DISK))
        return df

    def release(self) -> None:
        for df in self.frames:
            df.unpersist()
        self.frames.clear()
