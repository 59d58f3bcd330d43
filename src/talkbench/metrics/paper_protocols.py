"""Named evaluation protocols: ``talkbench-v1`` (talkbench's own) and one per paper table.

A paper protocol fixes every choice a number depends on so that a measured cell means what the
paper's column means: the metrics and their definitions, the resolution, the identity network
for CSIM, FVD's clip sampling. ``talkbench eval --protocol vqtalker-t2`` and ``talkbench submit
--protocol …`` run under one; ``talkbench tables --paper …`` fills a measured cell only from
runs under the table's protocol and names the differing fields beside any other.

Why each definition is the paper's, with the papers' words and the reference code:
``docs/paper-protocols.md``. A definition that changes bumps the protocol's version.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from talkbench.metrics.registry import available_metrics
from talkbench.metrics.scorer import Scorer
from talkbench.metrics.settings import EvalSettings, SettingsError
from talkbench.util import Registry

# Protocol fields a paper protocol pins: a run that differs in any of them is not under it.
PINNED_FIELDS = ("name", "resolution", "fps", "resize_interpolation", "crop", "face_backend", "identity_backend",
                 "csim_reference", "csim_frame_stride", "fid_frame_stride", "fvd_clip_frames", "fvd_clip_stride",
                 "fvd_max_clips_per_video", "fvd_sampling")  # fmt: skip


@dataclass(frozen=True)
class Column:
    """How a paper column is filled: the talkbench value name and the factor to the paper's unit."""

    value: str
    scale: float = 1.0
    note: str = ""  # printed under the table when a measured cell fills the column


@dataclass(frozen=True)
class NamedProtocol:
    key: str  # "vqtalker-t2"
    version: int
    description: str
    settings: EvalSettings
    table: str | None = None  # the paper table it reproduces, as PaperTable.key ("vqtalker:2")
    columns: dict[str, Column] = field(default_factory=dict)  # paper column key → value

    @property
    def name(self) -> str:
        """The name recorded in ``Protocol.name``, version included."""
        return f"{self.key}-v{self.version}"

    def evaluation_settings(self, **overrides) -> EvalSettings:
        """These settings, with run-time choices (seed, cache, metric subset) replaced."""
        return replace(self.settings, **overrides)


PROTOCOLS: Registry[NamedProtocol] = Registry(kind="protocol", error=SettingsError)


def register_protocol(protocol: NamedProtocol) -> NamedProtocol:
    if protocol.settings.protocol_name != protocol.name:
        raise SettingsError(f"protocol {protocol.key!r}: settings name {protocol.settings.protocol_name!r} "
                            f"!= {protocol.name!r}")
    return PROTOCOLS.register(protocol.key, protocol)


def get_protocol(name: str) -> NamedProtocol:
    """By key (``vqtalker-t2``) or by versioned name (``vqtalker-t2-v1``)."""
    versioned = next((p for _, p in PROTOCOLS.items() if p.name == name), None)
    return versioned or PROTOCOLS.get(name)


def available_protocols() -> list[str]:
    return PROTOCOLS.names()


def protocol_for_table(table_key: str) -> NamedProtocol | None:
    return next((p for _, p in PROTOCOLS.items() if p.table == table_key), None)


def _paper(key: str, table: str, description: str, metrics: tuple[str, ...], columns: dict[str, Column],
           **settings) -> NamedProtocol:  # fmt: skip
    defaults = dict(resolution=256, identity_backend="arcface", face_backend="dlib", fvd_sampling="stylegan-v",
                    csim_reference="portrait")
    defaults.update(settings)
    return NamedProtocol(key, 1, description, EvalSettings(protocol_name=f"{key}-v1", metrics=metrics, **defaults),
                         table, columns)  # fmt: skip


TALKBENCH_V1 = register_protocol(NamedProtocol(
    "talkbench", 1, "talkbench's own protocol: every metric, dlib CSIM (offline), consecutive FVD clips",
    EvalSettings(protocol_name="talkbench-v1"),
))  # fmt: skip

# The five paper tables that talkbench can measure (VQTalker Tables 6–8 are not video metrics).
# Every protocol: frames at 256² (VQTalker: "the resolution is standardized to 256×256"),
# CSIM from ArcFace iresnet100, LMD/M-LMD/F-LMD as the reference scripts compute them,
# FVD as StyleGAN-V samples it.
VQTALKER_T1 = register_protocol(_paper(
    "vqtalker-t1", "vqtalker:1", "VQTalker Table 1: video reconstruction on HDTF",
    ("ssim", "lpips", "csim", "cpbd"),
    {"ssim": Column("ssim"), "lpips": Column("lpips"), "csim": Column("csim_arcface"), "cpbd": Column("cpbd")},
    csim_reference="ground-truth-frame",  # reconstruction: each frame has its ground truth
))  # fmt: skip
VQTALKER_T2 = register_protocol(_paper(
    "vqtalker-t2", "vqtalker:2", "VQTalker Table 2: speech-driven, HDTF (Indo-European) and MNTE",
    ("ssim", "csim", "lmd", "cpbd", "fid", "fvd"),
    {"ssim": Column("ssim"), "csim": Column("csim_arcface"), "lmd": Column("lmd"), "cpbd": Column("cpbd"),
     "fid": Column("fid"), "fvd": Column("fvd")},
))  # fmt: skip
VQTALKER_T3 = register_protocol(_paper(
    "vqtalker-t3", "vqtalker:3", "VQTalker Table 3: quantiser ablation, HDTF cross-identity",
    ("csim", "msi"),
    {"csim": Column("csim_arcface"), "msi": Column("msi"), "utilization_pct": Column("utilisation", 100.0)},
))  # fmt: skip
VQTALKER_T4 = register_protocol(_paper(
    "vqtalker-t4", "vqtalker:4", "VQTalker Table 4: discrete vs continuous representations, HDTF",
    ("ssim", "csim", "lpips", "cpbd"),
    {"ssim": Column("ssim"), "csim": Column("csim_arcface"), "lpips": Column("lpips"), "cpbd": Column("cpbd")},
))  # fmt: skip
FLOWVQTALKER_T1 = register_protocol(_paper(
    "flowvqtalker-t1", "flowvqtalker:1", "FlowVQTalker Table 1: emotional talking faces, MEAD and HDTF",
    ("ssim", "fid", "lmd", "lse", "cpbd", "emotion"),
    {"ssim": Column("ssim"), "fid": Column("fid"), "m_lmd": Column("m_lmd"), "f_lmd": Column("f_lmd"),
     "sync_conf": Column("lse_c"), "cpbd": Column("cpbd"), "acc_emo_pct": Column("acc_emo", 100.0, "measured Acc_emo: fer's FER2013 mini-Xception, not the paper's "
                                                "classifier; it ranks measured rows, not the published percentages")},
))  # fmt: skip


def expected_protocol(protocol: NamedProtocol, metrics: tuple[str, ...] | None = None) -> dict:
    """The Protocol record (as a dict) a run under ``protocol`` carries on this installation,
    for all its metrics or for the subset ``metrics``."""
    settings = protocol.settings if metrics is None else protocol.evaluation_settings(metrics=metrics)
    return Scorer(settings).protocol().to_dict()


def pinned_fields(protocol: NamedProtocol, metrics: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """PINNED_FIELDS, plus the seed where it moves a value: StyleGAN-V FVD draws the ground
    truth's clip offsets from it (elsewhere it only shapes bootstrap intervals)."""
    metrics = protocol.settings.metrics if metrics is None else metrics
    if "fvd" in metrics and protocol.settings.fvd_sampling == "stylegan-v":
        return PINNED_FIELDS + ("seed",)
    return PINNED_FIELDS


def protocol_differences(run_protocol: dict, protocol: NamedProtocol) -> list[str]:
    """The pinned fields in which a stored run's protocol differs from ``protocol``: its name,
    resolution, backends, strides, FVD sampling (and seed), metrics outside the protocol and
    its metrics' versions. A run of a subset of the protocol's metrics is compared with the
    record that subset would carry. Weight hashes are not compared here (a protocol names the
    network, the run records the file; tables keep runs with different files apart)."""
    versions = run_protocol.get("metric_versions") or {}
    outside = sorted(m for m in versions if m not in protocol.settings.metrics)
    subset = tuple(m for m in protocol.settings.metrics if m in versions)
    if not subset:
        return ["metrics " + (", ".join(outside) or "none")]
    # The record the run's own metrics would carry under the protocol's settings: the fields
    # an extra metric brings (CSIM's identity backend …) are then no difference of their own.
    known = subset + tuple(m for m in outside if m in available_metrics())
    expected = _expected(protocol, known)
    differs = [f for f in pinned_fields(protocol, known) if run_protocol.get(f) != expected.get(f)]
    if outside:
        differs.append("metrics " + ", ".join(outside))
    differs += [f"{m} v{versions[m]}≠v{v}" for m in subset if versions[m] != (v := expected["metric_versions"][m])]
    return differs


_EXPECTED: dict[tuple[str, tuple[str, ...]], dict] = {}


def _expected(protocol: NamedProtocol, metrics: tuple[str, ...]) -> dict:
    key = (protocol.key, metrics)
    if key not in _EXPECTED:
        _EXPECTED[key] = expected_protocol(protocol, metrics)
    return _EXPECTED[key]


# EvalSettings fields that define what a number means: a paper protocol fixes them.
DEFINING_SETTINGS = ("identity_backend", "face_backend", "csim_reference", "csim_frame_stride", "fid_frame_stride",
                     "fvd_max_clips_per_video", "fvd_sampling", "resolution", "fps")  # fmt: skip


def protocol_settings(name: str = "talkbench", metrics: str | tuple[str, ...] | None = None, **choices) -> EvalSettings:
    """The settings of the named protocol with a user's choices (None = not given).

    ``metrics`` may pick a subset. Under ``talkbench`` every choice applies; under a paper
    protocol a defining choice that differs from the protocol's is refused, naming the field,
    since the result would no longer be under that protocol."""
    protocol = get_protocol(name)
    given = {k: v for k, v in choices.items() if v is not None}
    if isinstance(metrics, str):
        named = tuple(m.strip() for m in metrics.split(",") if m.strip())
        if not named:
            raise SettingsError(f"--metrics {metrics!r} names no metric; its metrics: {', '.join(protocol.settings.metrics)}")
        metrics = named
    if metrics:
        given["metrics"] = tuple(metrics)
    if protocol.table is not None:
        run = given.get("metrics", protocol.settings.metrics)
        applies = {k for k, v in _expected(protocol, tuple(m for m in run if m in protocol.settings.metrics)).items()
                   if v is not None} | {"resolution", "fps"}  # fmt: skip
        defining = DEFINING_SETTINGS + (("seed",) if "seed" in pinned_fields(protocol, run) else ())
        for key in defining:
            if key in given and key in applies | {"seed"} and given[key] != _effective(protocol.settings, key):
                raise SettingsError(f"protocol {protocol.name} fixes {key} = {_effective(protocol.settings, key)!r}; "
                                    f"drop that option, or use --protocol talkbench to choose it")  # fmt: skip
        outside = [m for m in given.get("metrics", ()) if m not in protocol.settings.metrics]
        if outside:
            raise SettingsError(f"protocol {protocol.name} has no metric {', '.join(outside)}; "
                                f"its metrics: {', '.join(protocol.settings.metrics)}")  # fmt: skip
    settings = protocol.evaluation_settings(**given)
    settings.check()
    return settings


def _effective(settings: EvalSettings, key: str):
    """A setting's value as the engine uses it (a None stride means the backend's default)."""
    return settings.csim_stride() if key == "csim_frame_stride" else getattr(settings, key)
