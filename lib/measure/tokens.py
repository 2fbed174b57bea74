"""How alike the tokens of a sequence are: the measures of rank collapse.

For tokens X (T, d) with mean token xbar = (1/T) 1^T X, the residual R = X - 1 xbar^T is what is
left of X beyond a rank-one matrix of identical tokens (Dong, Cordonnier & Loukas 2021; the mean
token is the Frobenius-optimal choice). Its size relative to X, in two norms: Frobenius, and Dong
et al.'s ||M||_{1,inf} = sqrt(||M||_1 ||M||_inf) (max column and max row absolute sums). The mean
cosine similarity over pairs of distinct tokens (Noci et al. 2022) is 1 when every token points
the same way.

In floating point the residual of tokens that have collapsed bottoms out at the rounding of the
forward pass (about 1e-7 relative in float32, 1e-16 in float64), not at zero.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp


class TokenStats(NamedTuple):
  rank_residual: jax.Array  # (): ||X - 1 xbar^T||_F / ||X||_F
  rank_residual_l1_linf: jax.Array  # (): the same in sqrt(||.||_1 ||.||_inf)
  token_cosine: jax.Array  # (): mean cos(x_i, x_j) over i != j


def l1_linf_norm(m):
  """sqrt(||M||_1 ||M||_inf) of a (T, d) matrix: max column sum times max row sum of |M|."""
  a = jnp.abs(m)
  return jnp.sqrt(jnp.max(jnp.sum(a, axis=0)) * jnp.max(jnp.sum(a, axis=1)))


def token_stats(x) -> TokenStats:
  """The rank-collapse measures of one sequence's tokens x (T, d), T >= 2."""
  residual = x - jnp.mean(x, axis=0, keepdims=True)
  unit = x / jnp.linalg.norm(x, axis=1, keepdims=True)
  length = x.shape[0]
  gram = unit @ unit.T
  cosine = (jnp.sum(gram) - jnp.trace(gram)) / (length * (length - 1))
  return TokenStats(jnp.linalg.norm(residual) / jnp.linalg.norm(x),
                    l1_linf_norm(residual) / l1_linf_norm(x), cosine)
