"""Multiple-choice scoring side by side with lm-eval-harness: the same rows, the same scores.

    python benchmarks/lm_eval_speed.py --rows 200 --repeat 3              # zero-shot
    python benchmarks/lm_eval_speed.py --rows 200 --repeat 3 --fewshot 5   # 5-shot, MMLU-style
    python benchmarks/lm_eval_speed.py --rows 200 --repeat 1 --fewshot 5 --subjects 8   # a group of 8 subjects

A random-init Llama of 134 M parameters (hidden 768, 12 layers, Llama-2's vocabulary size of
32 000; the byte-level BPE tokenizer trained here on synthetic text uses the first few
thousand ids; values do not change these costs) and
a local lm-eval task of ``--rows`` MMLU-style rows: a question, four lettered choices and
"Answer:", scored by the log-likelihood of " A", " B", " C", " D". Both score the same
documents with the model already loaded, on CPU, each side in a fresh process of its own
(the two alternate ``--repeat`` times): lm-eval's
``simple_evaluate`` (its HF model, batch size ``--batch``), and evo-merge's metric for
the same task spec (``lm_eval:``). Two measurements:

- one evaluation from scratch: each side builds the requests, tokenizes and scores;
- one more model of many (what every individual of a run costs): lm-eval with its own
  request cache (``cache_requests=True``, after one warm-up call), evo-merge with the
  metric built once, as a run builds it (after one warm-up evaluation). evo-merge's process
  has the malloc settings its ``ModelHost`` makes on a CPU (``evo_merge/fitness/heap.py``);
  ``--same-heap`` gives them to lm-eval's process too.

Median wall time of ``--repeat`` runs, and whether every document's score is equal.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from unittest import mock

import numpy as np
import torch

WORDS = ("the of and to in is that for it as was with be by on not he this are or his from at which but have an they "
         "you were her she there been one all we their has would when if so what no about into more some could them "
         "other than then now only its time these may like very also over new people any after most made").split()


VOCAB = 32000  # the model's embedding and LM head size, as Llama-2's


def build_model(out: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    rng = random.Random(0)
    corpus = [" ".join(rng.choice(WORDS) + ("" if rng.random() < 0.7 else rng.choice("ABCD.,?:"))
                       for _ in range(60)) for _ in range(4000)]
    corpus += [f"{rng.randrange(10**6)} A. B. C. D. Answer: A B C D" for _ in range(2000)]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=32000, special_tokens=["<unk>", "<s>", "</s>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="</s>")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=768, intermediate_size=2048, num_hidden_layers=12,
                      num_attention_heads=12, num_key_value_heads=12, max_position_embeddings=512,
                      bos_token_id=fast.bos_token_id, eos_token_id=fast.eos_token_id, tie_word_embeddings=False)
    LlamaForCausalLM(cfg).save_pretrained(out, safe_serialization=True)
    fast.save_pretrained(out)


def write_task(folder: Path, rows: int, subjects: int = 1) -> str:
    """The task, and a 5-row dev split its few-shot examples come from (the first K, as MMLU's);
    with ``subjects`` > 1, a group of that many tasks, each with its own rows, dev split and
    description line (as MMLU's subjects). Returns the task (or group) name."""
    rng = random.Random(1)
    names = ["speed_mc"] if subjects == 1 else [f"speed_mc_{k}" for k in range(subjects)]
    for k, name in enumerate(names):
        n = rows // subjects + (k < rows % subjects)
        docs = [{"question": " ".join(rng.choice(WORDS) for _ in range(rng.randrange(20, 40))) + "?",
                 "choices": [" ".join(rng.choice(WORDS) for _ in range(rng.randrange(2, 6))) for _ in range(4)],
                 "answer": rng.randrange(4)} for _ in range(n + 5)]
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs[:n]))
        (folder / f"{name}_dev.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs[n:]))
        description = "" if subjects == 1 else \
            f"description: \"The following are multiple choice questions (with answers) about {WORDS[k]}.\\n\\n\"\n"
        (folder / f"{name}.yaml").write_text(
            f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files: {{test: {folder / name}.jsonl"
            f", dev: {folder / name}_dev.jsonl}}\ntest_split: test\nfewshot_split: dev\n" + description +
            "fewshot_config: {sampler: first_n}\noutput_type: multiple_choice\n"
            "doc_to_text: \"{{question}}\\nA. {{choices[0]}}\\nB. {{choices[1]}}\\nC. {{choices[2]}}\\nD. "
            "{{choices[3]}}\\nAnswer:\"\ndoc_to_choice: [\"A\", \"B\", \"C\", \"D\"]\ndoc_to_target: answer\n"
            "metric_list:\n  - {metric: acc, aggregation: mean, higher_is_better: true}\n")
    if subjects == 1:
        return "speed_mc"
    (folder / "speed_group.yaml").write_text(
        f"group: speed_group\ntask: [{', '.join(names)}]\n"
        "aggregate_metric_list:\n  - {metric: acc, aggregation: mean, weight_by_size: true}\n")
    return "speed_group"


def child(args) -> None:
    """One side's measurements in this process (the parent runs each side in its own, so that
    neither inherits the other's process state, e.g. evo-merge's malloc settings)."""
    os.environ["LM_HARNESS_CACHE_PATH"] = tempfile.mkdtemp(prefix="lm-eval-cache-")  # read when lm_eval is imported
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from evo_merge.fitness.cpu_linear import onednn_linears
    from evo_merge.fitness.heap import keep_freed_memory
    from evo_merge.fitness.lm_eval_task import _REQUESTS, DOC_ID, TASK_ID, LmEvalSpec, lm_eval_documents
    from evo_merge.fitness.metrics import make_metric
    from evo_merge.fitness.tasks import TaskSpec

    torch.set_grad_enabled(False)
    tmp = Path(args.child_dir)
    name = args.task_name
    model = AutoModelForCausalLM.from_pretrained(tmp / "model").eval()
    tok = AutoTokenizer.from_pretrained(tmp / "model")
    spec = TaskSpec(name=name, lm_eval=LmEvalSpec(task=name, include_path=str(tmp), num_fewshot=args.fewshot))
    docs = lm_eval_documents(spec.lm_eval)
    if (args.child == "evo-merge" and not args.default_heap) or (args.child == "lm-eval" and args.same_heap):
        keep_freed_memory()  # what evo-merge's ModelHost does on a CPU

    if args.child == "lm-eval":
        lm = HFLM(pretrained=model, tokenizer=tok, batch_size=args.lm_eval_batch or args.batch)

        def theirs(cache: bool = False):
            res = lm_eval.simple_evaluate(model=lm, tasks=[name], task_manager=TaskManager(include_path=str(tmp)),
                                          num_fewshot=args.fewshot, log_samples=True, verbosity="ERROR",
                                          cache_requests=cache)
            return {f"{task}/{s['doc_id']}": float(s["acc"]) for task, rows in res["samples"].items() for s in rows}

        theirs(cache=True)  # warm lm-eval's request cache
        runs = {"scratch": theirs, "more": lambda: theirs(cache=True)}
    else:
        cpu = torch.device("cpu")

        def predict(metric) -> list:  # as evo-merge's evaluator runs a metric
            with (onednn_linears(model, cpu) if not args.mkl else nullcontext()):
                return metric.predict(model)

        def ours():
            _REQUESTS.clear()  # build the requests again each time, as lm-eval does
            metric = make_metric(spec, docs, tok, cpu, args.batch)
            return metric.score(predict(metric))

        built = make_metric(spec, docs, tok, cpu, args.batch)
        predict(built)  # warm up, as lm-eval's side is
        runs = {"scratch": ours, "more": lambda: built.score(predict(built))}
        if args.padded_too:
            from evo_merge.fitness import scoring

            def padded() -> list:
                with mock.patch.object(scoring, "BY_LENGTH_MIN_LAYER_PARAMS", float("inf")):  # as on a GPU
                    return built.score(predict(built))
            runs["padded"] = padded
    out = {"times": {}, "threads": torch.get_num_threads(), "lm_eval": lm_eval.__version__,
           "params": sum(p.numel() for p in model.parameters()), "vocab": model.config.vocab_size, "used": len(tok)}
    for side, fn in runs.items():
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        start = time.perf_counter()
        result = fn()
        out["times"][side] = time.perf_counter() - start
        out.setdefault("faults", {})[side] = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
        if isinstance(result, dict):
            out["scores"] = result
        else:
            out["scores"] = {f"{d.get(TASK_ID, name)}/{d[DOC_ID]}": float(v) for d, v in zip(docs, result)}
    Path(args.child_out).write_text(json.dumps(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32, help="rows per forward, both sides")
    parser.add_argument("--lm-eval-batch", type=int, help="lm-eval's batch size where it differs from --batch "
                        "(1: lm-eval's own default, as `lm_eval --model hf` runs without --batch_size)")
    parser.add_argument("--padded-too", action="store_true", help="also time evo-merge with the rows batched "
                        "as on a GPU (the shortest rows left, left-padded, with an attention mask)")
    parser.add_argument("--same-heap", action="store_true", help="give lm-eval's process evo-merge's malloc "
                        "settings too (evo_merge/fitness/heap.py), to see what they alone are worth")
    parser.add_argument("--default-heap", action="store_true", help="evo-merge's process with glibc's malloc "
                        "defaults (without evo_merge/fitness/heap.py's settings), to see what they alone are worth")
    parser.add_argument("--mkl", action="store_true", help="evo-merge's linear layers on torch's default (MKL) "
                        "instead of oneDNN (evo_merge/fitness/cpu_linear.py), to see what oneDNN alone is worth")
    parser.add_argument("--subjects", type=int, default=1, help="a group of this many tasks (MMLU's subjects: "
                        "each its own rows, description line and dev split) instead of one task")
    parser.add_argument("--fewshot", type=int, default=0, help="few-shot examples in front of every prompt (the "
                        "same K for every row, as MMLU's dev split gives)")
    parser.add_argument("--child", choices=("lm-eval", "evo-merge"), help=argparse.SUPPRESS)
    parser.add_argument("--child-dir", help=argparse.SUPPRESS)
    parser.add_argument("--child-out", help=argparse.SUPPRESS)
    parser.add_argument("--task-name", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        build_model(tmp / "model")
        name = write_task(tmp, args.rows, args.subjects)
        times: dict[str, list[float]] = {}
        faults: dict[str, list[int]] = {}
        results: dict[str, dict] = {}
        for _ in range(args.repeat):  # the two sides alternate, each a fresh process
            for side in ("lm-eval", "evo-merge"):
                out = tmp / f"{side}.json"
                subprocess.run([sys.executable, __file__, *sys.argv[1:], "--child", side, "--child-dir", str(tmp),
                                "--child-out", str(out), "--task-name", name], check=True)
                results[side] = json.loads(out.read_text())
                for what, seconds in results[side]["times"].items():
                    times.setdefault(f"{side}/{what}", []).append(seconds)
                    faults.setdefault(f"{side}/{what}", []).append(results[side]["faults"][what])
        theirs, ours = results["lm-eval"], results["evo-merge"]
        equal = theirs["scores"] == ours["scores"] and len(ours["scores"]) == args.rows
        t = {key: statistics.median(v) for key, v in times.items()}
        print(f"model {ours['params'] / 1e6:.0f} M parameters, vocabulary {ours['vocab']} ({ours['used']} used), "
              f"{args.rows} rows x 4 choices ({args.subjects} subject(s)), {args.fewshot}-shot, "
              f"batch {args.lm_eval_batch or args.batch} (lm-eval) {args.batch} (evo-merge), "
              f"torch threads {ours['threads']}, lm-eval {ours['lm_eval']}; each side in its own process"
              f"{', lm-eval with evo-merge malloc settings' if args.same_heap else ''}"
              f"{', evo-merge on MKL' if args.mkl else ''}"
              f"{', evo-merge with the default heap' if args.default_heap else ''}; median of {args.repeat}")
        for label, what in (("from scratch:  ", "scratch"), ("one more model:", "more")):
            print(f"{label}   lm-eval {t['lm-eval/' + what]:.2f} s, evo-merge {t['evo-merge/' + what]:.2f} s "
                  f"= {t['evo-merge/' + what] / t['lm-eval/' + what]:.2f} x (page faults: lm-eval "
                  f"{statistics.median(faults['lm-eval/' + what]):.0f}, evo-merge "
                  f"{statistics.median(faults['evo-merge/' + what]):.0f})")
        if args.padded_too:
            print(f"padded batches:   evo-merge {t['evo-merge/padded']:.2f} s (by length: "
                  f"{t['evo-merge/more']:.2f} s)")
        print(f"accuracy {np.mean(list(ours['scores'].values())):.3f} vs {np.mean(list(theirs['scores'].values())):.3f}"
              f"; every document's score equal: {equal}")


if __name__ == "__main__":
    main()
