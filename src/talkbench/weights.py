"""Network weight files: a registry of what each file is, a cache, fetch, import and verify.

Every metric or model that needs pretrained weights asks ``weight_path(name)``. Nothing is
downloaded implicitly: a missing file raises ``WeightsError`` naming the command that fetches
it (``talkbench weights fetch NAME``) or installs a copy made elsewhere
(``talkbench weights import NAME PATH``). A file whose sha256 does not match is refused.

Trust model. A file is what its sha256 says it is, and only bytes whose sha256 was checked
are parsed (``read_verified`` checks the very bytes a loader then parses):

- *pinned*: ``sha256`` is the full digest the publisher gives, or that public records of the
  file agree on (the source is in a comment beside it). Nothing else is accepted.
- *prefix only*: the publisher follows the torch-hub convention (the file name ends in
  ``-<first hex digits of the sha256>.ext``), in ``sha256_prefix``. Eight hex digits can be
  forged in hours, so the file must match the prefix *and* is trusted on first use, as below.
- *unpinned* (StyleGAN-V's I3D TorchScript, InsightFace's ArcFace): trusted on first use.

Trust on first use: when such a file is installed (``fetch`` or ``import``), its full sha256
is recorded in one JSON file for the whole cache (``recorded-sha256.json``, written atomically
under a lock; no sidecar beside each file, so removing one file's note cannot unpin it), and
every later load is checked against that record. A file that differs from the record is
refused; a different file is installed under the same name only with ``replace=True`` (CLI
``--replace``). When the record is lost, nothing unpinned verifies ("unrecorded" in
``talkbench weights verify``) until each file is re-imported with ``--replace``. What the first
install trusts is the user's choice of file: TorchScript carries code, so import an I3D only
from a source you trust. A file that passes its check but does not parse as the network it
names (``loading``) is reported with the file, what was expected and the replace command.
Because the protocol records the full sha256 of the file actually used (``weight_sha256``),
numbers made with different files never compare as equal.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import urllib.request
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

try:
    import fcntl
except ImportError:  # Windows: record updates are atomic but not serialised between processes
    fcntl = None

from talkbench import util
from talkbench.errors import WeightsError

ENV_CACHE_DIR = util.WEIGHTS_ENV  # kept for callers that set it by this name
RECORD_FILE = "recorded-sha256.json"  # in the cache dir: sha256 of each unpinned file at first install


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
        """A full published sha256: the file is checked against it alone. Otherwise (a torch-hub
        prefix, or nothing published) it is also checked against the sha256 recorded at install."""
        return bool(self.sha256)

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


WEIGHTS: util.Registry[WeightSpec] = util.Registry(kind="weight", error=WeightsError)


def register_weight(spec: WeightSpec) -> WeightSpec:
    """Add a weight file to the registry. A name means one file: re-registering it is an error
    unless the spec is identical (modules may be imported more than once)."""
    if spec.name in WEIGHTS:
        if WEIGHTS.get(spec.name) != spec:
            raise ValueError(f"weight {spec.name!r} is already registered with a different spec")
        return spec
    return WEIGHTS.register(spec.name, spec)


def unregister_weight(name: str) -> None:
    """Remove a weight from the registry (a test's or a plugin's); unknown names are an error."""
    WEIGHTS.unregister(name)


def get_spec(name: str) -> WeightSpec:
    return WEIGHTS.get(name)


def registered() -> list[WeightSpec]:
    return [spec for _, spec in WEIGHTS.items()]


def cache_dir() -> Path:
    """``$TALKBENCH_WEIGHTS_DIR`` if set, else ``<user cache dir>/talkbench/weights`` (``util.model_dir``)."""
    return util.model_dir("weights", util.WEIGHTS_ENV)


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
        _HASHES[key] = util.sha256_file(path)
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


def record_path() -> Path:
    """The JSON record of the sha256 each unpinned weight file had when first installed."""
    return cache_dir() / RECORD_FILE


def recorded_hashes() -> dict[str, str]:
    """name → sha256 recorded at install, for the unpinned files of this cache."""
    path = record_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        entries = data["weights"]
        hashes = {str(name): str(entry["sha256"]) for name, entry in entries.items()}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise WeightsError(
            f"{path}: the record of installed weights' sha256 is unreadable ({exc!r}); restore it, or "
            "delete it and re-import each unpinned file with `talkbench weights import NAME PATH --replace`"
        ) from None
    return hashes


@contextmanager
def _record_lock() -> Iterator[None]:
    """Serialise installs that read and rewrite the record (concurrent imports of other files)."""
    directory = cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / f".{RECORD_FILE}.lock", "w") as lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _write_record(spec: WeightSpec, digest: str) -> None:
    """Record ``digest`` for ``spec`` (call under ``_record_lock``), atomically."""
    recorded_hashes()  # refuses a corrupt record rather than overwriting it
    path = record_path()
    data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {"weights": {}}
    data["weights"][spec.name] = {
        "sha256": digest,
        "file": spec.file_name,
        "recorded_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    util.atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def expected_sha256(name: str) -> str | None:
    """What the installed file must hash to: the published sha256, or the sha256 recorded at its
    first install (None when there is neither: an unpinned file with no record)."""
    spec = get_spec(name)
    return spec.sha256 if spec.pinned else recorded_hashes().get(spec.name)


def _check_published(spec: WeightSpec, path: Path, digest: str) -> None:
    """Refuse ``path`` when its sha256 ``digest`` differs from the published sha256 or prefix."""
    if not spec.matches(digest):
        raise WeightsError(
            f"{path}: sha256 {digest} does not match weights {spec.name!r} (expected {spec.expected_hash()}); "
            f"not the published file: import the right one (`talkbench weights import {spec.name} PATH`) or run "
            f"`talkbench weights fetch {spec.name}`"
        )


def _check(spec: WeightSpec, path: Path, digest: str | None = None) -> str:
    """``path``'s sha256 (or ``digest``, the sha256 of bytes read from it), when it is the file
    ``spec`` names: matching the full pin, or else the published prefix (if any) and the sha256
    recorded when the file was installed."""
    digest = digest or file_sha256(path)
    _check_published(spec, path, digest)
    if spec.pinned:
        return digest
    recorded = recorded_hashes().get(spec.name)
    if recorded is None:
        published = (f"only a published sha256 prefix ({spec.sha256_prefix}, in the file name)"
                     if spec.sha256_prefix else "no published sha256")
        raise WeightsError(
            f"{path}: weights {spec.name!r} have {published} and none is recorded for them in "
            f"{record_path()} (it is written when the file is first installed, and loading needs it). "
            f"If this is the file you mean to use, record it with "
            f"`talkbench weights import {spec.name} {path} --replace`"
        )
    if digest != recorded:
        raise WeightsError(
            f"{path}: sha256 {digest} does not match weights {spec.name!r} (expected {recorded}, recorded when "
            f"they were first installed, in {record_path()}); the file was changed or swapped. Import the "
            f"recorded file again, or if this one is meant to replace it, run "
            f"`talkbench weights import {spec.name} PATH --replace` (numbers made with the two do not compare)"
        )
    return digest


def _installed_file(spec: WeightSpec) -> Path | None:
    """The file that would be used for ``spec`` (cache first, then a bundled copy), unchecked."""
    for path in (cache_dir() / spec.name / spec.file_name, _bundled_path(spec)):
        if path is not None and path.is_file():
            return path
    return None


def find_weight(name: str) -> Path | None:
    """The verified file for ``name``, or None when it is not installed."""
    spec = get_spec(name)
    path = _installed_file(spec)
    if path is not None:
        _check(spec, path)
    return path


def weight_path(name: str) -> Path:
    """The verified local file for ``name``; ``WeightsError`` naming the fix when it is absent,
    differs from its pinned sha256, or (unpinned) is not the recorded file."""
    path = find_weight(name)
    if path is None:
        raise WeightsError(_missing_message(get_spec(name)))
    return path


def read_verified(name: str, path: str | Path | None = None) -> bytes:
    """The bytes of weight file ``name`` (the installed file, or ``path``), checked against its
    pinned or recorded sha256 after reading: what was checked is what the caller loads, so a
    file swapped between a check and a load cannot slip through. For files that carry code
    (TorchScript), and for every file a loader parses."""
    spec = get_spec(name)
    source = Path(path) if path is not None else _installed_file(spec)
    if source is None:
        raise WeightsError(_missing_message(spec))
    try:
        data = source.read_bytes()
    except OSError as exc:
        raise WeightsError(f"{source}: cannot read weights {name!r} ({exc})") from None
    _check(spec, source, digest=hashlib.sha256(data).hexdigest())
    return data


def replace_advice(name: str) -> str:
    """The commands that put a good copy of weight file ``name`` in place of the installed one."""
    spec = get_spec(name)
    command = f"`talkbench weights import {spec.name} PATH --replace`"
    if spec.manual_download:
        return f"get {spec.file_name} from {spec.url} and run {command}"
    return f"run `talkbench weights fetch {spec.name} --replace`, or {command} with a good copy"


def _first_sentence(exc: BaseException) -> str:
    # Loader errors run to pages, and torch's suggests weights_only=False: keep the gist only.
    text = (str(exc).strip().splitlines() or [""])[0].split(". ")[0]
    return f"{type(exc).__name__}: {text[:160]}" if text else type(exc).__name__


@contextmanager
def loading(name: str, what: str, path: str | Path | None = None) -> Iterator[None]:
    """Around the parsing of weight file ``name`` (the installed file, or ``path``): any failure
    becomes a ``WeightsError`` naming the file, what it should have been (``what``: "a
    TorchScript archive of …") and how to replace it, instead of the parser's traceback. A file
    can pass its hash check and still fail here: an unpinned file is whatever was imported."""
    try:
        yield
    except (WeightsError, ImportError):  # a missing optional package is not the file's fault
        raise
    except Exception as exc:
        spec = get_spec(name)
        source = Path(path) if path is not None else (_installed_file(spec) or cached_path(name))
        raise WeightsError(
            f"{source}: weights {spec.name!r} ({spec.description or spec.file_name}) do not load as {what} "
            f"({_first_sentence(exc)}). Replace the file: {replace_advice(spec.name)}"
        ) from exc


def weight_sha256(name: str) -> str:
    """Full sha256 of the installed file (what a protocol records)."""
    return file_sha256(weight_path(name))


def is_available(name: str) -> bool:
    try:
        return find_weight(name) is not None
    except WeightsError:
        return False


def _install(spec: WeightSpec, write: Callable[[Path], None], replace: bool = False) -> Path:
    """``write(tmp)`` the file to a temporary path beside its place in the cache, verify it and
    move it into place atomically; a file that fails a check is removed, never installed.

    Pinned: it must match the pin. Unpinned: its sha256 is recorded; a file that differs from
    the recorded one (or, when none is recorded, from the file already installed) is refused
    unless ``replace``."""
    target = cache_dir() / spec.name / spec.file_name
    with ExitStack() as held:  # the record lock, once taken, is held past the rename to the record write
        with util.atomic_path(target, suffix=".part") as tmp:
            write(tmp)
            digest = file_sha256(tmp)
            _check_published(spec, tmp, digest)
            if not spec.pinned:
                held.enter_context(_record_lock())
                recorded = recorded_hashes().get(spec.name)
                previous = recorded or (file_sha256(target) if target.is_file() else None)
                if previous is not None and previous != digest and not replace:
                    what = (f"{previous} is recorded for them (in {record_path()})" if recorded
                            else f"the installed {target} has sha256 {previous} (not recorded)")
                    raise WeightsError(
                        f"weights {spec.name!r}: the new file has sha256 {digest}, but {what}. A name means one "
                        f"file, and numbers made with different files do not compare. If the new file is the one "
                        f"to use from now on, run `talkbench weights import {spec.name} PATH --replace` "
                        f"(or `talkbench weights fetch {spec.name} --replace`)"
                    )
        if not spec.pinned:
            _write_record(spec, digest)
            target.with_name(target.name + ".sha256").unlink(missing_ok=True)  # sidecar of earlier versions, no longer read
    return target


def fetch(
    name: str,
    url: str | None = None,
    progress: util.ProgressCallback | None = None,
    timeout: float = 60.0,
    replace: bool = False,
) -> Path:
    """Download ``name`` into the cache, verifying its sha256; returns the cached path.

    ``url`` overrides the registered address (a mirror). ``progress(done, total, name)`` is
    called as bytes arrive (``total``: the announced size, else the registered one, else None).
    A download that fails its hash is deleted, never installed. ``replace`` downloads even when
    a file is installed and, for an unpinned file, records the new sha256.
    """
    spec = get_spec(name)
    present = None if replace else find_weight(name)
    if present is not None and present == cached_path(name):
        return present
    if spec.manual_download and url is None:
        raise WeightsError(
            f"weights {spec.name!r} have no direct download link: get {spec.file_name} from {spec.url} "
            f"and run `talkbench weights import {spec.name} PATH`"
        )
    source_url = url or spec.url
    def download(tmp: Path) -> None:
        request = urllib.request.Request(source_url, headers={"User-Agent": "talkbench"})
        with open(tmp, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as response:
            total = int(response.headers.get("Content-Length") or 0) or spec.size
            done = 0
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
                done += len(block)
                if progress:
                    progress(done, total, spec.name)
        if spec.size and tmp.stat().st_size != spec.size:
            raise WeightsError(
                f"{source_url}: downloaded {tmp.stat().st_size} bytes, expected {spec.size} for {spec.name!r}"
            )

    try:
        return _install(spec, download, replace)
    except OSError as exc:  # urllib's URLError/HTTPError are OSErrors
        raise WeightsError(f"could not download {spec.name!r} from {source_url}: {exc}") from exc


def import_file(name: str, path: str | Path, replace: bool = False) -> Path:
    """Install a weight file obtained elsewhere (offline machines). The source is copied, not moved.
    For an unpinned file its sha256 is recorded; a different file than the recorded one is refused
    unless ``replace``."""
    spec = get_spec(name)
    source = Path(path)
    if not source.is_file():
        raise WeightsError(f"{source}: no such file to import as {name!r}")
    _check_published(spec, source, file_sha256(source))  # before copying a wrong file
    return _install(spec, lambda tmp: shutil.copyfile(source, tmp), replace)


@dataclass(frozen=True)
class WeightStatus:
    name: str
    # "ok", "unpinned" (ok: no full published sha256; matches its prefix, if any, and the one
    # recorded at install), "missing", "bad-hash" (differs from the published or recorded sha256)
    # or "unrecorded" (not fully pinned, and no record: unusable until re-imported with --replace)
    state: str
    path: str | None
    sha256: str | None  # of the file found
    detail: str = ""
    expected: str | None = None  # the pinned sha256 (or prefix), or the recorded one

    @property
    def usable(self) -> bool:
        return self.state in ("ok", "unpinned")

    def to_dict(self) -> dict:
        return asdict(self)


def status(name: str) -> WeightStatus:
    """Installed or not, and whether the installed file passes its hash check."""
    spec = get_spec(name)
    path = _installed_file(spec)
    if path is None:
        return WeightStatus(name, "missing", None, None, _missing_message(spec), spec.sha256 or spec.sha256_prefix)
    digest = file_sha256(path)
    try:
        expected = expected_sha256(name)
    except WeightsError as exc:  # an unreadable record
        return WeightStatus(name, "bad-hash", str(path), digest, str(exc))
    try:
        _check(spec, path, digest)
    except WeightsError as exc:
        unrecorded = expected is None and spec.matches(digest)
        shown = expected or (spec.expected_hash() if spec.sha256_prefix else None)
        return WeightStatus(name, "unrecorded" if unrecorded else "bad-hash", str(path), digest, str(exc), shown)
    return WeightStatus(name, "ok" if spec.pinned else "unpinned", str(path), digest, "", expected)


def verify() -> list[WeightStatus]:
    """Status of every registered weight file."""
    return [status(spec.name) for spec in registered()]


# Weights the metrics use. Others (VGG19 for VQTalker's perceptual loss, …) are registered
# by the modules that need them.
register_weight(
    WeightSpec(
        name="inception-fid",
        url="https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/pt_inception-2015-12-05-6726825d.pth",
        # pytorch-fid publishes only the prefix in the file name. The full sha256 and size are the
        # ones that several independent public FID evaluation records on GitHub give for this
        # file (found by code search, e.g. an audit of kakaobrain/rq-vae-transformer's FID that
        # checks "the upstream SHA-256 prefix" and gives the full hash); they agree with each
        # other and with the prefix.
        sha256="6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2",
        size=95628359,
        licence="Apache-2.0 (TensorFlow FID Inception graph, ported by pytorch-fid)",
        description="InceptionV3 with the FID weights (pytorch-fid)",
    )
)
register_weight(
    WeightSpec(
        name="alexnet",
        url="https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
        # torchvision publishes only the prefix in the file name. The full sha256 and size are the
        # ones public LPIPS pipelines on GitHub pin for this file beside lpips' alex.pth (whose
        # sha256 they give as the one pinned below), e.g. ognjhunt/BlueprintPipeline's
        # --lpips-backbone-digest; they agree with the prefix.
        sha256="7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02",
        size=244408911,
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
register_weight(
    WeightSpec(
        name="insightface-w600k-r50",
        url="https://github.com/deepinsight/insightface/releases/download/v0.7/buffalo_l.zip",
        filename="w600k_r50.onnx",
        licence="InsightFace pretrained models: non-commercial research use only",
        description="InsightFace buffalo_l recognition model (iresnet50, WebFace600K), w600k_r50.onnx inside buffalo_l.zip",
        manual_download=True,
    )
)
