"""The text side: a BERT encoder of product texts, reviews and queries.

* :mod:`fusion.text.encoder` -- :class:`~fusion.text.encoder.TextEncoder` (transformers
  ``AutoModel`` + mean pooling + L2 norm), local checkpoints only, a run's encoder;
* :mod:`fusion.text.texts` -- the text of a product or a review, pseudo-queries;
* :mod:`fusion.text.finetune` -- contrastive fine-tuning (review/query <-> product);
* :mod:`fusion.text.index` -- the embedding cache, user text profiles, exact and IVF search.
"""
