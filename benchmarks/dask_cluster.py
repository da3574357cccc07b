"""Run a command beside a Dask LocalCluster: `python -m benchmarks.dask_cluster -- <command>`.

The scale-out bench runs `lagesbild run` through this, so the clean step fans out over one
cluster for the whole run (as on a long-lived production cluster, setting
dask_scheduler_address) and the cluster's worker processes are in the measured process tree.
Writes the seconds the cluster took to start to --timings. Needs the optional extra `spark`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--timings", type=Path, required=True)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    arguments = parser.parse_args()
    command = arguments.command[1:] if arguments.command[:1] == ["--"] else arguments.command

    from distributed import LocalCluster

    started = time.perf_counter()
    with LocalCluster(
        n_workers=arguments.workers,
        threads_per_worker=arguments.threads,
        processes=True,
        dashboard_address=None,
    ) as cluster:
        start_up = time.perf_counter() - started
        env = {**os.environ, "LAGESBILD_DASK_SCHEDULER_ADDRESS": cluster.scheduler_address}
        code = subprocess.run(command, env=env).returncode
    arguments.timings.write_text(json.dumps({"cluster_start": start_up}))
    return code


if __name__ == "__main__":
    sys.exit(main())
