"""What a run shows, from its records alone (a plot never recomputes): text tables (`tables`)
and figures (`decay_plots`, `training_plots`, on the helpers of `plotting`). matplotlib is
imported by the figure modules only, so a bad flag fails before it loads."""
