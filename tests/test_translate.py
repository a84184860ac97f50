"""The translate task: number words, dates and Multi30k pairs, their splits, vocabularies, baseline and scores."""

import datetime
import json
import random
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import small
from num2words import num2words

import architectures
from architectures.seq2seq import Seq2Seq
from bench.run.config import flatten, resolve
from bench.run.train import train
from tasks.composed import END, PAD, START, Scored
from tasks.translate import (
    DATE_STYLES,
    LOCALES,
    Translate,
    TranslateConfig,
    draw_numbers,
    number_tokens,
    number_words,
    segment_german,
)

SMALL = {"n_train": 200, "n_val": 40, "n_test": 60}
RECORDS = Path(__file__).resolve().parent.parent / "results" / "runs"


def task(**cfg) -> Translate:
    return Translate(TranslateConfig(**cfg))


def texts(t: Translate, split: str) -> list[tuple[str, str]]:
    ds = getattr(t.splits, split)
    batch = ds[torch.arange(len(ds))]
    return [tuple(t.describe_example(batch, i).values()) for i in range(len(ds))]


def test_a_training_batch_is_framed_padded_and_cut_to_its_longest_row():
    t = task(batch_size=16, **SMALL)
    batch = next(iter(t.train_dataloader()))
    assert set(batch) == {"src", "src_len", "tgt"} and all(v.dtype == torch.long for v in batch.values())
    src, src_len, tgt = batch["src"], batch["src_len"], batch["tgt"]
    assert src.shape[0] == tgt.shape[0] == src_len.shape[0] == 16
    assert torch.equal((src != PAD).sum(1), src_len) and src.shape[1] == src_len.max()
    assert (tgt[:, 0] == START).all() and ((tgt == END).sum(1) == 1).all() and (tgt[:, -1] != PAD).any()
    assert set(t.sizes()) == {"src_vocab", "tgt_vocab", "max_len"}
    assert t.sizes()["max_len"] > max(len(r.split()) for _, r in texts(t, "train"))


def test_numbers_read_as_num2words_writes_them_and_german_cuts_into_morphemes():
    picks = random.Random(0).sample(range(1_000_000), 150) + [0, 1, 85, 101, 1001, 1985, 101001, 999999]
    for n in picks:
        for lang in ("en", "de", "fr"):
            assert number_words(n, lang) == num2words(n, lang=lang), (n, lang)
        german = num2words(n, lang="de")
        assert "".join(segment_german(german)) == german
    assert number_tokens(85, "en") == ["eighty", "five"] and number_tokens(85, "de") == ["fünf", "und", "achtzig"]
    assert number_tokens(1985, "en") == "one thousand nine hundred and eighty five".split()
    assert number_tokens(300, "de") == ["drei", "hundert"] and number_tokens(17, "de") == ["siebzehn"]
    assert number_tokens(99, "fr") == "quatre vingt dix neuf".split()
    with pytest.raises(ValueError, match="does not segment"):
        segment_german("eine Million")


def test_numbers_are_distinct_and_in_one_split_only():
    t = task(**SMALL)
    sources = {s: [src for src, _ in texts(t, s)] for s in ("train", "val", "test")}
    assert [len(v) for v in sources.values()] == [200, 40, 60]
    every = [x for v in sources.values() for x in v]
    assert len(set(every)) == len(every)
    d = task(pair="dates", **SMALL)
    refs = [r for s in ("train", "val", "test") for _, r in texts(d, s)]
    assert len(set(refs)) == len(refs) and all(len(r) == 10 and r[4] == r[7] == "-" for r in refs)


def test_digit_counts_share_the_draw_where_small_counts_run_out():
    numbers = draw_numbers(99999, 500, torch.Generator().manual_seed(0))
    digits = torch.tensor([len(str(n)) for n in numbers.tolist()])
    assert len(set(numbers.tolist())) == 500 and int(numbers.max()) <= 99999
    assert torch.bincount(digits)[1:].tolist() == [10, 90, 134, 133, 133]  # all of 0..99, then equal shares


def test_same_config_same_tensors_other_seed_other_tensors():
    a, b, c = task(**SMALL).splits.test, task(**SMALL).splits.test, task(data_seed=7, **SMALL).splits.test
    assert all(torch.equal(a.tensors[k], b.tensors[k]) for k in a.tensors)
    assert not torch.equal(a.tensors["src"], c.tensors["src"])


def test_dates_are_never_ambiguous_and_read_as_iso():
    from babel.dates import format_date

    assert len(DATE_STYLES) == 4 * len(LOCALES) - 1
    seen = {}
    for day in range(365):
        date = datetime.date(1985, 1, 1) + datetime.timedelta(days=day)
        for loc, fmt in DATE_STYLES:
            text = format_date(date, fmt, locale=loc)
            assert seen.setdefault(text, date) == date, (text, loc, fmt)
    t = task(pair="dates", **SMALL)
    assert t.sizes()["tgt_vocab"] == 3 + 11  # specials, ten digits and "-"
    source, reference = texts(t, "train")[0]
    assert reference == datetime.date.fromisoformat(reference).isoformat() and len(source) >= 6


def test_the_default_config_fills_every_length_bin_of_the_test_split():
    for pair in ("numbers-de", "dates"):
        t = task(pair=pair)
        lengths = t.splits.test.tensors["src_len"]
        for lo, hi in t.length_bins():
            assert ((lengths >= lo) & (lengths <= (hi or lengths.max()))).sum() >= 20, (pair, lo, hi)
        assert len(t.splits.train) == 8000 and t.baseline == 0.0


def test_check_names_the_limit_and_a_missing_folder():
    assert Translate.check(TranslateConfig()) is None
    assert Translate.check(TranslateConfig(max_number=99, **SMALL)) == (
        "task.n_train + task.n_val + task.n_test = 300 exceeds the 100 distinct numbers in 0..99 (task.max_number)")
    assert "exceeds the 36525 distinct dates" in Translate.check(TranslateConfig(pair="dates", n_train=40000))
    message = Translate.check(TranslateConfig(pair="multi30k", hf_path="/no/such/folder"))
    assert message.startswith("task.hf_path '/no/such/folder' does not exist") and "\n" not in message
    assert Translate.check(TranslateConfig(pair="multi30k")) is None  # a hub id: read when the run starts
    assert Translate.train_size(TranslateConfig(n_train=123)) == 123


def test_multi30k_reads_a_local_folder_of_json_lines(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    rows = {"train": [("Ein Hund läuft.", "A dog runs."), ("Ein Hund schläft.", "A dog sleeps."),
                      ("Zwei Katzen spielen im Garten heute.", "A dog runs.")],
            "validation": [("Ein Hund läuft.", "A dog runs.")],
            "test": [("Eine Katze läuft.", "A dog runs."), ("Ein Hund.", "A cat.")]}
    for split, pairs in rows.items():
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps({"en": en, "de": de}) + "\n" for de, en in pairs))
    cfg = TranslateConfig(pair="multi30k", hf_path=str(tmp_path), max_len=4)
    assert Translate.check(cfg) is None and Translate.train_size(cfg) is None
    t = Translate(cfg)
    assert [len(s) for s in (t.splits.train, t.splits.val, t.splits.test)] == [3, 1, 2]
    assert t.src_vocab.itos == ["<pad>", "<s>", "</s>", "<unk>", ".", "ein", "hund"]  # seen twice or more
    assert texts(t, "test") == [("<unk> <unk> <unk> .", "a dog runs ."), ("ein hund .", "a <unk> .")]
    assert texts(t, "train")[2][0] == "<unk> <unk> <unk> <unk>"  # cut at max_len
    assert t.baseline == 0.5  # "a dog runs ." is the most frequent training target
    assert [n for n in t.bin_names()] == ["exact_len1_10"]


def test_score_counts_exact_matches_overall_and_per_source_length():
    t = task(**SMALL)
    metrics = {t.metric_name: t.make_metric(), **t.make_extra_metrics()}
    assert set(metrics) == {"exact", "token_acc", "bleu", "exact_len1_2", "exact_len3_4", "exact_len5_6",
                            "exact_len7_8", "exact_len9_up"}
    batch = t.splits.test[torch.arange(20)]
    tgt = batch["tgt"]
    t.score(metrics, Scored(logits=torch.zeros(20, 1, 1), tokens=tgt[:, 1:]), batch)
    assert {k: float(m.compute()) for k, m in metrics.items() if k in ("exact", "token_acc", "bleu")} == {
        "exact": 1.0, "token_acc": 1.0, "bleu": pytest.approx(1.0)}
    for m in metrics.values():
        m.reset()
    wrong = tgt[:, 1:].clone()
    long_rows = batch["src_len"] >= 9
    wrong[long_rows, 0] = t.tgt_vocab.stoi["null"]
    t.score(metrics, Scored(logits=torch.zeros(20, 1, 1), tokens=wrong), batch)
    assert float(metrics["exact"].compute()) == pytest.approx(1 - long_rows.float().mean().item())
    assert float(metrics["exact_len9_up"].compute()) == 0.0 and float(metrics["exact_len7_8"].compute()) == 1.0
    assert float(metrics["token_acc"].compute()) < 1.0
    # without decoded tokens (training), the teacher-forced guesses are scored
    logits = torch.nn.functional.one_hot(tgt[:, 1:], len(t.tgt_vocab)).float()
    exact = t.make_metric()
    t.score({"exact": exact}, Scored(logits=logits), batch)
    assert float(exact.compute()) == 1.0


def test_probe_batch_shares_one_source_length_and_examples_read_back():
    t = task(**SMALL)
    probe = t.probe_batch(8)
    assert probe["src"].shape[0] == 8 and (probe["src_len"] == probe["src_len"][0]).all()
    assert probe["src"].shape[1] == int(probe["src_len"][0])
    source, reference = t.corpus.val[0]
    example = t.describe_example(t.splits.val[torch.arange(3)], 0)
    assert example == {"source": " ".join(source), "reference": " ".join(reference)}
    assert t.decode_text(t.splits.val[0]["tgt"]) == example["reference"]


# ---- the context re-fed to every decoder step (Cho et al. 2014), model.refeed_context ----------------------
def test_the_refed_context_is_an_option_that_leaves_every_earlier_run_id_alone():
    plain, off, on = (resolve(small("translate", "gru", **{"model.attention": "none", **extra}))
                      for extra in ({}, {"model.refeed_context": False}, {"model.refeed_context": True}))
    assert off.run_id == plain.run_id and "refeed_context" not in plain.to_dict()["model"]
    assert on.run_id != plain.run_id and on.to_dict()["model"]["refeed_context"] is True
    committed = [json.loads(p.read_text()) for p in sorted(RECORDS.glob("translate__*.json"))]
    for rec in committed:
        assert resolve(flatten(rec["config"]), check_machine=False).run_id == rec["id"], rec["name"]


def test_a_run_with_the_refed_context_trains_and_probes_both_cores(tmp_path):
    extra = {"model.attention": "none", "model.refeed_context": True, "train.max_steps": 2, "train.val_every": 2}
    rec = train(resolve(small("translate", "gru", **extra)), tmp_path, wandb="disabled")
    assert rec["status"] == "ok" and rec["config"]["model"]["refeed_context"] is True
    assert set(rec["diagnostics"]["cores"]) == {"encoder", "decoder"}


def test_the_refed_context_learns_to_reverse_a_fixed_batch():
    torch.manual_seed(0)
    cfg = replace(architectures.entry("gru").default_config(), hidden_size=24)
    model = Seq2Seq(12, 12, "gru", "gru", cfg, cfg, embed_size=16, attention="none", refeed_context=True)
    src = torch.randint(3, 12, (32, 6), generator=torch.Generator().manual_seed(0))
    tgt = torch.cat([torch.full((32, 1), START), src.flip(1), torch.full((32, 1), END)], dim=1)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    losses = []
    for _ in range(60):
        loss = F.cross_entropy(model(src, torch.full((32,), 6), tgt[:, :-1]).logits.flatten(0, 1),
                               tgt[:, 1:].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 10
