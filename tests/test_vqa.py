"""The vqa task: easy-vqa batches and splits (validation images never trained on), determinism, the majority
baseline, one-line config errors, the VQA v2 loader on a parquet folder read by datasets, and scoring."""

import importlib.util

import pytest
import torch

import tasks
from tasks import vqa
from tasks.composed import Scored

VQA = tasks.get("vqa")
SMALL = {"max_questions": 400, "n_val_images": 5, "batch_size": 16}


def make(**overrides):
    return VQA(VQA.Config(**overrides))


def test_a_training_batch_has_the_vqa_keys_shapes_and_ranges():
    task = make()
    batch = next(iter(task.train_dataloader()))
    assert set(batch) == {"image", "question", "question_len", "answer"}
    assert batch["image"].shape == (64, 3, 64, 64) and batch["image"].dtype == torch.float32
    assert 0 <= batch["image"].min() and batch["image"].max() <= 1 and batch["image"].max() > 0.5
    assert batch["question"].dtype == batch["question_len"].dtype == batch["answer"].dtype == torch.long
    n = batch["question_len"]
    assert batch["question"].shape == (64, int(n.max()))  # cut to the longest question of the batch
    assert ((batch["question"] != 0).sum(1) == n).all() and (batch["answer"] < 13).all()
    assert task.sizes() == {"vocab": 30, "classes": 13, "image_shape": (3, 64, 64)}
    assert task.class_names == ["circle", "green", "red", "gray", "yes", "teal", "black", "rectangle", "yellow",
                                 "triangle", "brown", "blue", "no"]


def test_validation_holds_out_whole_train_images_and_test_is_the_package_split():
    task = make()
    s = task.splits
    train_images = set(s.train.tensors["image_index"].tolist())
    val_images = set(s.val.tensors["image_index"].tolist())
    assert len(val_images) == 500 and not train_images & val_images and len(train_images) == 3500
    assert s.train.images is s.val.images and s.train.images.shape == (4000, 3, 64, 64)
    assert s.test.images.shape == (1000, 3, 64, 64) and len(s.test) == 9673
    assert len(s.train) + len(s.val) == 38575 and len(s.train) == VQA.train_size(task.config) == 33862
    example = s.val[0]  # one example carries its own image, as a batch does
    assert example["image"].shape == (3, 64, 64) and torch.equal(example["image"], s.val[[0]]["image"][0])


def test_same_config_gives_identical_tensors_and_data_seed_moves_the_held_out_images():
    first = make().splits.val
    vqa.build.cache_clear()
    again = make().splits.val
    assert all(torch.equal(first.tensors[k], again.tensors[k]) for k in first.tensors)
    assert torch.equal(first.images, again.images)
    other = make(data_seed=7).splits.val
    assert set(other.tensors["image_index"].tolist()) != set(first.tensors["image_index"].tolist())


def test_baseline_is_the_test_share_of_the_most_frequent_training_answer():
    task = make()
    assert task.class_names[torch.bincount(task.splits.train.tensors["answer"]).argmax()] == "no"
    assert task.baseline == task.majority == pytest.approx(3525 / 9673)  # "no" on 3,525 of 9,673 questions


def test_small_config_reads_only_the_first_questions_and_their_images():
    task = make(**SMALL)
    s = task.splits
    assert len(s.train) + len(s.val) == 400 == len(s.test) and s.train.images.shape[0] == 39
    assert len(set(s.val.tensors["image_index"].tolist())) == 5 and VQA.train_size(task.config) == len(s.train)


def test_check_names_each_problem_in_one_line(monkeypatch):
    assert VQA.check(VQA.Config()) is None
    assert VQA.check(VQA.Config(n_val_images=4000)) == (
        "task.n_val_images must be < 4000, the easy-vqa train images read (task.max_questions 0), got 4000")
    missing = VQA.check(VQA.Config(source="vqav2", hf_path="/no/such/folder"))
    assert missing == "task.hf_path '/no/such/folder' does not exist; give a local folder of data files or a Hub name"
    assert VQA.check(VQA.Config(source="vqav2")) is None  # a Hub name: read when the run starts
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "easy_vqa" else real(name, *a))
    assert VQA.check(VQA.Config()) == "task.source easy-vqa needs the easy-vqa package: pip install easy-vqa==1.0"


def write_vqav2(folder):
    """A VQA v2-shaped parquet split: 6 images, two questions each, image ids as in COCO."""
    import datasets
    import numpy as np
    from PIL import Image

    rows = {"image": [], "image_id": [], "question": [], "multiple_choice_answer": []}
    for k in range(6):
        picture = Image.fromarray(np.full((20, 30, 3), 40 * k, np.uint8))
        for question, answer in (("Is it red?", "yes" if k % 2 else "no"), ("How many dogs?", str(k % 3))):
            for key, value in zip(rows, (picture, 100 + k, question, answer), strict=True):
                rows[key].append(value)
    features = datasets.Features({"image": datasets.Image(), "image_id": datasets.Value("int64"),
                                  "question": datasets.Value("string"),
                                  "multiple_choice_answer": datasets.Value("string")})
    (folder / "data").mkdir(parents=True)
    datasets.Dataset.from_dict(rows, features=features).to_parquet(str(folder / "data" / "validation.parquet"))


def test_vqav2_loader_reads_a_local_parquet_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    write_vqav2(tmp_path / "vqav2")
    config = VQA.Config(source="vqav2", hf_path=str(tmp_path / "vqav2"), n_val_images=1, n_test_images=1,
                        answers=3, image_size=8)
    assert VQA.check(config) is None
    task = VQA(config)
    s = task.splits
    # 4 training images x 2 questions; the 3 most frequent training answers, ties broken by name
    assert len(s.train) == 8 - 2 and task.class_names == ["1", "no", "yes"]
    assert len(set(s.train.tensors["image_index"].tolist()) | {int(s.val.tensors["image_index"][0]),
                                                                  int(s.test.tensors["image_index"][0])}) == 6
    batch = s.train[torch.arange(len(s.train))]
    assert batch["image"].shape == (6, 3, 8, 8) and task.sizes()["image_shape"] == (3, 8, 8)
    grey = {int(r) for r in (batch["image"][:, 0, 0, 0] * 255).round().long()}
    assert grey <= {0, 40, 80, 120, 160, 200} and len(grey) == 4  # each image decoded once, by its id
    assert task.vocab.itos[4:] == ["dogs", "how", "is", "it", "many", "red"]


def test_score_counts_correct_answers_and_examples_read_back():
    task = make(**SMALL)
    batch = task.splits.test[torch.arange(8)]
    metrics = {"acc": task.make_metric()}
    perfect = torch.nn.functional.one_hot(batch["answer"], 13).float()
    task.score(metrics, Scored(logits=perfect), batch)
    assert metrics["acc"].compute() == 1.0
    metrics = {"acc": task.make_metric()}
    task.score(metrics, Scored(logits=perfect.roll(1, dims=1)), batch)
    assert metrics["acc"].compute() == 0.0
    assert task.describe_example(batch, 0) == {"source": "what is the red shape?", "reference": "triangle"}
