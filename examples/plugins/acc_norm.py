"""A metric plugin: lm-eval's ``acc_norm``, the choice with the highest log-probability per
character of the choice (the built-in ``mc_loglik`` is ``acc``: the summed log-probability)."""

import numpy as np

from evo_merge.fitness.metrics import METRICS, MultipleChoice


@METRICS.register("mc_loglik_norm")
class MultipleChoiceNorm(MultipleChoice):
    def __init__(self, spec, examples, tokenizer, device, batch_size):
        super().__init__(spec, examples, tokenizer, device, batch_size)
        self.lengths = [np.array([len(str(c)) for c in row[spec.choices_field]]) for row in examples]

    def from_logprobs(self, total, count):
        return [total[a:b] / n for (a, b), n in zip(self.spans, self.lengths)]
