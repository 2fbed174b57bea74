"""Networks, as Flax linen modules used through pure init/apply: recurrent cells (`cells`, by
name in `cells.CELLS`), plain deep CNNs (`cnn`), the transformer (`transformer`), and the trained
models built on them (`models`, `language`), with their shared layers (`layers`) and
cross-entropy (`losses`). Every parameter is drawn by an explicit rule, never by a library
default; every setting is an explicit argument (lib/experiments/model_settings reads configs)."""
