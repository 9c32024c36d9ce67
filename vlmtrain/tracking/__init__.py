"""Experiment tracking: W&B mode, names and secret redaction (``wandb``), offline W&B runs read
back (``offline``), atomic checkpoint files (``checkpoint_io``), ``resume=`` (``resume``),
comparing runs (``compare``, ``plots``) and sweep specs (``sweeps``)."""
