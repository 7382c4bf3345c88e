"""Comparisons for kernel tests: a (dtype, atol, rtol) table, the flash-attention error rule,
and failure messages that list the worst mismatches."""

from __future__ import annotations

import torch

# Kernel vs reference, both computing in fp32 internally; low precision rounds each output once.
TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    torch.float32: (2e-5, 1e-5),
    torch.float16: (2e-3, 2e-3),
    torch.bfloat16: (1.6e-2, 1.6e-2),
}


def worst_mismatches(actual: torch.Tensor, expected: torch.Tensor, k: int = 5) -> str:
    """The k largest absolute differences as 'index: actual vs expected (diff)' lines."""
    diff = (actual.float() - expected.float()).abs().flatten()
    top = torch.topk(diff, min(k, diff.numel()))
    lines = []
    for value, flat in zip(top.values.tolist(), top.indices.tolist()):
        index = tuple(torch.unravel_index(torch.tensor(flat), actual.shape))
        index = tuple(int(i) for i in index)
        lines.append(f"  {index}: {actual.flatten()[flat].item():.6g} vs "
                     f"{expected.flatten()[flat].item():.6g} (diff {value:.3g})")
    return "\n".join(lines)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, name: str,
                 dtype: torch.dtype | None = None) -> None:
    """Elementwise |a - e| <= atol + rtol * |e| with the table's tolerances for ``dtype``."""
    dtype = dtype or actual.dtype
    atol, rtol = TOLERANCES[dtype]
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
    a, e = actual.detach().float().cpu(), expected.detach().float().cpu()
    bad = (a - e).abs() > atol + rtol * e.abs()
    if bad.any():
        raise AssertionError(f"{name} ({dtype}): {int(bad.sum())}/{bad.numel()} elements off "
                             f"(atol {atol}, rtol {rtol}); worst:\n{worst_mismatches(a, e)}")


def assert_flash_rule(kernel: torch.Tensor, plain_lowp: torch.Tensor, reference: torch.Tensor,
                      name: str, factor: float = 2.0, floor: float = 1e-6) -> None:
    """flash-attention's rule: the kernel's max error against an fp32 reference is at most
    ``factor`` x that of plain PyTorch in the same low precision (+ a floor against zero)."""
    ref = reference.detach().float().cpu()
    err_kernel = (kernel.detach().float().cpu() - ref).abs().max().item()
    err_plain = (plain_lowp.detach().float().cpu() - ref).abs().max().item()
    if err_kernel > factor * err_plain + floor:
        raise AssertionError(
            f"{name}: kernel error {err_kernel:.3g} > {factor} x plain {kernel.dtype} error "
            f"{err_plain:.3g}; worst vs fp32 reference:\n{worst_mismatches(kernel.cpu(), ref)}")
