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
from typing import Any, Callable, Protocol

import numpy as np
import torch
from transformers import StoppingCriteria

from evo_merge.errors import EvoMergeError
from evo_merge.fitness.prompts import LETTERS, choice_list, encode, encode_prompt, left_pad, make_decoder
from evo_merge.fitness.scorers import make_scorer
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
    if spec.lm_eval is not None:
        from evo_merge.fitness.lm_eval_task import LmEvalMetric

        return LmEvalMetric(spec, examples, tokenizer, device, batch_size)
    if ":" in spec.metric:
        return CallableMetric(spec, examples, tokenizer, _import_callable(spec.metric))
    return METRICS.get(spec.metric)(spec, examples, tokenizer, device, batch_size)


class _ScoresAsPredictions:
    """Metrics whose prediction is the per-example score; ensembles average them."""

    def score(self, predictions):
        return np.asarray(predictions, dtype=float)

    def combine(self, member_predictions):
        return list(np.mean(np.asarray(member_predictions), axis=0))


@METRICS.register("mc_loglik")
class MultipleChoice:
    """Accuracy of the highest log-likelihood choice; ensembles average choice log-probs."""

    bounded = True  # per-example scores in [0, 1] (racing needs that)

    def __init__(self, spec, examples, tokenizer, device, batch_size):
        self.answers, pairs, self.spans = [], [], []
        for i, row in enumerate(examples):
            if spec.choices_in_prompt:
                _, choices, index = choice_list(spec, row)
            else:
                choices = [str(c) for c in row[spec.choices_field]]
                answer = str(row[spec.answer_field])
                if answer not in choices:
                    raise EvoMergeError(f"task {spec.name}: example {i}: answer {answer!r} is not among its choices")
                index = choices.index(answer)
            prompt = encode_prompt(spec, row, tokenizer)
            start = len(pairs)
            pairs.extend((prompt, encode(tokenizer, c)) for c in choices)
            self.spans.append((start, len(pairs)))
            self.answers.append(index)
        self.scorer = make_scorer(pairs, tokenizer.pad_token_id, device, batch_size)

    def predict(self, model):
        return self.from_logprobs(*self.scorer.logprobs(model))

    def from_logprobs(self, total, count):
        return [total[a:b] for a, b in self.spans]

    def score(self, predictions):
        return np.array([float(np.argmax(p) == a) for p, a in zip(predictions, self.answers)])

    def combine(self, member_predictions):
        return [np.mean(stack, axis=0) for stack in zip(*member_predictions)]


@METRICS.register("neg_loss")
class NegativeLoss(_ScoresAsPredictions):
    """Mean per-token log-probability of the reference answer (higher is better)."""

    def __init__(self, spec, examples, tokenizer, device, batch_size):
        pairs = [(encode_prompt(spec, row, tokenizer),
                  encode(tokenizer, str(row[spec.answer_field]))) for row in examples]
        if any(not c for _, c in pairs):
            raise EvoMergeError(f"task {spec.name}: an example has an empty answer")
        self.scorer = make_scorer(pairs, tokenizer.pad_token_id, device, batch_size)

    def predict(self, model):
        return self.from_logprobs(*self.scorer.logprobs(model))

    def from_logprobs(self, total, count):
        return list(total / count)


@METRICS.register("exact_match")
class ExactMatch:
    """Greedy generation, answer extracted by ``answer_regex``; ensembles vote per example."""

    bounded = True

    def __init__(self, spec, examples, tokenizer, device, batch_size):
        self.spec, self.tokenizer, self.device, self.batch_size = spec, tokenizer, device, batch_size
        self.prompts = [encode_prompt(spec, row, tokenizer) for row in examples]
        self.answers = [LETTERS[choice_list(spec, row)[2]] if spec.choices_in_prompt else str(row[spec.answer_field]).strip()
                        for row in examples]
        self.decode = make_decoder(tokenizer, self.answers)
        try:
            self.regex = re.compile(spec.answer_regex) if spec.answer_regex else None
        except re.error as exc:
            raise EvoMergeError(f"task {spec.name}: answer_regex is not a valid regular expression: {exc}") from None

    def extract_or_none(self, text: str) -> str | None:
        """The answer once the generated text holds a complete one (the regex matched), else None."""
        if self.regex is None:
            return None
        m = self.regex.search(text)
        return m.group(0) if m else None

    def extract(self, text: str) -> str:
        if self.regex is None:
            return text.strip()
        m = self.regex.search(text)
        return (m.group(1) if m and m.groups() else m.group(0) if m else "").strip()

    @torch.no_grad()
    def predict(self, model):
        tok = self.tokenizer
        out: list[str] = []
        for s in range(0, len(self.prompts), self.batch_size):
            enc = left_pad(self.prompts[s:s + self.batch_size], tok.pad_token_id, self.device)
            stop = [AnswerComplete(enc["input_ids"].shape[1], self.decode, self.extract_or_none)]
            gen = model.generate(**enc, max_new_tokens=self.spec.max_new_tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id, stopping_criteria=stop,
                                 stop_strings=self.spec.stop or None, tokenizer=tok)
            out.extend(self.extract(self.decode(row)) for row in gen[:, enc["input_ids"].shape[1]:].tolist())
        return out

    def score(self, predictions):
        return np.array([float(p == a) for p, a in zip(predictions, self.answers)])

    def combine(self, member_predictions):
        return [Counter(votes).most_common(1)[0][0] for votes in zip(*member_predictions)]


class AnswerComplete(StoppingCriteria):
    """Stops a row's generation once its answer is complete (``answer_regex`` matched); the
    batch stops when every row's is, not at ``max_new_tokens``."""

    def __init__(self, prompt_len: int, decode, complete):
        self.prompt_len, self.decode, self.complete = prompt_len, decode, complete

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        done = [self.complete(self.decode(row[self.prompt_len:].tolist())) is not None for row in input_ids]
        return torch.tensor(done, device=input_ids.device)


class CallableMetric(_ScoresAsPredictions):
    """A user function returning per-example scores; ensembles average the scores."""

    def __init__(self, spec, examples, tokenizer, fn):
        self.spec, self.examples, self.tokenizer, self.fn = spec, examples, tokenizer, fn

    def predict(self, model):
        what = f"task {self.spec.name}: metric {self.spec.metric}"
        try:
            out = self.fn(model, self.tokenizer, self.examples)
            scores = np.asarray(list(out), dtype=float)
        except EvoMergeError:
            raise
        except (TypeError, ValueError) as exc:
            raise EvoMergeError(f"{what} must return numbers, one per example ({exc})") from None
        except Exception as exc:  # noqa: BLE001 - user code: its failure is bad input, told in one line
            raise EvoMergeError(f"{what} raised {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") \
                from None
        if scores.shape != (len(self.examples),):
            raise EvoMergeError(f"{what} returned {scores.size} scores for {len(self.examples)} examples")
        if not np.isfinite(scores).all():
            raise EvoMergeError(f"{what} returned NaN or infinite scores (example {int(np.argmin(np.isfinite(scores)))})")
        return list(scores)


def _import_callable(ref: str) -> Callable:
    module_name, _, attr = ref.partition(":")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise EvoMergeError(f"metric {ref!r} cannot be imported: {exc}") from None
    if not callable(fn):
        raise EvoMergeError(f"metric {ref!r} is not callable")
    return fn
