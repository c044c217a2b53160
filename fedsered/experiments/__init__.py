"""The experiment drivers: what each ``fedsered`` command runs, one module per command.

- ``distill``: ``run_distill`` — ``fedsered distill`` (every method and IPC on the training split, scored);
- ``train``: ``run_seeds`` — ``fedsered train`` (per seed the centralised CNN and the functionals reference of
  ``fedsered.centralised``; resumable; mean ± 95 % CI and the paired difference);
- ``sweep``: ``run_sweep`` — ``fedsered sweep`` (DP distillation over ε × method × seed, resumable cells), drawn by
  ``sweep_plot``;
- ``fedsered simulate``: ``simulations.runner.simulate`` (Flower on Ray; the loop is ``fedsered.federation``);
- ``fedsered audit``: ``privacy_audits.run.run_audit``.
Drivers call the library; the library never imports a driver.
"""
