"""The experiment drivers: what each ``fedsered`` command runs, one module per command.

- ``seeds``: what every multi-seed command shares — the ``--seeds`` syntax, one job per seed run or resumed in
  ``DIR/seeds/`` (``SeedStore``, ``run_seeds``), mean ± 95 % CI and paired differences, ``results.csv``;
- ``distill``: ``run_distill`` — ``fedsered distill`` (every method and IPC on the training split, scored); over
  ``--seeds`` one such run folder per seed, summarised with the paired Δ to ``random`` and to full data;
- ``train``: ``fedsered train`` (per seed the centralised CNN and the functionals reference of
  ``fedsered.centralised``; resumable; mean ± 95 % CI and the paired difference);
- ``simulate``: ``simulate_run`` — ``fedsered simulate`` (one Flower/Ray simulation, ``simulations.runner``; the
  loop is ``fedsered.federation``); over ``--seeds`` one simulation per seed, synthetic sharing paired with each
  baseline;
- ``sweep``: ``run_sweep`` — ``fedsered sweep`` (DP distillation over ε × method × seed, resumable cells), drawn by
  ``sweep_plot``;
- ``fedsered audit``: ``privacy_audits.run.run_audit``.
Drivers call the library; the library never imports a driver.
"""
