"""Do the salient nodes matter? A causal check on readouts the model can express.

For each persona, on *held-out* statements (used neither for the persona direction nor for
DeepScan's pools), each readout of :mod:`personas.model.readouts` (the statement's
log-likelihood as the assistant's reply to a neutral prompt, the Yes/No margin, or a user's
callable) is measured without and with interventions at one layer
(:mod:`personas.model.interventions`):

- the **gate** (``check.py``): the baseline AUC of ``+`` against ``-`` statements with a bootstrap
  interval; a readout whose interval contains 0.5 is uninformative and gets no intervention;
- **steering** along the unit mean(+) - mean(-) of the training statements' hidden states (read
  as extraction reads them), scaled by alpha x their mean norm, against random directions of the
  same norm; the same direction restricted to the salient nodes, against it restricted to as
  many random nodes (``arms.py``);
- **ablation** of the salient nodes (set to their mean over the training ``-`` statements),
  against as many random nodes and as many top-variance nodes;
- **specificity**: persona A's direction read on persona B's statements, a k x k matrix whose
  diagonal dominance is tested by permuting rows (``compare.py``);
- **dose response**: alphas from -1 to 1 at three layers;
- a **direction from a file** (another tool's vector, ``directions=``) steered in place of the
  mean difference, with the same split, gate, scale and controls (``directions.py``).
- **steered text** (``text_check.py``): the model answers neutral prompts with the persona
  direction added at -alpha, 0 and +alpha, against random directions of the same norm; the texts
  are scored by a persona scorer (gated on statements used nowhere else) and for coherence, and
  the mean shift over prompts is compared with the random directions as the readouts' arms are.

The *specific effect* of an intervention is the mean shift of ``+`` statements minus that of
``-`` ones, with a stratified bootstrap interval. Settings: ``settings.CausalSettings``;
tables: ``results.CausalResult`` (CSV + JSON).
"""
