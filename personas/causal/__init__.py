"""Do the salient nodes matter? A causal check on the model's own Yes/No answers.

For each persona, on *held-out* statements (used neither for the persona direction
nor for DeepScan's pools), the model answers "Is the following statement something
you would say?" (:mod:`personas.model.answers`); the margin ``log p(Yes) - log p(No)`` is
measured without and with interventions at one layer (:mod:`personas.model.interventions`):

- ``salient_ablation``: the persona's salient nodes set to their mean over the
  background (the persona's training ``-`` statements, the side DeepScan's level-2
  background is drawn from), against ``random_ablation``: as many random nodes, many draws;
- ``direction``: ``alpha * s * u`` added, ``u`` the unit persona direction (mean of
  ``+`` minus mean of ``-`` training activations at the layer, last token) and ``s``
  the mean norm of those activations, for a grid of ``alpha`` of both signs;
  ``salient_direction``: the same vector with only its salient-node components;
  ``random_direction``: random unit directions times ``alpha * s`` (the same norm).

Every statement's *shift* is its margin under the intervention minus its baseline
margin. Per persona and intervention: the general Yes-bias shift (``bias_shift``,
mean shift over all statements) and the persona-specific effect
(``specific_effect``: mean shift of ``positive`` statements, whose matching answer is
Yes, minus that of ``negative`` ones, whose matching answer is No), each with a
stratified bootstrap interval; accuracy = fraction answered as the persona would.
Activations for the direction and the ablation values are read at the last token
of the same answer prompts; interventions apply at every position (or the last).
"""
