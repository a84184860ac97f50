"""The composed half: model.* options, the composed system on every composed task x family, its diagnostics
(the gradient reaching each encoder state, per-core verdicts, attention maps) and the pictures drawn from them."""

import json

import lightning as L
import pytest
import torch
from conftest import ARCHS, small

import tasks
from architectures.attention import ATTENTION
from architectures.composed import FrameTagger, QuestionAnswerer, SequenceClassifier
from architectures.vision import IMAGE_ENCODERS
from bench.diag import flow
from bench.reports import leaderboard
from bench.reports.tables import Tables
from bench.run.config import resolve
from bench.run.system import ComposedSystem, build
from bench.run.train import train
from bench.store import Store
from options import ConfigError
from tasks.composed import ComposedTask

COMPOSED = [n for n in tasks.names() if issubclass(tasks.get(n), ComposedTask)]


def test_the_five_shapes_of_the_notes_are_here():
    # the notes' five shapes, each trained by a task; more may join without changing this test
    assert {tasks.get(n).model for n in COMPOSED} >= {"seq2seq", "caption", "vqa", "classify", "frames"}


@pytest.mark.parametrize("name", COMPOSED)
@pytest.mark.parametrize("arch", ARCHS)
def test_contract_one_step_moves_every_parameter(name, arch):
    L.seed_everything(0, verbose=False)
    task, system = build(resolve(small(name, arch)))
    assert isinstance(system, ComposedSystem)
    batch = next(iter(task.train_dataloader()))
    loss, scored, _ = system.kind.forward(system.model, batch)
    assert torch.isfinite(loss) and scored.logits.shape[0] == task.config.batch_size
    before = [p.detach().clone() for p in system.parameters()]
    opt = system.configure_optimizers()
    loss.backward()
    opt.step()
    frozen = [n for (n, p), b in zip(system.named_parameters(), before, strict=True) if torch.equal(p, b)]
    assert frozen == [], "every parameter should receive a gradient and move"


@pytest.mark.parametrize("name", COMPOSED)
def test_a_task_declares_the_channels_of_the_images_it_builds(name):
    """What the pretrained-encoder check reads before any work is what the data turns out to hold."""
    cfg = resolve(small(name, "gru"))
    sizes = tasks.get(name)(cfg.task).sizes()
    shape = sizes.get("image_shape") or sizes.get("frame_shape")
    assert tasks.get(name).image_channels(cfg.task) == (shape[0] if shape else None)


@pytest.mark.parametrize("name", COMPOSED)
def test_the_reference_path_computes_the_loss_the_fused_path_trains(name):
    L.seed_everything(0, verbose=False)
    task, system = build(resolve(small(name, "lstm", **{"arch.layers": 2})))
    batch = system.probe_batch(8)
    system.model.eval()
    fused, _, _ = system.kind.forward(system.model, batch)
    reference, _, cores = system.kind.forward(system.model, batch, reference=True)
    torch.testing.assert_close(reference, fused, rtol=1e-5, atol=1e-6)
    assert all(trace is not None and len(trace.h) == 2 for _, trace in cores.values())


def test_profiles_split_one_backward_into_each_core_exactly():
    L.seed_everything(0, verbose=False)
    task, system = build(resolve(small("translate", "gru")))
    batch = system.probe_batch(8)
    loss, _, cores = system.kind.forward(system.model, batch, reference=True)  # both cores in one graph
    traces = [trace for _, trace in cores.values()]
    alone = [[[float(g.norm()) for g in torch.autograd.grad(loss, layer, retain_graph=True)] for layer in t.h]
             for t in traces]
    together = flow.profiles(loss, traces)
    for profile, norms in zip(together, alone, strict=True):
        torch.testing.assert_close(torch.tensor(profile.norms), torch.tensor(norms), rtol=1e-6, atol=0)
    # the probe examples share one source length, so position s means the same in every row
    assert batch["src_len"].unique().numel() == 1
    assert len(together[0].norms[0]) == int(batch["src_len"][0])


def test_a_seq2seq_run_records_both_cores_the_attention_map_and_lengths(tmp_path):
    rec = train(resolve(small("translate", "gru", **{"train.max_steps": 4, "train.val_every": 2})), tmp_path,
                wandb="disabled")
    assert rec["status"] == "ok" and rec["config"]["model"]["attention"] == "additive"
    d = rec["diagnostics"]
    assert d["role"] == "encoder" and set(d["cores"]) == {"encoder", "decoder"}
    assert d["cores"]["encoder"]["flow_ratio_final"] == d["flow_ratio_final"]
    assert all(c["verdict"] in ("healthy", "vanishing", "exploding") for c in d["cores"].values())
    weights = d["attention"]["weights"]
    assert all(abs(sum(row) - 1) < 1e-3 for row in weights)  # one distribution per target word
    assert any(k.startswith("test/exact_len") for k in rec["metric"]["extra"])
    leaderboard.write_figures(Store(tmp_path), Tables.of([rec]))
    assert {p.name for p in tmp_path.glob("*.png")} == {"exact_by_length_translate.png", "attention_translate.png",
                                                        "flow_translate.png"}


def test_old_run_ids_do_not_change_and_model_options_are_refused_where_there_is_no_model():
    assert "model" not in resolve(small("adding", "gru")).to_dict()
    with pytest.raises(ConfigError, match="take no model"):
        resolve(small("adding", "gru", **{"model.attention": "none"}))
    for task, bad, match in (("translate", ("model.attention", "dot"), f"valid: {', '.join(ATTENTION.names())}$"),
                             ("translate", ("model.beam", 0), "model.beam must be >= 1"),
                             ("caption", ("model.image_encoder", "resnet7"),
                              f"valid: {', '.join(IMAGE_ENCODERS.names())}$"),
                             ("translate", ("model.image_encoder", "cnn"), "valid: model.attention, model.beam"),
                             ("translate", ("model.bogus", 1), "unknown option model.bogus")):
        with pytest.raises(ConfigError, match=match):
            resolve(small(task, "gru", **dict([bad])))


def test_attention_options_change_the_run_id_and_label_the_leaderboard_row():
    a, b = (resolve(small("translate", "gru", **{"model.attention": k})) for k in ("additive", "none"))
    assert a.run_id != b.run_id and a.name == b.name
    assert json.loads(json.dumps(b.to_dict()))["model"]["attention"] == "none"


def test_question_only_vqa_never_reads_the_image():
    net = QuestionAnswerer(20, 5, (3, 16, 16), "gru", use_image=False)
    q, lengths = torch.randint(3, 20, (4, 6)), torch.tensor([6, 3, 2, 1])
    a, _ = net(torch.zeros(4, 3, 16, 16), q, lengths)
    b, _ = net(torch.randn(4, 3, 16, 16), q, lengths)
    torch.testing.assert_close(a, b)
    assert not any("image" in n for n, _ in net.named_parameters())


def test_sequence_classifier_reads_each_sequence_to_its_own_length():
    net = SequenceClassifier(30, 2, "lstm").eval()
    src = torch.randint(3, 30, (3, 7))
    lengths = torch.tensor([7, 4, 2])
    padded = src.clone()
    padded[1, 4:], padded[2, 2:] = 0, 0
    together, _ = net(padded, lengths)
    alone = torch.cat([net(padded[i:i + 1, :n], lengths[i:i + 1])[0] for i, n in enumerate(lengths.tolist())])
    torch.testing.assert_close(together, alone)


def test_frame_tagger_without_recurrence_sees_each_frame_alone():
    net = FrameTagger((1, 8, 8), 10, "gru", recurrent=False).eval()
    frames = torch.randn(2, 5, 1, 8, 8)
    out, trace = net(frames)
    shuffled, _ = net(frames[:, [4, 3, 2, 1, 0]])
    torch.testing.assert_close(shuffled, out[:, [4, 3, 2, 1, 0]])
    assert trace is None and net.core is None


@pytest.mark.parametrize("name", ["translate", "caption", "sentiment", "vqa"])
def test_probes_align_positions_so_the_last_one_hears_from_every_row(name):
    L.seed_everything(0, verbose=False)
    task, system = build(resolve(small(name, "gru")))
    batch = system.probe_batch(8)
    for key in ("src_len", "question_len"):
        if key in batch:
            assert batch[key].unique().numel() == 1 and 1 <= len(batch[key]) <= 8
    for role, _, profile, _ in system.probe(batch):
        # every row reaches the last position: its gradient is not the longest rows' alone, and not zero
        assert all(norm > 0 for norm in profile.norms[-1]), role
    decoder = {role: trace for role, _, _, trace in system.probe(batch)}.get("decoder")
    if decoder is not None:  # the decoder's rows share their target length, so its last step is END for all
        tgt = batch["tgt"]
        assert len(decoder.h[0]) + 1 == int(torch.mode((tgt != 0).sum(1)).values)


def test_decode_prints_source_reference_output_and_saves_the_attention_map(tmp_path, capsys):
    from bench import cli

    rec = train(resolve(small("translate", "gru", **{"train.max_steps": 4, "train.val_every": 4})), tmp_path,
                wandb="disabled")
    assert cli.main(["decode", f"{rec['name']}__{rec['id']}", "--out", str(tmp_path), "--n", "2",
                     "--beam", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count("source:") == 2 and out.count("reference:") == 2 and out.count("output:") == 2
    png = tmp_path / "decode" / f"{rec['name']}__{rec['id']}.attention.png"
    assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG"
    lines = (tmp_path / "decode" / f"{rec['name']}__{rec['id']}.decoded.jsonl").read_text().splitlines()
    assert [set(json.loads(line)) >= {"source", "reference", "output"} for line in lines] == [True, True]
    with pytest.raises(SystemExit) as exc:  # beyond model.beam's declared range: refused before the load
        cli.main(["decode", f"{rec['name']}__{rec['id']}", "--out", str(tmp_path), "--beam", "100000"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1
    assert "argument --beam: must be >= 1 and <= 64, got 100000" in err


def test_decode_refuses_a_sequence_task_in_one_line(lm_run, capsys):
    from bench import cli

    rec, out = lm_run
    with pytest.raises(SystemExit) as exc:
        cli.main(["decode", rec["name"], "--out", str(out)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and "rnnbench decode reads composed tasks" in err


def test_the_leaderboard_names_every_core_verdict_and_the_wandb_mirror_gets_the_attention_map(tmp_path,
                                                                                              monkeypatch):
    import bench.run.mirror
    from bench.reports import leaderboard

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setattr(bench.run.mirror, "WANDB_DIR", tmp_path / "wandb")
    rec = train(resolve(small("translate", "gru", **{"train.max_steps": 4, "train.val_every": 4})),
                tmp_path / "out", wandb="offline")
    runs = list((tmp_path / "wandb" / "wandb").glob(f"offline-run-*-{rec['id']}-*"))
    assert any("media/images/diag/attention" in str(p) for p in runs[0].rglob("*") if p.is_file())
    (row,) = leaderboard.build_rows([rec])
    assert row.verdict.startswith(rec["diagnostics"]["verdict"]) and " · decoder " in row.verdict


def test_input_feeding_trains_and_probes_the_encoder_it_can_trace(tmp_path):
    rec = train(resolve(small("translate", "lstm", **{"model.input_feed": True, "train.max_steps": 2,
                                                      "train.val_every": 2})), tmp_path, wandb="disabled")
    assert rec["status"] == "ok" and set(rec["diagnostics"]["cores"]) == {"encoder"}
