"""Signal and gradient propagation in recurrent and deep networks, measured in JAX."""
