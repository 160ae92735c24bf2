"""DeepScan per persona and level: the plan and settings, pools, the scan driver, null runs, baselines."""
