"""Networks, as Flax linen modules used through pure init/apply: recurrent cells (`cells`, by
name in `cells.CELLS`), plain deep CNNs (`cnn`), and the trained models built on them (`models`).
Every parameter is drawn by an explicit rule, never by a library default."""
