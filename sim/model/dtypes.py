"""Bytes per element of the number formats weights and KV caches are stored in."""

from sim.errors import FleetsimError

# mxfp4: 4-bit elements plus one 8-bit scale per 32 (OCP Microscaling Formats spec v1.0) = 4.25 bits.
BYTES_PER_ELEMENT: dict[str, float] = {
    "fp32": 4.0,
    "bf16": 2.0,
    "fp16": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "int4": 0.5,
    "mxfp4": 4.25 / 8,
}


def dtype_bytes(name: str, field: str = "dtype") -> float:
    try:
        return BYTES_PER_ELEMENT[name.lower()]
    except KeyError:
        raise FleetsimError(
            f"{field}: unknown number format '{name}'; expected one of {', '.join(BYTES_PER_ELEMENT)}"
        ) from None
