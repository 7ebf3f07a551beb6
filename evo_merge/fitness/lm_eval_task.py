"""lm-eval-harness tasks as fitness: lm-eval builds the requests and computes the metric,
evo-merge runs the requests with its own batched scorer on the installed genome.

A task spec with ``lm_eval: {task: NAME, include_path: DIR, num_fewshot: K,
apply_chat_template: BOOL}`` takes its documents from lm-eval (its evaluation split),
splits them into fitness and test rows with its own seeded split, and scores each
document with the task's ``process_results`` after its filters (the first filter and,
unless ``metric`` names another, the first metric: ``acc`` for multiple choice). The
requests are tokenized as lm-eval's HF model does (trailing spaces of a context move to the
continuation; the BOS token as ``add_bos_token`` says); ``loglikelihood`` and
``generate_until`` requests are supported. A group (``mmlu``) is one spec: the documents
of all its tasks, split together, each scored by its own task (each row carries its task's
name). lm-eval is an optional extra (``pip install -e ".[lm-eval]"``).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import io
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict

from evo_merge.errors import EvoMergeError
from evo_merge.fitness.prompts import left_pad
from evo_merge.fitness.scorers import make_scorer

DOC_ID = "__doc_id"
TASK_ID = "__lm_eval_task"  # a group's documents: which of its tasks


class LmEvalSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    task: str
    include_path: str | None = None      # a folder of task YAMLs (relative to the task spec)
    num_fewshot: int | None = None
    apply_chat_template: bool = False
    metric: str | None = None            # the per-document score that is fitness (default: the task's first)
    add_bos_token: bool | None = None    # as lm-eval's HF model argument (None: the tokenizer's default)
    max_gen_toks: int = 256


def _lm_eval():
    try:
        import lm_eval  # noqa: F401
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise EvoMergeError("task specs with 'lm_eval:' need lm-eval: pip install -e '.[lm-eval]'") from None
    return TaskManager


@contextlib.contextmanager
def _quiet():
    """lm-eval and datasets draw progress bars and log at INFO while building a task."""
    import logging

    import datasets

    datasets.disable_progress_bars()
    logging.getLogger("lm-eval").setLevel(logging.ERROR)
    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    with contextlib.redirect_stderr(io.StringIO()):
        yield


@functools.lru_cache(maxsize=16)
def lm_tasks(name: str, include_path: str | None, num_fewshot: int | None) -> dict[str, Any]:
    """The lm-eval task objects of a task or of every task of a group, by name (built once per
    process)."""
    TaskManager = _lm_eval()
    try:
        with _quiet():
            tasks = dict(TaskManager(include_path=include_path).load([name])["tasks"])
    except Exception as exc:  # noqa: BLE001 - lm-eval raises many types for unknown or broken tasks
        raise EvoMergeError(f"lm-eval task {name!r}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}") from None
    if not tasks:
        raise EvoMergeError(f"lm-eval task {name!r} has no tasks")
    if num_fewshot is not None:
        for task in tasks.values():
            task.set_config(key="num_fewshot", value=num_fewshot)
    return tasks


def lm_eval_documents(spec: LmEvalSpec) -> list[dict[str, Any]]:
    """The evaluation documents, each with its lm-eval doc id (and, for a group, its task's name)."""
    tasks = lm_tasks(spec.task, spec.include_path, spec.num_fewshot)
    if len(tasks) == 1:
        return [{**doc, DOC_ID: i} for i, doc in enumerate(next(iter(tasks.values())).eval_docs)]
    return [{**doc, DOC_ID: i, TASK_ID: name} for name, task in tasks.items() for i, doc in enumerate(task.eval_docs)]


def lm_eval_view(cfg: LmEvalSpec, row: dict[str, Any], prediction: Any) -> tuple[str, str, str]:
    """A document as users see it: the prompt (the task's ``doc_to_text``), the prediction as
    text (the chosen choice or the generation) and the answer (``doc_to_target``)."""
    tasks = lm_tasks(cfg.task, cfg.include_path, cfg.num_fewshot)
    task = tasks[row.get(TASK_ID) or next(iter(tasks))]
    doc = task.eval_docs[int(row[DOC_ID])]
    target = task.doc_to_target(doc)
    if task.OUTPUT_TYPE == "multiple_choice":
        choices = task.doc_to_choice(doc)
        answer = choices[target] if isinstance(target, int) else target
        picked = choices[int(np.argmax([ll for ll, _ in prediction]))] if prediction else None
        return str(task.doc_to_text(doc)), repr(picked), str(answer)
    answer = target[0] if isinstance(target, list) and target else target
    text = prediction[0] if isinstance(prediction, list) and prediction else prediction
    return str(task.doc_to_text(doc)), repr(text), str(answer)


class LmEvalMetric:
    """Scores documents of an lm-eval task (``examples`` carry their doc ids)."""

    bounded = True

    def __init__(self, spec, examples: list[dict[str, Any]], tokenizer: Any, device: torch.device, batch_size: int):
        self.spec, self.cfg, self.tokenizer = spec, spec.lm_eval, tokenizer
        self.device, self.batch_size = device, batch_size
        self.tasks = lm_tasks(self.cfg.task, self.cfg.include_path, self.cfg.num_fewshot)
        only = next(iter(self.tasks)) if len(self.tasks) == 1 else None
        by_task = {name: _requests(task, name, self.cfg, tokenizer) for name, task in self.tasks.items()}
        self.docs = []  # (task name, doc id, its requests in order)
        for e in examples:
            name = e.get(TASK_ID, only)
            if name not in by_task:
                raise EvoMergeError(f"lm-eval task {self.cfg.task}: a stored row names task {name!r}, not one of "
                                    f"{sorted(by_task)}")
            self.docs.append((name, int(e[DOC_ID]), sorted(by_task[name][int(e[DOC_ID])], key=lambda x: x.idx)))
        self.instances = [inst for _, _, group in self.docs for inst in group]
        kinds = {inst.request_type for inst in self.instances}
        if not kinds <= {"loglikelihood", "generate_until"}:
            raise EvoMergeError(f"lm-eval task {self.cfg.task}: request types {sorted(kinds)}; evo-merge runs "
                                "loglikelihood and generate_until")
        self.loglik = [k for k, inst in enumerate(self.instances) if inst.request_type == "loglikelihood"]
        self.gen = [k for k, inst in enumerate(self.instances) if inst.request_type == "generate_until"]
        pairs = [self._encode_pair(*self.instances[k].args) for k in self.loglik]
        self.scorer = make_scorer(pairs, tokenizer.pad_token_id, device, batch_size) if pairs else None

    # -- tokenization as lm-eval's HF model does it ---------------------------------------------
    def _tok(self, text: str, special: bool | None = None) -> list[int]:
        tok, add = self.tokenizer, self.cfg.add_bos_token
        kwargs = {"add_special_tokens": special} if special is not None else \
            ({"add_special_tokens": add} if add is not None else {})
        bos = tok.decode(self._prefix_id())
        if special is None and bos and text.startswith(bos):
            kwargs["add_special_tokens"] = False
        return tok.encode(text, **kwargs)

    def _prefix_id(self) -> int:
        tok = self.tokenizer
        return tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id

    def _encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        if context == "":
            cont = self._tok(continuation, special=False)
            return ([self._prefix_id()], cont) if self._prefix_id() != cont[0] else (cont[:1], cont[1:])
        spaces = len(context) - len(context.rstrip())
        if spaces:
            context, continuation = context[:-spaces], context[-spaces:] + continuation
        whole, ctx = self._tok(context + continuation), self._tok(context)
        return ctx, whole[len(ctx):]

    # -- the metric protocol --------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, model) -> list[list[Any]]:
        """Per document, the responses of its requests in order: (loglikelihood, is_greedy) or text."""
        resps: list[Any] = [None] * len(self.instances)
        if self.scorer is not None:
            total, _, greedy = self.scorer.logprobs(model, greedy=True)
            for j, k in enumerate(self.loglik):
                resps[k] = (float(total[j]), bool(greedy[j]))
        if self.gen:
            for k, text in zip(self.gen, self._generate(model)):
                resps[k] = text
        out, pos = [], 0
        for _, _, group in self.docs:
            out.append(resps[pos:pos + len(group)])
            pos += len(group)
        return out

    def _generate(self, model) -> list[str]:
        from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs, postprocess_generated_text

        tok = self.tokenizer
        eos = tok.decode([tok.eos_token_id], skip_special_tokens=False) if tok.eos_token_id is not None else None
        texts = []
        for s in range(0, len(self.gen), self.batch_size):
            chunk = [self.instances[k].args for k in self.gen[s:s + self.batch_size]]
            kwargs = normalize_gen_kwargs(copy.deepcopy(chunk[0][1]), self.cfg.max_gen_toks)
            until = handle_stop_sequences(kwargs.pop("until", None), eos=eos)
            enc = left_pad([self._tok(context) for context, _ in chunk], tok.pad_token_id, self.device)
            gen = model.generate(**enc, max_new_tokens=kwargs["max_gen_toks"], do_sample=False,
                                 pad_token_id=tok.pad_token_id, stop_strings=until or None, tokenizer=tok)
            for row in gen[:, enc["input_ids"].shape[1]:].tolist():
                texts.append(postprocess_generated_text(generation=tok.decode(row, skip_special_tokens=True),
                                                        stop=until, think_end_token=None))
        return texts

    def score(self, predictions: list[list[Any]]) -> np.ndarray:
        """lm-eval's filters and ``process_results`` (each document's own task's), document by
        document."""
        instances: dict[str, list] = {name: [] for name in self.tasks}
        for (name, _, group), resps in zip(self.docs, predictions):
            for inst, resp in zip(group, resps):
                fresh = copy.copy(inst)
                fresh.resps, fresh.filtered_resps = [resp], {}
                instances[name].append(fresh)
        keys = {}
        for name, mine in instances.items():
            for f in getattr(self.tasks[name], "_filters", []):
                f.apply(mine)
            keys[name] = next(iter(mine[0].filtered_resps)) if mine and mine[0].filtered_resps else None
        scores, pos = [], dict.fromkeys(self.tasks, 0)
        for (name, _, group), _ in zip(self.docs, predictions):
            mine = instances[name][pos[name]:pos[name] + len(group)]
            pos[name] += len(group)
            results = [inst.filtered_resps[keys[name]] if keys[name] else inst.resps[0] for inst in mine]
            metrics = self.tasks[name].process_results(group[0].doc, results)
            metric = self.cfg.metric or next(iter(metrics))
            if metric not in metrics:
                raise EvoMergeError(f"lm-eval task {name}: no metric {metric!r} (it gives {sorted(metrics)})")
            scores.append(float(metrics[metric]))
        return np.asarray(scores, dtype=float)

    def combine(self, member_predictions: list[list[list[Any]]]) -> list[list[Any]]:
        """Mean log-likelihood per request (greedy if most members were), or the most common text."""
        out = []
        for docs in zip(*member_predictions):
            merged = []
            for resps in zip(*docs):
                if isinstance(resps[0], tuple):
                    merged.append((float(np.mean([r[0] for r in resps])),
                                   sum(r[1] for r in resps) * 2 > len(resps)))
                else:
                    merged.append(Counter(resps).most_common(1)[0][0])
            out.append(merged)
        return out


_REQUESTS: dict[tuple, dict[int, list]] = {}


def _requests(task, name: str, cfg: LmEvalSpec, tokenizer) -> dict[int, list]:
    """Every document's requests, built once per process over all documents, as lm-eval's own
    evaluation builds them (few-shot contexts are drawn in document order)."""
    key = (name, cfg.task, cfg.include_path, cfg.num_fewshot, cfg.apply_chat_template, id(tokenizer))
    if key not in _REQUESTS:
        chat = (lambda msgs: tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)) \
            if cfg.apply_chat_template else None
        with _quiet():
            task.build_all_requests(apply_chat_template=cfg.apply_chat_template, chat_template=chat,
                                    tokenizer_name=getattr(tokenizer, "name_or_path", ""))
        by_doc: dict[int, list] = {}
        for inst in task.instances:
            by_doc.setdefault(inst.doc_id, []).append(inst)
        _REQUESTS[key] = by_doc
    return _REQUESTS[key]


def resolve_include_path(cfg: LmEvalSpec, here: Path) -> LmEvalSpec:
    if cfg.include_path is None or Path(cfg.include_path).is_absolute():
        return cfg
    return cfg.model_copy(update={"include_path": str((here / cfg.include_path).resolve())})
