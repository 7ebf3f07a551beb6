"""Metrics: how a model is scored on a task's examples.

A metric prepares a task's examples once (tokenization, batching), predicts with the
installed model, scores predictions per example, and combines several members'
predictions for a top-k ensemble. ``module:function`` names a user callable
``fn(model, tokenizer, examples) -> list[float]`` of per-example scores.
"""

from __future__ import annotations

import importlib
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import numpy as np
import torch

from evo_merge.errors import EvoMergeError
from evo_merge.fitness.tasks import TaskSpec
from evo_merge.registry import Registry


class Metric(Protocol):
    def predict(self, model: torch.nn.Module) -> list[Any]: ...
    def score(self, predictions: list[Any]) -> np.ndarray: ...
    def combine(self, member_predictions: list[list[Any]]) -> list[Any]: ...


MetricFactory = Callable[[TaskSpec, list[dict[str, Any]], Any, torch.device, int], Metric]
METRICS: Registry[MetricFactory] = Registry("metric")


def make_metric(spec: TaskSpec, examples: list[dict[str, Any]], tokenizer: Any, device: torch.device,
                batch_size: int) -> Metric:
    """The metric named by ``spec.metric``, prepared for ``examples``."""
    if ":" in spec.metric:
        return CallableMetric(spec, examples, tokenizer, _import_callable(spec.metric))
    return METRICS.get(spec.metric)(spec, examples, tokenizer, device, batch_size)


@dataclass
class _Batch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    cont_mask: torch.Tensor  # (B, K): which of the last K tokens are continuation tokens
    rows: list[int]


class ContinuationScorer:
    """Sum of log-probabilities of continuations given prompts, batched with left padding.

    Only the last K positions go through the LM head (``logits_to_keep``), K being the
    longest continuation in the batch, so large vocabularies cost little.
    """

    def __init__(self, pairs: list[tuple[list[int], list[int]]], pad_id: int, device: torch.device, batch_size: int):
        self.n = len(pairs)
        order = sorted(range(self.n), key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))
        self.batches = [self._batch([pairs[i] for i in order[s:s + batch_size]], order[s:s + batch_size], pad_id, device)
                        for s in range(0, self.n, batch_size)]

    @staticmethod
    def _batch(pairs, rows, pad_id, device) -> _Batch:
        seqs = [p + c for p, c in pairs]
        T = max(map(len, seqs))
        K = max(len(c) for _, c in pairs)
        ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), T), dtype=torch.long)
        cont = torch.zeros((len(seqs), K), dtype=torch.bool)
        for r, (seq, (_, c)) in enumerate(zip(seqs, pairs)):
            ids[r, T - len(seq):] = torch.tensor(seq)
            mask[r, T - len(seq):] = 1
            cont[r, K - len(c):] = True
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        return _Batch(ids.to(device), mask.to(device), pos.to(device), cont.to(device), rows)

    @torch.no_grad()
    def logprobs(self, model: torch.nn.Module) -> tuple[np.ndarray, np.ndarray]:
        """Per pair: summed log-probability and number of continuation tokens."""
        total = np.zeros(self.n)
        count = np.zeros(self.n)
        for b in self.batches:
            K = b.cont_mask.shape[1]
            logits = model(input_ids=b.input_ids, attention_mask=b.attention_mask, position_ids=b.position_ids,
                           logits_to_keep=K + 1, use_cache=False).logits[:, -K - 1:-1].float()
            targets = b.input_ids[:, -K:]
            lp = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - logits.logsumexp(-1)
            lp = (lp * b.cont_mask).sum(-1)
            total[b.rows] = lp.cpu().numpy()
            count[b.rows] = b.cont_mask.sum(-1).cpu().numpy()
        return total, count


def _encode(tokenizer: Any, text: str, special: bool) -> list[int]:
    return tokenizer(text, add_special_tokens=special)["input_ids"]


def render_prompt(spec: TaskSpec, row: dict[str, Any], tokenizer: Any) -> tuple[str, bool]:
    """The prompt text, and whether the tokenizer should add its special tokens to it: with
    ``chat_template`` the prompt is the user turn of the tokenizer's chat template, which
    brings its own."""
    text = spec.prompt.format(**row)
    if not spec.chat_template:
        return text, True
    if not getattr(tokenizer, "chat_template", None):
        raise EvoMergeError(f"task {spec.name}: chat_template is on but the base tokenizer has no chat template")
    return tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                         add_generation_prompt=True), False


def _encode_prompt(spec: TaskSpec, row: dict[str, Any], tokenizer: Any) -> list[int]:
    text, special = render_prompt(spec, row, tokenizer)
    return _encode(tokenizer, text, special)


@METRICS.register("mc_loglik")
class MultipleChoice:
    """Accuracy of the highest log-likelihood choice; ensembles average choice log-probs."""

    def __init__(self, spec, examples, tokenizer, device, batch_size):
        self.answers, pairs, self.spans = [], [], []
        for i, row in enumerate(examples):
            choices = [str(c) for c in row[spec.choices_field]]
            answer = str(row[spec.answer_field])
            if answer not in choices:
                raise EvoMergeError(f"task {spec.name}: example {i}: answer {answer!r} is not among its choices")
            prompt = _encode_prompt(spec, row, tokenizer)
            start = len(pairs)
            pairs.extend((prompt, _encode(tokenizer, c, False)) for c in choices)
            self.spans.append((start, len(pairs)))
            self.answers.append(choices.index(answer))
        self.scorer = ContinuationScorer(pairs, tokenizer.pad_token_id, device, batch_size)

    def predict(self, model):
        return self.from_logprobs(*self.scorer.logprobs(model))

    def from_logprobs(self, total, count):
        return [total[a:b] for a, b in self.spans]

    def score(self, predictions):
        return np.array([float(np.argmax(p) == a) for p, a in zip(predictions, self.answers)])

    def combine(self, member_predictions):
        return [np.mean(stack, axis=0) for stack in zip(*member_predictions)]


@METRICS.register("neg_loss")
class NegativeLoss:
    """Mean per-token log-probability of the reference answer (higher is better)."""

    def __init__(self, spec, examples, tokenizer, device, batch_size):
        pairs = [(_encode_prompt(spec, row, tokenizer),
                  _encode(tokenizer, str(row[spec.answer_field]), False)) for row in examples]
        if any(not c for _, c in pairs):
            raise EvoMergeError(f"task {spec.name}: an example has an empty answer")
        self.scorer = ContinuationScorer(pairs, tokenizer.pad_token_id, device, batch_size)

    def predict(self, model):
        return self.from_logprobs(*self.scorer.logprobs(model))

    def from_logprobs(self, total, count):
        return list(total / count)

    def score(self, predictions):
        return np.asarray(predictions, dtype=float)

    def combine(self, member_predictions):
        return list(np.mean(np.asarray(member_predictions), axis=0))


@METRICS.register("exact_match")
class ExactMatch:
    """Greedy generation, answer extracted by ``answer_regex``; ensembles vote per example."""

    def __init__(self, spec, examples, tokenizer, device, batch_size):
        self.spec, self.tokenizer, self.device, self.batch_size = spec, tokenizer, device, batch_size
        rendered = [render_prompt(spec, row, tokenizer) for row in examples]
        self.prompts = [text for text, _ in rendered]
        self.add_special = all(special for _, special in rendered)
        self.answers = [str(row[spec.answer_field]).strip() for row in examples]
        try:
            self.regex = re.compile(spec.answer_regex) if spec.answer_regex else None
        except re.error as exc:
            raise EvoMergeError(f"task {spec.name}: answer_regex is not a valid regular expression: {exc}") from None

    def extract(self, text: str) -> str:
        if self.regex is None:
            return text.strip()
        m = self.regex.search(text)
        return (m.group(1) if m and m.groups() else m.group(0) if m else "").strip()

    @torch.no_grad()
    def predict(self, model):
        tok = self.tokenizer
        tok.padding_side = "left"
        out: list[str] = []
        for s in range(0, len(self.prompts), self.batch_size):
            enc = tok(self.prompts[s:s + self.batch_size], return_tensors="pt", padding=True,
                      add_special_tokens=self.add_special).to(self.device)
            gen = model.generate(**enc, max_new_tokens=self.spec.max_new_tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id)
            texts = tok.batch_decode(gen[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            out.extend(self.extract(t) for t in texts)
        return out

    def score(self, predictions):
        return np.array([float(p == a) for p, a in zip(predictions, self.answers)])

    def combine(self, member_predictions):
        return [Counter(votes).most_common(1)[0][0] for votes in zip(*member_predictions)]


class CallableMetric:
    """A user function returning per-example scores; ensembles average the scores."""

    def __init__(self, spec, examples, tokenizer, fn):
        self.spec, self.examples, self.tokenizer, self.fn = spec, examples, tokenizer, fn

    def predict(self, model):
        scores = list(self.fn(model, self.tokenizer, self.examples))
        if len(scores) != len(self.examples):
            raise EvoMergeError(f"task {self.spec.name}: metric {self.spec.metric} returned {len(scores)} scores "
                                f"for {len(self.examples)} examples")
        return scores

    def score(self, predictions):
        return np.asarray(predictions, dtype=float)

    def combine(self, member_predictions):
        return list(np.mean(np.asarray(member_predictions), axis=0))


def _import_callable(ref: str) -> Callable:
    module_name, _, attr = ref.partition(":")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise EvoMergeError(f"metric {ref!r} cannot be imported: {exc}") from None
    if not callable(fn):
        raise EvoMergeError(f"metric {ref!r} is not callable")
    return fn
