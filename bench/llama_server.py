"""llama.cpp's own ``llama-server``, built from the source vendored in the installed
llama-cpp-python's sdist (the same llama.cpp Fovea runs), cached under ``bench/.work``.

    .venv/bin/python bench/llama_server.py      # build (6-10 minutes on 2 cores), print the path
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

import llama_cpp

WORK = Path(__file__).resolve().parent / ".work" / "llama-server"


def ensure_llama_server() -> Path:
    """The path of a ``llama-server`` binary, built once."""
    version = llama_cpp.__version__
    build = WORK / f"llama_cpp_python-{version}" / "vendor" / "llama.cpp" / "build"
    binary = build / "bin" / "llama-server"
    if binary.exists():
        return binary
    WORK.mkdir(parents=True, exist_ok=True)
    sdist = WORK / f"llama_cpp_python-{version}.tar.gz"
    if not sdist.exists():
        subprocess.run(
            [
                sys.executable, "-m", "pip", "download", "--no-deps",
                "--no-binary", "llama-cpp-python", "--dest", str(WORK),
                f"llama-cpp-python=={version}",
            ],
            check=True,
        )  # fmt: skip
        found = sorted(WORK.glob("llama_cpp_python-*.tar.gz"))
        if not found:
            raise RuntimeError("pip did not leave the llama-cpp-python sdist in bench/.work")
        found[-1].rename(sdist)
    with tarfile.open(sdist) as archive:
        archive.extractall(WORK, filter="data")
    source = build.parent
    subprocess.run(
        [
            "cmake", "-S", str(source), "-B", str(build), "-G", "Ninja",
            "-DCMAKE_BUILD_TYPE=Release", "-DGGML_NATIVE=ON", "-DLLAMA_CURL=OFF",
        ],
        check=True,
    )  # fmt: skip
    subprocess.run(["cmake", "--build", str(build), "-j2", "--target", "llama-server"], check=True)
    return binary


if __name__ == "__main__":
    print(ensure_llama_server())
