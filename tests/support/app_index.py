"""What the Functions host would index from function_app.py, read once per test session:
``FunctionApp.get_functions()`` may be called only once per app (a second call finds every
function name taken)."""

from __future__ import annotations

import functools
import json
from typing import Any


@functools.cache
def indexed() -> dict[str, dict[str, Any]]:
    """Function name -> its function.json, as the host indexes it."""
    import function_app

    return {
        str(f.get_function_name()): json.loads(f.get_function_json())
        for f in function_app.app.get_functions()
    }
