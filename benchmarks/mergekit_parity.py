"""One-shot merges side by side with mergekit: the same YAML, the same parents, tensor by tensor.

    python benchmarks/mergekit_parity.py --mergekit /work/mkvenv/bin/mergekit-yaml --out /tmp/parity
    python benchmarks/mergekit_parity.py --mergekit /work/mkvenv/bin/mergekit-yaml --out /tmp/parity \\
        --sizes 134m --only linear,ties

mergekit lives in its own environment; this script runs in evo-merge's (it needs torch, transformers,
safetensors, PyYAML). Parents are built once under ``--out/models/<size>`` (seeded, reused;
``benchmarks/mergekit_parity_models.py``): ``tiny`` (hidden 64, 4 layers, vocabulary 256) and ``134m``
(hidden 768, 12 layers, vocabulary 32 000), each a random Llama base plus three noisy fine-tunes, float32.
Each row is one mergekit YAML (``--out/configs``), run as a whole process by each tool,
``mergekit-yaml CONFIG OUT`` (its defaults: CPU, tokenizer copied) and ``evo-merge merge CONFIG OUT``,
under ``/usr/bin/time -f "%e %M"``, with the same environment (``OMP_NUM_THREADS`` removed).
``--only`` keeps rows whose method or row id is listed. On sizes other than ``tiny``, the ``linear``
and ``ties`` rows run ``--repeat`` times (tools alternating), the others once.

Columns of the table (one per size; ``--out/parity.json`` has every figure and the configs' paths):

- method, setting, models: the row. ``base + 2 ft`` = ``base_model`` is the random base and two
  fine-tunes are merged; ``2 ft`` = no base, or (slerp) the first fine-tune is the base.
- max |diff| or stats: deterministic methods: the largest absolute difference between the two
  outputs over all tensors; above 1e-6, also the tensor where it occurs and how many values differ
  by more than 1e-6 (magnitude selections may differ where magnitudes tie; mergekit's arcee_fusion
  samples its quantiles on tensors over 1 M values). Random methods (dare_*, della*): per tensor, the fraction of nonzero values of (merged - base) as ``nz evo/mk`` (mean over tensors, and
  the largest per-tensor gap), and ``L1 evo/mk``, the ratio of the L1 norms of (merged - base) summed
  over tensors (min-max over tensors in brackets). Then ``names!``/``shapes!`` if the tensor names or
  shapes differ, and on ``tiny`` ``load!`` if an output does not load with
  ``AutoModelForCausalLM.from_pretrained``. A refused config shows the refusing tool's error line
  (the last line of a Python traceback, else the first line of stderr) instead.
- evo-merge wall s, mergekit wall s: wall time of the whole process (start-up, loading, merging,
  writing), the median over repeats; ratio = evo-merge / mergekit.
- evo-merge peak MiB, mergekit peak MiB: the largest maximum RSS of the process over repeats (the
  JSON also has ``rss_ratio`` and ``wall_ratio``, evo-merge / mergekit, and every run's wall time).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import torch
import yaml
from safetensors import safe_open

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mergekit_parity_models import SIZES, build_parents, rows

RANDOM_METHODS = ("dare_ties", "dare_linear", "della", "della_linear")
REPEATED = ("linear", "ties")


def error_line(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    if not lines:
        return "(no stderr)"
    if any(ln.startswith("Traceback") for ln in lines):
        return lines[-1][:300]
    errors = [ln for ln in lines if "error" in ln.lower() and "warn" not in ln.lower()]
    return (errors or lines)[0][:300]


def run_tool(cmd: list[str], out: Path, log: Path, env: dict) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    timing = log.with_suffix(".time")
    proc = subprocess.run(["/usr/bin/time", "-o", str(timing), "-f", "%e %M", *cmd], env=env,
                          capture_output=True, text=True, check=False)
    log.write_text(f"$ {shlex.join(cmd)}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")
    wall, rss = timing.read_text().split()[-2:]
    return {"rc": proc.returncode, "wall_s": float(wall), "rss_mib": int(rss) / 1024,
            "error": error_line(proc.stderr) if proc.returncode else None}


def tensors(folder: Path) -> dict[str, tuple[Path, tuple[int, ...]]]:
    found = {}
    for f in sorted(folder.glob("*.safetensors")):
        with safe_open(str(f), "pt") as st:
            for name in st.keys():  # noqa: SIM118 - safe_open is not a mapping
                found[name] = (f, tuple(st.get_slice(name).get_shape()))
    return found


def load(index: dict, name: str) -> torch.Tensor:
    with safe_open(str(index[name][0]), "pt") as st:
        return st.get_tensor(name).double()


def compare(evo: Path, mk: Path, base: Path | None, random_: bool, check_load: bool) -> dict:
    a, b = tensors(evo), tensors(mk)
    common = sorted(set(a) & set(b))
    res: dict = {"names_equal": set(a) == set(b), "only_evo": sorted(set(a) - set(b))[:5],
                 "only_mergekit": sorted(set(b) - set(a))[:5], "tensors": len(common),
                 "shapes_equal": all(a[n][1] == b[n][1] for n in common)}
    common = [n for n in common if a[n][1] == b[n][1]]
    if random_:
        ref = tensors(base)
        nz_e, nz_m, ratios, l1_e, l1_m = [], [], [], 0.0, 0.0
        for n in common:
            r = load(ref, n) if n in ref else torch.zeros(())
            de, dm = load(a, n) - r, load(b, n) - r
            nz_e.append((de != 0).double().mean().item())
            nz_m.append((dm != 0).double().mean().item())
            e, m = de.abs().sum().item(), dm.abs().sum().item()
            l1_e, l1_m = l1_e + e, l1_m + m
            if m > 0:
                ratios.append(e / m)
        res.update(nonzero_evo=statistics.mean(nz_e), nonzero_mergekit=statistics.mean(nz_m),
                   nonzero_max_gap=max(abs(x - y) for x, y in zip(nz_e, nz_m)),
                   l1_ratio=l1_e / l1_m if l1_m else float("nan"),
                   l1_ratio_min=min(ratios, default=float("nan")), l1_ratio_max=max(ratios, default=float("nan")),
                   per_tensor={n: {"nonzero_evo": x, "nonzero_mergekit": y} for n, x, y in zip(common, nz_e, nz_m)})
    else:
        worst, where, over = 0.0, None, 0
        for n in common:
            d = (load(a, n) - load(b, n)).abs()
            over += int((d > 1e-6).sum())
            d = d.max().item() if d.numel() else 0.0
            if d > worst or where is None:
                worst, where = d, n
        res.update(max_abs_diff=worst, max_abs_diff_tensor=where, values_over_1e6=over)
    if check_load:
        from transformers import AutoModelForCausalLM

        for tool, folder in (("evo", evo), ("mergekit", mk)):
            try:
                AutoModelForCausalLM.from_pretrained(folder)
                res[f"loads_{tool}"] = True
            except Exception as exc:  # noqa: BLE001 - reported, not raised
                res[f"loads_{tool}"] = f"{type(exc).__name__}: {exc}"[:300]
    return res


def stats_cell(row: dict) -> str:
    for tool, name in (("evo", "evo-merge"), ("mergekit", "mergekit")):
        if row[tool]["error"]:
            return f"{name} refused: `{row[tool]['error']}`"
    c = row["compare"]
    if "max_abs_diff" in c:
        cell = f"{c['max_abs_diff']:.3g}" + (f" ({c['max_abs_diff_tensor']}; {c['values_over_1e6']} values > 1e-6)"
                                             if c["max_abs_diff"] > 1e-6 else "")
    else:
        cell = (f"nz evo/mk {c['nonzero_evo']:.3f}/{c['nonzero_mergekit']:.3f} (gap ≤ {c['nonzero_max_gap']:.3f}); "
                f"L1 evo/mk {c['l1_ratio']:.3f} [{c['l1_ratio_min']:.2f}-{c['l1_ratio_max']:.2f}]")
    flags = [f for f, ok in (("names!", c["names_equal"]), ("shapes!", c["shapes_equal"]),
                             ("load!", c.get("loads_evo", True) is True and c.get("loads_mergekit", True) is True))
             if not ok]
    return " ".join([cell, *flags])


def table(results: list[dict]) -> str:
    lines = [("| method | setting | models | max \\|diff\\| or stats | evo-merge wall s | mergekit wall s | ratio | "
              "evo-merge peak MiB | mergekit peak MiB |"), "|---" * 9 + "|"]
    for r in results:
        e, m = r["evo"], r["mergekit"]

        def num(t: dict, key: str, fmt: str) -> str:
            return "refused" if t["error"] else format(t[key], fmt)

        ratio = "" if e["error"] or m["error"] else f"{e['wall_s'] / m['wall_s']:.2f}"
        cells = [r["method"], r["setting"], r["models"], stats_cell(r).replace("|", "\\|"),
                 num(e, "wall_s", ".2f"), num(m, "wall_s", ".2f"), ratio,
                 num(e, "rss_mib", ".0f"), num(m, "rss_mib", ".0f")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def header(args: argparse.Namespace) -> str:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    mk_python = Path(args.mergekit).parent / "python"
    mk_version = subprocess.run([str(mk_python), "-c", "import importlib.metadata as m; print(m.version('mergekit'))"],
                                capture_output=True, text=True, check=False).stdout.strip() or "?"
    from importlib.metadata import version

    return "\n".join([
        f"Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M UTC}",
        f"Machine: {cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}",
        (f"Python {platform.python_version()}, torch {torch.__version__}, transformers {version('transformers')}, "
         f"evo-merge {version('evo-merge')}, mergekit {mk_version}"),
        f"Command: {shlex.join([sys.executable, *sys.argv])}"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mergekit", required=True, help="mergekit-yaml executable (in its own environment)")
    parser.add_argument("--evo-merge", default=shutil.which("evo-merge") or str(Path(sys.executable).parent /
                                                                                 "evo-merge"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--sizes", default="tiny", help=f"comma-separated, of {', '.join(SIZES)}")
    parser.add_argument("--only", default="", help="comma-separated methods or row ids (method:tag:fine-tunes, "
                        "e.g. ties:density:3; the JSON lists them)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of the linear and ties rows on sizes "
                        "other than tiny (median wall, max RSS)")
    parser.add_argument("--keep", action="store_true", help="keep the merged outputs of sizes other than tiny")
    args = parser.parse_args()
    import transformers

    transformers.utils.logging.disable_progress_bar()  # in this process only; the tools run as they are
    only = {s for s in args.only.split(",") if s}
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    top = header(args)
    print(top + "\n", flush=True)
    results: list[dict] = []
    for size in [s for s in args.sizes.split(",") if s]:
        paths = build_parents(args.out / "models", size)
        todo = [r for r in rows(paths, size) if not only or r["method"] in only or r["id"] in only]
        size_results = []
        for row in todo:
            slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", row["id"])
            config = args.out / "configs" / size / f"{slug}.yaml"
            config.parent.mkdir(parents=True, exist_ok=True)
            config.write_text(yaml.safe_dump(row["config"], sort_keys=False))
            work = args.out / "runs" / size / slug
            work.mkdir(parents=True, exist_ok=True)
            cmds = {"evo": [args.evo_merge, "merge", str(config), str(work / "evo")],
                    "mergekit": [args.mergekit, str(config), str(work / "mergekit")]}
            n = args.repeat if size != "tiny" and row["method"] in REPEATED else 1
            runs: dict[str, list[dict]] = {"evo": [], "mergekit": []}
            for i in range(n):
                for tool, cmd in cmds.items():
                    runs[tool].append(run_tool(cmd, work / tool, work / f"{tool}.{i}.log", env))
            res = {k: row[k] for k in ("id", "method", "setting", "models", "random")}
            res.update(size=size, config=str(config), repeats=n)
            for tool, rs in runs.items():
                res[tool] = {"rc": rs[-1]["rc"], "error": next((r["error"] for r in rs if r["error"]), None),
                             "wall_s": statistics.median(r["wall_s"] for r in rs),
                             "rss_mib": max(r["rss_mib"] for r in rs), "walls_s": [r["wall_s"] for r in rs]}
            if not res["evo"]["error"] and not res["mergekit"]["error"]:
                base = row["config"].get("base_model")
                res["compare"] = compare(work / "evo", work / "mergekit", Path(base) if base else paths["base"],
                                         row["random"], size == "tiny")
                res["evo"]["rss_ratio"] = res["evo"]["rss_mib"] / res["mergekit"]["rss_mib"]
                res["evo"]["wall_ratio"] = res["evo"]["wall_s"] / res["mergekit"]["wall_s"]
            if size != "tiny" and not args.keep:
                shutil.rmtree(work / "evo", ignore_errors=True)
                shutil.rmtree(work / "mergekit", ignore_errors=True)
            res["stats"] = stats_cell(res)
            print(f"[{size}] {row['id']}: {res['stats']} | evo {res['evo']['wall_s']:.2f} s, "
                  f"mergekit {res['mergekit']['wall_s']:.2f} s", flush=True)
            size_results.append(res)
        hidden, layers, _, inter, vocab = SIZES[size]
        print(f"\n### {size} (hidden {hidden}, {layers} layers, intermediate {inter}, vocabulary {vocab}, "
              f"float32)\n\n{table(size_results)}\n", flush=True)
        results += size_results
    (args.out / "parity.json").write_text(json.dumps({"header": top, "rows": results}, indent=1))
    print(f"wrote {args.out / 'parity.json'}")


if __name__ == "__main__":
    main()
