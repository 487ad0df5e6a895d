"""Database values made JSON-safe: what a `done` frame and a schema prompt can hold."""

from __future__ import annotations

import datetime as dt
import math
from decimal import Decimal
from typing import Any


def json_safe(value: Any) -> Any:
    """`value` as JSON can hold it: Decimal → float, dates → ISO, bytes → \\x hex, NaN → str."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, Decimal | float):
        number = float(value)
        return number if math.isfinite(number) else str(value)
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value).hex()
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    return str(value)
