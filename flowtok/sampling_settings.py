"""The one check of each sampling setting a caller picks (Euler steps, temperature), shared by
the pipeline and the CLI; no torch, so the CLI refuses a bad value before loading anything.

Each check names the setting as the caller knows it: the Python argument by default, the CLI
option when ``option`` is given (e.g. ``"--steps"``).
"""

from __future__ import annotations

import math

from flowtok.errors import ArgumentError


def check_steps(steps, *, most: int | None = None, option: str | None = None) -> int:
    """``steps`` when it is an integer from 1 to ``most`` (unbounded when None), else an
    ArgumentError saying what was expected."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        if option:
            raise ArgumentError(f"{option} {steps}: the number of Euler steps must be at least 1")
        raise ArgumentError(f"num_inference_steps must be an integer of at least 1, got {steps!r}")
    if most is not None and steps > most:
        raise ArgumentError(f"{option or 'num_inference_steps'} {steps}: at most {most}; images "
                            "stop changing after 20-50 Euler steps")
    return steps


def check_temperature(temperature, *, option: str | None = None) -> float:
    """``temperature`` (the scale of the starting noise around the text latent: 0 = the mean,
    1 = the trained spread) as a float when it is finite and 0 or more, else an ArgumentError."""
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
            or not math.isfinite(temperature) or temperature < 0:
        if option:
            raise ArgumentError(f"{option} {temperature}: must be a finite number, 0 or more "
                                "(1 = the trained spread)")
        raise ArgumentError(f"temperature must be a finite number of at least 0, got "
                            f"{temperature!r}")
    return float(temperature)
