"""Clean mixtures (issue 15): exact and near dedup across sources, n-gram decontamination
against eval sets, and filters for synthesized pairs, all applied at plan time from facts
cached per token-cache unit (see :mod:`instmix.builder.cleaning` for the build's use)."""
