"""Build csrc/ with torch.utils.cpp_extension where CMake cannot.

Run as ``python -m flowtok_kernels.build_cpp_extension [--arch 90a]``.

The fallback of ``flowtok_kernels.build`` (CMake): CMake's ``find_package(CUDAToolkit)`` wants a
whole toolkit install and fails on machines that have only nvcc and the CUDA runtime that torch
ships, and some machines have no cmake at all; torch's own extension builder needs only nvcc.
Same sources (CMakeLists.txt's lists), same nvcc flags, same result: libflowtok_csrc.so in
``flowtok_kernels/_lib/``, where ``flowtok_kernels.cuda`` loads it. With ninja on PATH it
builds in parallel (cpp_extension.load); without, through setuptools, one file at a time.

Exit codes: 0 built, 1 could not build, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from flowtok_kernels import build
from flowtok_kernels.build import BuildError, BuildPlan

NAME = "flowtok_csrc"
CUDA_FLAGS = ("-O3", "-lineinfo", "--expt-relaxed-constexpr")  # as CMakeLists.txt's; torch's
CXX_FLAGS = ("-O3",)  # cpp_extension adds -std=c++20 and the no-half-operator defines itself


def sources(source_root: Path = build.SOURCE_ROOT) -> list[Path]:
    """csrc/ files in the order CMakeLists.txt lists them (FLOWTOK_CSRC_CPP, FLOWTOK_CSRC_CU)."""
    text = (source_root / "CMakeLists.txt").read_text(encoding="utf-8")
    found = []
    for var in ("FLOWTOK_CSRC_CPP", "FLOWTOK_CSRC_CU"):
        m = re.search(rf"set\({var}\s+([^)]*)\)", text)
        if m is None:
            raise BuildError(f"CMakeLists.txt sets no {var}: cannot tell which sources to build")
        found += [source_root / s for s in m.group(1).split()]
    return found


def torch_arch_list(cuda_archs: str) -> str:
    """CMake's ``80;90a`` as TORCH_CUDA_ARCH_LIST's ``8.0;9.0a``."""
    out = []
    for arch in filter(None, (a.strip() for a in cuda_archs.replace(",", ";").split(";"))):
        m = re.fullmatch(r"(\d+)(\d)([a-z]?)", arch)
        if m is None:
            raise BuildError(f"CUDA architecture {arch!r}: expected one such as 80, 90 or 90a")
        out.append(f"{m.group(1)}.{m.group(2)}{m.group(3)}")
    return ";".join(out)


def plan(build_dir: Path | None = None, cuda_archs: str | None = None,
         jobs: int | None = None) -> BuildPlan:
    """Check that torch's builder can run here (no cmake needed); raise BuildError if not."""
    import torch

    if not (build.SOURCE_ROOT / "csrc").is_dir():
        raise BuildError(f"no csrc/ at {build.SOURCE_ROOT}: build from a source checkout")
    nvcc = build.find_nvcc()
    if nvcc is None:
        raise BuildError("CUDA is absent: no nvcc found (set CUDA_HOME or CUDACXX)")
    if torch.version.cuda is None:
        raise BuildError(f"CUDA is absent: the installed torch {torch.__version__} is a CPU "
                         "build, so there is nothing to link against")
    return BuildPlan(source_root=build.SOURCE_ROOT,
                     build_dir=build_dir or build.SOURCE_ROOT / "build" / "csrc-torch",
                     cuda_archs=cuda_archs or build.default_cuda_archs(), nvcc=nvcc, check_only=False,
                     jobs=jobs or max(1, os.cpu_count() or 2))


def compile_library(p: BuildPlan) -> Path:
    """Compile and link into ``p.build_dir``; returns the library named as CMake names it."""
    # cpp_extension reads CUDA_HOME and the arch list when it is imported / builds
    os.environ.setdefault("CUDA_HOME", str(Path(p.nvcc).resolve().parents[1]))
    os.environ["TORCH_CUDA_ARCH_LIST"] = torch_arch_list(p.cuda_archs)
    os.environ.setdefault("MAX_JOBS", str(p.jobs))
    from torch.utils import cpp_extension

    srcs = [str(s) for s in sources(p.source_root)]
    p.build_dir.mkdir(parents=True, exist_ok=True)
    if shutil.which("ninja"):
        cpp_extension.load(name=NAME, sources=srcs, extra_cflags=list(CXX_FLAGS),
                           extra_cuda_cflags=list(CUDA_FLAGS), build_directory=str(p.build_dir),
                           is_python_module=False, verbose=True)
        built = p.build_dir / f"{NAME}.so"
    else:
        from setuptools import setup

        ext = cpp_extension.CUDAExtension(NAME, srcs, extra_compile_args={
            "cxx": list(CXX_FLAGS), "nvcc": list(CUDA_FLAGS)})
        cwd = os.getcwd()
        os.chdir(p.build_dir)  # away from the checkout: setup() would read its pyproject.toml
        try:
            setup(name=NAME, ext_modules=[ext], script_args=[
                "build_ext", "--build-lib", str(p.build_dir), "--build-temp",
                str(p.build_dir / "tmp")],
                cmdclass={"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=False)})
        finally:
            os.chdir(cwd)
        built = next(iter(sorted(p.build_dir.glob(f"{NAME}*.so"))), p.build_dir / f"{NAME}.so")
    if not built.is_file():
        raise BuildError(f"torch.utils.cpp_extension finished but {built} is missing")
    from flowtok_kernels import cuda

    shutil.copyfile(built, p.build_dir / cuda.LIB_NAME)  # where build.install looks for it
    return p.build_dir / cuda.LIB_NAME


def main(argv: list[str] | None = None) -> int:
    prog = "flowtok_kernels.build_cpp_extension"
    parser = argparse.ArgumentParser(prog=f"python -m {prog}", description=__doc__.splitlines()[0],
                                     epilog="Builds in build/csrc-torch; MAX_JOBS caps parallel "
                                     "compiles (default: all cores).")
    parser.add_argument("--arch", help="CUDA architectures as CMake writes them, e.g. 90a or "
                        "80;90 (default: the visible GPU, else 80;90)")
    args = parser.parse_args(argv)
    try:
        p = plan(cuda_archs=args.arch)
        print(f"{prog}: building {NAME} for sm_{p.cuda_archs} with {p.nvcc} in {p.build_dir}",
              flush=True)
        compile_library(p)
        path = build.install(p)
    except BuildError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return 1
    except (RuntimeError, OSError, SystemExit) as e:  # compiler errors (printed above), no ninja
        last = str(e).strip().splitlines()
        print(f"{prog}: the build failed: {last[-1] if last else type(e).__name__}",
              file=sys.stderr)
        return 1
    # checked in a fresh process: cpp_extension.load has already loaded its own copy here,
    # and one process can register the torch.ops.flowtok namespace only once
    check = ("import sys; from flowtok_kernels import cuda; s = cuda.status(); "
             "print(s['reason']); sys.exit(0 if s['built'] else 1)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, (str(build.PACKAGE_DIR.parent), os.environ.get("PYTHONPATH"))))}
    loaded = subprocess.run([sys.executable, "-c", check], env=env, capture_output=True,
                            text=True, check=False)
    if loaded.returncode != 0:
        print(f"{prog}: installed {path} but it does not load: {loaded.stdout.strip()} "
              f"{loaded.stderr.strip()[-300:]}", file=sys.stderr)
        return 1
    print(f"{prog}: installed {path}; backend 'cuda' is available")
    return 0


if __name__ == "__main__":
    sys.exit(main())
