"""The user's folders for entropic: where it keeps what it can rebuild, and its settings."""

from __future__ import annotations

import os
from pathlib import Path

from diffusion.common.errors import EntropicError


def user_dir(kind: str, env: str) -> Path:
    """The user's ``kind`` folder for entropic ("cache" or "config"): ``$env`` when set, else platformdirs'.

    platformdirs gives the right folder per system (e.g. ~/.cache/entropic and ~/.config/entropic
    on Linux, ~/Library/Caches/entropic on macOS). The folder may not exist yet; a file where it
    should be is an EntropicError naming the variable that moves it.
    """
    override = os.environ.get(env)
    if override:
        path, source = Path(os.path.expanduser(override)).absolute(), f"${env}"
    else:
        import platformdirs

        find = {"cache": platformdirs.user_cache_dir, "config": platformdirs.user_config_dir}[kind]
        path, source = Path(find("entropic", appauthor=False)), f"the user's {kind} folder"
    if path.exists() and not path.is_dir():
        raise EntropicError(f"the {kind} folder {path} ({source}) is not a folder; set ${env} to a folder")
    return path
