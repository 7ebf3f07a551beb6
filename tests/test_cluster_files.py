"""The cluster deployment files in configs/cluster/ and the cluster docs: fast, no Ray started.

They check what can be checked without a cloud account or a Kubernetes cluster: every
file parses, the `ray up` config passes Ray's own schema validation, the KubeRay manifests
ask for GPUs and mount the shared volume at one path everywhere, every `evo-merge run`
command line in them and in the docs is accepted by the CLI's parser, the runtime_env has
only runtime_env fields, and the images carry the installed Ray version.
"""

import copy
import re
import shlex
import sys
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "configs" / "cluster"
SHARED = "/mnt/shared"
IMAGE = re.compile(r"^rayproject/ray:(?P<version>\d+\.\d+\.\d+)-py(?P<py>3\d+)(-(?P<flavour>gpu|cu\d+))?$")


def load(name: str) -> dict:
    return yaml.safe_load((CLUSTER / name).read_text())


def load_all(name: str) -> dict[str, dict]:
    """A multi-document manifest, by kind."""
    docs = [d for d in yaml.safe_load_all((CLUSTER / name).read_text()) if d is not None]
    kinds = [d["kind"] for d in docs]
    assert len(set(kinds)) == len(kinds), kinds
    return {d["kind"]: d for d in docs}


def ray_version() -> Version:
    import ray

    return Version(ray.__version__)


def check_image(image: str) -> None:
    """A rayproject/ray image with the installed Ray's major.minor and a supported Python."""
    m = IMAGE.match(image)
    assert m, f"unexpected image {image!r}"
    version, installed = Version(m["version"]), ray_version()
    assert (version.major, version.minor) == (installed.major, installed.minor), (image, str(installed))
    pyproject = (ROOT / "pyproject.toml").read_text()
    ray_pin = next(Requirement(d) for d in re.findall(r'"(ray\[[^"]*)"', pyproject))
    assert ray_pin.specifier.contains(version), (image, str(ray_pin))
    py = m["py"]
    assert (int(py[0]), int(py[1:])) >= (3, 11), image  # requires-python >= 3.11


def run_command():
    import typer

    from evo_merge.cli.app import app

    group = typer.main.get_command(app)
    return group.commands["run"]


def check_run_command_line(line: str, check_config: bool = True) -> dict:
    """`evo-merge run CONFIG OPTIONS`, parsed by the CLI's own parser (the command is not run)."""
    argv = shlex.split(line)
    assert argv[:2] == ["evo-merge", "run"], line
    cmd = run_command()
    try:
        ctx = cmd.make_context("run", argv[2:])  # parses and converts every option; does not invoke
    except Exception as exc:  # a usage error (typer may bring its own copy of click's exceptions)
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        pytest.fail(f"{line!r}: {type(exc).__name__}: {message}")
    params = ctx.params
    if check_config and "<" not in str(params["config"]):
        assert (ROOT / params["config"]).is_file(), f"{line!r}: no config {params['config']} in the repository"
    return params


def runtime_env_fields() -> set[str]:
    from ray.runtime_env import RuntimeEnv

    return set(RuntimeEnv.known_fields)


def check_runtime_env(data: dict) -> None:
    """Only runtime_env fields, and accepted by RuntimeEnv (which is plain validation: no Ray started)."""
    import ray
    from ray.runtime_env import RuntimeEnv

    assert set(data) <= runtime_env_fields(), set(data) - runtime_env_fields()
    was_initialized = ray.is_initialized()
    RuntimeEnv(**copy.deepcopy(data))
    assert ray.is_initialized() == was_initialized
    assert data["env_vars"]["EVO_MERGE_CACHE"].startswith(SHARED + "/")
    assert data["env_vars"]["HF_HOME"].startswith(SHARED + "/")
    assert all(isinstance(v, str) for v in data["env_vars"].values()), "env_vars values must be strings"


# -- every file -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ray-cluster.yaml", "raycluster.yaml", "rayjob.yaml", "runtime_env.yaml"])
def test_yaml_parses(name):
    docs = [d for d in yaml.safe_load_all((CLUSTER / name).read_text()) if d is not None]
    assert docs and all(isinstance(d, dict) for d in docs)


def test_readme_lists_every_file():
    readme = (CLUSTER / "README.md").read_text()
    for path in CLUSTER.iterdir():
        if path.name != "README.md":
            assert f"`{path.name}`" in readme, path.name


# -- ray up ------------------------------------------------------------------------------------


def test_launcher_config_passes_ray_schema_validation():
    from ray.autoscaler._private.util import prepare_config, validate_config

    schema = Path(sys.modules["ray.autoscaler"].__file__).parent / "ray-schema.json"
    assert schema.is_file(), schema
    pytest.importorskip("jsonschema")
    config = load("ray-cluster.yaml")
    # What `ray up` does before it calls the cloud: fill in the provider's defaults, then
    # validate against ray-schema.json plus Ray's own cross-field checks.
    validate_config(prepare_config(copy.deepcopy(config)))


def test_launcher_config_gpu_workers_install_and_shared_storage():
    config = load("ray-cluster.yaml")
    types = config["available_node_types"]
    assert config["head_node_type"] in types
    gpu = [t for t in types.values() if t["resources"].get("GPU", 0) >= 1]
    assert gpu, "no GPU worker node type"
    assert sum(t.get("min_workers", 0) for t in types.values()) <= config["max_workers"]
    assert config["idle_timeout_minutes"] > 0
    check_image(config["docker"]["image"])

    # The checkout is synced to a remote path and installed from it on every node.
    remote = next(r for r, local in config["file_mounts"].items() if local == ".")
    assert f"pip install -e {remote}" in config["setup_commands"]
    assert any(".venv" in p for p in config["rsync_exclude"]) and "runs" in config["rsync_exclude"]

    # Shared storage: mounted on the host, passed into the container at the same path.
    assert any("mount -t nfs4" in c and c.rstrip().endswith(SHARED) for c in config["initialization_commands"])
    assert f"-v {SHARED}:{SHARED}" in config["docker"]["run_options"]

    # Token authentication on every node, with the token copied from the submitting machine.
    assert "~/.ray/auth_token" in config["file_mounts"]
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = [c for c in config[key] if "ray start" in c]
        assert start and all("RAY_AUTH_MODE=token" in c for c in start), key


# -- KubeRay -----------------------------------------------------------------------------------


def containers(group: dict) -> list[dict]:
    return group["template"]["spec"]["containers"]


def check_ray_cluster_spec(spec: dict, pvc: dict) -> None:
    head, workers = spec["headGroupSpec"], spec["workerGroupSpecs"]
    assert workers
    for container in [*containers(head), *(c for w in workers for c in containers(w))]:
        check_image(container["image"])
        assert container["image"].split(":")[1].startswith(spec["rayVersion"] + "-"), (container["image"],
                                                                                       spec["rayVersion"])
    assert spec["authOptions"]["mode"] == "token"

    # GPU workers: one GPU per pod, requested and limited alike.
    worker = containers(workers[0])[0]
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert worker["resources"]["requests"].get("nvidia.com/gpu", 1) == 1

    # The claim is mounted at the same path in the head and in every worker group.
    for group in [head, *workers]:
        volumes = {v["name"]: v for v in group["template"]["spec"]["volumes"]}
        shared = [n for n, v in volumes.items()
                  if v.get("persistentVolumeClaim", {}).get("claimName") == pvc["metadata"]["name"]]
        assert len(shared) == 1, group.get("groupName", "head")
        for container in containers(group):
            mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
            assert mounts.get(shared[0]) == SHARED, container["name"]


def check_pvc(pvc: dict) -> None:
    assert pvc["apiVersion"] == "v1"
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert pvc["spec"]["resources"]["requests"]["storage"]


def test_raycluster_manifest():
    docs = load_all("raycluster.yaml")
    assert set(docs) == {"RayCluster", "PersistentVolumeClaim"}
    cluster, pvc = docs["RayCluster"], docs["PersistentVolumeClaim"]
    assert cluster["apiVersion"] == "ray.io/v1"
    check_pvc(pvc)
    check_ray_cluster_spec(cluster["spec"], pvc)


def test_rayjob_manifest():
    docs = load_all("rayjob.yaml")
    assert set(docs) == {"RayJob", "PersistentVolumeClaim"}
    job, pvc = docs["RayJob"], docs["PersistentVolumeClaim"]
    assert job["apiVersion"] == "ray.io/v1"
    assert job["spec"]["shutdownAfterJobFinishes"] is True
    check_pvc(pvc)
    check_ray_cluster_spec(job["spec"]["rayClusterSpec"], pvc)

    # One cluster shape and one claim for both manifests.
    other = load_all("raycluster.yaml")
    assert job["spec"]["rayClusterSpec"] == other["RayCluster"]["spec"]
    assert pvc == other["PersistentVolumeClaim"]

    params = check_run_command_line(job["spec"]["entrypoint"])
    assert params["address"] == "auto"
    assert str(params["out"]).startswith(SHARED + "/runs/")

    env = yaml.safe_load(job["spec"]["runtimeEnvYAML"])
    check_runtime_env(env)
    assert re.match(r"^(https|s3|gs)://.+\.zip$", env["working_dir"]), env["working_dir"]
    local = load("runtime_env.yaml")
    assert env["pip"] == local["pip"] and env["env_vars"] == local["env_vars"]


def test_kubernetes_names_are_dns_labels():
    for name in ("raycluster.yaml", "rayjob.yaml"):
        for doc in load_all(name).values():
            assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", doc["metadata"]["name"]), doc["metadata"]


# -- runtime_env -------------------------------------------------------------------------------


def test_runtime_env_file():
    data = load("runtime_env.yaml")
    check_runtime_env(data)
    assert data["working_dir"] == "."
    excludes = {e.strip("/") for e in data["excludes"]}
    assert {"runs", ".venv", ".cache", ".git"} <= excludes
    assert data["pip"] == ["${RAY_RUNTIME_ENV_CREATE_WORKING_DIR}"]  # install the uploaded checkout


# -- command lines in the docs -----------------------------------------------------------------


def doc_run_lines(path: Path) -> list[str]:
    """Every `evo-merge run ...` command in the file's code blocks and YAML comments, joined over `\\`."""
    text = re.sub(r"\\\n\s*#?\s*", " ", path.read_text())
    return [m.group(0).strip() for m in re.finditer(r"evo-merge run [^\n`|]*", text)]


@pytest.mark.parametrize("name", ["README.md", "configs/cluster/README.md", "configs/cluster/ray-cluster.yaml",
                                  "configs/cluster/raycluster.yaml", "configs/cluster/runtime_env.yaml"])
def test_documented_run_commands_parse(name):
    lines = [line for line in doc_run_lines(ROOT / name) if " CONFIG " not in line]
    if name != "README.md":
        assert lines, f"no evo-merge run command in {name}"
    for line in lines:
        check_run_command_line(line)


@pytest.mark.parametrize("name", ["README.md", "configs/cluster/README.md"])
def test_documented_pool_snippets_are_valid(name):
    from evo_merge.config import PoolConfig

    blocks = re.findall(r"```yaml\n(.*?)```", (ROOT / name).read_text(), re.S)
    pools = [yaml.safe_load(b)["pool"] for b in blocks if b.lstrip().startswith("pool:")]
    assert pools
    for pool in pools:
        PoolConfig.model_validate(pool)
