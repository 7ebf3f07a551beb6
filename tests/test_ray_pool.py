"""The Ray pool: same lineage with 1, 2 and 4 workers; dead workers replaced; async mode."""

import os
import signal

import pytest
import ray

import factories
from evo_merge.config import load_run_config
from evo_merge.engine import EngineHooks
from evo_merge.errors import EvoMergeError
from evo_merge.pool.ray_pool import RayExecutor
from evo_merge.runner import execute, prepare
from signatures import signature
from test_engine import EVO

pytestmark = pytest.mark.slow  # real local Ray instances, workers killed and replaced


@pytest.fixture(scope="module", autouse=True)
def ray_instance():
    """One local Ray instance for the module (4 logical CPUs on this 2-core machine)."""
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture()
def config(tmp_path, tiny_lora):
    task = factories.write_task(tmp_path)
    return factories.write_run_config(tmp_path, tiny_lora, task, **EVO)


def run(config, out, **pool):
    cfg = load_run_config(config, {"out": str(out), **{f"pool.{k}": v for k, v in pool.items()}})
    return execute(cfg)


def test_same_lineage_with_1_2_4_workers_as_in_process(config, tmp_path):
    run(config, tmp_path / "local", backend="local")
    expected = signature(tmp_path / "local")
    for workers in (1, 2, 4):
        run(config, tmp_path / f"ray{workers}", backend="ray", workers=workers)
        assert signature(tmp_path / f"ray{workers}") == expected, f"{workers} workers"


def test_a_raced_run_on_ray_workers_equals_the_in_process_one(config, tmp_path):
    """Later racing stages name an offspring by its weight hash before it is recorded; a worker
    that did not score its first stage rebuilds it from the recipe the job carries."""
    racing = {"enabled": True, "rule": "halving", "search": "race"}
    local = load_run_config(config, {"out": str(tmp_path / "local"), "pool.backend": "local",
                                     "evolution.racing": racing})
    execute(local)
    ray_cfg = load_run_config(config, {"out": str(tmp_path / "ray"), "pool.backend": "ray", "pool.workers": 2,
                                       "evolution.racing": racing})
    execute(ray_cfg)
    assert signature(tmp_path / "ray") == signature(tmp_path / "local")


class KillAfter(EngineHooks):
    """Kills worker 0 after ``n`` finished jobs, by ray.kill or by SIGKILL to its process."""

    def __init__(self, n: int, how: str):
        self.n, self.how, self.count, self.executor, self.killed = n, how, 0, None, False

    def advance(self) -> None:
        self.count += 1
        if self.count == self.n and not self.killed:
            actor = self.executor.actors[0]
            if self.how == "ray.kill":
                ray.kill(actor)
            else:
                os.kill(ray.get(actor.pid.remote()), signal.SIGKILL)
            self.killed = True


@pytest.mark.parametrize("how", ["ray.kill", "sigkill"])
def test_killed_worker_is_replaced_and_result_unchanged(how, config, tmp_path):
    run(config, tmp_path / "clean", backend="local")
    cfg = load_run_config(config, {"out": str(tmp_path / "killed"), "pool.backend": "ray", "pool.workers": 2})
    prepared = prepare(cfg)
    executor = RayExecutor(prepared.spec, cfg.pool)
    hooks = KillAfter(8, how)
    hooks.executor = executor
    try:
        execute(cfg, hooks, prepared, executor)
        assert hooks.killed and executor.stats.replaced >= 1
    finally:
        executor.close()
    assert signature(tmp_path / "killed") == signature(tmp_path / "clean")


def test_worker_that_keeps_failing_is_reported(config, tmp_path):
    cfg = load_run_config(config, {"out": str(tmp_path / "r"), "pool.backend": "ray", "pool.workers": 1,
                                   "pool.max_worker_failures": 1})
    prepared = prepare(cfg)
    executor = RayExecutor(prepared.spec, cfg.pool)

    class KillAlways(EngineHooks):
        def advance(self_inner):
            ray.kill(executor.actors[0])

    try:
        with pytest.raises(EvoMergeError, match="failed 2 times"):
            execute(cfg, KillAlways(), prepared, executor)
    finally:
        executor.close()


def test_async_mode_runs_its_budget_and_keeps_elites(config, tmp_path):
    import yaml
    cfg_data = yaml.safe_load(config.read_text())
    cfg_data["evolution"]["succession"] = {"enabled": False}
    config.write_text(yaml.safe_dump(cfg_data))
    out = run(config, tmp_path / "async", backend="ray", workers=2, mode="async", async_offspring=12)
    from evo_merge.store import RunStore
    store = RunStore.open(out.run_dir)
    offspring = [i for i in store.lineage.all() if i.operator in ("crossover", "mutation")]
    assert len(offspring) == 12
    assert len({i.worker for i in offspring}) == 2
    gens = store.lineage.generations()
    assert all(b["best"] >= a["best"] for a, b in zip(gens, gens[1:]))
    store.close()


def test_run_dir_not_visible_to_workers_is_refused(config, tmp_path, monkeypatch):
    """A worker that cannot read the driver's token (node-local path) stops the run with a clear error."""
    import evo_merge.pool.ray_pool as ray_pool

    cfg = load_run_config(config, {"out": str(tmp_path / "r"), "pool.backend": "ray", "pool.workers": 1})
    prepared = prepare(cfg)
    # the token lands on the driver's disk only: what a worker on another node sees of a local path
    monkeypatch.setattr(ray_pool, "atomic_write_text", lambda path, text: None)
    executor = RayExecutor(prepared.spec, cfg.pool)
    try:
        with pytest.raises(EvoMergeError, match="not visible from node"):
            execute(cfg, None, prepared, executor)
    finally:
        executor.close()
    assert not (tmp_path / "r").exists()
