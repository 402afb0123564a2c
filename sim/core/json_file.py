"""Reading a JSON document with errors that name the file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sim.errors import FleetsimError


def read_json(path: str | Path) -> Any:  # noqa: ANN401  (whatever the document holds)
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FleetsimError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise FleetsimError(f"{path}: is a folder, expected a JSON file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FleetsimError(f"{path}: cannot read ({exc.__class__.__name__}: {exc})") from None
    except json.JSONDecodeError as exc:
        raise FleetsimError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
    except RecursionError:
        raise FleetsimError(f"{path}: JSON nested too deeply to be a config or a trace") from None
