"""The reports: the static HTML page (sections, learning-curve PNGs, links that resolve, byte-identical
regeneration, one-line errors) and the W&B report object (built with no network), on a small store made of
committed records, with one diverged and one failed run added; the slow test renders the page in headless
Chromium."""

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest
from PIL import Image, ImageStat

from bench import cli
from bench.reports import html, leaderboard, md
from bench.reports.studies import tuned_ids
from bench.store import Store

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "results"
# two families x two seeds of a sequence task, a composed task with and without attention, a char-LM (units)
# (the default suite's adding runs by id: the anchored suites add adding runs of other lengths)
PICKED = ("adding__gru__s0__be99a9d07e*", "adding__gru__s1__615ef4e3b0*", "adding__vanilla__s0__b79a06a4d5*",
          "adding__vanilla__s1__22667a0bb0*", "translate__gru__s[01]__*", "charlm__lstm-2l__s0__32dd97e03b*")
PICTURES = ("flow_adding.png", "attention_translate.png", "exact_by_length_translate.png")

pytestmark = pytest.mark.skipif(not (RESULTS / "runs").is_dir(), reason="no committed reference results")


def _edit(path: Path, **changes) -> dict:
    rec = json.loads(path.read_text())
    for key, value in changes.items():
        target, _, leaf = key.rpartition(".")
        (rec[target] if target else rec)[leaf] = value
    path.write_text(json.dumps(rec))
    return rec


def make_store(out: Path) -> Path:
    """Committed records of three tasks and their CSVs; a run made diverged, a failed one added; the pictures
    `make leaderboard` draws from them."""
    runs = out / "runs"
    runs.mkdir(parents=True)
    tuned = tuned_ids(Store(RESULTS))  # the default budget's runs only, not a tuned study's of the same name
    for pattern in PICKED:
        for path in sorted((RESULTS / "runs").glob(pattern)):
            if path.name.split(".")[0].rpartition("__")[2] not in tuned:
                shutil.copy(path, runs)
    for path in (RESULTS / "units").glob("charlm__lstm-2l__s0__32dd97e03b*"):
        (out / "units").mkdir(exist_ok=True)
        shutil.copy(path, out / "units")
    (diverged,) = runs.glob("adding__vanilla__s1__*.json")
    _edit(diverged, status="diverged", **{"metric.test": None, "metric.solved": None},
          divergence={"step": 300, "reason": "non-finite loss", "last_finite_grad_norm": 3.5})
    (source,) = runs.glob("adding__vanilla__s0__*.json")
    failed = runs / "adding__vanilla__s0__00000bad00.json"
    shutil.copy(source, failed)
    _edit(failed, id="00000bad00", status="failed", error="RuntimeError: boom", metrics_file=None,
          diagnostics=None, **{"metric.test": None, "metric.solved": None})
    leaderboard.write(out)
    return out


class Page(HTMLParser):
    """The ids, links and images of a page."""

    def __init__(self, text: str):
        super().__init__()
        self.ids, self.links, self.images = set(), [], []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.add(a["id"])
        if tag == "a":
            self.links.append(a["href"])
        if tag == "img":
            self.images.append(a["src"])


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = make_store(tmp_path_factory.mktemp("report") / "results")
    assert cli.main(["report", "--out", str(out)]) == 0
    return out


def test_every_task_has_a_section_with_its_table_curves_and_pictures(built):
    text = (built / "report" / "index.html").read_text()
    page = Page(text)
    tasks = {"adding", "charlm", "translate"}
    assert {f"task-{t}" for t in tasks} | {f"runs-{t}" for t in tasks} | {"reproduction", "runs"} <= page.ids
    assert "<td>10: 8 ok, 1 diverged, 1 failed</td>" in text  # 9 committed records, 1 made diverged, 1 failed
    assert "<th>test mse ↓</th>" in text and "<th>test exact ↑</th>" in text  # the leaderboard's tables
    assert "gru (model.attention=none)" in text  # a composed task's rows
    for task in tasks:
        png = built / "report" / f"curves_{task}.png"
        with Image.open(png) as im:
            assert im.format == "PNG" and im.size[0] > 300
            im.verify()
        assert f'src="curves_{task}.png"' in text
    assert {f"../{name}" for name in PICTURES} <= set(page.images)
    assert any(src.startswith("../units/charlm__lstm-2l__s0__") for src in page.images)
    assert "REPRODUCTION.md is not generated yet" in text
    assert str(built) not in text and str(ROOT) not in text  # no absolute path


def test_every_link_and_image_resolves_and_every_record_is_linked(built):
    folder = built / "report"
    page = Page((folder / "index.html").read_text())
    for target in page.links + page.images:
        if target.startswith("#"):
            assert target[1:] in page.ids, target
        else:
            assert (folder / unquote(target)).is_file(), target
    records = {p.name for p in Store(built).record_files()}
    assert records == {unquote(h).removeprefix("../runs/") for h in page.links if h.endswith(".json")}
    assert len(records) == 10


def test_a_second_build_is_byte_identical_and_the_reproduction_table_is_embedded(built, tmp_path):
    copy = shutil.copytree(built, tmp_path / "results")
    before = {p.name: p.read_bytes() for p in (built / "report").iterdir()}
    html.write(copy)
    assert {p.name: p.read_bytes() for p in (copy / "report").iterdir()} == before
    (copy / "report" / "curves_gone.png").write_bytes(b"stale")  # a task no longer recorded
    (copy / "REPRODUCTION.md").write_text("# Reproduction\n\nPaper vs us <b>.\n\n| task | paper | ours |\n"
                                         "|---|---:|---|\n| `adding` | **0.01** | 0.02 |\n")
    html.write(copy)
    text = (copy / "report" / "index.html").read_text()
    assert not (copy / "report" / "curves_gone.png").exists()
    assert "<h3>Reproduction</h3>\n<p>Paper vs us &lt;b&gt;.</p>\n<table>" in text
    assert "<td><code>adding</code></td><td><strong>0.01</strong></td>" in text


def test_markdown_subset():
    assert md.to_html("## A & B\ntext\nmore\n\n- one\n- `two`") == \
        "<h2>A &amp; B</h2>\n<p>text more</p>\n<ul>\n<li>one</li>\n<li><code>two</code></li>\n</ul>"
    assert md.to_html("# T", shift=2) == "<h3>T</h3>"


@pytest.mark.parametrize("argv, message", [
    (["--out", "{tmp}/missing"], "no run records under"),
    (["--out", "{tmp}/file"], "no run records under"),
    (["--out", "{tmp}/blocked"], "is a file, not a folder"),
    (["--out", "{tmp}/blocked", "--entity", "me"], "--entity and --project go with --wandb"),
])
def test_bad_out_is_one_line_and_exit_2(tmp_path, capsys, argv, message):
    (tmp_path / "file").write_text("not a folder")
    (tmp_path / "blocked" / "runs").mkdir(parents=True)
    (tmp_path / "blocked" / "report").write_text("a file where the report goes")
    with pytest.raises(SystemExit) as exit_:
        cli.main(["report", *(a.format(tmp=tmp_path) for a in argv)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and message in err and err.count("\n") == 1


def test_the_wandb_report_needs_a_login_and_writes_nothing(built, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    out = shutil.copytree(built / "runs", tmp_path / "results" / "runs").parent
    with pytest.raises(SystemExit) as exit_:
        cli.main(["report", "--wandb", "--out", str(out)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "`wandb login`" in err and err.count("\n") == 1
    assert sorted(p.name for p in out.iterdir()) == ["runs"]


def test_the_wandb_report_names_each_tasks_runs_groups_and_metric_keys(built, monkeypatch):
    import wandb_workspaces.reports.v2 as wr

    from bench.reports import wandb_report

    def offline():
        raise AssertionError("building the report must not reach the W&B server")

    monkeypatch.setattr("wandb_workspaces.reports.v2.interface._get_api", offline)
    store = Store(built)
    records = store.records().records
    report = wandb_report.build(records, store, "me", "rnnbench")
    assert (report.entity, report.project) == ("me", "rnnbench")
    headings = [b.text for b in report.blocks if isinstance(b, wr.H2)]
    grids = [b for b in report.blocks if isinstance(b, wr.PanelGrid)]
    assert headings == ["adding", "charlm", "translate"] and len(grids) == 3
    sets = {g.runsets[0].name: g.runsets[0] for g in grids}
    for task, rs in sets.items():
        assert (rs.entity, rs.project) == ("me", "rnnbench")
        assert f"Metric(\"Group\") == '{task}'" in rs.filters
    translate = [r for r in records if r["task"] == "translate"]
    assert all(r["wandb_id"] in sets["translate"].filters for r in translate)  # by W&B run id where recorded
    assert "Metric(\"Name\") in ['adding__gru__s0', 'adding__gru__s1', 'adding__vanilla__s0', " \
           "'adding__vanilla__s1']" in sets["adding"].filters  # older records kept no id: by run name
    assert sets["adding"].groupby == ["config.arch.name"]
    assert sets["translate"].groupby == ["config.model.attention"]  # one architecture, two attention kinds
    def keys_of(grid) -> set[str]:
        return {k for p in grid.panels
                for k in getattr(p, "y", None) or getattr(p, "metrics", None) or p.media_keys}

    keys = {g.runsets[0].name: keys_of(g) for g in grids}
    assert keys["adding"] == {"val/mse", "test/mse", "grad/total", "diag/flow_ratio/l0", "diag/flow_heatmap"}
    assert {"val/exact", "test/exact", "diag/encoder/flow_ratio/l0", "diag/decoder/flow_ratio/l0",
            "diag/attention"} <= keys["translate"]
    assert all(p.x == "trainer/global_step" for g in grids for p in g.panels if isinstance(p, wr.LinePlot))


def _chromium() -> str:
    """The Debian `chromium` binary, installed with apt-get when absent; skips when it cannot be."""
    if shutil.which("chromium") is None:
        for step in (["apt-get", "install", "-y", "chromium"], ["apt-get", "update"],
                     ["apt-get", "install", "-y", "chromium"]):
            try:
                done = subprocess.run(step, capture_output=True, text=True, timeout=900)
            except (OSError, subprocess.TimeoutExpired) as exc:
                pytest.skip(f"cannot install chromium: {exc}")
            if step[1] == "install" and done.returncode == 0:
                break
        if shutil.which("chromium") is None:
            pytest.skip(f"cannot install chromium: {(done.stderr or done.stdout).strip().splitlines()[-1:]}")
    return shutil.which("chromium")


# Lists, once the page has loaded, the images that did not load or decode.
PROBE = ("<script>addEventListener('load', () => { const bad = [...document.images]"
         ".filter(i => !i.complete || i.naturalWidth === 0).map(i => i.getAttribute('src'));"
         " document.body.dataset.broken = JSON.stringify(bad);"
         " document.body.dataset.images = document.images.length; });</script>")


@pytest.mark.slow
def test_the_page_and_its_images_render_in_headless_chromium(built, tmp_path):
    browser = _chromium()
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--virtual-time-budget=10000"]
    folder = built / "report"
    probe = folder / "probe.html"  # the page plus a script that lists images that did not load
    probe.write_text((folder / "index.html").read_text().replace("</body>", PROBE + "</body>"))
    try:
        dom = subprocess.run([*flags, "--dump-dom", probe.as_uri()], capture_output=True, text=True,
                             timeout=120, check=True).stdout
    finally:
        probe.unlink()
    n_images = len(Page((folder / "index.html").read_text()).images)
    assert f'data-images="{n_images}"' in dom and 'data-broken="[]"' in dom, dom[-500:]
    shot = tmp_path / "page.png"
    subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1280,4000",
                    (folder / "index.html").as_uri()], capture_output=True, timeout=120, check=True)
    with Image.open(shot) as im:
        assert im.size == (1280, 4000)
        gray = im.convert("L")
        assert ImageStat.Stat(gray).stddev[0] > 20  # text, tables and plots, not a blank page
        assert gray.resize((1, 8)).getextrema()[0] < 250  # ink all the way down, not only at the top
