"""Fetch the wheels that ``gpu_checks.sh`` needs on a lent GPU machine, into ``.whl/`` (ignored by git).

Such a machine reaches no package registry. Its CUDA image holds PyTorch, Lightning, torchmetrics and the
scientific stack, but not MLflow or jsonargparse. Run this here, where pip reaches PyPI, with the project
installed: it takes the closure of lit-d2l's requirements from the installed metadata, leaves out what the
image holds (:data:`IMAGE_HAS`), and downloads the rest at the versions installed here, built for the
image's Python 3.12 on x86-64. Then carry ``.whl`` in the device call; ``gpu_checks.sh`` installs the wheels
(``--no-deps``, into /tmp/site) where ``import mlflow, jsonargparse`` fails.

    python benchmarks/gpu_wheels.py            # prints one JSON object last: how many wheels, how many MiB
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import json
import re
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement

#: The packages of lit-d2l's closure that the lent machines' CUDA image holds (their docs' list, 2026-11).
IMAGE_HAS = frozenset(
    [
        "aiohappyeyeballs",
        "aiohttp",
        "aiosignal",
        "annotated-doc",
        "anyio",
        "attrs",
        "certifi",
        "charset-normalizer",
        "click",
        "cloudpickle",
        "contourpy",
        "cycler",
        "filelock",
        "fonttools",
        "frozenlist",
        "fsspec",
        "h11",
        "idna",
        "jinja2",
        "joblib",
        "kiwisolver",
        "lightning",
        "lightning-utilities",
        "markupsafe",
        "matplotlib",
        "mpmath",
        "multidict",
        "narwhals",
        "networkx",
        "numpy",
        "packaging",
        "pandas",
        "pillow",
        "propcache",
        "protobuf",
        "psutil",
        "pyarrow",
        "pyparsing",
        "python-dateutil",
        "pytorch-lightning",
        "pyyaml",
        "requests",
        "scikit-learn",
        "scipy",
        "setuptools",
        "six",
        "sympy",
        "threadpoolctl",
        "torch",
        "torchmetrics",
        "tqdm",
        "typing-extensions",
        "urllib3",
        "werkzeug",
        "yarl",
        "zipp",
    ]
)
PLATFORMS = ("manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux_2_27_x86_64", "manylinux_2_28_x86_64")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(root: str = "lit-d2l") -> set[str]:
    """Every distribution ``root`` needs at run time (no extras of its own), as installed here."""
    seen: set[tuple[str, tuple[str, ...]]] = set()
    todo = [(canonical(root), ())]
    while todo:
        name, extras = todo.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        for line in metadata.distribution(name).requires or []:
            requirement = Requirement(line)
            marker = requirement.marker
            if marker is None or any(marker.evaluate({"extra": extra}) for extra in extras or ("",)):
                todo.append((canonical(requirement.name), tuple(sorted(requirement.extras))))
    return {name for name, _ in seen}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=Path(".whl"))
    args = parser.parse_args()
    needed = sorted(closure() - IMAGE_HAS - {"lit-d2l"})
    pins = [f"{name}=={metadata.version(name)}" for name in needed]
    platforms = [option for platform in PLATFORMS for option in ("--platform", platform)]
    command = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "-d", str(args.dest)]
    subprocess.run([*command, "--python-version", "3.12", "--implementation", "cp", *platforms, *pins], check=True)
    wheels = sorted(args.dest.glob("*.whl"))
    size = sum(wheel.stat().st_size for wheel in wheels) / 2**20
    print(json.dumps({"benchmark": "gpu_wheels", "wheels": len(wheels), "mib": round(size, 1), "pins": pins}))


if __name__ == "__main__":
    main()
