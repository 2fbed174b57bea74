"""Datasets through TFDS's random-access path (tfds.data_source, array_record): no TensorFlow.

`mnist1d` (Greydanus & Kobak, ICML 2024) is built locally by a TFDS builder from the `mnist1d`
package's generator (4,000 train and 1,000 test signals of length 40, 10 classes, about 2 s, no
download), in the published order. Other TFDS datasets are read from `data_dir` and downloaded only
when asked: with downloads off, a missing dataset fails at once with a message saying how to get
it, never by TFDS's retry loop.
"""

import contextlib
import logging

import numpy as np
import tensorflow_datasets as tfds

from lib.runtime import errors
from lib.runtime.errors import UserError

IMAGE_DATASETS = ('mnist', 'fashion_mnist', 'cifar10')
MNIST1D_SPLITS = ('train', 'test')
DATASETS = ('mnist1d',) + IMAGE_DATASETS


class Mnist1d(tfds.core.GeneratorBasedBuilder):
  """MNIST-1D as made by mnist1d.data.make_dataset(get_dataset_args()), split 4000/1000."""

  VERSION = tfds.core.Version('1.0.0')

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        features=tfds.features.FeaturesDict({
            # bytes: the default Example encoding would round float64 to float32
            'signal': tfds.features.Tensor(shape=(40,), dtype=np.float64,
                                           encoding=tfds.features.Encoding.BYTES),
            'label': tfds.features.Tensor(shape=(), dtype=np.int64),
        }),
        supervised_keys=('signal', 'label'),
        disable_shuffling=True,  # keep the published order (and its fingerprint)
        homepage='https://github.com/greydanus/mnist1d',
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    import mnist1d.data  # pylint: disable=g-import-not-at-top  (only needed to build)
    data = mnist1d.data.make_dataset(mnist1d.data.get_dataset_args())
    return dict(zip(MNIST1D_SPLITS, (self._generate_examples(data['x'], data['y']),
                                     self._generate_examples(data['x_test'], data['y_test']))))

  def _generate_examples(self, xs, ys):
    for i, (x, y) in enumerate(zip(xs, ys)):
      yield i, {'signal': x, 'label': int(y)}


def source(name: str, split: str, data_dir=None, download: bool = False):
  """A random-access source of `split` (len() and [i] -> dict of numpy arrays)."""
  if name not in DATASETS:
    raise UserError(f'unknown dataset {name!r}; valid choices: {", ".join(DATASETS)}')
  if name == 'mnist1d':
    if split not in MNIST1D_SPLITS:  # before building: a bad name writes nothing
      raise UserError(f'dataset {name} has no split {split!r}; valid choices: '
                      f'{", ".join(MNIST1D_SPLITS)}')
    builder = Mnist1d(data_dir=data_dir, file_format='array_record')
    if not builder.is_prepared():
      builder.download_and_prepare(
          download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    return builder.as_data_source(split=split)
  return tfds_source(name, split, data_dir, download)


def tfds_source(name: str, split: str, data_dir=None, download: bool = False):
  """tfds.data_source of a TFDS dataset, downloaded only if asked; a missing one is a UserError
  saying how to get it (with downloads off, never TFDS's retry loop or its warnings)."""
  with contextlib.nullcontext() if download else errors.absl_quiet(logging.ERROR):
    try:
      return tfds.data_source(name, split=split, data_dir=data_dir, download=download,
                              builder_kwargs={'file_format': 'array_record'}, try_gcs=False)
    except Exception as e:  # TFDS says "not supported" or "not found" in many ways
      if download:
        raise UserError(f'cannot download and prepare dataset {name} split {split!r}: '
                        f'{str(e).splitlines()[0]}') from None
      raise UserError(
          f'dataset {name} (split {split!r}) is not in {data_dir or "the TFDS data dir"}; pass '
          '--config.download=True to download and prepare it (preparing needs TensorFlow: '
          "pip install '.[images]'), or --config.data_dir where it is") from None


def arrays(data_source, keys: tuple) -> tuple:
  """The whole source as numpy arrays, one per key, read one example at a time."""
  examples = [data_source[i] for i in range(len(data_source))]
  return tuple(np.stack([np.asarray(e[k]) for e in examples]) for k in keys)
