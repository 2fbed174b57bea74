"""What models are trained on: synthetic long-range tasks generated from (seed, step)
(`tasks`), and datasets read through TFDS without TensorFlow (`datasets`)."""
