"""The model stage: loading, prompts, blocks and hooks, extraction, answers and interventions."""
