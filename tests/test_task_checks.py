"""Fitness that cannot silently read zero: BOS handling, decoding, the all-equal warning, and
`evo-merge eval`."""

from __future__ import annotations

import pytest
import torch
import yaml

import factories
from evo_merge.errors import EvoMergeError
from evo_merge.fitness.prompts import encode_prompt, make_decoder
from evo_merge.fitness.tasks import TaskSpec


def spec(**kw) -> TaskSpec:
    return TaskSpec(name="t", dataset={"path": "x.jsonl"}, choices_field="choices", **kw)


def no_decoder_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel({t: i for i, t in enumerate(factories.VOCAB)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   unk_token="<unk>")


ROW = {"question": "12=", "choices": ["3", "4"], "answer": "3"}


def test_add_bos_auto_true_false():
    tok = factories.make_tokenizer()  # defines <s> but adds nothing itself
    bos = tok.bos_token_id
    assert encode_prompt(spec(), ROW, tok)[0] == bos                     # auto: the missing BOS is added
    assert encode_prompt(spec(add_bos=True), ROW, tok)[0] == bos
    assert bos not in encode_prompt(spec(add_bos=False), ROW, tok)
    tok.bos_token = tok.eos_token                                        # GPT-2 style: BOS is EOS
    assert encode_prompt(spec(), ROW, tok)[0] != tok.bos_token_id        # auto leaves it alone
    assert encode_prompt(spec(add_bos=True), ROW, tok)[0] == tok.bos_token_id
    tok.bos_token = None
    with pytest.raises(EvoMergeError, match="add_bos is true but the tokenizer has no BOS token"):
        encode_prompt(spec(add_bos=True), ROW, tok)


def test_decoding_round_trips_a_tokenizer_without_a_decoder():
    tok = no_decoder_tokenizer()
    ids = tok("12", add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == "1 2"                       # what exact match used to compare
    decode = make_decoder(tok, ["12", "3"])
    assert decode(ids + [tok.eos_token_id]) == "12"
    assert make_decoder(factories.make_tokenizer(), ["12"])(ids) == "12"


class Warnings:
    def __init__(self):
        self.messages = []

    def phase(self, *a): ...
    def advance(self): ...
    def generation(self, *a): ...
    def event(self, *a): ...

    def warning(self, message):
        self.messages.append(message)


def test_a_task_every_member_fails_gets_a_warning_with_predictions(tiny_lora, tmp_path):
    from evo_merge.config import load_run_config
    from evo_merge.runner import execute

    task = factories.write_task(tmp_path, metric="exact_match")
    data = yaml.safe_load(task.read_text())
    data["answer_regex"] = "answer: (\\d)"  # nothing a random model writes
    task.write_text(yaml.safe_dump(data))
    cfg = load_run_config(factories.write_run_config(tmp_path, tiny_lora, task, generations=1))
    hooks = Warnings()
    execute(cfg, hooks)
    (message,) = hooks.messages
    assert "task tiny: every member scores 0.000" in message and "First predictions:" in message
    assert message.count("(answer ") == 3


def test_eval_command_scores_a_model_an_adapter_and_an_individual(cli, tiny_lora, tmp_path):
    from evo_merge.config import load_run_config
    from evo_merge.runner import execute

    pop = yaml.safe_load(tiny_lora.read_text())
    task = factories.write_task(tmp_path)
    code, out, err = cli("eval", pop["base_model"], task, "--show", "2", "--split", "both")
    assert code == 0, err
    assert "tiny (fitness split)" in out and "tiny (test split)" in out and out.count("12=") + out.count("=") >= 2
    member = pop["members"][0]["path"]
    code, out, err = cli("eval", member, task, "--base", pop["base_model"])
    assert code == 0 and f"PEFT adapter {member}" in out.replace("\n", ""), err
    run = execute(load_run_config(factories.write_run_config(tmp_path, tiny_lora, task, generations=1))).run_dir
    code, out, err = cli("eval", f"{run}:0", task)
    assert code == 0 and "individual 0 of" in out.replace("\n", ""), err
    code, out, err = cli("eval", str(run), task, "--split", "sideways")
    assert code == 2 and "--split must be one of" in err


def test_choice_list_prompts_letter_the_choices_and_accept_index_letter_or_text():
    from evo_merge.fitness.metrics import MultipleChoice
    from evo_merge.fitness.prompts import choice_list, render_prompt

    tok = factories.make_tokenizer()
    s = spec(choices_in_prompt=True)
    rows = [{"question": "1:2=", "choices": ["3", "4", "5"], "answer": a} for a in (1, "B", "4")]
    for row in rows:
        listing, continuations, index = choice_list(s, row)
        assert (listing, continuations, index) == ("\nA. 3\nB. 4\nC. 5\nAnswer:", [" A", " B", " C"], 1)
    assert render_prompt(s, rows[0], tok) == ("1:2=\nA. 3\nB. 4\nC. 5\nAnswer:", True)
    metric = MultipleChoice(s, rows, tok, torch.device("cpu"), 8)
    assert metric.answers == [1, 1, 1] and metric.spans == [(0, 3), (3, 6), (6, 9)]
    with pytest.raises(EvoMergeError, match="neither an index, a letter nor a choice"):
        choice_list(s, {"question": "q", "choices": ["3", "4"], "answer": "7"})
