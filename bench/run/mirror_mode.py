"""Which W&B mode a command mirrors in, settled before any work and without torch (a sweep with nothing to train
imports none).

    python -c "from bench.run.mirror_mode import checked_mode; print(checked_mode('auto'))"

``auto`` is online when the user is logged in, else offline. ``checked_mode`` checks the chosen mode can work, with
a short time bound: online needs a login and the server answering; offline needs its folder (``WANDB_DIR``).
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from urllib.parse import urlparse

from options import ConfigError

from ..store import folder_problem

WANDB_DIR = Path(os.environ.get("RNNBENCH_WANDB_DIR", ".cache/wandb"))


def wandb_mode(requested: str) -> str:
    """``auto`` means online when the user is logged in (API key in env or ~/.netrc), else offline."""
    if requested != "auto":
        return requested
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    return "online" if logged_in() else "offline"


def checked_mode(requested: str, timeout: float = 5.0) -> str:
    """The W&B mode a command will mirror in, settled before any work. ``online`` needs a login and the server
    answering within ``timeout`` seconds, else one ConfigError line; ``auto``, logged in, falls back to offline
    with a one-line warning when the server does not answer. Offline needs its folder (``WANDB_DIR``) writable:
    ``offline`` refuses in one line, ``auto`` falls back to no mirror with a warning."""
    mode = wandb_mode(requested)
    if mode == "online":
        problem = online_problem(timeout)
        if problem is not None and requested == "online":
            raise ConfigError(f"--wandb online: {problem}; use --wandb offline (`wandb sync` uploads it later) "
                              f"or disabled")
        if problem is not None:
            print(f"warning: {problem}: mirroring offline (`wandb sync` uploads it later)", file=sys.stderr)
            mode = "offline"
    if mode == "offline":
        problem = folder_problem(WANDB_DIR)
        if problem is not None and requested == "offline":
            raise ConfigError(f"--wandb offline: the W&B folder: {problem} (set RNNBENCH_WANDB_DIR, or --wandb "
                              f"disabled)")
        if problem is not None:
            print(f"warning: the W&B folder: {problem}: no W&B mirror (set RNNBENCH_WANDB_DIR)", file=sys.stderr)
            mode = "disabled"
    return mode


def logged_in() -> bool:
    """An API key in the environment or in ~/.netrc for the W&B server (what `wandb login` writes)."""
    netrc = Path.home() / ".netrc"
    try:
        return bool(os.environ.get("WANDB_API_KEY") or (netrc.exists() and "api.wandb.ai" in netrc.read_text()))
    except OSError:
        return False


def online_problem(timeout: float) -> str | None:
    """Why W&B cannot mirror online, one line; None when logged in and the server accepts a connection within
    ``timeout`` seconds (W&B itself waits about 90 s before it gives up)."""
    if not logged_in():
        return "no W&B login (`wandb login`, or WANDB_API_KEY)"
    url = urlparse(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai")
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
    except OSError as exc:
        return f"the W&B server {url.hostname}:{port} did not answer within {timeout:g} s ({type(exc).__name__})"
    return None
