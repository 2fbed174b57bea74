"""Text summaries of a decay sweep, from records alone."""

import collections

import numpy as np

# Below this |predicted rate| a relative error says nothing; the table shows the difference instead.
_RELATIVE_FLOOR = 0.02


def group_records(records, length_key: str, panel) -> dict:
  """{(panel, sigma_w2, sigma_b2): {length: [records]}}, panels in order of appearance."""
  panels = list(dict.fromkeys(panel(r) for r in records))
  table = collections.defaultdict(lambda: collections.defaultdict(list))
  for r in records:
    table[(panel(r), r['sigma_w2'], r['sigma_b2'])][r[length_key]].append(r)
  ordered = sorted(table, key=lambda k: (panels.index(k[0]), k[1], k[2]))
  return {k: dict(sorted(table[k].items())) for k in ordered}


def rate_stats(rows: list):
  """(mean, std) over seeds of the fitted rates, or None; and the predicted rate, or None."""
  rates = [r['decay_rate'] for r in rows if r['decay_rate'] is not None]
  predicted = next((r['theory_decay_rate'] for r in rows), None)
  return ((float(np.mean(rates)), float(np.std(rates))) if rates else None), predicted


def error_text(measured: float, predicted: float) -> str:
  if abs(predicted) >= _RELATIVE_FLOOR:
    return f'{(measured - predicted) / abs(predicted):+.1%}'
  return f'{measured - predicted:+.4f} abs'


def decay_table(records: list, length_key: str, panel) -> str:
  """Per (panel, sigma_w2, sigma_b2): the fitted rate at the longest length (mean +- std over
  seeds) beside the mean-field prediction ln chi1 and the error, then ln ||dL/dh||^2 farthest from
  the loss (index 0) per length, mean over 'ok' seeds; other statuses are listed, not averaged."""
  table = group_records(records, length_key, panel)
  lengths = sorted({r[length_key] for r in records})
  short = 'T' if length_key == 'seq_len' else 'L'
  width = max(len(name) for name, _, _ in table)
  head = (f'{"":<{width}} {"sigma_w2":>8} {"sigma_b2":>8} {"rate":>8} {"+-":>6} {"theory":>8} '
          f'{"error":>11}  ' + ' '.join(f'{short + "=" + str(t):>8}' for t in lengths)
          + '   not ok')
  linear = any(r['sigma_w2'] is None for r in records)
  gru = any(name == 'gru' for name, _, _ in table)
  lines = [f'Decay rate per step fitted at the longest {length_key} (theory: ln chi1'
           + ('; GRU: the same fit to its tied profile' if gru else '')
           + ('; linear cells, no sigma: the same fit to their closed-form profile' if linear
              else '') + f'); '
           f'ln ||dL/dh||^2 farthest from the loss per {length_key}:', head]
  for (name, sigma_w2, sigma_b2), by_len in table.items():
    stats, predicted = rate_stats(by_len[max(by_len)])
    rate = f'{stats[0]:>8.4f} {stats[1]:>6.4f}' if stats else f'{"-":>8} {"":>6}'
    theory_col = f'{predicted:>8.4f}' if predicted is not None else f'{"-":>8}'
    error = error_text(stats[0], predicted) if stats and predicted is not None else '-'
    cols, bad = [], []
    for t in lengths:
      ok = [r['log_grad_sq'][0] for r in by_len.get(t, []) if r['status'] == 'ok']
      cols.append(f'{np.mean(ok):>8.2f}' if ok else f'{"-":>8}')
      bad += sorted({f'{r["status"]}@{short}={t}' for r in by_len.get(t, [])
                     if r['status'] != 'ok'})
    scale = ' '.join(f'{"-" if v is None else f"{v:g}":>8}' for v in (sigma_w2, sigma_b2))
    lines.append(f'{name:<{width}} {scale} {rate} {theory_col} {error:>11}  '
                 + ' '.join(cols) + '   ' + (', '.join(bad) or '-'))
  return '\n'.join(lines)


def _mean_std(values: list) -> str:
  return f'{np.mean(values):.4g} +- {np.std(values):.2g}' if values else '-'


def memory_table(records: list) -> str:
  """Per (cell, clip_norm) and T: final test loss (mean +- std over 'ok' seeds) against the
  memoryless baseline, the copy task's recall accuracy, and seeds that diverged."""
  task = records[0]['task']
  rows = collections.defaultdict(list)
  for r in records:
    rows[(r['cell'], r['clip_norm'], r['seq_len'])].append(r)
  lines = [f'Final test loss on the {task} task (mean +- std over seeds) against the memoryless '
           'baseline; loss/baseline near 1 = nothing learnt about the dependency:',
           f'{"model":<10} {"clip":>5} {"T":>5} {"test loss":>20} {"baseline":>9} '
           f'{"loss/base":>9}' + (f' {"recall acc":>10}' if task == 'copy' else '') + '  not ok']
  for (cell, clip, seq_len), rs in rows.items():
    ok = [r for r in rs if r['status'] == 'ok']
    losses = [r['test_loss'] for r in ok]
    base = rs[0]['baseline_loss']
    ratio = f'{np.mean(losses) / base:>9.3g}' if losses else f'{"-":>9}'
    acc = (f' {np.mean([r["test_accuracy"] for r in ok]):>10.3f}' if ok else f' {"-":>10}'
           ) if task == 'copy' else ''
    bad = ', '.join(f'{r["status"]}@seed={r["seed"]}' for r in rs if r['status'] != 'ok')
    lines.append(f'{cell:<10} {clip:>5g} {seq_len:>5} '
                 f'{_mean_std(losses):>20} {base:>9.4f} {ratio}{acc}  {bad or "-"}')
  return '\n'.join(lines)


def classification_table(records: list, published: dict) -> str:
  """Test accuracy (%) per model, original and permuted positions, beside published values."""
  variants = sorted({r['permuted'] for r in records})
  names = list(dict.fromkeys(r['model'] for r in records))
  show_published = records[0]['dataset'] == 'mnist1d'
  head = f'{"model":<10}' + ''.join(
      f' {("permuted" if p else "original") + " (ours)":>20}' +
      (f' {"published":>9}' if show_published else '') for p in variants) + '  not ok'
  lines = [f'Test accuracy (%) on {records[0]["dataset"]}, mean +- std over seeds' +
           (' (published: Greydanus & Kobak 2024)' if show_published else '') + ':', head]
  for name in names:
    cols, bad = [], []
    for permuted in variants:
      rs = [r for r in records if r['model'] == name and r['permuted'] == permuted]
      ok = [100 * r['test_accuracy'] for r in rs if r['status'] == 'ok']
      cols.append(f' {_mean_std(ok) if not ok else f"{np.mean(ok):.1f} +- {np.std(ok):.1f}":>20}')
      if show_published:
        cols.append(f' {published[name][int(permuted)] if name in published else "-":>9}')
      bad += [f'{r["status"]}@seed={r["seed"]}' for r in rs if r['status'] != 'ok']
    lines.append(f'{name:<10}' + ''.join(cols) + '  ' + (', '.join(bad) or '-'))
  return '\n'.join(lines)


def language_table(records: list) -> str:
  """Per model and context length: test bpc (characters) or perplexity (words), mean +- std over
  the 'ok' seeds, the validation figure, and one sample of generated text per model."""
  level = records[0]['level']
  metric = 'bpc' if level == 'char' else 'perplexity'
  rows = collections.defaultdict(list)
  for r in records:
    rows[(r['model'], r['context_len'])].append(r)
  lines = [f'Language models on {records[0]["dataset"]}: test {metric} (mean +- std over seeds), '
           'lower is better:',
           f'{"model":<12} {"context":>7} {"test " + metric:>22} {"valid " + metric:>22}  not ok']
  for (model, length), rs in rows.items():
    ok = [r for r in rs if r['status'] == 'ok']
    bad = ', '.join(f'{r["status"]}@seed={r["seed"]}' for r in rs if r['status'] != 'ok')
    lines.append(f'{model:<12} {length:>7} {_mean_std([r["test_" + metric] for r in ok]):>22} '
                 f'{_mean_std([r["valid_" + metric] for r in ok]):>22}  {bad or "-"}')
  baseline = ngram_line(records)
  if baseline:
    lines.append(baseline)
  lines += size_lines(rows)
  lines += recall_lines(rows)
  lines += induction_lines(rows)
  samples = {}
  for r in records:
    if r['status'] == 'ok' and r.get('sample') and r['model'] not in samples:
      samples[r['model']] = r
  for model, r in samples.items():
    lines.append(f'sample of {model} (context {r["context_len"]}, seed {r["seed"]}): '
                 + repr(r['sample'][:160]))
  return '\n'.join(lines)


def ngram_line(records: list):
  """The count-based n-gram reference of language-model records (their `ngram_*` fields, the
  same in each): its test bpc or perplexity per order and the best; None for records from
  before it was measured."""
  r = next((r for r in records if r.get('ngram_orders')), None)
  if r is None:
    return None
  metric = 'bpc' if 'ngram_test_bpc' in r else 'perplexity'
  values = r['ngram_test_' + metric]
  best = int(np.argmin(values))
  fmt = '.3f' if metric == 'bpc' else '.1f'
  return (f'count-based n-gram (interpolated Kneser-Ney, training split) test {metric}: order '
          + ', '.join(f'{k} {v:{fmt}}' for k, v in zip(r['ngram_orders'], values))
          + f'; best {values[best]:{fmt}} at order {r["ngram_orders"][best]}')


def size_lines(rows: dict) -> list:
  """Each language model's size (`non_embedding_params`, `state_size`, width) and learning rate
  (the one chosen, with every candidate's validation loss), rows {(model, context_len):
  [records]}; none for records from before these were recorded."""
  first = next((rs[0] for rs in rows.values() if 'non_embedding_params' in rs[0]), None)
  if first is None:
    return []
  lines = ['sizes: non-embedding parameters (all but the token embedding, positions and '
           'readout); state: the numbers held about the past (a transformer\'s keys and values '
           'over its window); learning rate: of ' + ', '.join(
               f'{v:g}' for v in first.get('lr_candidates', [first['learning_rate']]))
           + ', the lowest mean final validation loss',
           f'{"model":<12} {"context":>7} {"width":>6} {"params":>8} {"state":>7} {"lr":>7}  '
           'validation loss per candidate lr']
  for (model, length), rs in rows.items():
    r = rs[0]
    losses = r.get('lr_valid_loss') or []
    lines.append(f'{model:<12} {length:>7} {r["hidden_size"]:>6} {r["non_embedding_params"]:>8} '
                 f'{r["state_size"]:>7} {r["learning_rate"]:>7g}  '
                 + ' '.join('diverged' if v is None else f'{v:.4f}' for v in losses))
  return lines


# the classes of the records' recall_fraction and recall_loss lists, in their order (those of
# lib/measure/recall.CLASSES, which a report does not import; tests/measure/test_recall checks)
RECALL_CLASSES = ('recall', 'misleading', 'rest')


def gap_shares(fractions, losses_a, losses_b) -> list:
  """Each class's share of the gap between two models' mean losses over the same positions:
  fraction_c (loss_a,c - loss_b,c) / sum over classes of the same (the shares sum to 1); None
  for every class where the gap is 0 or a class's loss is missing."""
  parts = []
  for f, a, b in zip(fractions, losses_a, losses_b):
    if f and (a is None or b is None):
      return [None] * len(fractions)
    parts.append(f * (a - b) if f else 0.0)
  gap = sum(parts)
  return [p / gap for p in parts] if gap else [None] * len(fractions)


def recall_lines(rows: dict) -> list:
  """The recall split of language-model records (`recall_*` fields; lib/measure/recall), rows
  {(model, context_len): [records]}: per context, each class's share of the test positions;
  per model, its mean loss on each class (mean over the 'ok' seeds) and each class's share of
  the gap between its loss and the best model's at that context. None for old records."""
  means = {}
  for key, rs in rows.items():
    ok = [r for r in rs if r['status'] == 'ok' and r.get('recall_loss')]
    if ok:
      means[key] = (ok[0], [None if any(r['recall_loss'][c] is None for r in ok) else
                            float(np.mean([r['recall_loss'][c] for r in ok]))
                            for c in range(len(RECALL_CLASSES))],
                    float(np.mean([r['test_loss'] for r in ok])))
  if not means:
    return []
  first = next(iter(means.values()))[0]
  lines = [f'recall split of the test positions (the {first["recall_order"]} tokens before '
           'each occurred earlier in the window: recall if followed there by the same token, '
           'misleading if by another, rest if not at all): loss in nats per class, and each '
           "class's share of the model's gap to the best model at its context"]
  for length in sorted({k[1] for k in means}):
    here = {k: v for k, v in means.items() if k[1] == length}
    fractions = next(iter(here.values()))[0]['recall_fraction']
    best_key = min(here, key=lambda k: here[k][2])
    lines.append(f'  context {length}: ' + ', '.join(
        f'{name} {f:.1%}' for name, f in zip(RECALL_CLASSES, fractions))
        + f' of positions; best: {best_key[0]}')
    for key, (_, losses, _) in here.items():
      shares = gap_shares(fractions, losses, here[best_key][1])
      loss_text = ' '.join('-' if v is None else f'{v:.3f}' for v in losses)
      share_text = ('' if key == best_key or shares[0] is None else
                    '; gap shares ' + ' '.join(f'{v:.0%}' for v in shares))
      lines.append(f'  {key[0]:<12} loss {loss_text}{share_text}')
  return lines


def induction_lines(rows: dict) -> list:
  """The induction diagnostic of language-model records (`induction_*` fields), rows {(model,
  context_len): [records]}: per row, the mean over the 'ok' seeds of the loss on the first copy
  of a random sequence and on its repeat, and their difference, beside the chance loss ln V;
  no line for records from before it was measured."""
  first = next((r for rs in rows.values() for r in rs if 'induction_first_loss' in r), None)
  if first is None:
    return []
  lines = [f'induction (loss in nats on a random sequence, then on its repeat; mean over seeds; '
           f'chance ln V = {first["induction_chance_loss"]:.3f}):']
  for (model, length), rs in rows.items():
    ok = [r for r in rs if r['status'] == 'ok' and r.get('induction_first_loss') is not None]
    if not ok:
      continue
    once, again = np.mean([(r['induction_first_loss'], r['induction_second_loss']) for r in ok],
                          axis=0)
    lines.append(f'  {model:<12} context {length:>5} (L={ok[0]["induction_len"]}): first copy '
                 f'{once:.3f}, second copy {again:.3f}, difference {once - again:+.3f}')
  return lines


def best_learning_rate(records: list) -> dict:
  """{model: [(teacher_nu, learning rate, [records of its seeds]), ...]} at each (model, nu0)'s
  learning rate of lowest mean final loss over the seeds that finished (a learning rate where a
  seed diverged counts as worse than any that did not)."""
  groups = collections.defaultdict(list)
  for r in records:
    groups[(r['model'], r['teacher_nu'], r['learning_rate'])].append(r)
  best = {}
  for (model, nu, lr), rows in groups.items():
    ok = [r['test_loss'] for r in rows if r['status'] == 'ok']
    score = (len(ok) < len(rows), np.mean(ok) if ok else np.inf)
    if (model, nu) not in best or score < best[model, nu][0]:
      best[model, nu] = (score, lr, rows)
  out = collections.defaultdict(list)
  for (model, nu), (_, lr, rows) in sorted(best.items(), key=lambda kv: kv[0][1]):
    out[model].append((nu, lr, rows))
  return {model: out[model] for model in dict.fromkeys(r['model'] for r in records)}


def curse_of_memory_table(records: list) -> str:
  """The moments: measured (Monte Carlo) over the closed form per (parametrisation, quantity,
  lambda) and rho, with the largest |z| (standard errors); the teacher-student final losses."""
  lines = []
  moments = [r for r in records if r['part'] == 'moments']
  if moments:
    rhos = sorted({r['rho'] for r in moments})
    by = {(r['parametrisation'], r['quantity'], r['lambda'], r['rho']): r for r in moments}
    keys = list(dict.fromkeys((r['parametrisation'], r['quantity'], r['lambda'])
                              for r in moments))
    lines += ['Stationary moments: closed form, and Monte Carlo (float64 chains) as measured / '
              'closed form, per rho:',
              f'{"parametrisation":<11} {"quantity":<8} {"lambda":>7} '
              + ' '.join(f'{"rho=" + format(rho, "g"):>20}' for rho in rhos)]
    for p, q, lam in keys:
      cols = []
      for rho in rhos:
        r = by.get((p, q, lam, rho))
        cols.append(f'{"-":>20}' if r is None or r['status'] != 'ok' else
                    f'{r["theory"]:>10.3e} {r["measured"] / r["theory"]:>9.4f}')
      lines.append(f'{p:<11} {q:<8} {lam:>7g} ' + ' '.join(cols))
    zs = [abs(r['z']) for r in moments if r['z'] is not None]
    if zs:
      lines.append(f'{len(zs)} points: |measured - closed form| / standard error at most '
                   f'{max(zs):.2f}, {sum(z > 3 for z in zs)} beyond 3')
  students = [r for r in records if r['part'] == 'teacher_student']
  if students:
    lines += ['' if lines else None, 'Teacher-student: final test loss (MSE; mean +- std over '
              "seeds) at the best learning rate, and over the targets' mean square (1: no better "
              'than predicting 0):',
              f'{"model":<8} {"nu0":>6} {"lr":>8} {"test loss":>22} {"relative":>22}  not ok']
    lines = [line for line in lines if line is not None]
    for model, rows in best_learning_rate(students).items():
      for nu, lr, seeds in rows:
        losses = [r['test_loss'] for r in seeds if r['status'] == 'ok']
        relative = [r['test_relative_loss'] for r in seeds if r['status'] == 'ok']
        bad = sum(r['status'] != 'ok' for r in seeds)
        lines.append(f'{model:<8} {nu:>6g} {lr:>8g} {_mean_std(losses):>22} '
                     f'{_mean_std(relative):>22}  {bad or "-"}')
  return '\n'.join(lines)


def _range_text(values: list, beyond: str) -> str:
  """Integers over seeds: one value, or min-max; a None (never reached) shown as `beyond`."""
  if not values:
    return '-'
  numbers = sorted(v for v in values if v is not None)
  text = ('' if not numbers else str(numbers[0]) if numbers[0] == numbers[-1]
          else f'{numbers[0]}-{numbers[-1]}')
  if len(numbers) < len(values):
    text = f'{text}/{beyond}' if text else beyond
  return text


def context_use_table(records: list) -> str:
  """Per model and context length (mean over the 'ok' seeds; integers as min-max over seeds):
  the test metric of the training, the full-history loss on the measured targets, the effective
  context (truncation), the order-sensitive range (shuffle) and the content range (replace),
  the gradient reach's slope per token at init and trained beside the gradient-decay sweep's
  rate for the cell, the gradient half-life, and how far the model can read."""
  reach = [r for r in records if r['part'] == 'reach']
  if not reach:
    return 'context use: no model measured yet'
  first = reach[0]
  metric = 'bpc' if first.get('level', 'char') == 'char' else 'perplexity'
  beyond = f'>{first["max_lag"]}'
  rows = collections.defaultdict(list)
  for r in reach:
    rows[(r['model'], r['context_len'])].append(r)
  lines = [f'Context use on {first["dataset"]}: {first["num_targets"]} targets of the test '
           f'split, each with {first["max_lag"]} tokens of history (mean over seeds; lags as '
           'min-max over seeds). Effective context: the shortest truncation at most '
           f'{first.get("relative_tolerance", 0):.0%} above the full-history loss; order / content '
           'range: the first lag at which shuffling / replacing what lies further back changes '
           'the loss by less than 2 standard errors; reach slope: d ln ||d log p / d e_{t-k}||^2 / '
           'dk (init, trained) beside the gradient-decay sweep\'s rate for the cell at init; '
           'half-life: tokens over which the trained gradient\'s norm halves.',
           f'{"model":<12} {"ctx":>4} {"test " + metric:>10} {"full " + metric:>10} '
           f'{"effective":>9} {"order":>7} {"content":>7} {"slope init":>10} '
           f'{"trained":>8} {"sweep":>8} {"half-life":>9} {"can read":>9}  not ok']
  to_metric = ((lambda nats: nats / np.log(2)) if metric == 'bpc' else np.exp)

  def mean_of(rows_ok, field, fmt):
    values = [r[field] for r in rows_ok if r.get(field) is not None]
    return format(float(np.mean(values)), fmt) if values else '-'
  for (model, length), rs in rows.items():
    ok = [r for r in rs if r['status'] == 'ok']
    bad = ', '.join(f'{r["status"]}@seed={r["seed"]}' for r in rs if r['status'] != 'ok')
    full = (format(float(np.mean([to_metric(r['full_loss']) for r in ok])), '.3f')
            if ok else '-')
    half = [r['gradient_half_life'] for r in ok]
    half_text = ('-' if not half else 'no decay' if any(h is None for h in half)
                 else format(float(np.mean(half)), '.3g'))
    window = next((r['window'] for r in ok), None)
    lines.append(
        f'{model:<12} {length:>4} {mean_of(ok, "test_" + metric, ".3f"):>10} {full:>10} '
        f'{_range_text([r["effective_context"] for r in ok], beyond) if ok else "-":>9} '
        f'{_range_text([r["order_range"] for r in ok], beyond) if ok else "-":>7} '
        f'{_range_text([r["content_range"] for r in ok], beyond) if ok else "-":>7} '
        f'{mean_of(ok, "reach_slope_init", ".4f"):>10} '
        f'{mean_of(ok, "reach_slope_trained", ".4f"):>8} '
        f'{mean_of(ok, "sweep_decay_rate", ".4f"):>8} {half_text:>9} '
        f'{"unbounded" if window is None else window:>9}  {bad or "-"}')
  baseline = ngram_line(records)
  return '\n'.join(lines + ([baseline] if baseline else []) + recall_lines(rows)
                   + spectrum_lines(rows))


def spectrum_lines(rows: dict) -> list:
  """Per recurrent model with spectra (means over 'ok' seeds): its state's top Lyapunov
  exponent, its k-th, and how many of the k keep more than e^-1 over 100 tokens, at init and
  trained ([] where none was measured)."""
  lines = []
  for (model, length), rs in rows.items():
    ok = [r for r in rs if r['status'] == 'ok' and r.get('lyapunov_trained') is not None
          and r.get('lyapunov_init') is not None]
    if not ok:
      continue
    init = np.mean([r['lyapunov_init'] for r in ok], axis=0)
    trained = np.mean([r['lyapunov_trained'] for r in ok], axis=0)
    if not lines:
      lines = [f'Lyapunov exponents of the state per token over the first {ok[0]["lyapunov_steps"]} '
               'test tokens (top, k-th, how many of the top k exceed -0.01), init -> trained:']
    lines.append(f'{model:<12} {length:>4}  top {init[0]:+.4f} -> {trained[0]:+.4f}   '
                 f'k={init.size}: {init[-1]:+.4f} -> {trained[-1]:+.4f}   '
                 f'> -0.01: {int(np.sum(init > -0.01))} -> {int(np.sum(trained > -0.01))}')
  return lines


def _mean_ok(rows: list, pick):
  values = [pick(r) for r in rows if r['status'] == 'ok']
  values = [v for v in values if v is not None]
  return float(np.mean(values)) if values else None


def transformer_depth_table(records: list, fits: dict, collapse: dict, threshold: float) -> str:
  """Per variant: the last block's ln ||dL/dW2_L||^2 slope against ln L (+- its standard error)
  beside the theory; then, at the deepest depth (means over 'ok' seeds), the gradient's fall
  through the stack ln ||dL/dX_0||^2 - ln ||dL/dX_L||^2, the first block's W2 gradient over the
  last one's (Xiong et al.'s imbalance, ln), the first block's ln ||dL/dW_QK||^2, the last rank
  residual, the mean token cosine, and the first layer whose rank residual is below `threshold`
  per seed (- where it never falls below)."""
  variants = list(dict.fromkeys(r['variant'] for r in records))
  deepest = max(r['depth'] for r in records)
  width = max(len(v) for v in variants + ['variant'])
  fmt = lambda v, spec: '-' if v is None else format(v, spec)
  lines = [f'Last block ||dL/dW2_L||^2 ~ L^slope over depths '
           f'{", ".join(str(d) for d in sorted({r["depth"] for r in records}))} '
           f'(theory: Xiong et al. 2020, 0 post-LN, -1 pre-LN); per layer at L={deepest}:',
           f'{"variant":<{width}} {"slope":>7} {"+-":>5} {"theory":>6}  {"ln g0/gL":>9} '
           f'{"ln W2_1/L":>9} {"ln QK_1":>8} {"rank_L":>8} {"cos_L":>6}  '
           f'{"collapse<" + format(threshold, "g"):>14}   not ok']
  for v in variants:
    fit = fits.get(v)
    rows = [r for r in records if r['variant'] == v and r['depth'] == deepest]
    fall = _mean_ok(rows, lambda r: None if None in (r['log_grad_sq'][0], r['log_grad_sq'][-1])
                    else r['log_grad_sq'][0] - r['log_grad_sq'][-1])
    w2 = _mean_ok(rows, lambda r: None if not r['log_weight_grad_sq']
                  or None in (r['log_weight_grad_sq'][0], r['log_weight_grad_sq'][-1])
                  else r['log_weight_grad_sq'][0] - r['log_weight_grad_sq'][-1])
    layers = collapse.get((v, deepest), [])
    bad = sorted({f'{r["status"]}@L={r["depth"]}' for r in records
                  if r['variant'] == v and r['status'] != 'ok'})
    lines.append(
        f'{v:<{width}} {fmt(fit and fit["slope"], "+7.3f"):>7} '
        f'{fmt(fit and fit["stderr"], "5.3f"):>5} '
        f'{fmt(fit and fit["theory"], "+6.0f"):>6}  {fmt(fall, "+9.2f"):>9} {fmt(w2, "+9.2f"):>9} '
        f'{fmt(_mean_ok(rows, lambda r: r["log_qk_grad_sq"][0]), "8.2f"):>8} '
        f'{fmt(_mean_ok(rows, lambda r: r["rank_residual"][-1]), "8.2g"):>8} '
        f'{fmt(_mean_ok(rows, lambda r: r["token_cosine"][-1]), "6.3f"):>6}  '
        f'{",".join("-" if l is None else str(l) for l in layers):>14}   {", ".join(bad) or "-"}')
  lines.append('ln g0/gL: ln ||dL/dX_0||^2 - ln ||dL/dX_L||^2; ln W2_1/L: the same for block 1 '
               "and block L's W2; ln QK_1: block 1's ln ||dL/dW_Q,K||^2; collapse: per seed, the "
               'first layer whose rank residual is below the threshold')
  return '\n'.join(lines)


def logs_of(record: dict, field: str = 'exponents') -> np.ndarray:
  """A record's list of logs (a Lyapunov record's exponents, a depth_decay record's log_sv) as
  floats: JSON's null (an 'ok' record's only non-finite value) is -inf, a direction sent to
  zero (a relu unit that is off) or below the float resolution."""
  return np.asarray([-np.inf if v is None else v for v in record[field]], np.float64)


def lyapunov_lines(records: list) -> str:
  """Per (cell, sigma_w2, sigma_b2), means over 'ok' seeds: the top exponent (+- std over
  seeds) beside half the gradient's decay rate and the theory's; the median and bottom exponent
  (theory beside the median); how many directions keep more than e^-1 of their length over 100
  steps (lambda > -0.01); statuses other than 'ok'."""
  groups = collections.defaultdict(list)
  for r in records:
    groups[r['cell'], r['sigma_w2'], r['sigma_b2']].append(r)
  width = max(len(cell) for cell, _, _ in groups)
  head = (f'{"":<{width}} {"sigma_w2":>8} {"sigma_b2":>8} {"top":>8} {"+-":>6} {"rate/2":>8} '
          f'{"theory":>8} {"median":>8} {"theory":>8} {"bottom":>8} {"> -0.01":>8}   not ok')
  lines = ["Lyapunov exponents per step (nats), means over seeds; rate/2: half the gradient's "
           'decay rate (same networks); theory: free probability (tanh):', head]

  def fmt(value, spec='>8.4f', size=8):
    return f'{"-":>{size}}' if value is None else f'{value:{spec}}'

  for (cell, w, b), rows in groups.items():
    ok = [r for r in rows if r['status'] == 'ok']
    mean = np.mean([logs_of(r) for r in ok], axis=0) if ok else None
    top = [r['top_exponent'] for r in ok]
    halves = [r['half_decay_rate'] for r in ok if r['half_decay_rate'] is not None]
    curve = next((r['theory_exponents'] for r in rows if r['theory_exponents']), None)
    mid = None if mean is None else mean.size // 2
    bad = sorted({r['status'] for r in rows if r['status'] != 'ok'})
    scale = ' '.join(fmt(v, '>8g') for v in (w, b))
    cols = [fmt(np.mean(top) if top else None), fmt(np.std(top) if top else None, '>6.4f', 6),
            fmt(np.mean(halves) if halves else None), fmt(curve[0] if curve else None),
            fmt(None if mean is None else mean[mid]),
            fmt(curve[mid] if curve and mid < len(curve) else None),
            fmt(None if mean is None else mean[-1]),
            fmt(None if mean is None else int(np.sum(mean > -0.01)), '>8d')]
    lines.append(f'{cell:<{width}} {scale} ' + ' '.join(cols) + '   ' + (', '.join(bad) or '-'))
  return '\n'.join(lines)


def jacobian_lines(records: list, panel) -> str:
  """Per (panel, sigma_w2, sigma_b2, depth), means over seeds with a finite spectrum: ln E[s^2]
  and Var[s^2] / E[s^2]^2 of the input-output Jacobian's squared singular values, each beside
  free probability's."""
  groups = collections.defaultdict(list)
  for r in records:
    if r.get('log_sv_sq_mean') is not None:
      groups[panel(r), r['sigma_w2'], r['sigma_b2'], r['depth']].append(r)
  if not groups:
    return ''
  width = max(len(name) for name, _, _, _ in groups)
  lines = ["Input-output Jacobian's squared singular values s^2 (first example; means over seeds; "
           'theory: free probability):',
           f'{"":<{width}} {"sigma_w2":>8} {"sigma_b2":>8} {"L":>5} {"ln E[s^2]":>10} '
           f'{"theory":>8} {"Var/E^2":>9} {"theory":>8}']

  def fmt(value, spec):
    return '-' if value is None else f'{value:{spec}}'

  for (name, w, b, depth), rows in sorted(groups.items()):
    lines.append(
        f'{name:<{width}} {w:>8g} {b:>8g} {depth:>5d} '
        f'{fmt(np.mean([r["log_sv_sq_mean"] for r in rows]), ".3f"):>10} '
        f'{fmt(rows[0]["theory_log_sv_sq_mean"], ".3f"):>8} '
        f'{fmt(np.mean([r["sv_sq_norm_var"] for r in rows]), ".3g"):>9} '
        f'{fmt(rows[0]["theory_sv_sq_norm_var"], ".3g"):>8}')
  return '\n'.join(lines)
