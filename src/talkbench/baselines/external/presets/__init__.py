"""Preset data files, one YAML per competitor method (see ``talkbench.baselines.external.preset``)."""
