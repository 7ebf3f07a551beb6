"""Tasks, metrics and ensembles on a tiny random model."""

import numpy as np
import pytest
import torch

import factories
from evo_merge.errors import EvoMergeError
from evo_merge.fitness.evaluator import LocalEvaluator
from evo_merge.fitness.metrics import ExactMatch, MultipleChoice
from evo_merge.fitness.prompts import encode_prompt
from evo_merge.fitness.tasks import load_task
from evo_merge.model_host import ModelHost
from evo_merge.population import load_population


@pytest.fixture(scope="module")
def host(tiny_full):
    population = load_population(tiny_full)
    members = population.load_genomes()
    h = ModelHost(population.base_dir, next(iter(members.values())).layout, device="cpu")
    h.install(members["m0"])
    return h


def test_split_is_seeded_disjoint_and_sized(tmp_path):
    task = load_task(factories.write_task(tmp_path, n_rows=40))
    again = load_task(factories.write_task(tmp_path, n_rows=40))
    assert len(task.fitness) == 20 and len(task.test) == 10
    assert task.fitness == again.fitness and task.test == again.test
    assert not {r["id"] for r in task.fitness} & {r["id"] for r in task.test}
    other = load_task(factories.write_task(tmp_path, n_rows=40), {"split_seed": 1})
    assert other.fitness != task.fitness


def test_mc_loglik_matches_unbatched_forward(host, tmp_path):
    """Batched, left-padded scoring equals scoring each prompt+choice alone."""
    task = load_task(factories.write_task(tmp_path))
    examples = task.fitness[:6]
    metric = MultipleChoice(task.spec, examples, host.tokenizer, host.device, batch_size=7)
    preds = metric.predict(host.model)
    tok = host.tokenizer
    for row, scores in zip(examples, preds):
        prompt = encode_prompt(task.spec, row, tok)  # add_bos auto: <s> in front (the tokenizer adds none)
        for j, choice in enumerate(row["choices"]):
            cont = tok(choice, add_special_tokens=False)["input_ids"]
            ids = torch.tensor([prompt + cont])
            with torch.no_grad():
                logp = host.model(ids).logits.log_softmax(-1)[0]
            expected = sum(logp[len(prompt) + i - 1, t].item() for i, t in enumerate(cont))
            assert scores[j] == pytest.approx(expected, abs=1e-4)
    acc = metric.score(preds)
    assert acc.tolist() == [float(np.argmax(p) == row["choices"].index(row["answer"]))
                            for p, row in zip(preds, examples)]


def test_ensemble_combines_choice_logprobs_by_mean_and_generations_by_vote():
    mc = MultipleChoice.__new__(MultipleChoice)
    combined = mc.combine([[np.array([0.0, -5.0])], [np.array([-3.0, -1.0])], [np.array([-3.0, -1.0])]])
    assert combined[0].tolist() == pytest.approx([-2.0, -7.0 / 3])
    em = ExactMatch.__new__(ExactMatch)
    assert em.combine([["a", "x"], ["b", "y"], ["b", "x"]]) == ["b", "x"]


def test_exact_match_and_neg_loss_and_callable_metrics_run(host, tmp_path, monkeypatch):
    gen = load_task(factories.write_task(tmp_path, name="gen", metric="exact_match"))
    gen.spec.answer_regex = r"(\d)"
    loss_spec = factories.write_task(tmp_path, name="loss", metric="neg_loss")
    module = tmp_path / "my_metric.py"
    module.write_text("def first_char_len(model, tokenizer, examples):\n"
                      "    return [len(e['question']) / 10 for e in examples]\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    call_spec = factories.write_task(tmp_path, name="call", metric="my_metric:first_char_len")
    tasks = [(gen, 1.0), (load_task(loss_spec), 1.0), (load_task(call_spec), 2.0)]
    ev = LocalEvaluator(host, tasks, batch_size=8).evaluate(host_genome(host))
    assert set(ev.task_scores) == {"gen", "loss", "call"}
    assert 0.0 <= ev.task_scores["gen"] <= 1.0
    assert ev.task_scores["loss"] < 0
    assert ev.task_scores["call"] == pytest.approx(np.mean([len(r["question"]) / 10 for r in tasks[2][0].fitness]))
    weighted = (ev.task_scores["gen"] + ev.task_scores["loss"] + 2 * ev.task_scores["call"]) / 4
    assert ev.score == pytest.approx(weighted)


def host_genome(host):
    from evo_merge.genome import Genome
    return Genome(host.layout, torch.zeros(host.layout.numel, dtype=host.layout.dtype))


def test_bad_callable_metric(tmp_path, host):
    spec = factories.write_task(tmp_path, name="c", metric="no_such_module:fn")
    with pytest.raises(EvoMergeError, match="cannot be imported"):
        LocalEvaluator(host, [(load_task(spec), 1.0)]).evaluate(host_genome(host))


@pytest.mark.parametrize("longest", [3, 1], ids=["multi-token", "one-token"])
@pytest.mark.parametrize("arch", factories.ARCHS)
def test_cached_prompts_score_like_one_sequence_per_pair(arch, longest):
    """Each prompt once (a shared few-shot prefix once per evaluation), continuations from its
    cache (one-token choices straight from the prompt's last position): the same
    log-probabilities and greedy flags as one sequence per (prompt, continuation)."""
    from evo_merge.fitness.cached_scoring import CachedChoiceScorer
    from evo_merge.fitness.scoring import ContinuationScorer

    model = factories.make_arch_model(arch).eval()
    g = torch.Generator().manual_seed(0)
    rand = lambda lo, hi: int(torch.randint(lo, hi, (1,), generator=g))  # noqa: E731
    prefix = torch.randint(4, 28, (12,), generator=g).tolist()
    prompts, groups, pairs = [], [], []
    for _ in range(7):
        p = prefix + torch.randint(4, 28, (rand(1, 6),), generator=g).tolist()
        group = []
        for _ in range(rand(2, 5)):
            cont = torch.randint(4, 28, (rand(1, longest + 1),), generator=g).tolist()
            group.append((len(pairs), cont))
            pairs.append((p, cont))
        prompts.append(p)
        groups.append(group)
    want = ContinuationScorer(pairs, 0, torch.device("cpu"), 5).logprobs(model, greedy=True)
    scorer = CachedChoiceScorer(prompts, groups, 0, torch.device("cpu"), 3)
    assert scorer.prefix == prefix
    got = scorer.logprobs(model, greedy=True)
    np.testing.assert_allclose(got[0], want[0], atol=1e-5)
    assert (got[1] == want[1]).all() and (got[2] == want[2]).all()


def test_generation_stops_once_every_answer_is_complete(host, tmp_path):
    task = load_task(factories.write_task(tmp_path, metric="exact_match"))
    task.spec.answer_regex = "(.)"  # any one character completes an answer
    task.spec.max_new_tokens = 12
    metric = ExactMatch(task.spec, task.fitness[:5], host.tokenizer, host.device, batch_size=8)
    calls = []
    generate = host.model.generate

    def spy(**kw):
        out = generate(**kw)
        calls.append(out.shape[1] - kw["input_ids"].shape[1])
        return out

    host.model.generate = spy
    try:
        preds = metric.predict(host.model)
    finally:
        host.model.generate = generate
    assert calls and max(calls) < 12 and all(len(p) == 1 for p in preds)


def test_the_cache_argument_is_read_through_a_peft_wrapper():
    """A PEFT model's forward shows only **kwargs: the cache argument's name comes from the
    transformers model under it (``cache`` in transformers 5, not the deprecated alias)."""
    import inspect

    from peft import LoraConfig, get_peft_model

    from evo_merge.fitness.cached_scoring import _cache_io

    model = factories.make_arch_model("llama").eval()
    want = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    wrapped = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"]))
    assert _cache_io(wrapped) == (want, want) == _cache_io(model)


def test_length_batches_on_cpu_hold_rows_of_one_length_where_enough_share_it():
    from evo_merge.fitness.scoring import length_batches

    lengths = [7] * 9 + [5] * 10 + [6] * 3 + [9] * 40
    exact = length_batches(lengths, 16, exact=True)
    padded = length_batches(lengths, 16, exact=False)
    for batches in (exact, padded):
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(len(lengths))) and all(len(b) <= 16 for b in batches)
        assert [lengths[i] for i in flat] == sorted(lengths)
    assert [sorted({lengths[i] for i in b}) for b in exact] == [[5], [6, 7], [9], [9], [9]]
    assert [len(b) for b in exact] == [10, 12, 16, 16, 8]
    assert [len(b) for b in padded] == [16, 16, 16, 14]


@pytest.mark.parametrize("arch", factories.ARCHS)
def test_unpadded_batches_score_like_each_row_alone(arch, monkeypatch):
    """On a CPU, rows batched by length run with no attention mask and give each row's own
    numbers; rows of rare lengths are left-padded together, with the same numbers. Models
    with tiny layers (these) keep the fewest batches unless the threshold says otherwise."""
    from evo_merge.fitness import scoring
    from evo_merge.fitness.scoring import ContinuationScorer, SharedPromptScorer

    model = factories.make_arch_model(arch).eval()
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(4, 28, (n,), generator=g).tolist() for n in [5] * 9 + [6] * 2 + [8] * 3]
    groups, pairs = [], []
    for p in prompts:
        tokens = torch.randint(4, 28, (3,), generator=g).tolist()
        groups.append([(len(pairs) + j, t) for j, t in enumerate(tokens)])
        pairs += [(p, [t]) for t in tokens]
    scorer = SharedPromptScorer(prompts, groups, 0, torch.device("cpu"), 16)
    assert scorer.batches(model) is scorer.batchings[False] and len(scorer.batchings[False]) == 1
    padded = scorer.logprobs(model, greedy=True)
    monkeypatch.setattr(scoring, "BY_LENGTH_MIN_LAYER_PARAMS", 0)
    assert [b.attention_mask is None for b in scorer.batches(model)] == [True, False]
    alone = ContinuationScorer(pairs, 0, torch.device("cpu"), 1)
    assert all(b.attention_mask is None for b in alone.batches(model))
    want, got = alone.logprobs(model, greedy=True), scorer.logprobs(model, greedy=True)
    for have in (got, padded):
        np.testing.assert_allclose(have[0], want[0], atol=1e-5)
        assert (have[2] == want[2]).all()


def test_prefix_groups_split_prompts_where_it_saves_the_most_positions():
    from evo_merge.fitness.scorers import prefix_groups

    a, b = list(range(4, 34)), list(range(40, 60))  # two subjects' few-shot prefixes: 30 and 20 tokens
    head = [1, 2, 3, 60, 61, 62, 63, 64, 65, 66]  # a 10-token description every subject's prompts start with
    prompts = ([head + a + [70 + i] for i in range(5)] + [head + b + [80 + i, 81] for i in range(3)]
               + [[90 + i] * 9 for i in range(4)] + [head + [99]])
    # one group of all nine "head" prompts would save 8 * 10 = 80 positions; the subjects save 4 * 40 + 2 * 30
    assert prefix_groups(prompts) == [[0, 1, 2, 3, 4], [5, 6, 7]]
    assert prefix_groups([head + [5], head + [6]]) == [[0, 1]]
    assert prefix_groups([head[:8] + [5], head[:8] + [6]]) == [[0, 1]]  # MIN_PREFIX tokens
    assert prefix_groups([head[:7] + [5], head[:7] + [6]]) == []
    assert prefix_groups([head, head]) == [[0, 1]]  # a prompt keeps its last token


@pytest.mark.parametrize("arch", factories.ARCHS)
def test_rows_of_several_prefixes_score_like_one_sequence_per_pair(arch):
    from evo_merge.fitness.cached_scoring import CachedChoiceScorer
    from evo_merge.fitness.scorers import ScorerSet, make_scorer
    from evo_merge.fitness.scoring import ContinuationScorer

    model = factories.make_arch_model(arch).eval()
    g = torch.Generator().manual_seed(2)
    rand = lambda n: torch.randint(4, 28, (n,), generator=g).tolist()  # noqa: E731
    heads = [rand(10), rand(14)]
    pairs = []
    for k in range(9):
        prompt = (heads[k % 2] if k < 6 else []) + rand(2 + k % 3)
        pairs += [(prompt, [t]) for t in rand(3)]
    scorer = make_scorer(pairs, 0, torch.device("cpu"), 4)
    assert isinstance(scorer, ScorerSet)
    prefixes = [s.prefix for s, _ in scorer.parts if isinstance(s, CachedChoiceScorer) and s.prefix]
    assert len(prefixes) == 2 and all(any(p[:len(h)] == h for p in prefixes) for h in heads)
    want = ContinuationScorer(pairs, 0, torch.device("cpu"), 1).logprobs(model, greedy=True)
    got = scorer.logprobs(model, greedy=True)
    np.testing.assert_allclose(got[0], want[0], atol=1e-5)
    assert (got[1] == 1).all() and (got[2] == want[2]).all()
