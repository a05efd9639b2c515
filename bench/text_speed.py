"""Text encoding speed on this CPU: texts/s and peak memory of the text encoder.

Texts are the product texts (:func:`fusion.text.texts.product_texts`) of the Amazon
2018 Gift Cards catalogue (mixed lengths: 21-1000 characters), else of the synthetic
catalogue, repeated to ``--texts``. Every variant runs in its own process (so peak RSS
is its own) with ``--threads`` torch threads, the default MiniLM-L6 checkpoint and the
same max length (256 tokens), after one warm-up batch:

* ``kgrec b64`` / ``kgrec b256`` -- :meth:`TextEncoder.encode` (length-sorted batches);
* ``kgrec cache hit`` -- :meth:`EmbeddingCache.encode` when every text is already cached
  (after a cold pass that fills the cache, reported as ``kgrec cache cold``);
* references in the same run: ``naive loop`` -- a plain ``AutoModel`` called on one
  text at a time with mean pooling (how one writes it by hand; timed on ``--naive-texts``
  texts), and ``sentence-transformers b64/b256`` -- ``SentenceTransformer.encode`` on the
  same local directory.

Ratios are texts/s over the naive loop's and over sentence-transformers' at the same
batch size; "max |Δ|" checks the embeddings against sentence-transformers'.

    python bench/text_speed.py                     # 1024 texts, 2 threads
    python bench/text_speed.py --texts 256 --naive-texts 32 --threads 1   # quick check
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "amazon2018-gift-cards"
VARIANTS = ("kgrec b64", "kgrec b256", "kgrec cache", "naive loop", "sentence-transformers b64",
            "sentence-transformers b256")
MAX_LENGTH = 256


def _texts(n: int, data: Path) -> tuple[list[str], str]:
    import loaders
    from fusion.text.texts import product_texts

    if data.exists():
        items, name = loaders.load("amazon2018", data).items, "amazon2018-gift-cards"
    else:
        items, name = loaders.load("synthetic", None, n_items=500).items, "synthetic"
    texts = [t for t in product_texts(items).tolist() if t]
    return [texts[i % len(texts)] + ("" if i < len(texts) else f" #{i // len(texts)}") for i in range(n)], name


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_variant(variant: str, texts: list[str], naive_texts: int) -> dict:
    import torch

    from fusion.text.encoder import TextEncoder, default_checkpoint

    path = str(default_checkpoint())
    out: dict = {"variant": variant}
    if variant.startswith("kgrec"):
        encoder = TextEncoder.from_pretrained(path, max_length=MAX_LENGTH)
        out["rss_load_mb"] = _rss_mb()
        encoder.encode(texts[:16], 16)  # warm-up
        if variant == "kgrec cache":
            from fusion.text.index import EmbeddingCache

            with tempfile.TemporaryDirectory() as tmp:
                cache = EmbeddingCache(tmp)
                t = time.perf_counter()
                cache.encode(encoder, texts, 64)
                out["cold_seconds"] = time.perf_counter() - t
                fresh = EmbeddingCache(tmp)          # a new job: reads the shards from disk
                t = time.perf_counter()
                emb = fresh.encode(encoder, texts, 64)
                out["seconds"] = time.perf_counter() - t
                assert fresh.last.misses == 0
            out["n"] = len(texts)
        else:
            batch = int(variant.split("b")[-1])
            t = time.perf_counter()
            emb = encoder.encode(texts, batch)
            out["seconds"], out["n"] = time.perf_counter() - t, len(texts)
    elif variant == "naive loop":
        from transformers import AutoModel, AutoTokenizer

        model = AutoModel.from_pretrained(path, local_files_only=True).eval()
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        out["rss_load_mb"] = _rss_mb()
        # the first 8 texts (compared with sentence-transformers), then a sample spread over the rest
        subset = (texts[:8] + texts[8:: max(1, len(texts) // naive_texts)])[:max(naive_texts, 8)]
        rows = []
        with torch.no_grad():
            t = time.perf_counter()
            for text in subset:
                batch = tokenizer(text, truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
                hidden = model(**batch).last_hidden_state[0]                     # [T, d]
                rows.append(torch.nn.functional.normalize(hidden.mean(0), dim=0))
            out["seconds"], out["n"] = time.perf_counter() - t, len(subset)
        emb = torch.stack(rows)
    else:
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(path, device="cpu", local_files_only=True)
        model.max_seq_length = MAX_LENGTH
        out["rss_load_mb"] = _rss_mb()
        model.encode(texts[:16], batch_size=16)
        batch = int(variant.split("b")[-1])
        t = time.perf_counter()
        emb = model.encode(texts, batch_size=batch, convert_to_tensor=True)
        out["seconds"], out["n"] = time.perf_counter() - t, len(texts)
    out["rss_peak_mb"] = _rss_mb()
    out["texts_per_s"] = out["n"] / out["seconds"]
    out["head"] = emb[:8].float().tolist()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--texts", type=int, default=1024)
    ap.add_argument("--naive-texts", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--variant", help=argparse.SUPPRESS)  # internal: run one variant, print JSON
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    texts, source = _texts(args.texts, Path(args.data))
    if args.variant:
        print(json.dumps(run_variant(args.variant, texts, args.naive_texts)))
        return
    results = {}
    for variant in args.variants:
        cmd = [sys.executable, __file__, "--variant", variant, "--texts", str(args.texts),
               "--naive-texts", str(args.naive_texts), "--threads", str(args.threads), "--data", args.data]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"{variant} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        results[variant] = json.loads(proc.stdout.strip().splitlines()[-1])
        r = results[variant]
        print(f"# {variant}: {r['texts_per_s']:.1f} texts/s, peak RSS {r['rss_peak_mb']:.0f} MB",
              file=sys.stderr, flush=True)

    chars = sum(len(t) for t in texts) / len(texts)
    print(f"\nMiniLM-L6 (22.7M params), {source} product texts (mean {chars:.0f} chars, max_length "
          f"{MAX_LENGTH}), {args.texts} texts ({args.naive_texts} for the naive loop), "
          f"{args.threads} torch threads, CPU\n")
    naive = results.get("naive loop", {}).get("texts_per_s")
    ref = {b: results.get(f"sentence-transformers b{b}", {}) for b in (64, 256)}
    print("| variant | texts/s | × naive loop | × sentence-transformers (same batch) | max abs Δ vs ST | "
          "RSS after load MB | peak RSS MB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    st_head = torch.tensor(ref[64]["head"]) if ref[64] else None
    for name, r in results.items():
        tps = r["texts_per_s"]
        x_naive = f"{tps / naive:.1f}×" if naive else "–"
        batch = 64 if name.endswith("b64") or name == "kgrec cache" else 256 if name.endswith("b256") else None
        x_st = f"{tps / ref[batch]['texts_per_s']:.2f}×" if batch and ref[batch] and not name.startswith("sentence") \
            else "–"
        delta = f"{(torch.tensor(r['head']) - st_head).abs().max():.1e}" if st_head is not None else "–"
        label = "kgrec cache hit (b64)" if name == "kgrec cache" else name
        print(f"| {label} | {tps:.1f} | {x_naive} | {x_st} | {delta} | {r['rss_load_mb']:.0f} | "
              f"{r['rss_peak_mb']:.0f} |")
        if name == "kgrec cache":
            cold = r["n"] / r["cold_seconds"]
            x_cold = f"{cold / naive:.1f}×" if naive else "–"
            x_st_cold = f"{cold / ref[64]['texts_per_s']:.2f}×" if ref[64] else "–"
            print(f"| kgrec cache cold (b64, encode + write) | {cold:.1f} | {x_cold} | {x_st_cold} | – | – | – |")


if __name__ == "__main__":
    main()
