"""rnnbench's system side: configs, the LightningModule, runs, sweeps, records and leaderboards."""
