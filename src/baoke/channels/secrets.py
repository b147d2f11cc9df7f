"""Provider secrets: from the environment, or from a secrets file outside the repository.

``BAOKE_SECRETS_FILE`` may name a file of ``NAME=value`` lines (``#`` comments, optional
quotes), such as a Docker or Kubernetes secret mount. The environment wins over the file.
Only names starting with ``BAOKE_`` are read. The values are never logged or shown: the
commands print which secrets are set, not what they are.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from baoke.errors import ConfigError

__all__ = ["load_secrets"]


def _parse(path: Path) -> dict[str, str]:
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the secrets file {path}: {exc.__class__.__name__}") from exc
    found: dict[str, str] = {}
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.removeprefix("export ").partition("=")
        if not sep or not name.strip():
            # The line's text may hold a secret: say where, not what.
            raise ConfigError(f"{path}:{number}: expected NAME=value")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        found[name.strip()] = value
    return found


def load_secrets(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Every ``BAOKE_*`` secret: the secrets file's, overridden by the environment's."""
    env = os.environ if environ is None else environ
    merged: dict[str, str] = {}
    file_name = env.get("BAOKE_SECRETS_FILE")
    if file_name:
        path = Path(file_name)
        if not path.exists():
            raise ConfigError(f"BAOKE_SECRETS_FILE points to {path}, which does not exist")
        merged.update(_parse(path))
    merged.update(env)
    return {k: v for k, v in merged.items() if k.startswith("BAOKE_")}
