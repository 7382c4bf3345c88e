"""Build csrc/ with CMake against the installed torch: ``python -m flowtok_kernels.build``.

Configures and builds into ``build/csrc`` (in the source checkout) and copies
libflowtok_csrc.so to ``flowtok_kernels/_lib/``, where ``flowtok_kernels.cuda`` loads it.
The extension is optional; without CUDA (no nvcc, or a CPU build of torch) this says so and
exits 1 without touching anything. ``--check-only`` compiles the sources to object files
without linking, which works with a CPU torch as long as nvcc is present.

Exit codes: 0 built (or checked), 1 could not build, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
SOURCE_ROOT = PACKAGE_DIR.parents[1]  # kernels/flowtok_kernels -> repository root
DEFAULT_ARCHS = "80;90"  # A100, H100 when no GPU is visible to pick from


class BuildError(RuntimeError):
    """The extension cannot be built here; the message says why and what to do."""


@dataclass
class BuildPlan:
    source_root: Path
    build_dir: Path
    cuda_archs: str
    nvcc: str
    check_only: bool
    jobs: int


def find_nvcc() -> str | None:
    """nvcc from $CUDACXX, $CUDA_HOME, PATH or /usr/local/cuda, in that order."""
    candidates = [os.environ.get("CUDACXX")]
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if home:
            candidates.append(str(Path(home) / "bin" / "nvcc"))
    candidates.insert(1, shutil.which("nvcc"))
    return next((c for c in candidates if c and Path(c).is_file()), None)


def default_cuda_archs() -> str:
    """The visible GPU's architecture (e.g. "90"), else DEFAULT_ARCHS."""
    import torch

    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability(0)
        return f"{major}{minor}"
    return DEFAULT_ARCHS


def plan(build_dir: Path | None = None, cuda_archs: str | None = None, check_only: bool = False,
         jobs: int | None = None) -> BuildPlan:
    """Check that a build can run here; raise BuildError naming what is missing."""
    import torch

    if not (SOURCE_ROOT / "CMakeLists.txt").is_file() or not (SOURCE_ROOT / "csrc").is_dir():
        raise BuildError(f"no CMakeLists.txt / csrc/ at {SOURCE_ROOT}: build from a source "
                         "checkout of flowtok (pip install -e .)")
    if shutil.which("cmake") is None:
        raise BuildError("cmake is not installed (apt install cmake, or pip install cmake)")
    nvcc = find_nvcc()
    if nvcc is None:
        raise BuildError("CUDA is absent: no nvcc found (set CUDA_HOME or CUDACXX). Nothing was "
                         "built; flowtok works without the extension (Triton / PyTorch backends)")
    if torch.version.cuda is None and not check_only:
        raise BuildError(f"CUDA is absent: the installed torch {torch.__version__} is a CPU "
                         "build, so there is nothing to link against. Nothing was built; flowtok "
                         "works without the extension. (--check-only compiles the sources anyway)")
    return BuildPlan(
        source_root=SOURCE_ROOT,
        build_dir=(build_dir or SOURCE_ROOT / "build" / ("csrc-check" if check_only else "csrc")),
        cuda_archs=cuda_archs or default_cuda_archs(),
        nvcc=nvcc,
        check_only=check_only,
        jobs=jobs or max(1, (os.cpu_count() or 2)),
    )


def commands(p: BuildPlan) -> list[list[str]]:
    """The CMake configure and build commands for ``p``."""
    import torch

    configure = [
        "cmake", "-S", str(p.source_root), "-B", str(p.build_dir),
        "-DCMAKE_BUILD_TYPE=Release",
        f"-DCMAKE_PREFIX_PATH={torch.utils.cmake_prefix_path}",
        f"-DCMAKE_CUDA_COMPILER={p.nvcc}",
        f"-DCMAKE_CUDA_ARCHITECTURES={p.cuda_archs}",
        f"-DPython3_EXECUTABLE={sys.executable}",
        f"-DFLOWTOK_CSRC_CHECK_ONLY={'ON' if p.check_only else 'OFF'}",
    ]
    if shutil.which("ninja"):
        configure += ["-G", "Ninja"]
    return [configure, ["cmake", "--build", str(p.build_dir), "-j", str(p.jobs)]]


def install(p: BuildPlan) -> Path:
    """Copy the built library into the package atomically; returns its new path."""
    from flowtok_kernels import cuda

    built = p.build_dir / cuda.LIB_NAME
    if not built.is_file():
        raise BuildError(f"CMake finished but {built} is missing; see the CMake warnings above "
                         "(torch without CUDA, or no CUDA compiler)")
    cuda.LIB_DIR.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cuda.LIB_DIR, prefix=".tmp-", suffix=".so")
    try:
        with os.fdopen(fd, "wb") as dst, built.open("rb") as src:
            shutil.copyfileobj(src, dst)
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(tmp, cuda.library_path())
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return cuda.library_path()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flowtok_kernels.build",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--build-dir", type=Path, help="CMake build folder (default build/csrc)")
    parser.add_argument("--arch", help="CUDA architectures, e.g. '90' or '80;90' "
                        "(default: the visible GPU, else 80;90)")
    parser.add_argument("--check-only", action="store_true",
                        help="compile to object files without linking (works with a CPU torch)")
    parser.add_argument("-j", "--jobs", type=int, help="parallel compile jobs")
    args = parser.parse_args(argv)
    try:
        p = plan(args.build_dir, args.arch, args.check_only, args.jobs)
    except BuildError as e:
        print(f"flowtok_kernels.build: {e}", file=sys.stderr)
        return 1
    for cmd in commands(p):
        print("+ " + " ".join(cmd), flush=True)
        if subprocess.run(cmd, check=False).returncode != 0:
            print(f"flowtok_kernels.build: `{' '.join(cmd[:2])}` failed (see above)",
                  file=sys.stderr)
            return 1
    if p.check_only:
        print("flowtok_kernels.build: csrc/ compiles (check only: nothing linked or installed)")
        return 0
    try:
        path = install(p)
    except BuildError as e:
        print(f"flowtok_kernels.build: {e}", file=sys.stderr)
        return 1
    from flowtok_kernels import cuda

    status = cuda.status()
    if not status["built"]:
        print(f"flowtok_kernels.build: installed {path} but it does not load: {status['reason']}",
              file=sys.stderr)
        return 1
    print(f"flowtok_kernels.build: installed {path}; backend 'cuda' is available")
    return 0


if __name__ == "__main__":
    sys.exit(main())
