"""personas: where language models encode personas, and which activations carry them.

One folder per pipeline stage, in the order the study runs them (a stage imports only
earlier ones; ``tests/test_architecture.py`` checks it):

``_core``       parameter checks, atomic I/O, provenance, parallel execution
``statements``  persona statements and the topic grouping
``store``       the activation store: read, write, fingerprint
``model``       loading, prompts, blocks and hooks, extraction and its plan, answers, interventions
``layers``      layer localisation: cluster metrics, classifiers, controls, the chosen layer
``scans``       DeepScan per persona and level: plan and settings, pools, driver, null runs, baselines
``nodes``       run files -> salient node sets, frequencies, overlaps, claims, node reports
``causal``      do the salient nodes and the persona direction change what the model says?
``viz``         every plot
``report``      ``report.md`` from the artifacts
``study``       the whole study in one command

The notebooks use the three facades at the top of the repository (``utils_layers``,
``utils_nodes``, ``utils_viz``), which re-export the names they need.
"""

__version__ = "0.1.0"
