"""What `flowtok bench` measures, kept in the library so the CLI only parses and prints.

timing.py: how one call is timed (CUDA events, warm-up, median, L2 flush) and the device's
measured ceilings (matmul FLOP/s, copy bandwidth). kernels.py: `flowtok bench kernels`.
sample.py / train.py: end-to-end sampling and training throughput; plot.py: the PNG of a
sample result. Device, dtype, autocast and peak memory come from flowtok.device.
"""
