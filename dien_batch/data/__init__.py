"""Data in and out of the core: input-format adapters, the synthetic world, sample construction."""
