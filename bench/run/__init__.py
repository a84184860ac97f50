"""One run: its config (``config``), the LightningModule (``system``), training and the record (``train``,
``records``), its checkpoint and its W&B mirror. ``config`` imports neither torch nor Lightning."""
