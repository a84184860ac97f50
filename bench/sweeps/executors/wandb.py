"""The W&B agent executor, for users with a W&B server: the server hands out the sweep's runs.

    rnnbench sweep sweeps/default.yaml --executor wandb        # needs `wandb login` (or WANDB_API_KEY)

Each YAML document of the sweep file is a W&B sweep config, so it goes to ``wandb.sweep`` as it is (less
rnnbench's ``anchor``); one
``wandb.agent`` per document then calls ``agent_run`` for each run the server picks. That function starts the
agent's W&B run, reads its dotted parameters back into a RunConfig and trains it through ``run_locked``
(base.py), which mirrors into that same run (``make_loggers`` adopts an active sweep run) and writes the usual record, so
the leaderboard and resume work as with the other executors. Runs recorded already in ``out``, and configs
the server hands out twice (agents that start together, wandb #8034), are skipped. Under ``method: random``
the server draws the runs, W&B's way (seeds drawn too), so they need not be the runs ``rnnbench sweep``
plans for the local and Ray executors. There are no offline W&B sweeps (wandb #6234): without a server this
refuses before any work, in one line.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import yaml

from options import ConfigError

from ...run.config import RunConfig, resolve
from ...run.mirror import PROJECT, WANDB_DIR, wandb_mode
from ...store import Store
from ..progress import Progress
from ..spec import wandb_document
from .base import Executor, register, run_locked

NO_SERVER = "the wandb executor needs a W&B server; use --executor local or ray"


def need_server(requested: str) -> None:
    """Refuse offline/disabled W&B and a machine that is not logged in (``wandb.Api`` finds no key)."""
    import wandb

    if wandb_mode(requested) in ("offline", "disabled"):
        raise ConfigError(NO_SERVER)
    try:
        wandb.Api()
    except wandb.errors.UsageError:
        raise ConfigError(NO_SERVER) from None


def config_from(params: dict) -> RunConfig:
    """An agent run's ``wandb.config`` -> its RunConfig: the sweep's dotted keys (``task.seq_len``, ``seed``);
    W&B's own keys (``_wandb``) and the nested config ``train()`` adds are not parameters."""
    dotted = {k: v for k, v in params.items() if ("." in k or k == "seed") and not isinstance(v, dict)}
    return resolve(dotted)


def agent_run(store: Store, seen: set[str], results: list[dict], on_result: Callable) -> None:
    """What ``wandb.agent`` calls once per run the server hands out."""
    import wandb

    from ...run.records import provenance

    WANDB_DIR.mkdir(parents=True, exist_ok=True)
    run = wandb.init(project=PROJECT, dir=str(WANDB_DIR))  # the agent's run: its config holds the parameters
    cfg = config_from(dict(run.config))
    if cfg.run_id in seen or store.status_of(cfg.name, cfg.run_id) is not None:
        run.finish(exit_code=0)
        return
    seen.add(cfg.run_id)
    run.name = cfg.name
    run.config.update(cfg.to_dict(), allow_val_change=True)  # the resolved config, as train() gives its runs
    run.tags = (cfg.arch_name, cfg.arch_label, f"commit:{provenance()['git_sha'][:8]}")
    rec = run_locked(cfg, store, "online")  # mirrors into `run` and finishes it
    results.append(rec)
    on_result(rec)


@register
class Wandb(Executor):
    name = "wandb"
    help = "a W&B agent: the server hands out the runs (needs a W&B server)"

    def check(self, todo: list[RunConfig]) -> None:
        super().check(todo)
        need_server(self.options.wandb)

    def run(self, todo: list[RunConfig], store: Store, progress: Progress) -> list[dict]:
        """Create one W&B sweep per document of the spec and serve its runs here until the server has none.
        ``todo`` (the planned runs not yet recorded) only says whether there is anything to do: the server picks."""
        if not todo:
            return []
        import wandb as wb

        seen, results = set(), []
        store = Store(store.root.resolve())
        text = self.options.spec.read_text(encoding="utf-8")  # validated by the planner
        for doc in (d for d in yaml.safe_load_all(text) if d):
            sweep_id = wb.sweep(wandb_document(doc), project=PROJECT)
            wb.agent(sweep_id, function=partial(agent_run, store, seen, results, progress.result), project=PROJECT)
        return results
