"""Triton kernels for flowtok's fused ops, one op per module.

Each module holds, in order: private ``@triton.jit`` kernels, plain launchers that allocate
outputs and pick block sizes (registered as ``torch.ops.flowtok_triton.*`` so torch.compile
sees one node per launch), and an ``autograd.Function`` that only marshals ``ctx``.
Importing this package requires triton; ``dispatch`` imports it lazily.
"""
