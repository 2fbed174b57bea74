"""The machinery every experiment shares, and nothing that is one experiment's: checked configs
(`config`), the command line (`cli`), one-line errors (`errors`), devices and hosts (`devices`),
programs compiled once (`compiled`) and set against the memory they will have (`limits`), the
sweep runner (`sweep`), training (`train`), random streams (`rng`), the results store
(`results`), preemption, dry runs (`dry_run`), and what run.py does with an experiment (`jobs`).

It imports no network, measurement, dataset, report or experiment module: an experiment hands it
functions and arrays, and it runs them."""
