"""Everything above the graph: text, ranking, serving (``from fusion import Engine``).

* :mod:`fusion.text` -- the BERT text encoder, product texts, fine-tuning, the text index;
* :mod:`fusion.ranking` -- training examples, feature tables, the multi-objective fusion
  model, its training, scoring and metrics;
* :mod:`fusion.engine` -- serving: :class:`Engine` (recommend, search, similar, explain),
  which needs no training code;
* :mod:`fusion.pipeline`, :mod:`fusion.cli`, :mod:`fusion.demo` -- all stages into one run
  folder, the ``kgrec`` command line, the demo.
"""

from fusion.engine import Engine, Recommendation

__all__ = ["Engine", "Recommendation"]
