"""The model stage: loading, prompts, blocks and hooks, extraction and its plan, answers and interventions."""
