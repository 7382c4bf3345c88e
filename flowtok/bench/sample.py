"""What `flowtok bench sample` measures: text-to-image throughput, latency, memory and FLOP/s per
stage, with random weights (speed does not depend on their values), and with ``compare`` the
flow stage against a plain-PyTorch baseline (flowtok.bench.plain, the 1.00x reference) under
torch.compile, kernel backends and CUDA graphs, and a 2D-latent baseline.

Stages, as the pipeline runs them: ``text`` (text encoder, once per prompt; its output also
guides the decoder), ``flow`` (text projector + ``steps`` Euler steps, both CFG passes batched),
``decode`` (tokenizer decoder to uint8 pixels on the device; no host copy, no PNG). Weights are
cast to the run's dtype and the run sits under autocast so fp32 side inputs (timestep features)
follow. Timing: warm-up, then CUDA events on GPU (time.perf_counter + synchronize otherwise),
median of repeats.

``run_sample_bench`` returns a JSON-ready dict (schema ``flowtok.bench.sample/1``)::

    schema, preset, batch, steps, guidance, cfg_passes, dtype, weights, notes [str], kernels_env,
    device {type, name, torch, cuda, capability, memory_bytes, threads, datasheet_tflops},
    text_encoder {kind, label},
    timing {method, statistic, warmup, repeats},
    ceiling {tflops, dtype, shape, median_ms, method},
    flops_per_image {text_encoder, projector, flow, decoder, total, flow_forward, flow_passes},
    stages {text, flow, decode, end_to_end}: each {ms_per_batch, ms_per_image, images_per_s,
        flops_per_image, tflops_per_s, pct_of_ceiling, min_ms, max_ms, p20_ms, p80_ms},
    batch1_latency_ms, peak_memory_bytes (None on CPU),
    paper [{model, images_per_s, hardware, dtype, batch, steps, label}],
    compare None | {stage, batch, rows [{name, group, status (ok | unavailable | skipped |
        failed), reason, ms_per_batch, images_per_s, ratio_vs_plain, flops_per_image,
        tflops_per_s, first_call_s}], reference (the plain row's name: 1.00x), flowtok_over_2d
        (the 2D baseline's time over the fused row's)}

Timing and the measured matmul ceiling come from flowtok.bench.timing; device, dtype, autocast
and peak memory from flowtok.device; the PNG of a result from flowtok.bench.plot.
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

import flowtok_kernels
from flowtok.bench import flops as F
from flowtok.bench import timing
from flowtok.bench.baseline_2d import (
    LATENT_CHANNELS,
    LATENT_SIZE,
    TEXT_DIM,
    TEXT_TOKENS,
    Baseline2D,
)
from flowtok.bench.timing import Timing, matmul_ceiling, synchronize, time_call, timing_method
from flowtok.config import FlowTokConfig
from flowtok.device import (
    autocast,
    dtype_name,
    peak_memory,
    reset_peak_memory,
    resolve_device,
    resolve_dtype,
)
from flowtok.errors import ConfigError
from flowtok.flow.model import TextImageFlow
from flowtok.flow.sampler import euler_sample
from flowtok.tokenizer.model import Tokenizer, to_uint8_tensor
from flowtok_kernels import BackendUnavailable

SCHEMA = "flowtok.bench.sample/1"
COMPILE_MODES = ("auto", "on", "off")
TEXT_ENCODERS = ("clip", "minilm", "tiny")
RANDOM_WEIGHTS = "random weights (speed does not depend on the weight values)"
CPU_NOTE = ("CPU run: absolute numbers mean nothing here (no GPU, shared cores); only ratios "
            "within this run say anything")
# A CPU run refuses presets whose end-to-end batch needs more than this (B/XL/H need > 3 TFLOP
# per image): minutes per repeat on a few cores, and CPU figures mean nothing anyway.
CPU_MAX_TFLOP_PER_BATCH = 2.0
# Paper throughput (method.md section 7): one A100, batch 64, fp16, 256 px, 20 steps. The paper
# does not say whether text encoding, both CFG passes and decoding are inside its timing.
PAPER_THROUGHPUT = (
    {"model": "FlowTok-XL", "preset": "XL", "images_per_s": 22.7},
    {"model": "FlowTok-H", "preset": "H", "images_per_s": 18.2},
)
PAPER_SETTING = {"hardware": "1x A100", "dtype": "fp16", "batch": 64, "steps": 20,
                 "label": "other hardware (paper, arXiv 2503.10772)"}
# Dense (no sparsity) datasheet peaks in TFLOP/s, matched on torch.cuda.get_device_name.
DATASHEET_TFLOPS = (
    ("H100 PCIe", {"bf16": 756.0, "fp16": 756.0}),
    ("H100", {"bf16": 989.4, "fp16": 989.4}),  # SXM ("H100 80GB HBM3")
    ("H200", {"bf16": 989.4, "fp16": 989.4}),
    ("A100", {"bf16": 312.0, "fp16": 312.0}),
)
KERNEL_BACKENDS = ("torch", "sdpa", "triton", "cuda", "xformers")  # flowtok_kernels names
KERNELS_ENV = "FLOWTOK_KERNELS"
SDPA_BACKENDS = {"math": "MATH", "flash": "FLASH_ATTENTION", "efficient": "EFFICIENT_ATTENTION",
                 "cudnn": "CUDNN_ATTENTION"}  # torch.nn.attention.SDPBackend members


# ----------------------------------------------------------------------------- device and figures


def device_info(device: torch.device, dtype: torch.dtype) -> dict:
    """flowtok.bench.timing.device_info + the datasheet peak for ``dtype`` when the GPU is known."""
    info = timing.device_info(device)
    info["datasheet_tflops"] = None
    if device.type == "cuda":
        for key, peaks in DATASHEET_TFLOPS:
            if key in info["name"]:
                info["datasheet_tflops"] = peaks.get(dtype_name(dtype))
                break
    return info


def stage_figures(t: Timing, batch: int, flops_per_image: int, ceiling_tflops: float) -> dict:
    """Throughput, latency and achieved FLOP/s of one timed call that makes ``batch`` images."""
    s = t.median_ms * 1e-3
    tflops = flops_per_image * batch / s / 1e12
    return {"ms_per_batch": t.median_ms, "ms_per_image": t.median_ms / batch,
            "images_per_s": batch / s, "flops_per_image": flops_per_image,
            "tflops_per_s": tflops, "pct_of_ceiling": 100.0 * tflops / ceiling_tflops,
            "min_ms": t.min_ms, "max_ms": t.max_ms, "p20_ms": t.p20_ms, "p80_ms": t.p80_ms}


# ----------------------------------------------------------------------------- models and inputs


class RandomHFText(nn.Module):
    """A transformers text model with random weights: (ids, mask) (B, K) -> (B, K, D)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model.eval().requires_grad_(False)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=ids, attention_mask=mask).last_hidden_state


def default_text_encoder(cfg: FlowTokConfig) -> str:
    """The paper presets (CLIP) get a random CLIP-L/14 tower; small presets the tiny encoder."""
    return "clip" if cfg.text.encoder == "clip" else "tiny"


def build_random_text_encoder(kind: str, cfg: FlowTokConfig) -> tuple[nn.Module, str, int]:
    """(module, label, vocabulary size) for ``kind``, random weights, nothing downloaded (unlike
    flowtok.text.encoders.build_text_encoder, which loads the real, trained encoder)."""
    K, D = cfg.K, cfg.text.feature_dim
    if kind == "tiny":
        from flowtok.text.encoders import TinyTextEncoder

        return TinyTextEncoder(K, D), "tiny test encoder (random weights)", 258
    if kind not in TEXT_ENCODERS:
        raise ConfigError(f"--text-encoder {kind!r}: choose one of {', '.join(TEXT_ENCODERS)}")
    tower = F.TEXT_TOWERS[kind]
    if tower.width != D:
        raise ConfigError(f"--text-encoder {kind}: gives {tower.width}-d features but preset "
                          f"{cfg.name} expects text.feature_dim={D}; pick another encoder")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if kind == "clip":
        from transformers import CLIPTextConfig, CLIPTextModel

        if K > TEXT_TOKENS:
            raise ConfigError(f"CLIP's context is {TEXT_TOKENS} tokens but preset {cfg.name} has K={K}")
        hf = CLIPTextConfig(hidden_size=tower.width, intermediate_size=tower.mlp_hidden,
                            num_hidden_layers=tower.layers, num_attention_heads=tower.heads,
                            max_position_embeddings=TEXT_TOKENS, vocab_size=tower.vocab,
                            eos_token_id=tower.vocab - 1, projection_dim=tower.width)
        model = CLIPTextModel(hf)
    else:
        from transformers import BertConfig, BertModel

        hf = BertConfig(hidden_size=tower.width, intermediate_size=tower.mlp_hidden,
                        num_hidden_layers=tower.layers, num_attention_heads=tower.heads,
                        vocab_size=tower.vocab)
        model = BertModel(hf, add_pooling_layer=False)
    label = f"{tower.name} (random weights, transformers config; nothing downloaded)"
    return RandomHFText(model), label, tower.vocab


@dataclass
class SampleModels:
    """Everything text-to-image needs, on one device in one dtype, with random weights."""

    text_encoder: nn.Module
    text_kind: str
    text_label: str
    vocab: int
    flow: TextImageFlow
    tokenizer: Tokenizer
    device: torch.device
    dtype: torch.dtype


def build_models(cfg: FlowTokConfig, device: torch.device, dtype: torch.dtype,
                 text_kind: str, seed: int = 0) -> SampleModels:
    torch.manual_seed(seed)
    text, label, vocab = build_random_text_encoder(text_kind, cfg)
    with torch.device(device):  # initialise on the device: a CPU init of XL takes seconds
        flow = TextImageFlow(cfg, "t2i")
        tok = Tokenizer(cfg.tokenizer)
    mods = [m.to(device, dtype).eval().requires_grad_(False) for m in (text, flow, tok)]
    return SampleModels(mods[0], text_kind, label, vocab, mods[1], mods[2], device, dtype)


@dataclass
class SampleInputs:
    ids: torch.Tensor  # (B, K) long token ids
    mask: torch.Tensor  # (B, K) long, all ones (prompts fill the context)
    noise: torch.Tensor  # (B, K, C) float32: the text-latent sample of each image

    def head(self, n: int) -> SampleInputs:
        return SampleInputs(self.ids[:n], self.mask[:n], self.noise[:n])


def make_inputs(models: SampleModels, cfg: FlowTokConfig, batch: int, seed: int) -> SampleInputs:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, models.vocab, (batch, cfg.K), generator=g)
    noise = torch.randn(batch, cfg.K, cfg.C, generator=g)
    dev = models.device
    return SampleInputs(ids.to(dev), torch.ones_like(ids).to(dev), noise.to(dev))


# ----------------------------------------------------------------------------- stages


class SampleRun:
    """The stages of text-to-image for one batch of inputs, each a callable to time."""

    def __init__(self, models: SampleModels, inputs: SampleInputs, steps: int, guidance: float):
        self.m, self.x, self.steps, self.guidance = models, inputs, steps, guidance

    def _ctx(self):
        stack = contextlib.ExitStack()
        stack.enter_context(torch.inference_mode())
        stack.enter_context(autocast(self.m.device, self.m.dtype))
        return stack

    def text(self) -> torch.Tensor:
        """-> text features (B, K, D)."""
        with self._ctx():
            return self.m.text_encoder(self.x.ids, self.x.mask)

    def flow(self, feats: torch.Tensor, velocity=None) -> torch.Tensor:
        """Projector + Euler/CFG loop -> image latents (B, K, C) float32 (TextImageFlow's
        text_to_latent with a swappable velocity function)."""
        fm = self.m.flow
        with self._ctx():
            x1 = euler_sample(fm.flow if velocity is None else velocity,
                              fm.text_latent(feats, self.x.noise), self.steps, self.guidance)
            return fm.denormalize(x1)

    def decode(self, latents: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        """-> uint8 images (B, H, W, 3) on the device (text-aware decoders also read feats)."""
        text = feats if self.m.tokenizer.cfg.text_guidance else None
        with self._ctx():
            x = self.m.tokenizer.decoder(latents, text)  # (B, 3, H, W) in about [-1, 1]
            return to_uint8_tensor(x)

    def end_to_end(self) -> torch.Tensor:
        feats = self.text()
        return self.decode(self.flow(feats), feats)


# ----------------------------------------------------------------------------- options


@dataclass
class SampleBenchOptions:
    batch: int = 64
    steps: int = 20
    guidance: float | None = None  # None: the preset's flow.guidance
    dtype: str | None = None  # None: bf16 on CUDA, fp32 on CPU
    device: str | None = None  # None: cuda when available
    repeats: int | None = None  # None: 5 on CUDA, 3 on CPU
    warmup: int | None = None  # None: 2 on CUDA, 1 on CPU
    compare: bool = False
    compile: str = "auto"  # auto (CUDA only) | on | off
    text_encoder: str | None = None  # None: clip for B/XL/H, tiny otherwise
    seed: int = 0


def check_options(opts: SampleBenchOptions) -> None:
    for name in ("batch", "steps"):
        if getattr(opts, name) <= 0:
            raise ConfigError(f"--{name} must be positive, got {getattr(opts, name)}")
    if opts.repeats is not None and opts.repeats <= 0:
        raise ConfigError(f"--repeats must be positive, got {opts.repeats}")
    if opts.warmup is not None and opts.warmup < 0:
        raise ConfigError(f"--warmup must be >= 0, got {opts.warmup}")
    if opts.compile not in COMPILE_MODES:
        raise ConfigError(f"--compile {opts.compile!r}: choose one of {', '.join(COMPILE_MODES)}")
    if opts.text_encoder is not None and opts.text_encoder not in TEXT_ENCODERS:
        raise ConfigError(f"--text-encoder {opts.text_encoder!r}: choose one of "
                          f"{', '.join(TEXT_ENCODERS)}")


def check_cpu_size(cfg: FlowTokConfig, flops_per_batch: float, device: torch.device) -> None:
    """Refuse a paper-sized run on a CPU (minutes per repeat, and meaningless there)."""
    if device.type == "cpu" and flops_per_batch > CPU_MAX_TFLOP_PER_BATCH * 1e12:
        raise ConfigError(
            f"preset {cfg.name} needs {flops_per_batch / 1e12:.1f} TFLOP per timed batch: too much "
            "for a CPU benchmark; use --preset tiny, shapes or emoji64, or a CUDA device")


# ----------------------------------------------------------------------------- compare


@contextlib.contextmanager
def kernels_env(name: str | None) -> Iterator[None]:
    """Run with FLOWTOK_KERNELS=name (None: unset), restoring the previous value after."""
    old = os.environ.get(KERNELS_ENV)
    if name is None:
        os.environ.pop(KERNELS_ENV, None)
    else:
        os.environ[KERNELS_ENV] = name
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(KERNELS_ENV, None)
        else:
            os.environ[KERNELS_ENV] = old


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:300]


def measure_variant(name: str, group: str, fn: Callable[[], object], device: torch.device,
                    repeats: int, warmup: int, context: Callable[[], contextlib.AbstractContextManager]
                    = contextlib.nullcontext) -> dict:
    """Time ``fn`` under ``context``; a backend that cannot run is a row saying why, not a crash."""
    row = {"name": name, "group": group, "status": "ok", "reason": None, "ms_per_batch": None,
           "first_call_s": None}
    with warnings.catch_warnings(record=True) as caught:  # SDPA says why a kernel cannot run
        warnings.simplefilter("always")
        try:
            with context():
                t0 = time.perf_counter()
                fn()  # first call: compiles / captures / fails fast
                synchronize(device)
                row["first_call_s"] = time.perf_counter() - t0
                t = time_call(fn, device, repeats, max(warmup - 1, 0))
            row.update(ms_per_batch=t.median_ms, min_ms=t.min_ms, max_ms=t.max_ms)
        except BackendUnavailable as e:
            row.update(status="unavailable", reason=str(e))
        except Exception as e:  # noqa: BLE001 - a failing variant is reported in its row
            hint = next((str(w.message).strip().splitlines()[0] for w in caught
                         if str(w.message).strip()), "")
            no_kernel = any(k in str(e) for k in ("No available kernel", "No viable backend"))
            row.update(status="unavailable" if no_kernel else "failed",
                       reason=_first_line(e) + (f" ({hint[:200]})" if hint else ""))
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return row


def _triton_runs_on_cpu() -> bool:
    """True when the dispatcher accepts Triton on CPU tensors: only its interpreter does that."""
    x = torch.zeros(1, 1, 8)
    try:
        flowtok_kernels.layernorm_modulate(x, x[:, 0], x[:, 0], backend="triton")
    except BackendUnavailable:
        return False
    return True


def _skipped(name: str, group: str, reason: str) -> dict:
    return {"name": name, "group": group, "status": "skipped", "reason": reason,
            "ms_per_batch": None, "first_call_s": None}


def _sdpa_context(member: str) -> Callable[[], contextlib.AbstractContextManager]:
    def ctx():
        from torch.nn.attention import SDPBackend, sdpa_kernel

        stack = contextlib.ExitStack()
        stack.enter_context(kernels_env("sdpa"))
        stack.enter_context(sdpa_kernel(getattr(SDPBackend, member)))
        return stack
    return ctx


def _cuda_graph(fn: Callable[[], torch.Tensor]) -> Callable[[], torch.Tensor]:
    """Capture ``fn`` (static inputs) in one CUDA graph after a warm-up on a side stream."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn()

    def replay() -> torch.Tensor:
        graph.replay()
        return out
    return replay


PLAIN_ROW = "plain (torch ops + SDPA, no flowtok kernel)"
FUSED_ROW = "fused (auto kernels)"
GRAPH_ROWS = ("graph(plain)", "graph(fused)", "graph(compile(plain))", "graph(compile(fused))")


def _plain_context():
    from flowtok.bench.plain import plain_ops

    stack = contextlib.ExitStack()
    stack.enter_context(kernels_env(None))
    stack.enter_context(plain_ops())
    return stack


def compare_flow(cfg: FlowTokConfig, run: SampleRun, feats: torch.Tensor, opts: SampleBenchOptions,
                 repeats: int, warmup: int, ceiling: float) -> dict:
    """The flow stage (projector + steps x CFG passes) of one batch under each variant, with
    the same inputs in this process; ratios are images/s over the plain-PyTorch row's.

    Rows: ``plain`` (flowtok.bench.plain: separate torch ops and SDPA, never a flowtok kernel;
    the 1.00x reference), ``fused`` (the auto-dispatched kernels users get), each
    FLOWTOK_KERNELS backend and SDPA backend, the 2D-latent baseline, ``compile(plain)`` and
    ``compile(fused)`` (torch.compile of the velocity model, default mode), and on CUDA each of
    those four captured whole (all steps) in one CUDA graph. Elsewhere the graph rows are one
    row saying why not."""
    dev, m = run.m.device, run.m
    B, passes = len(feats), F.flow_passes(run.steps, run.guidance)
    flow_flops = F.projector_flops(cfg.text, cfg.K, cfg.C) + passes * F.flow_forward_flops(
        cfg.flow, cfg.K, cfg.C)["total"]

    def measure(name, group, fn, context=contextlib.nullcontext, flops=flow_flops):
        row = measure_variant(name, group, fn, dev, repeats, warmup, context)
        row["flops_per_image"] = flops
        return row

    fused_ctx = lambda: kernels_env(None)
    rows = [measure(PLAIN_ROW, "reference", lambda: run.flow(feats), _plain_context),
            measure(FUSED_ROW, "framework", lambda: run.flow(feats), fused_ctx)]
    for name in KERNEL_BACKENDS:
        label = f"{KERNELS_ENV}={name}"
        if name == "triton" and dev.type != "cuda" and _triton_runs_on_cpu():
            rows.append(_skipped(label, "kernels", "Triton runs on CPU only through its "
                                 "interpreter (TRITON_INTERPRET=1), a test tool, not a benchmark"))
            continue
        rows.append(measure(label, "kernels", lambda: run.flow(feats),
                            lambda name=name: kernels_env(name)))
    for short, member in SDPA_BACKENDS.items():
        rows.append(measure(f"SDPA {short}", "sdpa", lambda: run.flow(feats), _sdpa_context(member)))

    # before compile and graph capture: a failed capture can leave the device unusable
    rows.append(_baseline_row(cfg, run, B, measure))

    compile_why = {"off": "--compile off"}.get(opts.compile)
    if opts.compile == "auto" and dev.type != "cuda":
        compile_why = ("not run on CPU: compiling takes minutes on a small machine; "
                       "--compile on forces it")
    compiled: dict[str, Callable] = {}
    for kind, ctx in (("plain", _plain_context), ("fused", fused_ctx)):
        name = f"compile({kind})"
        if compile_why:
            rows.append(_skipped(name, "framework", compile_why))
            continue
        try:  # a separate wrapper per kind: each traces the ops active in its own context
            compiled[kind] = torch.compile(m.flow.flow, mode="default", dynamic=False)
        except Exception as e:  # noqa: BLE001 - e.g. dynamo unsupported on this Python
            rows.append(_skipped(name, "framework", f"torch.compile unavailable ({_first_line(e)})"))
            continue
        rows.append(measure(name, "framework",
                            lambda c=compiled[kind]: run.flow(feats, velocity=c), ctx))

    if dev.type == "cuda":
        variants = [("graph(plain)", None, _plain_context), ("graph(fused)", None, fused_ctx),
                    ("graph(compile(plain))", "plain", _plain_context),
                    ("graph(compile(fused))", "fused", fused_ctx)]
        for name, kind, ctx in variants:
            if kind is not None and kind not in compiled:
                rows.append(_skipped(name, "graph", f"compile({kind}) did not run"))
                continue
            velocity = compiled.get(kind) if kind else None
            graphed: dict[str, Callable] = {}

            def graph_call(graphed=graphed, velocity=velocity):
                if "fn" not in graphed:  # captured under the row's context (plain or fused ops)
                    graphed["fn"] = _cuda_graph(lambda: run.flow(feats, velocity=velocity))
                return graphed["fn"]()
            rows.append(measure(name, "graph", graph_call, ctx))
    else:
        rows.append(_skipped(", ".join(GRAPH_ROWS), "graph", "CUDA graphs need a CUDA device, "
                             f"this is {dev.type}") | {"status": "unavailable"})

    plain = rows[0]["ms_per_batch"]
    for r in rows:
        ok = r["status"] == "ok"
        r["images_per_s"] = B / (r["ms_per_batch"] * 1e-3) if ok else None
        r["ratio_vs_plain"] = plain / r["ms_per_batch"] if ok and plain else None
        r["tflops_per_s"] = (r["flops_per_image"] * r["images_per_s"] / 1e12
                             if ok and r.get("flops_per_image") else None)
    fused = rows[1]["ms_per_batch"]
    base = next(r for r in rows if r["group"] == "baseline")
    over_2d = (base["ms_per_batch"] / fused if base["status"] == "ok" and fused else None)
    per_step = F.flow_passes(1, run.guidance)
    return {"stage": f"flow: projector + {run.steps} steps x {per_step} passes (no text encoder, "
                     "no decoder)", "batch": B, "rows": rows, "reference": PLAIN_ROW,
            "flowtok_over_2d": over_2d, "ceiling_tflops": ceiling}


def _baseline_row(cfg: FlowTokConfig, run: SampleRun, batch: int, measure) -> dict:
    """The 2D-latent DiT/2 with cross-attention, same width/depth/heads, same sampler."""
    m = run.m
    name = (f"2D baseline DiT/2 {LATENT_SIZE}x{LATENT_SIZE}x{LATENT_CHANNELS} + cross-attn "
            f"(w{cfg.flow.width} d{cfg.flow.depth})")
    with torch.device(m.device):
        base = Baseline2D(cfg.flow)
    base = base.to(m.device, m.dtype).eval().requires_grad_(False)
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(batch, LATENT_CHANNELS, LATENT_SIZE, LATENT_SIZE, generator=g).to(m.device)
    text = torch.randn(batch, TEXT_TOKENS, TEXT_DIM, generator=g).to(m.device, m.dtype)
    velocity = base.with_text(text)
    flops = F.flow_passes(run.steps, run.guidance) * F.baseline_2d_forward_flops(
        cfg.flow, base.num_tokens, base.patch_dim, TEXT_TOKENS, TEXT_DIM)["total"]

    def sample():
        with run._ctx():
            return euler_sample(velocity, x0, run.steps, run.guidance)
    row = measure(name, "baseline", sample, lambda: kernels_env(None), flops)
    row["tokens"] = base.num_tokens
    del base
    return row


# ----------------------------------------------------------------------------- the benchmark


def run_sample_bench(cfg: FlowTokConfig, opts: SampleBenchOptions) -> dict:
    """Measure text-to-image sampling of ``cfg``'s model sizes; see the module docstring."""
    check_options(opts)
    dev = resolve_device(opts.device)
    dtype = resolve_dtype(opts.dtype, dev)
    cuda = dev.type == "cuda"
    repeats = opts.repeats or (5 if cuda else 3)
    warmup = opts.warmup if opts.warmup is not None else (2 if cuda else 1)
    guidance = cfg.flow.guidance if opts.guidance is None else opts.guidance
    kind = opts.text_encoder or default_text_encoder(cfg)
    flops = F.sample_flops(cfg, opts.steps, guidance, text_encoder=kind)
    check_cpu_size(cfg, flops["total"] * opts.batch, dev)

    models = build_models(cfg, dev, dtype, kind, opts.seed)
    inputs = make_inputs(models, cfg, opts.batch, opts.seed)
    run = SampleRun(models, inputs, opts.steps, guidance)
    ceiling = matmul_ceiling(dev, dtype)
    top = ceiling["tflops"]

    feats = run.text()
    latents = run.flow(feats)
    t_text = time_call(run.text, dev, repeats, warmup)
    t_flow = time_call(lambda: run.flow(feats), dev, repeats, warmup)
    t_dec = time_call(lambda: run.decode(latents, feats), dev, repeats, warmup)
    reset_peak_memory(dev)
    t_e2e = time_call(run.end_to_end, dev, repeats, warmup)
    peak = peak_memory(dev)
    B = opts.batch
    stages = {
        "text": stage_figures(t_text, B, flops["text_encoder"], top),
        "flow": stage_figures(t_flow, B, flops["projector"] + flops["flow"], top),
        "decode": stage_figures(t_dec, B, flops["decoder"], top),
        "end_to_end": stage_figures(t_e2e, B, flops["total"], top),
    }
    one = SampleRun(models, inputs.head(1), opts.steps, guidance)
    t_one = time_call(one.end_to_end, dev, repeats, warmup)

    compare = None
    if opts.compare:
        compare = compare_flow(cfg, run, feats, opts, repeats, warmup, top)

    notes = [RANDOM_WEIGHTS]
    if not cuda:
        notes.append(CPU_NOTE)
    if kind == "tiny" and cfg.text.encoder != "tiny":
        notes.append(f"text encoder: the tiny test encoder stands in for {cfg.text.encoder} "
                     "(default for small presets; --text-encoder minilm for a random MiniLM)")
    return {
        "schema": SCHEMA, "preset": cfg.name, "batch": B, "steps": opts.steps,
        "guidance": guidance, "cfg_passes": F.flow_passes(1, guidance), "dtype": dtype_name(dtype),
        "weights": RANDOM_WEIGHTS, "notes": notes, "device": device_info(dev, dtype),
        "text_encoder": {"kind": kind, "label": models.text_label},
        "kernels_env": os.environ.get(KERNELS_ENV),  # FLOWTOK_KERNELS for the stage timings
        "timing": {"method": timing_method(dev), "statistic": "median", "warmup": warmup,
                   "repeats": repeats},
        "ceiling": ceiling, "flops_per_image": flops, "stages": stages,
        "batch1_latency_ms": t_one.median_ms, "peak_memory_bytes": peak,
        "paper": [dict(p, **PAPER_SETTING) for p in PAPER_THROUGHPUT], "compare": compare,
    }
