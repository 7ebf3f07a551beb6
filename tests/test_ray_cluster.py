"""A real two-node Ray cluster on this machine, a run submitted with `ray job submit`.

The head and a second node are started with `ray start`, each with its own custom
resource; token authentication is on. The run's two workers must land on both nodes,
which the test reads back from the worker records in the lineage store.
"""

import json
import os
import secrets
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import factories
from evo_merge.store import RunStore

pytestmark = pytest.mark.slow  # a real two-node Ray cluster and `ray job submit`

ROOT = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).parent / "ray")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sh(args: list[str], env: dict, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture()
def cluster(tmp_path):
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16),
           "RAY_USAGE_STATS_ENABLED": "0", "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
    env.pop("RAY_ADDRESS", None)
    port, dash = free_port(), free_port()
    try:
        head = sh([RAY, "start", "--head", "--port", str(port), "--num-cpus", "1", "--resources", '{"evo_head": 1}',
                   "--include-dashboard", "true", "--dashboard-port", str(dash), "--node-ip-address", "127.0.0.1"],
                  env, 120)
        assert head.returncode == 0, head.stderr[-2000:]
        node = sh([RAY, "start", "--address", f"127.0.0.1:{port}", "--num-cpus", "1",
                   "--resources", '{"evo_node2": 1}', "--node-ip-address", "127.0.0.1"], env, 120)
        assert node.returncode == 0, node.stderr[-2000:]
        yield env, f"http://127.0.0.1:{dash}"
    finally:
        sh([RAY, "stop", "--force"], env, 60)


def test_job_submit_places_workers_on_both_nodes(cluster, tmp_path, tiny_lora):
    env, dashboard = cluster
    task = factories.write_task(tmp_path)
    cfg = factories.write_run_config(tmp_path, tiny_lora, task, generations=1)
    data = yaml.safe_load(cfg.read_text())
    data["pool"] = {"backend": "ray", "workers": 2, "placement": "STRICT_SPREAD", "cpus_per_worker": 1}
    cfg.write_text(yaml.safe_dump(data))
    out = tmp_path / "shared" / "run"  # one filesystem: "shared storage" for both nodes
    runtime_env = {"excludes": [".venv", ".cache", "runs", ".git", "__pycache__"]}
    job = sh([RAY, "job", "submit", "--address", dashboard, "--working-dir", str(ROOT),
              "--runtime-env-json", json.dumps(runtime_env), "--",
              "evo-merge", "run", str(cfg), "--address", "auto", "--out", str(out)], env, 420)
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
    store = RunStore.open(out)
    records = store.lineage.all()
    nodes = {r.node for r in records}
    print(f"\nworkers: {sorted({r.worker for r in records})}")
    assert len(nodes) == 2, nodes
    assert sorted(store.lineage.meta("nodes")) == sorted(nodes)
    assert store.lineage.meta("status") == "finished"
    store.close()
