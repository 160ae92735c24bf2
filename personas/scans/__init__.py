"""DeepScan per persona and level: pools, the scan driver, null runs, baselines and their settings."""
