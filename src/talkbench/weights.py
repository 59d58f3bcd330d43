"""Network weight files: a registry of what each file is, a cache, fetch, import and verify.

Every metric or model that needs pretrained weights asks ``weight_path(name)``. Nothing is
downloaded implicitly: a missing file raises ``WeightsError`` naming the command that fetches
it (``talkbench weights fetch NAME``) or installs a copy made elsewhere
(``talkbench weights import NAME PATH``). A file whose sha256 does not match is refused.

Hashes: ``sha256`` is pinned where it is known. Where the publisher only follows the torch-hub
convention (the file name ends in ``-<first hex digits of the sha256>.ext``), ``sha256_prefix``
holds those digits and is checked instead. Where the publisher gives neither (StyleGAN-V's I3D,
InsightFace's ArcFace) the spec is *unpinned*: the sha256 of the first installed file is written
beside it and every later load is checked against that, and because the protocol records the
full sha256 of the file actually used (``weight_sha256``), numbers made with different files
never compare as equal.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import platformdirs

from talkbench.errors import WeightsError

ENV_CACHE_DIR = "TALKBENCH_WEIGHTS_DIR"


@dataclass(frozen=True)
class WeightSpec:
    name: str
    url: str
    licence: str
    description: str = ""
    sha256: str | None = None  # full hex digest, when pinned
    sha256_prefix: str | None = None  # torch-hub file-name convention, when that is all we have
    size: int | None = None  # bytes, when known
    filename: str | None = None  # name in the cache; defaults to the URL's last path segment
    # A copy that ships inside an installed pip package, as "package:relative/path".
    bundled: str | None = None

    # The URL is a page a person follows (a share link), not a file urllib can fetch.
    manual_download: bool = False

    @property
    def pinned(self) -> bool:
        return bool(self.sha256 or self.sha256_prefix)

    @property
    def file_name(self) -> str:
        return self.filename or self.url.rstrip("/").split("/")[-1].split("?")[0]

    def matches(self, digest: str) -> bool:
        if self.sha256:
            return digest == self.sha256.lower()
        if self.sha256_prefix:
            return digest.startswith(self.sha256_prefix.lower())
        return True

    def expected_hash(self) -> str:
        return self.sha256 or f"{self.sha256_prefix}… (prefix)"

    def to_dict(self) -> dict:
        return asdict(self)


_REGISTRY: dict[str, WeightSpec] = {}


def register_weight(spec: WeightSpec) -> WeightSpec:
    """Add a weight file to the registry. A name means one file: re-registering it is an error
    unless the spec is identical (modules may be imported more than once)."""
    existing = _REGISTRY.get(spec.name)
    if existing is not None and existing != spec:
        raise ValueError(f"weight {spec.name!r} is already registered with a different spec")
    _REGISTRY[spec.name] = spec
    return spec


def get_spec(name: str) -> WeightSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise WeightsError(f"unknown weight {name!r}; registered: {known}") from None


def registered() -> list[WeightSpec]:
    return [_REGISTRY[n] for n in sorted(_REGISTRY)]


def cache_dir() -> Path:
    """``$TALKBENCH_WEIGHTS_DIR`` if set, else the user cache dir (``~/.cache/talkbench/weights``)."""
    override = os.environ.get(ENV_CACHE_DIR)
    if override:
        return Path(override)
    return Path(platformdirs.user_cache_dir("talkbench")) / "weights"


def cached_path(name: str) -> Path:
    """Where ``name`` lives in the cache (whether or not it is there)."""
    spec = get_spec(name)
    return cache_dir() / spec.name / spec.file_name


def _bundled_path(spec: WeightSpec) -> Path | None:
    if not spec.bundled:
        return None
    package, _, relative = spec.bundled.partition(":")
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        return None
    path = Path(list(found.submodule_search_locations)[0]) / relative
    return path if path.is_file() else None


_HASHES: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """sha256 of a file, remembered per (path, size, mtime) so big files are hashed once."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _HASHES:
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        _HASHES[key] = digest.hexdigest()
    return _HASHES[key]


def _missing_message(spec: WeightSpec) -> str:
    if spec.manual_download:
        return (
            f"weights {spec.name!r} ({spec.description or spec.file_name}) are not installed in {cache_dir()}. "
            f"They have no direct download link: get {spec.file_name} from {spec.url} and run "
            f"`talkbench weights import {spec.name} PATH`"
        )
    return (
        f"weights {spec.name!r} ({spec.description or spec.file_name}) are not installed in {cache_dir()}. "
        f"Fetch them with `talkbench weights fetch {spec.name}` (from {spec.url}), or on an offline "
        f"machine copy the file over and run `talkbench weights import {spec.name} PATH`"
    )


def _recorded_hash_file(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _check(spec: WeightSpec, path: Path, installing: bool = False) -> str:
    digest = file_sha256(path)
    expected = spec.expected_hash() if spec.pinned else None
    if not spec.pinned and not installing:
        recorded = _recorded_hash_file(path)
        expected = recorded.read_text().strip() if recorded.is_file() else None
        if expected is None or digest == expected:
            return digest
    if expected is not None and not (spec.matches(digest) if spec.pinned else digest == expected):
        raise WeightsError(
            f"{path}: sha256 {digest} does not match weights {spec.name!r} (expected {expected}); "
            f"delete it and run `talkbench weights fetch {spec.name}` or import the right file"
        )
    return digest


def find_weight(name: str) -> Path | None:
    """The verified file for ``name``, or None when it is not installed."""
    spec = get_spec(name)
    for path in (cached_path(name), _bundled_path(spec)):
        if path is not None and path.is_file():
            _check(spec, path)
            return path
    return None


def weight_path(name: str) -> Path:
    """The verified local file for ``name``; ``WeightsError`` naming the fix when it is absent."""
    path = find_weight(name)
    if path is None:
        raise WeightsError(_missing_message(get_spec(name)))
    return path


def weight_sha256(name: str) -> str:
    """Full sha256 of the installed file (what a protocol records)."""
    return file_sha256(weight_path(name))


def is_available(name: str) -> bool:
    try:
        return find_weight(name) is not None
    except WeightsError:
        return False


def _install(spec: WeightSpec, source: Path) -> Path:
    """Verify ``source`` and move it into the cache atomically."""
    digest = _check(spec, source, installing=True)
    target = cache_dir() / spec.name / spec.file_name
    target.parent.mkdir(parents=True, exist_ok=True)
    if not spec.pinned:
        _recorded_hash_file(target).write_text(digest + "\n")
    os.replace(source, target)
    return target


def fetch(
    name: str,
    url: str | None = None,
    progress: Callable[[int, int | None], None] | None = None,
    timeout: float = 60.0,
) -> Path:
    """Download ``name`` into the cache, verifying its sha256; returns the cached path.

    ``url`` overrides the registered address (a mirror). ``progress(done, total)`` is called
    as bytes arrive. A download that fails its hash is deleted, never installed.
    """
    spec = get_spec(name)
    present = find_weight(name)
    if present is not None and present == cached_path(name):
        return present
    if spec.manual_download and url is None:
        raise WeightsError(
            f"weights {spec.name!r} have no direct download link: get {spec.file_name} from {spec.url} "
            f"and run `talkbench weights import {spec.name} PATH`"
        )
    source_url = url or spec.url
    directory = cache_dir() / spec.name
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{spec.file_name}.", suffix=".part", dir=directory)
    tmp = Path(tmp_name)
    try:
        request = urllib.request.Request(source_url, headers={"User-Agent": "talkbench"})
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as response:
            total = int(response.headers.get("Content-Length") or 0) or spec.size
            done = 0
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
                done += len(block)
                if progress:
                    progress(done, total)
        if spec.size and tmp.stat().st_size != spec.size:
            raise WeightsError(
                f"{source_url}: downloaded {tmp.stat().st_size} bytes, expected {spec.size} for {spec.name!r}"
            )
        return _install(spec, tmp)
    except OSError as exc:  # urllib's URLError/HTTPError are OSErrors
        raise WeightsError(f"could not download {spec.name!r} from {source_url}: {exc}") from exc
    finally:
        if tmp.exists():
            tmp.unlink()


def import_file(name: str, path: str | Path) -> Path:
    """Install a weight file obtained elsewhere (offline machines). The source is copied, not moved."""
    spec = get_spec(name)
    source = Path(path)
    if not source.is_file():
        raise WeightsError(f"{source}: no such file to import as {name!r}")
    _check(spec, source, installing=True)
    directory = cache_dir() / spec.name
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{spec.file_name}.", suffix=".part", dir=directory)
    os.close(fd)
    try:
        shutil.copyfile(source, tmp_name)
        return _install(spec, Path(tmp_name))
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)


@dataclass(frozen=True)
class WeightStatus:
    name: str
    state: str  # "ok", "unpinned" (ok, hash recorded at install), "missing" or "bad-hash"
    path: str | None
    sha256: str | None
    detail: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def status(name: str) -> WeightStatus:
    """Installed or not, and whether the installed file passes its hash check."""
    try:
        path = find_weight(name)
    except WeightsError as exc:
        return WeightStatus(name, "bad-hash", None, None, str(exc))
    if path is None:
        return WeightStatus(name, "missing", None, None, _missing_message(get_spec(name)))
    state = "ok" if get_spec(name).pinned else "unpinned"
    return WeightStatus(name, state, str(path), file_sha256(path))


def verify() -> list[WeightStatus]:
    """Status of every registered weight file."""
    return [status(spec.name) for spec in registered()]


# Weights the metrics use. Others (VGG19 for VQTalker's perceptual loss, …) are registered
# by the modules that need them.
register_weight(
    WeightSpec(
        name="inception-fid",
        url="https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
        sha256_prefix="6726825d",
        licence="Apache-2.0 (TensorFlow FID Inception graph, ported by pytorch-fid)",
        description="InceptionV3 with the FID weights (pytorch-fid)",
    )
)
register_weight(
    WeightSpec(
        name="alexnet",
        url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
        sha256_prefix="7be5be79",
        licence="BSD-3-Clause (torchvision)",
        description="torchvision AlexNet ImageNet weights (LPIPS backbone)",
    )
)
register_weight(
    WeightSpec(
        name="lpips-alex-v0.1",
        url="https://github.com/richzhang/PerceptualSimilarity/raw/master/lpips/weights/v0.1/alex.pth",
        sha256="df73285e35b22355a2df87cdb6b70b343713b667eddbda73e1977e0c860835c0",
        size=6009,
        licence="BSD-2-Clause (lpips)",
        description="LPIPS linear layers v0.1 for AlexNet",
        bundled="lpips:weights/v0.1/alex.pth",
    )
)
register_weight(
    WeightSpec(
        name="fan-2d",
        url="https://www.adrianbulat.com/downloads/python-fan/2DFAN4-11f355bf06.pth.tar",
        sha256_prefix="11f355bf06",
        licence="BSD-3-Clause (face-alignment)",
        description="2D-FAN 68-point landmarks, 4 hourglass stacks (face-alignment 1.5.0's 2DFAN-4)",
    )
)
register_weight(
    WeightSpec(
        name="i3d-torchscript",
        url="https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt?dl=1",
        licence="Apache-2.0 (DeepMind kinetics-i3d, TorchScript export by StyleGAN-V/StyleGAN2-ADA)",
        description="I3D Kinetics-400 TorchScript used by StyleGAN-V's FVD",
    )
)
register_weight(
    WeightSpec(
        name="arcface-r100",
        url="https://github.com/deepinsight/insightface/tree/master/recognition/arcface_torch#model-zoo",
        filename="backbone.pth",
        licence="InsightFace pretrained models: non-commercial research use only",
        description="ArcFace iresnet100 (arcface_torch, ms1mv3_arcface_r100_fp16 backbone.pth)",
        manual_download=True,
    )
)
