"""A preset (`max` unless a change names another) against itself with one change, over 3
seeds, under a rule written before the run.

    python benchmarks/bench_max_change.py columns        # LeNet-5 / MNIST, seeds 0 1 2
    python benchmarks/bench_max_change.py retrain --seeds 0   # one seed: a direction only
    python benchmarks/bench_max_change.py columns --quick --out-dir DIR  # tiny smoke run

Each run newly made (not one reused from a record) also records ``figures``
(``_paper.scores``, since 2026-12-05): validation loss, KL from and agreement with the dense
model, test loss, and test accuracy on even and odd images, so that a rule may decide on a
continuous figure once `bench_criteria` says which one follows test.

Changes (``CHANGES``), each written to a section of its own:

* ``columns`` (section ``column_sparsity``): fc1's whole rows and columns in shares of their
  own, rows 85 % and columns 50 %. `max` prunes 70 % of LeNet-5 fc1's rows (hidden units) and
  70 % of its columns (inputs, the flattened conv2 maps) whole, so its table's live grid is
  150 x 240. A one-seed probe (validation, stopped after clustering) found the columns dearer
  than the rows: rows 85 %, columns 50 % (75 x 400, 17 % smaller) pruned and clustered as well
  as `max` (99.16 / 99.04 % against 99.04 / 99.00 %), rows 50 %, columns 85 % worse. Fewer live
  positions make fewer false positives at the same t and kept weights.
* ``retrain`` (section ``retrain_epochs``): 12 epochs of retraining after each layer whose
  table leaves false positives instead of 6. Only fc1's table is lossy in `max`; after it the
  model is 0.00-0.12 points below the clustered one on validation (the `paper` table's
  stages), and those 6 epochs are 6 of a run's 108.
* ``veto`` (section ``veto_share``): fc1's veto cancels the costliest 75 % of its table's
  false positives instead of half. At r=1, t=4 the table reads about 4,070 false positives;
  half vetoed leaves about 1,020 (the unvetoed half passes the veto's bit half the time), 75 %
  leaves about 510, for one more bit per extra veto: about 127 bytes (the `t_tolerance`
  section's quarter and half vetoes differ by exactly that). Estimated from those rows: fc1
  about 620x and 1.52x DC-best, the model about 432x and 1.31x, so the size targets hold with
  little to spare. The table is where `max`'s test accuracy falls below the clustered
  model's (99.09 % clustered, 98.97 % final, 3 seeds); going from a quarter to half vetoed
  gained 0.08 on validation.
  **Adopted on 2026-12-05** (the rule passed over 3 seeds): `max`'s veto is 0.75 now, so
  this change would compare `max` with itself and is refused.
* ``distill`` (section ``distill_weight``): distillation from the dense model weighted 0.9
  instead of 0.5 in every training stage. What keeps `max` outside iso-accuracy on LeNet-5
  is pruning and clustering, and it shows on test only: on the `veto_share` dense models
  the clustered weights lose 0.35 points on test but 0.06 on validation (which shares
  MNIST's training writers; the test split's are others). A heavier pull towards the dense
  model's outputs is the one knob that trains the compressed model to behave like the dense
  one beyond the labels; if it helps, validation should show at least a little of it.
  Sizes should not move beyond noise (the same levels, t and veto). Written 2026-12-05
  before any seed ran.
* ``recluster`` (section ``recluster_from``): the layers fc1's table releases (conv2, fc2
  and conv1, each stored as Deep Compression) clustered again from their first clustering's
  centroids (``recluster_from="previous"``) instead of afresh. In the `veto_share` runs of
  `max` these three cost 101-107 bytes more than Deep Compression of their first clustering
  (seed 0: conv2 845 bytes against 780, fc2 362 against 336, conv1 183 against 173): that
  clustering leaves 2 of their 8 codes unused (pruning leaves no weight near zero, the
  `cluster_init` section), k-means started afresh on the retrained weights fills them, and
  the codes' entropy rises. Started where the first clustering ended, they should cost about
  the baseline's bytes again: about 3,870 bytes instead of 3,976, the model about 445x and
  1.34x DC-best instead of 433x and 1.31x. It is made to save bytes, so its rule asks for
  no loss instead of a gain: `max` takes it if (a) its mean final validation accuracy is not
  below `max`'s (to the hundredth, as printed), (b) and (c) as below, and (d) the whole
  model is smaller on the mean. Written 2026-12-05 before any seed ran.
* ``used`` (section ``recluster_used``): as ``recluster``, but the second k-means starts
  from only those first centroids whose codes held weights, the codebook padded with unused
  entries (``recluster_from="used"``), so conv2, fc2 and conv1 keep at most the codes they
  had. ``recluster``'s seed 0 (stopped there) left conv2 at 845 bytes against 780 for its
  first clustering: started from all the first centroids, the retrained weights still fill
  the codes that clustering left empty. The same rule as ``recluster`` (no loss on
  validation, a smaller model). Written 2026-12-05 before any seed ran.
  **Adopted on 2026-12-05** (the rule passed over 3 seeds): `max` re-clusters this way now,
  so this change would compare `max` with itself and is refused.
* ``conv`` (section ``middle_class``): tensors of 10,000-99,999 elements (LeNet-5's conv2,
  LeNet-300-100's fc2) keep 4 % of their weights instead of 3 %. On test, pruning is where
  LeNet-5's points go (`distill_weight` seed 0: 99.26 % dense, 98.99 % pruned), and conv2
  is pruned furthest after fc1: 750 of 25,000 weights, 15 of each filter's 500 inputs, where
  Deep Compression kept 8 %. Both Weightless and Deep Compression-best store conv2 as Deep
  Compression, so its 250 extra weights (about 210 bytes) are added to both sides: the model
  stays about 1.32x DC-best if ``recluster`` has saved its bytes, and falls to about 1.29x,
  under the 1.3x target, if it has not, so it is run only after ``recluster`` (or ``used``)
  is adopted.
  The usual rule (below). Written 2026-12-05 before any seed ran. Measured the same day and
  stopped after 2 seeds: seed 0 fell 0.22 on validation, past what (b) allows.
* ``stem`` (section ``stem_layer``): tensors under 1,000 elements (LeNet-5's conv1, 20 filters
  of 5 x 5) keep all their weights instead of half. Pruning is where LeNet-5's test points
  go (`recluster_used`: 99.29 % dense, 99.01 % pruned) and neither a denser conv2 (`conv`) nor
  heavier distillation (`distill`) moved the pruned model on test. conv1 is the one layer every
  feature passes through, and its half is the `_SMALL` rule's guard against emptying whole
  filters, never a measured level; unpruned it costs few bytes, because a dense layer needs no
  index: about 500 codes of under 3 bits plus a one-bit gap each, roughly 270 bytes against
  174, about 100 bytes on both sides (the model about 430x and 1.32x DC-best, inside the
  room `used` made). The usual rule (below). Written 2026-12-05 before any seed ran.
  Measured the same day and stopped after seed 0: the pruned model scored the same on
  test (99.06 % against 99.07 %), so its premise failed (validation -0.06 after the table).
* ``logits`` (section ``small_class``): tensors of 1,000-9,999 elements (LeNet-5's fc2, the
  logits layer; LeNet-300-100's fc3) keep 10 % of their weights instead of 7 %. LeNet-5's
  fc2 has 10 x 500 weights, but fc1 prunes 70 % of its hidden units whole, so fc2 reads 150
  live inputs and each class is decided by about 35 of them (Deep Compression kept 19 % of
  fc2). Like conv1 (``stem``), it is a small layer where accuracy is cheap in bytes:
  150 more weights, about 150 bytes on both sides (the model about 425x and 1.32x DC-best).
  The usual rule (below), against `max` as it is when it runs. Written 2026-12-05 before any
  seed ran.
  Measured the same day and stopped after seed 0: validation -0.12 after the table, past
  what (b) allows; the pruned model scored 99.03 % on test against 99.07 %.
* ``steps`` (section ``prune_schedule``): 20 pruning steps of 3 epochs instead of 10 of 6,
  the same 60 epochs. Pruning is where LeNet-5's test points go (on this machine's seed 0,
  `stem_layer`: 99.27 % dense, 99.07 % pruned, 99.05 % final), and two guesses at which
  layer is pruned too far (conv1 unpruned, fc2 at 10 %) left the pruned model's test score
  where it was. How far each cut goes may matter more than where: the cubic schedule's
  steps cut fc1 from 27 % pruned to 48 %, 65 % and 78 % in its first four, each followed by
  6 epochs at a learning rate that restarts from 1e-3; half-size cuts, each recovered at once,
  are what gradual pruning is for (Zhu and Gupta, 2017). It costs no bytes and no time. The
  usual rule (below). Written 2026-12-05 before any seed ran.
  Measured the same day and stopped after seed 0: validation -0.14 after the table, and
  worse at every stage on both splits (pruned test 98.97 % against 99.07 %).
* ``coarse`` (section ``prune_recovery``): 5 pruning steps of 12 epochs instead of 10 of 6,
  the same 60 epochs. ``steps`` went the other way (20 of 3) and was worse at every stage on
  both splits (seed 0: pruned 98.96 % against 99.04 % on validation, 98.97 % against 99.07 %
  on test): how long each cut is recovered from mattered more than how small it was, so
  twice the recovery for twice the cut is the next point. The cubic schedule's first cut
  takes fc1 to 48 % pruned, the last from 98.4 % to 99.2 %. Costs no bytes and no time. The
  usual rule (below), and run over all 3 seeds whatever seed 0 shows, so that `max`'s runs
  of seeds 1 and 2 are recorded on this machine (AMD EPYC; its dense models differ from the
  `paper` table's). Written 2026-12-05 before any seed ran.
  Added before seed 0 ended: the schedule is global, so if LeNet-5's rule passes, `max`
  takes it only if LeNet-300-100's `paper` table rows, run with it, keep each pair's mean
  validation drop from dense within 0.10 of `max`'s (the 2026-12-04 longer-schedule rule).
  Measured the same day and stopped after seed 1: seed 1 fell 0.14 on validation (seed 0
  +0.06), past what (b) allows; test lower on both seeds (99.00 / 98.95 % against 99.05 /
  99.13 %).

* ``head`` (section ``small_head``, **LeNet-300-100 on MNIST and Fashion-MNIST**): tensors
  under 2,000 elements keep half their weights (the ``_SMALL`` rule), where `max` prunes those
  of 1,000-1,999 elements to 7 %: the class from 1,000 elements starts at 2,000 instead.
  LeNet-300-100's fc3 (10 x 100, its logits) is the one tensor of the benchmark models it
  touches: 70 weights, 7 per class, where Deep Compression kept 26 %. On Fashion-MNIST `max`
  loses 1.74 points on test (the `paper` table), all of it in pruning (seed 0: 89.76 % dense,
  88.02 % pruned on validation). A one-seed probe on Fashion-MNIST (validation, seed 0, this
  change's reason, not its evidence) moved each layer's share alone: fc1 at 3 % instead of 2 %
  +0.18, fc2 at 6 % +0.32 (10 %: +0.28), fc3 at 25 % +0.60 and at 50 % +0.56; longer stages
  (24 epochs each) -1.18, stages of 3 epochs -0.18, a learning rate of 3e-4 -0.22 and
  1e-4 -1.80, fc1 without whole units +0.16. fc3 is where accuracy
  is cheapest in bytes: about 430 more weights, some 220 bytes on a model of about 5,770 (4 %).
  Its own rule, since LeNet-5's size targets do not apply (written 2026-12-05 before any seed
  ran): `max` takes it if on **each** of the two pairs, over seeds 0, 1 and 2, (a) the mean
  final validation accuracy is above `max`'s, (b) no seed's is more than 0.10 points below
  its `max` run, and (c) the whole model grows by at most 5 % (mean weights-only bytes).
  LeNet-5's layers are untouched (its smallest encoded tensor, conv1, has 500 elements and
  fc2 5,000; ``tests/core/test_benchmark_parts.py`` checks every plan).
  **Adopted on 2026-12-05** (the rule passed on both pairs: validation +0.31 on MNIST and
  +0.26 on Fashion-MNIST, worst seed +0.14 and -0.02, the model 1.042x the bytes on both):
  `max`'s class from 1,000 elements starts at 2,000 now, so this change would compare `max`
  with itself and is refused.

* ``thin`` (section ``thin_first_layer``, **LeNet-300-100 on MNIST and Fashion-MNIST**):
  tensors of 100,000-299,999 elements (LeNet-300-100's fc1, 300 x 784) keep 1.5 % of their
  weights instead of 2 %. It is made for fc1's ratio target on MNIST (>= 250x; 203.0x in
  `small_head`): fc1 is stored as Deep Compression at about 8 bits per kept weight, so 250x
  (3,763 bytes) needs about 1.5 % kept (3,528 weights); on Fashion-MNIST it would lift fc1
  past 200x (198.5x now). It spends accuracy that ``head`` bought (MNIST: validation +0.31,
  test 98.20 % against dense 98.23 %). A rule for a change that trades accuracy for bytes,
  written 2026-12-05 before any seed ran, with `max` as it is now (``head`` adopted): `max`
  takes it if over seeds 0, 1 and 2 on LeNet-300-100 / MNIST (a) the mean final validation
  accuracy is no more than 0.10 below `max`'s, (b) no seed's is more than 0.25 below its
  `max` run, (c) fc1's mean ratio is >= 250x; and on LeNet-300-100 / Fashion-MNIST (d) the
  mean final validation accuracy is no more than 0.20 below `max`'s. Test is scored only.
  Measured the same day and stopped after the MNIST pair (its rule could no longer pass):
  validation -0.40 (-0.52 / -0.48 / -0.20 by seed) for fc1 at 257.9x.

* ``thin-1.75`` (section ``first_layer_175``, **LeNet-300-100 on MNIST and Fashion-MNIST**):
  tensors of 100,000-299,999 elements (LeNet-300-100's fc1) keep 1.75 % of their weights
  instead of 2 %. Since ``thin`` ran, fc1 is context-coded (kind 7, 6.86 bits per kept weight
  in the `paper` table, where ``thin`` assumed Deep Compression's 8): 250x (3,763 bytes) now
  needs about 1.8 % kept, and 1.75 % (4,116 weights at about 7.05 bits) is estimated at about
  260x. `max` is "the smallest weights within the iso-accuracy rule on the validation split"
  (``weightless_core.config.presets``); ``thin``'s rule asked instead for no more than 0.10
  below `max` itself, whose final validation on MNIST is 0.16 *above* the dense models'
  (98.44 % against 98.28 %). This rule judges against the dense model, as iso-accuracy does,
  with half the 0.3-point allowance held back for validation's optimism (on `max`'s MNIST runs
  validation says +0.16 where test says -0.03). Written 2026-12-06 before any seed ran, and
  after ``thin``'s: its test scores (97.99 %, within 0.3 of dense) were seen, which is why the
  level is a new one, not 1.5 % again (``thin`` is 0.24 under dense on validation, so this
  rule would refuse it too). `max` takes it if over seeds 0, 1 and 2 on LeNet-300-100 / MNIST
  (a) the mean final validation accuracy is at most 0.15 below the dense models' mean, (b) no
  seed's is more than 0.30 below its dense model's, (c) fc1's mean ratio is >= 250x; and on
  LeNet-300-100 / Fashion-MNIST (d) the mean final validation accuracy is no more than 0.20
  below `max`'s (``thin``'s (d): Fashion-MNIST misses iso-accuracy by 1.6 points at any level
  near 2 %, so MNIST's target may not be bought with more than that there). Test is scored
  only.
  **Adopted on 2026-12-06** (the rule passed on both pairs: MNIST +0.03 from dense on
  validation, worst seed -0.08, fc1 258.8x; Fashion-MNIST +0.03 on `max`'s): `max`'s class
  from 100,000 elements keeps 1.75 % now, so this change would compare `max` with itself and
  is refused.

* ``default-small`` (section ``default_small_tensors``, **the `default` preset**, on all three
  pairs): `default` treats small tensors and released layers as `max` does. (1) It encodes
  tensors from 400 elements (``min_elements``, `max`'s value) instead of 1,000: LeNet-5's conv1
  (20 x 1 x 5 x 5, 500 weights), which `default` stores as plain float32, 2,057 of its 7,430
  bytes (28 %) in the `paper` table, where `max` stores it in about 175 at half kept (the
  `_SMALL` rule, already in `default`'s rules but never reached). Estimated: the demo's model
  from about 232x to about 310x, and 1.18x to about 1.24x Deep Compression-best (which stores
  conv1 plainly too now). (2) Tensors under 2,000 elements keep half (``head``, `max`'s eighth
  change), where `default` prunes those of 1,000-1,999 elements (LeNet-300-100's fc3, 10 x 100,
  its logits) to 10 %: 100 weights, 10 per class. `default` loses 1.65 points on MNIST and 3.97
  on Fashion-MNIST against the dense models in the `paper` table (test), and the same layer at 7
  % cost `max` about 0.3 on validation (``head``: +0.31 and +0.26). (3) The layers released
  after another layer is stored re-cluster to the codes they used (``recluster_from="used"``,
  `max`'s seventh change, which saved `max` 66 bytes with no loss on validation): in the `paper`
  table `default`'s released layers cost up to 91 bytes more than Deep Compression of their
  first clustering (LeNet-300-100 / Fashion-MNIST's fc2), so that `default` there is 0.99x Deep
  Compression-best, against the promise that it never is larger. (1) and (2) touch disjoint
  benchmark tensors (LeNet-5 has none of 1,000-1,999 elements, LeNet-300-100 none under 1,000
  that is encoded); (3) touches every pair. The rule, per pair over seeds 0, 1 and 2 against
  `default` (written 2026-12-05 before any seed ran): on LeNet-5 / MNIST, a change made to save
  bytes: (a) mean final validation accuracy at most 0.05 below `default`'s, (b) no seed more
  than 0.10 below its `default` run, (c) the whole model smaller (mean weights-only bytes); on
  each LeNet-300-100 pair (``head``'s rule): (a) mean final validation above `default`'s, (b) as
  above, (c) the whole model at most 5 % larger. `default` takes the change only if every pair
  passes. Whether `default` ends no larger than Deep Compression-best is reported, not ruled on.
  Both arms run on this machine (the `paper` table's `default` rows are an Intel Xeon's).
  Measured the same day and stopped after LeNet-5 (its rule needed every pair): validation
  -0.23 (worst seed -0.36) for the demo's model at 312.3x and 1.26x.

* ``default-head`` (section ``default_small_head``, **the `default` preset**, on LeNet-300-100 /
  MNIST and Fashion-MNIST): `max`'s eighth change (``head``) made to `default`: tensors under
  2,000 elements keep half, where `default` prunes those of 1,000-1,999 elements
  (LeNet-300-100's fc3, 10 x 100, its logits) to 10 %: 100 weights, 10 per class. In the `paper`
  table `default` loses 1.65 points on MNIST and 3.97 on Fashion-MNIST against the dense models
  (test), and the same layer at 7 % cost `max` about 0.3 on validation (``head``: +0.31 and
  +0.26 when it kept half). No LeNet-5 tensor is in the range, so the demo's model is untouched.
  ``head``'s rule, against `default` (first written 2026-12-05 before any seed ran, then folded
  into ``default-small``, and taken up again alone after ``default-small`` failed on LeNet-5,
  before any LeNet-300-100 seed of either had run): `default` takes it if on **each** of the two
  pairs, over seeds 0, 1 and 2, (a) the mean final validation accuracy is above `default`'s, (b)
  no seed's is more than 0.10 points below its `default` run, and (c) the whole model grows by
  at most 5 % (mean weights-only bytes). Both arms run on this machine (the `paper` table's
  `default` rows are an Intel Xeon's).
  Measured the same day: Fashion-MNIST passed (+1.17, 1.020x the bytes), MNIST did not on
  its bytes (+0.43, but 1.067x), so `default` keeps its 10 %; ``default-quarter`` came next.

* ``default-stem`` (section ``default_stem_layer``, **the `default` preset**, LeNet-5 / MNIST):
  `default` encodes tensors from 400 elements (`max`'s ``min_elements``) and keeps all the
  weights of those under 1,000 (LeNet-5's conv1, 500 weights), so conv1 is clustered (8 values)
  and stored as Deep Compression, not as 2,057 bytes of float32, 28 % of the demo's model.
  ``default-small`` encoded it at half kept along with two other changes and lost 0.23 on
  validation (98.73 % against 98.86 % already after clustering); `max`'s ``stem`` run found
  conv1 unpruned no worse than at half on the pruned model, and unpruned it costs about 270
  bytes instead of 175: the model about 5,640 bytes instead of 7,430 (about 305x instead of
  232x), Deep Compression-best about 1.25x instead of 1.19x. The rule, a change made to save
  bytes (written 2026-12-05 before any seed ran): `default` takes it if over seeds 0, 1 and 2
  (a) the mean final validation accuracy is at most 0.05 below `default`'s, (b) no seed's is
  more than 0.10 below its `default` run, and (c) the whole model is smaller (mean weights-only
  bytes).
  Measured the same day: validation -0.20 (worst seed -0.24) for 303.8x and 1.24x; not taken.

* ``default-quarter`` (section ``default_quarter_head``, **the `default` preset**, on
  LeNet-300-100 / MNIST and Fashion-MNIST): tensors of 1,000-1,999 elements (LeNet-300-100's
  fc3, its logits) keep a quarter of their weights instead of 10 %; 2,000-9,999 keep 10 % as
  before (LeNet-5's fc2 untouched). ``default-head`` (half kept) gained +0.43 on MNIST and +1.17
  on Fashion-MNIST on validation, every seed up, but MNIST's model grew 6.7 % (fc3 +211 bytes,
  fc1 +230, fc2 +73), past its rule's 5 %. A quarter kept costs fc3 about half those bytes, and
  the one-seed probe behind ``head`` (`max`, Fashion-MNIST) found fc3 at 25 % no worse than at
  50 % (+0.60 against +0.56). Chosen after ``default-head``'s runs, on the same seeds and dense
  models, and on validation only. The same rule as ``default-head`` (written 2026-12-05 before
  any seed ran): `default` takes it if on **each** of the two pairs, over seeds 0, 1 and 2, (a)
  the mean final validation accuracy is above `default`'s, (b) no seed's is more than 0.10
  points below its `default` run, and (c) the whole model grows by at most 5 % (mean
  weights-only bytes).
  **Adopted on 2026-12-05** (the rule passed on both pairs: validation +0.25 on MNIST and
  +0.93 on Fashion-MNIST, worst seed +0.10 and +0.70, the model 1.040x and 1.012x the bytes):
  `default`'s class from 1,000 elements keeps a quarter and its 10 % class starts at 2,000,
  so this change would compare `default` with itself and is refused.

* ``default-used`` (section ``default_recluster_used``, **the `default` preset**, on all three
  pairs): the layers released after another layer is stored re-cluster to the codes they used
  (``recluster_from="used"``, `max`'s seventh change) instead of from scratch. `default` claims
  never to be larger than Deep Compression-best on the same weights, and on LeNet-300-100 /
  Fashion-MNIST it is 0.99x (`paper`, `default_small_head`, `default_quarter_head`): fc2,
  clustered again after fc1, costs up to 91 bytes more than Deep Compression of its first
  clustering, which is what the baseline stores. In `max` the same change brought each released
  layer to within 1-29 bytes of it and saved 66 bytes with no loss on validation.
  ``default-small`` carried it with two other parts and lost 0.23 on LeNet-5's validation, a
  loss its reading could not attribute; alone, this measures it. A change made to save bytes,
  its rule per pair over seeds 0, 1 and 2 against `default` (written 2026-12-05 before any seed
  ran): (a) mean final validation accuracy at most 0.05 below `default`'s, (b) no seed more than
  0.10 below its `default` run, (c) the whole model smaller (mean weights-only bytes); `default`
  takes it only if every pair passes. Whether `default` then is no larger than Deep
  Compression-best is reported, not ruled on. `default`'s arm is reused where recorded
  (`default_small_tensors` and `default_stem_layer` on LeNet-5, `default_quarter_head` on
  LeNet-300-100: `default` as it is now, from the same dense models).
  Measured the same day: LeNet-5 and Fashion-MNIST passed, MNIST did not (23 bytes larger:
  from scratch its fc2 had landed under the baseline); not taken.

* ``default-counts`` (section ``default_recluster_counts``, **the `default` preset**, on all
  three pairs): the layers released after another layer is stored cluster again to their first
  clustering's code counts (``recluster_from="counts"``): no second k-means; the retrained
  weights, sorted, fill each code with as many weights as it held before, so the codes'
  histogram and the mask are the baseline's, and a released layer stored as Deep Compression
  costs exactly the bytes the baseline paid for it. With hybrid storage (a table only where it
  is smaller than Deep Compression of the same clustered weights) `default` is then never larger
  than Deep Compression-best, by construction (``tests/core/test_pipeline.py``), which is the
  promise `default` makes and breaks on LeNet-300-100 / Fashion-MNIST (0.99x in `paper`,
  `default_quarter_head`). ``default-used`` kept the released layers to the codes they used:
  it fixed that pair but left MNIST 23 bytes larger, since from scratch its fc2 had landed
  under the baseline, which no construction promises. Here the released layers lose the
  freedom k-means had to move codes' boundaries, for a fixed cost: what the baseline paid. A
  change made to keep a promise, not to gain or save, so its rule asks for no loss and the
  promise kept (written 2026-12-05 before any seed ran): per pair over seeds 0, 1 and 2
  against `default`, (a) the mean final validation accuracy at most 0.05 below `default`'s,
  (b) no seed's more than 0.10 below its `default` run, (c) every seed's whole model no
  larger than its Deep Compression-best (weights-only bytes); `default` takes it only if
  every pair passes. The bytes against `default`'s are reported, not ruled on: where its
  released layers landed under the baseline, this gives those bytes back. Both arms run on
  this machine (an Intel Xeon, as the `paper` table's), `default`'s reused where its recorded
  run is `default` as it is now from the same dense model.
  Measured the same day: LeNet-5 passed (+0.04), LeNet-300-100 did not (MNIST -0.09, worst
  seed -0.16; Fashion-MNIST -0.17, worst -0.20), though every seed kept the promise; not taken.

* ``default-capped`` (section ``default_recluster_capped``, **the `default` preset**, on all
  three pairs): released layers cluster again from scratch, as `default` does, but capped at
  the baseline's bytes (``recluster_from="capped"``): where Deep Compression would store the
  new clustering in more bits than the first one, the layer takes whichever of two clusterings
  that fit lies nearer its retrained weights (least squared error): the first clustering's code
  counts (``default-counts``), or entropy-constrained k-means (each code's length in bits,
  weighted, added to the distance) from k-means's own centroids at the least weight that fits,
  found by bisection. Where k-means already fits, nothing changes. ``default-counts`` kept the
  promise by fixing every released layer's code shares and lost 0.09-0.17 on LeNet-300-100's
  validation; `used` (another machine) moved nothing on validation but cost a few bytes over
  the baseline. This keeps k-means's freedom up to the budget. In `default_recluster_counts`'s
  `default` arm, MNIST's fc2 fit in two seeds of three and fc3 in none, Fashion-MNIST's fc2 and
  fc3 in none. Chosen after ``default-counts``'s runs, on the same seeds and dense models,
  validation only. ``default-counts``'s rule (written 2026-12-05 before any seed ran): per pair
  over seeds 0, 1 and 2 against `default`, (a) mean final validation at most 0.05 below
  `default`'s, (b) no seed more than 0.10 below its `default` run, (c) no seed's whole model
  larger than its Deep Compression-best; `default` takes it only if every pair passes.
  `default`'s arms are reused from ``default-counts`` (this machine, the same dense models).
  Measured the same day: no pair passed (LeNet-5 +0.02 but one seed -0.14, MNIST -0.10,
  Fashion-MNIST -0.12), though every seed kept the promise; not taken.

* ``default-stem-shared`` (section ``default_shared_stem``, **the `default` preset**, LeNet-5 /
  MNIST): ``default-stem`` (LeNet-5's conv1, 500 weights, encoded unpruned: clustered to 8
  values and stored as Deep Compression in about 270 bytes instead of 2,057 of float32, 28 %
  of the demo's model) with conv1 kept out of the release after fc1's table
  (``shared_below=1000``: tensors under 1,000 elements keep their codes and train only their
  centroids, where the others retrain freely and cluster again). ``default-stem`` cost 0.20 on
  validation, and its reading placed the loss: pruned and clustered the arms were equal
  (98.79 / 98.87 % against 98.79 / 98.86 %); it came after fc1's table released conv1, the
  layer every feature passes through, to train one epoch freely and cluster again from
  scratch. Kept, conv1 stays the clustering that matched `default`, and costs exactly the
  baseline's bytes. LeNet-300-100 has no tensor under 1,000 elements encoded (fc3 has 1,000),
  so it is untouched (``tests/core/test_benchmark_parts.py``). The rule of a change made to save
  bytes (written 2026-12-05 before any seed ran): `default` takes it if over seeds 0, 1 and 2
  (a) the mean final validation accuracy is at most 0.05 below `default`'s, (b) no seed's is
  more than 0.10 below its `default` run, and (c) the whole model is smaller (mean weights-only
  bytes). `default`'s arm is reused from ``default-counts`` (this machine, the same dense
  models).
  Measured the same day: validation -0.06 (worst seed -0.08), the model 305.0x and 1.24x;
  not taken, by 0.01.

* ``default-stem-16`` (section ``default_shared_stem_16``, **the `default` preset**, LeNet-5 /
  MNIST): ``default-stem-shared`` with the tensors under 1,000 elements clustered to 16 values
  (r=4) instead of 8. Its reading located what was left of its loss: kept out of the release,
  conv1 lost nothing more after fc1's table, but already after clustering (validation 98.75 %
  against 98.83 %), with eight values for the first layer's 500 weights. Sixteen cost about a
  bit more per weight and a 64-byte codebook: conv1 about 350 bytes instead of 250, the demo's
  model about 300x instead of 305x (231.5x now). The third way of encoding conv1 measured on
  the same three seeds and dense models (after ``default-stem`` on another machine and
  ``default-stem-shared`` here), chosen after the second's runs, on validation only; the same
  rule, written 2026-12-05 before any seed of it ran: `default` takes it if over seeds 0, 1
  and 2 (a) the mean final validation accuracy is at most 0.05 below `default`'s, (b) no
  seed's is more than 0.10 below its `default` run, and (c) the whole model is smaller (mean
  weights-only bytes).
  **Adopted on 2026-12-05** (the rule passed: validation -0.03, worst seed -0.10, the model
  5,737 bytes against 7,438, 300.2x and 1.24x Deep Compression-best; test, scored only,
  98.56 % against 98.65 %): `default` encodes tensors from 400 elements, those under 1,000
  unpruned at r=4 and never released, so this change, ``default-stem-shared`` and
  ``default-stem`` would compare `default` with itself and are refused.

* ``kept-stem`` (section ``max_shared_stem``, LeNet-5 / MNIST, `max`): tensors under 1,000
  elements (LeNet-5's conv1, half of its 500 weights kept, r=3) are never released after
  fc1's table (``shared_below=1000``): conv1 keeps its codes and trains only its centroids
  while conv2 and fc2 retrain freely and cluster again. In `default` the release was what
  encoding conv1 cost: released and clustered again from scratch after one epoch it lost 0.20
  on validation (`default_stem_layer`), kept it lost 0.06 (`default_shared_stem`), all of it
  already at clustering. `max` re-clusters its released layers to the codes they used, after
  six epochs, and its conv1 is the first layer every feature passes through; what keeps `max`
  outside iso-accuracy on LeNet-5 (-0.35 on test in `paper`) is a loss the validation split
  barely shows, so this is a direction more than a likely gain. Kept, conv1 costs exactly its
  baseline's bytes (about 173 instead of 174-183). LeNet-300-100 has no encoded tensor under
  1,000 elements, so it is untouched. The usual rule (below), written 2026-12-05 before any
  seed ran; `max`'s arm is its recorded runs (`recluster_used`, the `paper` table's, the same
  dense models on this machine).
  Measured the same day: validation +0.00 (-0.02 / +0.08 / -0.06), test 98.93 % against
  98.94 %, sizes unchanged; not taken.

* ``mixup`` (section ``distill_mixup``, LeNet-5 / MNIST, `max`): every training stage
  distils on inputs mixed in pairs (``distill_mixup=0.4``: each image takes a share in
  [0, 0.4) of another of its batch, the labels are mixed alike, and the distillation target
  is the dense model's output on the mixed image, computed then) instead of on the training
  images alone. What keeps `max` outside iso-accuracy on LeNet-5 (-0.35 on test in `paper`)
  is lost in pruning and shows on the test split (other writers) far more than on validation
  (the training set's writers): the pruned model fits the training images as well as the
  dense one and generalises worse. Heavier distillation on the same images (``distill``) did
  not help; matching the dense model between the images, where the two functions are not yet
  tied, is the one way left to transfer more of the dense model's behaviour without new data
  or labels (function matching, Beyer et al. 2022; the dense model stays the only teacher, so
  no knowledge enters that the uploaded model lacks). 0.4 is chosen, not tuned: a mild mix,
  the other image at most 40 % of the blend. Costs no bytes; a teacher forward pass per step
  (about a quarter more time). The usual rule (below), written 2026-12-05 before any seed
  ran, on this machine (AMD EPYC), whose `max` arm is run or reused where recorded.
  Added while seed 0 ran, before any of its figures: ``distill_mixup`` is global, so if
  LeNet-5's rule passes, `max` takes it only if ``mixup-mlp`` (below) finds each
  LeNet-300-100 pair's mean validation no more than 0.10 below `max`'s.
  Measured the same day and stopped after seed 0: validation -0.10 (98.88 % against
  98.98 %), worse at every stage (pruned -0.20), test 98.73 % against 99.05 %; not taken.
* ``mixup-mlp`` (section ``distill_mixup_mlp``, LeNet-300-100 on MNIST and Fashion-MNIST,
  `max`): ``mixup`` on the other two pairs, run after ``mixup`` (a first start beside it was
  stopped after 26 minutes without one run finished: two processes of 2 threads each on the 2
  CPUs starved each other, and it had no figures yet). Its verdict is the usual
  one for these pairs (``growth_verdict``: a gain on the mean, no seed more than 0.10 below,
  at most 5 % more bytes), and, as ``mixup``'s companion, whether the mean is within 0.10.
  Fashion-MNIST's miss (-1.61 on test) is the larger, and its loss is capacity, not fit
  (docs/presets.md), so a gain there is less likely than on LeNet-5. Written 2026-12-05
  before any seed ran.
  Not run: ``mixup`` was not taken, so this companion had nothing to decide.

* ``layers`` (section ``layer_distill``, LeNet-5 / MNIST, `max`): every training stage also
  matches each compressed layer's output to the dense layer's on the same batch
  (``distill_layers=1.0``: the relative squared error, averaged over conv1, conv2, fc1 and
  fc2, added with weight 1 to the loss). `max`'s test points go in pruning, where the pruned
  network is tied to the dense one at its logits only; ``distill`` (heavier logit matching)
  and ``mixup`` (matching between images) did not help, the second because blending cost the
  small network capacity. Layer-wise matching adds no inputs: it tells each sparse layer what
  its dense self computed on the real images, the signal sparse fine-tuning of large models
  recovers with (oBERT, Kurtic et al. 2022). Weight 1 is chosen, not tuned: on seed 0's
  dense model with conv2 and fc1 cut by magnitude to 30 %, 8 % and 1 % kept (no retraining),
  the layer term is 0.09, 0.45 and 0.70 and the distillation term (T^2 KL) 0.06, 3.5 and 8.7,
  so it adds a pull of the same order without drowning the others. Costs no bytes; a
  teacher pass per step. The usual rule (below), written 2026-12-05 before any seed
  ran, on this machine (AMD EPYC), `max`'s arm reused where recorded. ``distill_layers`` is
  global, so if LeNet-5's rule passes, `max` takes it only if the same change on the
  LeNet-300-100 pairs (run then, under ``mixup-mlp``'s companion rule) finds each pair's mean
  validation no more than 0.10 below `max`'s.
  Measured the same day and stopped after seed 0: validation -0.86 (98.12 % against
  98.98 %), pruned 97.80 % against 99.04 %, test 97.81 % against 99.05 %; not taken.

* ``lr`` (section ``retrain_lr``, LeNet-5 / MNIST, `max`): every training stage peaks at a
  learning rate of 5e-4 instead of 1e-3. The dense model was trained at 1e-3 (cosine, 15
  epochs); `max` then restarts at that peak in each of its 10 pruning stages and again after
  clustering and each table, 78 epochs in all, so the pruned network is in effect trained
  again, not fine-tuned, and may settle far from the dense solution it is meant to keep.
  Deep Compression retrained at a tenth of the original rate. Half is a moderate step
  (LeNet-300-100 on Fashion-MNIST lost 0.22 on one validation seed at 3e-4 and 1.80 at 1e-4,
  a capacity-bound case; regrowth needs some rate to move weights back). Costs no bytes, no
  time. The usual rule (below), written 2026-12-05 before any seed ran, on this machine,
  `max`'s arm reused where recorded; the rate is global, so if LeNet-5's rule passes, `max`
  takes it only if the LeNet-300-100 pairs with it (``lr-mlp``) are each within 0.10 of
  `max`'s mean validation.
  Measured the same day: LeNet-5 passed (validation +0.05, worst seed -0.10; test 99.00 %
  against 99.07 %), its companion did not (Fashion-MNIST -0.24); not taken.
* ``lr-mlp`` (section ``retrain_lr_mlp``): ``lr`` on the LeNet-300-100 pairs, its verdict
  ``companion_verdict`` (as ``mixup-mlp``). Run only if ``lr`` passes. Written 2026-12-05
  before any seed ran.
  Measured the same day: MNIST +0.01 on the mean (within 0.10), Fashion-MNIST -0.24 (not).
* ``shift`` (section ``shifted_inputs``, LeNet-5 / MNIST, `max`): every training stage moves
  each training image by its own random offset of up to 1 pixel along each axis
  (``augment_shift=1``, a fresh offset each step, the edge repeated into what it leaves), and
  distils on the moved image from the dense model's answer on it. `max`'s test points go in
  pruning and show on the test split's writers, not on validation's (the training set's): the
  pruned network fits the training images and generalises worse, and every change made to
  the recipe's fit so far (steps, recovery, distillation, mixing, layer matching, learning
  rate) left the pruned model's test score where it was or lower. Small translations are the
  regulariser classic MNIST results lean on for other writers, and unlike ``mixup`` they keep
  each image a digit. 1 pixel is chosen, not tuned, from what the dense model can teach: on
  seed 0's dense model (99.22 % validation, 99.26 % test) images moved by up to 1 pixel score
  98.74 % and 98.35 %, by up to 2 pixels 94.20 % and 93.88 % (it never saw a moved digit), so
  beyond 1 pixel its answers would teach errors. The dense model was trained without moved
  images; if `max` takes this, the notes say that the compressed model saw them and the
  dense reference did not. Costs no bytes; a dense forward pass per step. The usual rule
  (below), written 2026-12-05 before any seed ran, on this machine (Intel Xeon, as the `paper`
  table's; `max`'s arm reused where recorded). ``augment_shift`` is global, so if LeNet-5's
  rule passes, `max` takes it only if ``shift-mlp`` finds each LeNet-300-100 pair's mean
  validation no more than 0.10 below `max`'s (``companion_verdict``).
  Measured the same day: validation -0.01 (-0.04 / +0.10 / -0.10), fc1 1.498x DC-best (under
  1.5x); not taken. Test, scored only: 99.08 % against 98.94 %, better at every stage.
* ``shift-more`` (section ``shifted_inputs_more``, LeNet-5 / MNIST, run with ``--seeds 3 4``):
  ``shift`` on two more seeds, both arms run here, for one question only: whether ``shift``'s
  test gain (+0.14 over seeds 0-2, scored only) holds on seeds it was not seen on. It decides
  nothing for `max` (the rule above failed on validation and fc1's gain); its verdict line says
  so (fewer than 3 seeds). Written 2026-12-05 after ``shift``'s runs, before these seeds ran.
  Measured the same day: test +0.15 and +0.22 (scored only), validation +0.08 and +0.00.
* ``shift-mlp`` (section ``shifted_inputs_mlp``): ``shift`` on the LeNet-300-100 pairs (their
  inputs are the same 1 x 28 x 28 images), its verdict ``companion_verdict``. Run only if
  ``shift`` passes. Written 2026-12-05 before any seed ran.
  Added after ``shift``'s verdict, before any seed of this ran: run anyway, for what it shows
  on the pair furthest from iso-accuracy (Fashion-MNIST, -1.61 on test), where a fully
  connected first layer has no built-in tolerance of shifts; it decides nothing for `max`
  (``shift`` was not taken), and its verdict line is read as a direction.
  Measured the same day: MNIST -0.06 on validation, Fashion-MNIST -0.94 (test -0.16 and
  -0.91); the models 5-7 % smaller.

The rule, the same for each change but one made to save bytes (above), and written before its
3-seed run: `max` takes the change if over seeds 0, 1 and 2 (a) its mean final validation
accuracy is above `max`'s, (b) no seed's is more than 0.10 points below that seed's `max` one,
and (c) its means still meet LeNet-5's size targets (model >= 382x and >= 1.3x DC-best, fc1 >=
500x and >= 1.5x DC-best). The table prints the verdict. Validation decides; the test split is
scored only.

Each seed runs the change from the same dense model as `max`. `max`'s arm is a recorded run
of that seed, in the `paper` table or in a change's own section (an adopted change's arm is
`max` as it is now), where it is `max` as it is now and started from the same dense model
(``paper_table.reusable``: the same seed, dense validation and test accuracy):
runs are deterministic on this machine (the ``cluster_init`` section's linear arm
reproduced those rows to the last figure), so running it again would only spend 15 minutes a
seed. Otherwise it runs here.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _paper import DENSE_EPOCHS, bench_parser, fresh_model, scores, write_quick
from _results import command_line, record
from bench_cluster_init import TOLERANCE, verdict
from bench_t_tolerance import _mean, size_figures
from bench_veto import cells, seed_start
from paper_table import reusable, summarise

from weightless_core.config.presets import settings_for
from weightless_core.config.settings import CompressionSettings, LayerOverride
from weightless_core.io.data import load_dataset
from weightless_core.method.pipeline import compress

LAYER = "fc1.weight"
REFERENCE = "max"  # the preset a change is measured against unless it names another


def reference(result: dict[str, Any]) -> str:
    """The preset ``result``'s change was measured against (`max` for those before others)."""
    return result.get("reference", REFERENCE)


def split_columns(base: CompressionSettings) -> CompressionSettings:
    """``base`` with fc1's whole-unit shares split: 85 % of its rows, 50 % of its columns."""
    fc1 = LayerOverride(unit_sparsity=0.85, column_sparsity=0.5)
    return base.with_(layers={**base.layers, LAYER: fc1})


def longer_retraining(base: CompressionSettings) -> CompressionSettings:
    """``base`` with 12 epochs of retraining after each lossy layer."""
    return base.with_(retrain_epochs=12)


def more_vetoes(base: CompressionSettings) -> CompressionSettings:
    """``base`` with the costliest 75 % of a table's false positives vetoed."""
    return base.with_(veto=0.75)


def heavier_distillation(base: CompressionSettings) -> CompressionSettings:
    """``base`` with distillation from the dense model weighted 0.9."""
    return base.with_(distill=0.9)


def mixed_inputs(base: CompressionSettings) -> CompressionSettings:
    """``base`` distilling on inputs mixed in pairs, the other's share below 0.4."""
    return base.with_(distill_mixup=0.4)


def matched_layers(base: CompressionSettings) -> CompressionSettings:
    """``base`` matching each compressed layer's output to the dense layer's, weight 1."""
    return base.with_(distill_layers=1.0)


def half_rate(base: CompressionSettings) -> CompressionSettings:
    """``base`` training at a peak learning rate of 5e-4 (half of `max`'s 1e-3)."""
    return base.with_(lr=5e-4)


def shifted_inputs(base: CompressionSettings) -> CompressionSettings:
    """``base`` training on images moved by up to 1 pixel along each axis."""
    return base.with_(augment_shift=1)


def _size_class(
    base: CompressionSettings, min_elements: int, sparsity: float
) -> CompressionSettings:
    """``base`` with its size class from ``min_elements`` elements pruned to ``sparsity``."""
    return _with_rule(base, min_elements, sparsity=sparsity)


def _with_rule(base: CompressionSettings, size: int, /, **fields: Any) -> CompressionSettings:
    """``base`` with ``fields`` set on its size class from ``size`` elements."""
    rules = tuple(
        replace(rule, **fields) if rule.min_elements == size else rule for rule in base.size_rules
    )
    found = any(rule.min_elements == size for rule in base.size_rules)
    assert found, f"the preset has no size class from {size:,} elements"
    return base.with_(size_rules=rules)


def denser_middle_class(base: CompressionSettings) -> CompressionSettings:
    """``base`` with tensors of 10,000-99,999 elements keeping 4 % of their weights."""
    return _size_class(base, 10_000, 0.96)


def unpruned_stem(base: CompressionSettings) -> CompressionSettings:
    """``base`` with tensors under 1,000 elements keeping all their weights."""
    return _size_class(base, 1, 0.0)


def denser_small_class(base: CompressionSettings) -> CompressionSettings:
    """``base`` with its class below 10,000 elements (from 1,000 when measured, from 2,000
    since `head`) keeping 10 % of their weights."""
    return _size_class(base, 2_000, 0.9)


def larger_small_class(base: CompressionSettings) -> CompressionSettings:
    """``base`` with tensors under 2,000 elements keeping half (its 1,000 class from 2,000, or
    dropped where a class from 2,000 exists: `default`'s quarter since `default-quarter`)."""
    starts = {rule.min_elements for rule in base.size_rules}
    if 2_000 in starts and 1_000 not in starts:
        return base  # adopted: `max` is this already
    if 2_000 in starts:
        return base.with_(size_rules=tuple(r for r in base.size_rules if r.min_elements != 1_000))
    return _with_rule(base, 1_000, min_elements=2_000)


def small_tensors_as_in_max(base: CompressionSettings) -> CompressionSettings:
    """``base`` encoding tensors from 400 elements, those under 2,000 keeping half, released
    layers re-clustered to the codes they used (`max`'s values)."""
    return larger_small_class(base.with_(min_elements=400, recluster_from="used"))


def quarter_kept_head(base: CompressionSettings) -> CompressionSettings:
    """``base`` with a class of its own for tensors of 1,000-1,999 elements, keeping a quarter;
    its class from 1,000 elements starts at 2,000 instead."""
    if any(rule.min_elements == 2_000 for rule in base.size_rules):
        return base  # adopted: `default` is this already
    tenth = next(rule for rule in base.size_rules if rule.min_elements == 1_000)
    moved = _with_rule(base, 1_000, min_elements=2_000)
    return moved.with_(size_rules=(*moved.size_rules, replace(tenth, sparsity=0.75)))


def encoded_stem(base: CompressionSettings) -> CompressionSettings:
    """``base`` encoding tensors from 400 elements, those under 1,000 keeping all weights."""
    return unpruned_stem(base.with_(min_elements=400))


def thinner_first_layer(base: CompressionSettings) -> CompressionSettings:
    """``base`` with tensors of 100,000-299,999 elements keeping 1.5 % of their weights."""
    return _size_class(base, 100_000, 0.985)


def first_layer_175(base: CompressionSettings) -> CompressionSettings:
    """``base`` with tensors of 100,000-299,999 elements keeping 1.75 % of their weights."""
    return _size_class(base, 100_000, 0.9825)


def finer_schedule(base: CompressionSettings) -> CompressionSettings:
    """``base`` pruned in twice the steps of half the epochs: the same 60 epochs."""
    return base.with_(prune_steps=20, prune_epochs=3)


def coarser_schedule(base: CompressionSettings) -> CompressionSettings:
    """``base`` pruned in half the steps of twice the epochs: the same 60 epochs."""
    return base.with_(prune_steps=5, prune_epochs=12)


def recluster_from_used(base: CompressionSettings) -> CompressionSettings:
    """``base`` with released layers clustered again from their first used centroids only."""
    return base.with_(recluster_from="used")


def recluster_from_first(base: CompressionSettings) -> CompressionSettings:
    """``base`` with released layers clustered again from their first clustering's centroids."""
    return base.with_(recluster_from="previous")


def recluster_to_counts(base: CompressionSettings) -> CompressionSettings:
    """``base`` with released layers clustered again to their first clustering's code counts."""
    return base.with_(recluster_from="counts")


def shared_stem(base: CompressionSettings) -> CompressionSettings:
    """``encoded_stem``, with tensors under 1,000 elements kept out of a table's release."""
    return encoded_stem(base).with_(shared_below=1_000)


def shared_stem_16(base: CompressionSettings) -> CompressionSettings:
    """``shared_stem``, tensors under 1,000 elements clustered to 16 values (r=4)."""
    return _with_rule(shared_stem(base), 1, r=4)


def kept_stem(base: CompressionSettings) -> CompressionSettings:
    """``base`` with tensors under 1,000 elements never released after a table."""
    return base.with_(shared_below=1_000)


def recluster_capped(base: CompressionSettings) -> CompressionSettings:
    """``base`` with released layers clustered from scratch, capped at the baseline's bytes."""
    return base.with_(recluster_from="capped")


def promise_verdict(result: dict[str, Any], candidate: str) -> str:
    """One pair's verdict for ``default-counts`` or ``default-capped``, changes made to keep
    `default`'s promise:
    (a) mean validation at most 0.05 below `default`'s, (b) no seed more than ``TOLERANCE``
    below, (c) no seed's model larger than its Deep Compression-best (bytes against
    `default`'s reported only)."""
    figures = _gaps_and_bytes(result, candidate)
    if figures is None:
        return pair_verdict(result, candidate, {})
    gaps, mean_gap, ref_bytes, bytes_ = figures
    over = [
        x["weightless"]["weights_bytes"] - x["deep_compression"]["weights_bytes"]
        for x in result["runs"][candidate]
    ]
    parts = {
        f"(a) mean validation {mean_gap:+.2f} (>= -0.05)": mean_gap >= -0.05,
        f"(b) worst seed {min(gaps):+.2f} (>= -{TOLERANCE:.2f})": min(gaps) >= -TOLERANCE,
        f"(c) bytes over Deep Compression-best per seed {over}": max(over) <= 0,
    }
    said = pair_verdict(result, candidate, parts)
    return f"{said} Model {bytes_:.0f} bytes against `{reference(result)}`'s {ref_bytes:.0f}."


def seed_gaps(result: dict[str, Any], candidate: str) -> list[float] | None:
    """Each seed's final validation accuracy of ``candidate`` minus its reference preset's, to
    the hundredth as printed; ``None`` until all 3 seeds have run."""
    ref, cand = result["runs"][reference(result)], result["runs"][candidate]
    if len(cand) < 3 or len(ref) != len(cand):
        return None
    return [
        round(c["weightless"]["val"] - r["weightless"]["val"], 2)
        for r, c in zip(ref, cand, strict=True)
    ]


def pair_verdict(result: dict[str, Any], candidate: str, parts: dict[str, bool]) -> str:
    """A pair's verdict from its rule's named ``parts`` (``None`` parts: too few seeds)."""
    if not parts:
        return f"no verdict: the rule needs 3 seeds, {len(result['runs'][candidate])} run"
    said = "; ".join(f"{k}: {'met' if ok else 'missed'}" for k, ok in parts.items())
    keep = f"keep {reference(result)}'s"
    return f"**{'adopt' if all(parts.values()) else keep}** on this pair: {said}."


ISO_MARGIN = 0.15  # half the iso-accuracy allowance, held back for validation's optimism


def iso_thinning_verdict(result: dict[str, Any], candidate: str) -> str:
    """One pair's verdict for ``thin-1.75``, judged against the dense model as iso-accuracy
    is: on MNIST (a) mean validation at most ``ISO_MARGIN`` below the dense models', (b) no
    seed more than 0.30 below its dense model on validation, (c) fc1 >= 250x (mean); on
    Fashion-MNIST (d) as ``thin``'s."""
    gaps = seed_gaps(result, candidate)
    if gaps is None or result["dataset"] != "mnist":
        return thinning_verdict(result, candidate)
    runs = result["runs"][candidate]
    from_dense = [
        round(run["weightless"]["val"] - dense["val"], 2)
        for run, dense in zip(runs, result["dense"], strict=True)
    ]
    mean = round(_mean(from_dense), 2)
    ratio = size_figures(runs)["ratio"]
    parts = {
        f"(a) mean validation {mean:+.2f} from dense (>= -{ISO_MARGIN:.2f})": mean >= -ISO_MARGIN,
        f"(b) worst seed {min(from_dense):+.2f} from dense (>= -0.30)": min(from_dense) >= -0.30,
        f"(c) fc1 {ratio:.1f}x (>= 250x)": ratio >= 250,
    }
    return pair_verdict(result, candidate, parts)


def thinning_verdict(result: dict[str, Any], candidate: str) -> str:
    """One pair's verdict for ``thin``, a change that trades accuracy for bytes: on MNIST
    (a) mean validation at most 0.10 below `max`'s, (b) no seed more than 0.25 below, (c) fc1
    >= 250x (mean); on Fashion-MNIST (d) mean validation at most 0.20 below `max`'s."""
    gaps = seed_gaps(result, candidate)
    if gaps is None:
        return pair_verdict(result, candidate, {})
    mean_gap = round(_mean(gaps), 2)
    if result["dataset"] != "mnist":
        return pair_verdict(
            result,
            candidate,
            {f"(d) mean validation {mean_gap:+.2f} (>= -0.20)": mean_gap >= -0.20},
        )
    ratio = size_figures(result["runs"][candidate])["ratio"]
    parts = {
        f"(a) mean validation {mean_gap:+.2f} (>= -0.10)": mean_gap >= -0.10,
        f"(b) worst seed {min(gaps):+.2f} (>= -0.25)": min(gaps) >= -0.25,
        f"(c) fc1 {ratio:.1f}x (>= 250x)": ratio >= 250,
    }
    return pair_verdict(result, candidate, parts)


GROWTH = 1.05  # what a LeNet-300-100 change may add to the whole model's bytes (mean)


def small_tensors_verdict(result: dict[str, Any], candidate: str) -> str:
    """One pair's verdict for ``default-small`` and ``default-stem``: ``saving_verdict`` on
    LeNet-5, ``growth_verdict`` on LeNet-300-100."""
    if result["arch"] != "lenet-5":
        return growth_verdict(result, candidate)
    return saving_verdict(result, candidate)


def saving_verdict(result: dict[str, Any], candidate: str) -> str:
    """One pair's verdict for a change to `default` made to save bytes: (a) mean validation at
    most 0.05 below `default`'s, (b) no seed more than ``TOLERANCE`` below, (c) a smaller
    model (mean bytes)."""
    figures = _gaps_and_bytes(result, candidate)
    if figures is None:
        return pair_verdict(result, candidate, {})
    gaps, mean_gap, ref_bytes, bytes_ = figures
    parts = {
        f"(a) mean validation {mean_gap:+.2f} (>= -0.05)": mean_gap >= -0.05,
        f"(b) worst seed {min(gaps):+.2f} (>= -{TOLERANCE:.2f})": min(gaps) >= -TOLERANCE,
        f"(c) model {bytes_:.0f} bytes against {ref_bytes:.0f}": bytes_ < ref_bytes,
    }
    return pair_verdict(result, candidate, parts)


def companion_verdict(result: dict[str, Any], candidate: str) -> str:
    """``growth_verdict``, and whether the mean validation gap is within ``TOLERANCE`` (what
    a change adopted for LeNet-5's sake may cost another pair)."""
    said = growth_verdict(result, candidate)
    figures = _gaps_and_bytes(result, candidate)
    if figures is None:
        return said
    mean_gap = figures[1]
    within = "met" if mean_gap >= -TOLERANCE else "missed"
    return f"{said} Within {TOLERANCE:.2f} on the mean ({mean_gap:+.2f}): {within}."


def _gaps_and_bytes(
    result: dict[str, Any], candidate: str
) -> tuple[list[float], float, float, float] | None:
    """Each seed's validation gap to the reference preset, their mean (to the hundredth), and
    the mean whole-model bytes of the reference and of ``candidate``; ``None`` before 3 seeds."""
    gaps = seed_gaps(result, candidate)
    if gaps is None:
        return None
    ref, cand = (
        _mean([x["weightless"]["weights_bytes"] for x in result["runs"][arm]])
        for arm in (reference(result), candidate)
    )
    return gaps, round(_mean(gaps), 2), ref, cand


def growth_verdict(result: dict[str, Any], candidate: str) -> str:
    """One pair's verdict for a change whose model has no size targets of LeNet-5's kind:
    (a) a gain on mean validation, (b) no seed more than ``TOLERANCE`` below its `max` run,
    (c) the whole model at most ``GROWTH`` times `max`'s bytes (means)."""
    figures = _gaps_and_bytes(result, candidate)
    if figures is None:
        return pair_verdict(result, candidate, {})
    gaps, mean_gap, ref_bytes, bytes_ = figures
    growth = bytes_ / ref_bytes
    parts = {
        f"(a) mean validation {mean_gap:+.2f}": mean_gap > 0,
        f"(b) worst seed {min(gaps):+.2f} (>= -{TOLERANCE:.2f})": min(gaps) >= -TOLERANCE,
        f"(c) model {bytes_:.0f} bytes against {ref_bytes:.0f} "
        f"({growth:.3f}x, <= {GROWTH:.2f}x)": growth <= GROWTH,
    }
    return pair_verdict(result, candidate, parts)


@dataclass(frozen=True)
class Change:
    """One change to a preset (``preset``, `max` unless named): its row name, how it changes
    settings, its section and title; ``smaller`` for a change made to save bytes (its rule: no
    loss, and a smaller model); ``pairs`` the (model, data) it runs on: other than LeNet-5 /
    MNIST, its rule is judged per pair, by ``judge`` if it has one, else by
    ``growth_verdict``."""

    name: str
    apply: Callable[[CompressionSettings], CompressionSettings]
    section: str
    title: str
    smaller: bool = False
    pairs: tuple[tuple[str, str], ...] = (("lenet-5", "mnist"),)
    judge: Callable[[dict[str, Any], str], str] | None = None  # a pair's rule, if its own
    preset: str = REFERENCE


MLP_PAIRS = (("lenet-300-100", "mnist"), ("lenet-300-100", "fashion-mnist"))
ALL_PAIRS = (("lenet-5", "mnist"), *MLP_PAIRS)

CHANGES = {
    "columns": Change(
        "rows 0.85, columns 0.5",
        split_columns,
        "column_sparsity",
        "Whole rows and columns of fc1 in shares of their own (LeNet-5 / MNIST, `max`)",
    ),
    "retrain": Change(
        "12 epochs after a lossy layer",
        longer_retraining,
        "retrain_epochs",
        "Longer retraining after fc1's table (LeNet-5 / MNIST, `max`)",
    ),
    "veto": Change(
        "veto 0.75",
        more_vetoes,
        "veto_share",
        "Three quarters of fc1's false positives vetoed (LeNet-5 / MNIST, `max`)",
    ),
    "distill": Change(
        "distill 0.9",
        heavier_distillation,
        "distill_weight",
        "Distillation from the dense model weighted 0.9 (LeNet-5 / MNIST, `max`)",
    ),
    "mixup": Change(
        "distilled on mixed inputs",
        mixed_inputs,
        "distill_mixup",
        "Distillation on inputs mixed in pairs (LeNet-5 / MNIST, `max`)",
    ),
    "mixup-mlp": Change(
        "distilled on mixed inputs",
        mixed_inputs,
        "distill_mixup_mlp",
        "Distillation on inputs mixed in pairs (LeNet-300-100, `max`)",
        pairs=MLP_PAIRS,
        judge=companion_verdict,
    ),
    "layers": Change(
        "layer outputs matched to the dense model's",
        matched_layers,
        "layer_distill",
        "Each layer's output matched to the dense layer's (LeNet-5 / MNIST, `max`)",
    ),
    "lr": Change(
        "peak learning rate 5e-4",
        half_rate,
        "retrain_lr",
        "Training at half the learning rate (LeNet-5 / MNIST, `max`)",
    ),
    "lr-mlp": Change(
        "peak learning rate 5e-4",
        half_rate,
        "retrain_lr_mlp",
        "Training at half the learning rate (LeNet-300-100, `max`)",
        pairs=MLP_PAIRS,
        judge=companion_verdict,
    ),
    "shift": Change(
        "images moved up to 1 pixel",
        shifted_inputs,
        "shifted_inputs",
        "Training on images moved by up to 1 pixel (LeNet-5 / MNIST, `max`)",
    ),
    "shift-more": Change(
        "images moved up to 1 pixel",
        shifted_inputs,
        "shifted_inputs_more",
        "Training on images moved by up to 1 pixel, seeds 3 and 4 (LeNet-5 / MNIST, `max`)",
    ),
    "shift-mlp": Change(
        "images moved up to 1 pixel",
        shifted_inputs,
        "shifted_inputs_mlp",
        "Training on images moved by up to 1 pixel (LeNet-300-100, `max`)",
        pairs=MLP_PAIRS,
        judge=companion_verdict,
    ),
    "recluster": Change(
        "re-clustered from the first centroids",
        recluster_from_first,
        "recluster_from",
        "Released layers clustered again from their first centroids (LeNet-5 / MNIST, `max`)",
        smaller=True,
    ),
    "used": Change(
        "re-clustered from the first used centroids",
        recluster_from_used,
        "recluster_used",
        "Released layers clustered again to the codes they used (LeNet-5 / MNIST, `max`)",
        smaller=True,
    ),
    "conv": Change(
        "10k-100k elements keep 4 %",
        denser_middle_class,
        "middle_class",
        "Tensors of 10,000-99,999 elements keep 4 % (LeNet-5 / MNIST, `max`)",
    ),
    "stem": Change(
        "under 1,000 elements keep all",
        unpruned_stem,
        "stem_layer",
        "Tensors under 1,000 elements unpruned (LeNet-5 / MNIST, `max`)",
    ),
    "logits": Change(
        "1k-10k elements keep 10 %",
        denser_small_class,
        "small_class",
        "Tensors of 1,000-9,999 elements keep 10 % (LeNet-5 / MNIST, `max`)",
    ),
    "steps": Change(
        "20 pruning steps of 3 epochs",
        finer_schedule,
        "prune_schedule",
        "Pruning in 20 steps of 3 epochs instead of 10 of 6 (LeNet-5 / MNIST, `max`)",
    ),
    "coarse": Change(
        "5 pruning steps of 12 epochs",
        coarser_schedule,
        "prune_recovery",
        "Pruning in 5 steps of 12 epochs instead of 10 of 6 (LeNet-5 / MNIST, `max`)",
    ),
    "head": Change(
        "under 2,000 elements keep half",
        larger_small_class,
        "small_head",
        "Tensors under 2,000 elements keep half (LeNet-300-100, `max`)",
        pairs=MLP_PAIRS,
    ),
    "thin": Change(
        "100k-300k elements keep 1.5 %",
        thinner_first_layer,
        "thin_first_layer",
        "Tensors of 100,000-299,999 elements keep 1.5 % (LeNet-300-100, `max`)",
        pairs=MLP_PAIRS,
        judge=thinning_verdict,
    ),
    "thin-1.75": Change(
        "100k-300k elements keep 1.75 %",
        first_layer_175,
        "first_layer_175",
        "Tensors of 100,000-299,999 elements keep 1.75 % (LeNet-300-100, `max`)",
        pairs=MLP_PAIRS,
        judge=iso_thinning_verdict,
    ),
    "default-head": Change(
        "under 2,000 elements keep half",
        larger_small_class,
        "default_small_head",
        "Tensors under 2,000 elements keep half (LeNet-300-100, `default`)",
        pairs=MLP_PAIRS,
        preset="default",
    ),
    "default-quarter": Change(
        "1,000-1,999 elements keep a quarter",
        quarter_kept_head,
        "default_quarter_head",
        "Tensors of 1,000-1,999 elements keep a quarter (LeNet-300-100, `default`)",
        pairs=MLP_PAIRS,
        preset="default",
    ),
    "default-used": Change(
        "released layers re-clustered to the codes they used",
        recluster_from_used,
        "default_recluster_used",
        "Released layers clustered again to the codes they used (`default`)",
        pairs=ALL_PAIRS,
        judge=saving_verdict,
        preset="default",
    ),
    "default-stem": Change(
        "conv stems encoded unpruned",
        encoded_stem,
        "default_stem_layer",
        "Tensors of 400-999 elements encoded and unpruned (LeNet-5 / MNIST, `default`)",
        judge=small_tensors_verdict,
        preset="default",
    ),
    "default-small": Change(
        "small tensors and re-clustering as in max",
        small_tensors_as_in_max,
        "default_small_tensors",
        "Small tensors and released layers as `max` treats them (`default`)",
        pairs=ALL_PAIRS,
        judge=small_tensors_verdict,
        preset="default",
    ),
    "default-stem-shared": Change(
        "conv stems encoded unpruned, kept clustered",
        shared_stem,
        "default_shared_stem",
        "Tensors of 400-999 elements encoded unpruned and never released (LeNet-5 / MNIST, "
        "`default`)",
        judge=small_tensors_verdict,
        preset="default",
    ),
    "default-stem-16": Change(
        "conv stems encoded unpruned at r=4, kept clustered",
        shared_stem_16,
        "default_shared_stem_16",
        "Tensors of 400-999 elements encoded unpruned at r=4 and never released (LeNet-5 / "
        "MNIST, `default`)",
        judge=small_tensors_verdict,
        preset="default",
    ),
    "kept-stem": Change(
        "under 1,000 elements never released",
        kept_stem,
        "max_shared_stem",
        "Tensors under 1,000 elements kept clustered after fc1's table (LeNet-5 / MNIST, `max`)",
    ),
    "default-capped": Change(
        "released layers clustered from scratch, capped at the baseline's bytes",
        recluster_capped,
        "default_recluster_capped",
        "Released layers clustered again from scratch, capped at the baseline's bytes (`default`)",
        pairs=ALL_PAIRS,
        judge=promise_verdict,
        preset="default",
    ),
    "default-counts": Change(
        "released layers clustered to their first code counts",
        recluster_to_counts,
        "default_recluster_counts",
        "Released layers clustered again to their first code counts (`default`)",
        pairs=ALL_PAIRS,
        judge=promise_verdict,
        preset="default",
    ),
}


# where `max`'s runs are recorded: the `paper` table (whose rows may be copies of a change's
# runs, which ``reusable`` skips for their original) and each change's own section
RECORDS = ("paper", *(c.section for c in CHANGES.values()))


def run(
    arch: str,
    data_name: str,
    change: Change,
    *,
    seeds: tuple[int, ...],
    epochs: int,
    quick: bool = False,
    on_seed: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    data = load_dataset(data_name)
    ref = change.preset
    out: dict[str, Any] = {"arch": arch, "dataset": data.name, "seeds": list(seeds)}
    out |= {"change": change.name, "section": change.section, "dense": []}
    out |= {"runs": {ref: [], change.name: []}}
    out |= {"reference": ref}
    for seed in seeds:
        state, dense, base = seed_start(arch, data, epochs, seed, quick=quick, preset=ref)
        out["dense"].append(dense)
        for name, settings in ((ref, base), (change.name, change.apply(base))):
            recorded = name == ref and not quick
            summary = reusable(RECORDS, arch, data.name, name, dense) if recorded else None
            if summary is None:
                start, cpu = time.perf_counter(), time.process_time()
                result = compress(fresh_model(arch, data, state), data, settings)
                summary = summarise(result.report, time.perf_counter() - start) | {"seed": seed}
                summary["cpu_seconds"] = round(time.process_time() - cpu, 1)
                summary["threads"] = torch.get_num_threads()
                dense_model = fresh_model(arch, data, state).eval()
                summary["figures"] = scores(result.model.eval(), dense_model, data)
            out["runs"][name].append(summary)
            wl = summary["weightless"]
            print(
                f"seed {seed} {name}: {wl['weights_ratio']:.1f}x val {wl['val']:.2f} "
                f"test {wl['test']:.2f}" + (" (recorded)" if "from" in summary else ""),
                flush=True,
            )
        if on_seed is not None:
            on_seed(out)
    return out


def rule(result: dict[str, Any]) -> str:
    """The verdict of ``result``'s change under its rule. Changes may share a row name
    (``lr`` and ``lr-mlp``), so the section says which; records from before it was stored
    name their change by row name alone."""
    if "section" in result:
        change = next(c for c in CHANGES.values() if c.section == result["section"])
    else:
        change = next(c for c in CHANGES.values() if c.name == result["change"])
    if change.judge is not None:
        return change.judge(result, change.name)
    if change.pairs != Change.pairs:
        return growth_verdict(result, change.name)
    return verdict(result, REFERENCE, change.name, "keep max's", smaller=change.smaller)


def markdown(result: dict[str, Any], total_s: float) -> str:
    seeds = [r["seed"] for r in result["runs"][result["change"]]]  # run so far, not planned
    dense_val = _mean([d["val"] for d in result["dense"]])
    dense_test = _mean([d["test"] for d in result["dense"]])
    ref = reference(result)
    recorded = [r for r in result["runs"][ref] if "from" in r]
    recorded_seeds = [r["seed"] for r in recorded]
    sections = ", ".join(f"`{s}`" for s in dict.fromkeys(r["from"] for r in recorded))
    lines = [
        f"{result['arch']} / {result['dataset']}, the `{ref}` preset against `{ref}` with one "
        f"change: {result['change']}. Seeds {', '.join(map(str, seeds))}"
        + (" (**fewer than 3: a direction, not a claim**)" if len(seeds) < 3 else "")
        + f"; dense validation {dense_val:.2f} %, dense test {dense_test:.2f} % (means). "
        "Ratios are weights-only, against Deep Compression-best on the same clustered weights. "
        "'Pruned' and 'clustered' are validation accuracy before any table. "
        + (
            f"`{ref}`'s runs of seeds {', '.join(map(str, recorded_seeds))} are those recorded "
            f"in section {sections}, with the same settings from the same dense models. "
            if recorded_seeds
            else ""
        )
        + "Validation decides; test is scored only.",
        "",
        f"Rule (written before the run): {rule(result)}",
        "",
        f"Total time: {total_s / 60:.1f} min.",
        "",
        "| run | pruned val % | clustered val % | fc1 ratio | vs DC-best "
        "| model ratio | vs DC-best | val % | val per seed | test % | test per seed "
        "| DC-best test % |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, runs in result["runs"].items():
        if runs:
            stages = [x["accuracy_stages"] for x in runs]
            pruned = _mean([s["pruned"] for s in stages])
            clustered = _mean([s["clustered"] for s in stages])
            dc_test = _mean([x["deep_compression"]["test"] for x in runs])
            lines.append(
                f"| {name} | {pruned:.2f} | {clustered:.2f} | {cells(runs)} | {dc_test:.2f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = bench_parser(__doc__, "digits, one seed")
    ap.add_argument("change", choices=list(CHANGES), help="the change to a preset")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (0 1 2)")
    args = ap.parse_args(argv)
    change = CHANGES[args.change]
    preset = settings_for(change.preset)
    if change.apply(preset) == preset:
        ap.error(f"{args.change!r} is `{change.preset}` as it is now (adopted): nothing to compare")
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    if args.quick:
        result = run("lenet-300-100", "digits", change, seeds=(0,), epochs=2, quick=True)
        write_quick(args.out_dir, change.section, markdown(result, time.perf_counter() - start))
        return

    done: list[dict[str, Any]] = []  # the pairs run to the end

    def save(result: dict[str, Any]) -> None:
        total = time.perf_counter() - start
        if change.pairs == Change.pairs:
            text, data = markdown(result, total), result | {"verdict": rule(result)}
        else:  # one table per pair, under its name; `paper_table.reusable` reads "pairs"
            pairs = [*done, result]
            text = "\n\n".join(
                f"**{r['arch']} / {r['dataset']}**\n\n{markdown(r, total)}" for r in pairs
            )
            data = {"change": change.name, "pairs": [r | {"verdict": rule(r)} for r in pairs]}
        record(
            change.section,
            title=change.title,
            command=command_line(__file__, argv),
            markdown=text,
            data=data | {"total_seconds": total},
        )

    for arch, name in change.pairs:
        epochs = DENSE_EPOCHS[(arch, name)]
        done.append(run(arch, name, change, seeds=tuple(args.seeds), epochs=epochs, on_seed=save))


if __name__ == "__main__":
    main()
