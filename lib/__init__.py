"""Signal and gradient propagation in recurrent and deep networks, measured in JAX.

One folder per role (docs/ARCHITECTURE.md); imports point one way, down this list:
  experiments/  one module per experiment (named as its config in the top-level experiments/),
                and the registry that finds one by name
  report/       tables and figures drawn from records alone
  nets/         networks: recurrent cells, plain CNNs, trained models (pure init/apply)
  measure/      measurements and theory: the log-domain gradient profile, its fit, mean field
  data/         synthetic tasks and datasets (TFDS, without TensorFlow)
  runtime/      the machinery every experiment shares: configs, the CLI, devices, sweeps,
                training, results, preemption, dry runs
"""
