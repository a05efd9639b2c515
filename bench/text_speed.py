"""Text encoding speed on this CPU: texts/s and peak memory of the text encoder.

Texts are the product texts (:func:`fusion.text.texts.product_texts`) of the Amazon
2018 Gift Cards catalogue (mixed lengths: 21-1000 characters), else of the synthetic
catalogue, repeated to ``--texts``. Every variant runs in its own process (so peak RSS
is its own) with ``--threads`` torch threads, the default MiniLM-L6 checkpoint and the
same max length (256 tokens), after one warm-up batch:

* ``kgrec b64`` / ``kgrec b256`` -- :meth:`TextEncoder.encode`, the default: fp32, batches
  sorted by token count, dynamic padding, ``torch.inference_mode``;
* ``kgrec int8 b64/b256`` -- the same encoder with ``precision="int8"`` (every Linear in
  int8, activations quantized per token: :class:`fusion.text.int8_linear.Int8Linear`; its
  ``torch.compile`` happens in the warm-up, whose seconds are printed below the table),
  ``kgrec bf16 b64/b256`` -- ``precision="bf16"``,
  ``kgrec auto b64/b256`` -- ``precision="auto"``, what the Engine encodes search queries
  with (bf16 on a CPU with native bfloat16, else fp32; the row names which);
* the old paths, selectable for before/after in one run: ``kgrec before b64/b256`` -- the
  previous ``encode`` (batches sorted by *character* count, ``torch.no_grad``, one
  ``embed`` call per batch), ``kgrec no-sort b64/b256`` -- ``encode(sort_by_length=False)``
  (batches in input order, each padded to its longest text), ``kgrec ao-int8 b64/b256`` --
  the previous ``precision="int8"``: ``torch.ao`` dynamic quantization (weights per
  channel, one activation scale per batch, 8-bit activations on VNNI/AMX CPUs, else 7);
* ``kgrec cache hit`` -- :meth:`EmbeddingCache.encode` when every text is already cached
  (after a cold pass that fills the cache, reported as ``kgrec cache cold``);
* references in the same run: ``naive loop`` -- a plain ``AutoModel`` called on one
  text at a time with mean pooling (how one writes it by hand; timed on ``--naive-texts``
  texts), and ``sentence-transformers b64/b256`` -- ``SentenceTransformer.encode`` on the
  same local directory.

Ratios are texts/s over the naive loop's and over sentence-transformers' at the same
batch size; "max |Δ|" checks the first 8 embeddings against sentence-transformers';
"cos vs fp32" is the min / mean cosine of every text's embedding with the default fp32
encoder's (``kgrec b64``). "CPU ms/text" is the process CPU time (all threads) of the timed
pass per text, and "× ST (CPU)" its ratio to sentence-transformers' -- on a shared CPU
less disturbed by other jobs than wall time (though threads waiting on a descheduled
sibling add to it). ``--rounds N`` runs every variant N times, round-robin (so a
load spike on a shared CPU hits all variants alike), and keeps each one's best; the
load average is printed before and after.

    python bench/text_speed.py                     # 1024 texts, 2 threads
    python bench/text_speed.py --texts 256 --naive-texts 32 --threads 1   # quick check
    python bench/text_speed.py --variants "kgrec b64" "kgrec int8 b64" "sentence-transformers b64"
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
BATCHES = (64, 256)
KGREC = ("no-sort", "before", "", "int8", "ao-int8", "bf16", "auto")   # "" = the default encode (fp32)
VARIANTS = tuple(v for b in BATCHES for v in [f"kgrec {k} b{b}".replace("  ", " ") for k in KGREC]
                 + [f"sentence-transformers b{b}"]) + ("kgrec cache", "naive loop")
LABELS = {"": "fp32, token-length sort (default)", "no-sort": "no length sort", "int8": "int8 (W8A8, per-token activations)",
          "ao-int8": "before: int8 torch.ao dynamic (per-batch activations)",
          "bf16": "bf16", "before": "before: char-length sort, no_grad",
          "auto": "auto (the Engine's query encoder: {precision} on this CPU)"}
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


def _kind(variant: str) -> str:
    """"" (default), "no-sort", "before", "int8", "bf16" of a ``kgrec ... bN`` variant."""
    parts = variant.split()
    return parts[1] if len(parts) == 3 else ""


def _encode_before(encoder, texts: list[str], batch_size: int):
    """The previous ``TextEncoder.encode``: batches sorted by character count, ``no_grad``."""
    import torch

    with torch.no_grad():
        out = torch.empty(len(texts), encoder.dim)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), batch_size):
            idx = order[start: start + batch_size]
            out[idx] = encoder.embed([texts[i] for i in idx]).cpu()
    return out


def _ao_int8(encoder):
    """The previous ``precision="int8"``: ``torch.ao``'s dynamic quantization of every Linear
    (per-channel int8 weights, one activation scale per batch; 8-bit activations where the
    CPU has VNNI / AMX, else 7-bit as fbgemm needs on plain AVX2)."""
    import warnings

    import torch
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    from fusion.text.int8_linear import weight_bits

    full_range = weight_bits() == 8   # the same VNNI / AMX test as kgrec's int8 layers

    class AoLinear(DynamicLinear):
        def forward(self, x):
            return torch.ops.quantized.linear_dynamic(x, self._packed_params._packed_params,
                                                      reduce_range=not full_range).to(x.dtype)

    with warnings.catch_warnings():  # torch.ao.quantization is deprecated
        warnings.simplefilter("ignore")
        quantize_dynamic(encoder.model, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8,
                         mapping={torch.nn.Linear: AoLinear}, inplace=True)
    return encoder


def run_variant(variant: str, texts: list[str], naive_texts: int, emb_out: str | None = None) -> dict:
    import torch

    from fusion.text.encoder import TextEncoder, default_checkpoint

    path = str(default_checkpoint())
    out: dict = {"variant": variant}
    if variant.startswith("kgrec"):
        kind = _kind(variant)
        encoder = TextEncoder.from_pretrained(path, max_length=MAX_LENGTH,
                                              precision=kind if kind in ("int8", "bf16", "auto") else "fp32")
        if kind == "ao-int8":
            encoder = _ao_int8(encoder)
        out["precision"] = encoder.precision
        out["rss_load_mb"] = _rss_mb()
        t = time.perf_counter()
        encoder.encode(texts[:16], 16)  # warm-up (int8: includes its torch.compile)
        out["warmup_seconds"] = time.perf_counter() - t
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
            t, cpu = time.perf_counter(), time.process_time()
            if kind == "before":
                emb = _encode_before(encoder, texts, batch)
            else:
                emb = encoder.encode(texts, batch, sort_by_length=kind != "no-sort")
            out["seconds"], out["n"] = time.perf_counter() - t, len(texts)
            out["cpu_seconds"] = time.process_time() - cpu
    elif variant == "naive loop":
        from transformers import AutoModel, AutoTokenizer

        model = AutoModel.from_pretrained(path, local_files_only=True).eval()
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        out["rss_load_mb"] = _rss_mb()
        # the first 8 texts (compared with sentence-transformers), then a sample spread over the rest
        subset = (texts[:8] + texts[8:: max(1, len(texts) // naive_texts)])[:max(naive_texts, 8)]
        rows = []
        with torch.no_grad():
            t, cpu = time.perf_counter(), time.process_time()
            for text in subset:
                batch = tokenizer(text, truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
                hidden = model(**batch).last_hidden_state[0]                     # [T, d]
                rows.append(torch.nn.functional.normalize(hidden.mean(0), dim=0))
            out["seconds"], out["n"] = time.perf_counter() - t, len(subset)
            out["cpu_seconds"] = time.process_time() - cpu
        emb = torch.stack(rows)
    else:
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(path, device="cpu", local_files_only=True)
        model.max_seq_length = MAX_LENGTH
        out["rss_load_mb"] = _rss_mb()
        model.encode(texts[:16], batch_size=16)
        batch = int(variant.split("b")[-1])
        t, cpu = time.perf_counter(), time.process_time()
        emb = model.encode(texts, batch_size=batch, convert_to_tensor=True)
        out["seconds"], out["n"] = time.perf_counter() - t, len(texts)
        out["cpu_seconds"] = time.process_time() - cpu
    out["rss_peak_mb"] = _rss_mb()
    out["texts_per_s"] = out["n"] / out["seconds"]
    out["head"] = emb[:8].float().tolist()
    if emb_out and len(emb) == len(texts):
        import numpy as np

        np.save(emb_out, emb.float().numpy())
    return out


def _load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--texts", type=int, default=1024)
    ap.add_argument("--naive-texts", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=1, help="run every variant N times round-robin, keep the best")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    ap.add_argument("--variant", help=argparse.SUPPRESS)  # internal: run one variant, print JSON
    ap.add_argument("--emb-out", help=argparse.SUPPRESS)  # internal: save its embeddings there (.npy)
    args = ap.parse_args()

    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    texts, source = _texts(args.texts, Path(args.data))
    if args.variant:
        print(json.dumps(run_variant(args.variant, texts, args.naive_texts, args.emb_out)))
        return
    load_before = _load()
    print(f"# {load_before}", file=sys.stderr, flush=True)
    results: dict[str, dict] = {}
    vectors: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):
            for variant in args.variants:
                emb_file = str(Path(tmp) / f"{variant.replace(' ', '_')}.npy")
                cmd = [sys.executable, __file__, "--variant", variant, "--texts", str(args.texts),
                       "--naive-texts", str(args.naive_texts), "--threads", str(args.threads),
                       "--data", args.data, "--emb-out", emb_file]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode != 0:
                    print(f"{variant} failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
                    continue
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                print(f"# round {round_ + 1}: {variant}: {r['texts_per_s']:.1f} texts/s, peak RSS "
                      f"{r['rss_peak_mb']:.0f} MB ({_load()})", file=sys.stderr, flush=True)
                if Path(emb_file).exists():
                    vectors[variant] = np.load(emb_file)
                best = results.get(variant)
                if best is not None:  # the best wall and CPU time, the largest peak memory of the rounds
                    r["rss_peak_mb"] = max(r["rss_peak_mb"], best["rss_peak_mb"])
                    if "cpu_seconds" in r:
                        r["cpu_seconds"] = min(r["cpu_seconds"], best["cpu_seconds"])
                    if r["texts_per_s"] < best["texts_per_s"]:
                        r = {**best, "rss_peak_mb": r["rss_peak_mb"], **({"cpu_seconds": r["cpu_seconds"]}
                                                                       if "cpu_seconds" in r else {})}
                results[variant] = r
    load_after = _load()

    chars = sum(len(t) for t in texts) / len(texts)
    print(f"\nMiniLM-L6 (22.7M params), {source} product texts (mean {chars:.0f} chars, max_length "
          f"{MAX_LENGTH}), {args.texts} texts ({args.naive_texts} for the naive loop), "
          f"{args.threads} torch threads, CPU, best of {args.rounds} round(s); {load_before} at the start, "
          f"{load_after} at the end\n")
    naive = results.get("naive loop", {}).get("texts_per_s")
    ref = {b: results.get(f"sentence-transformers b{b}", {}) for b in BATCHES}
    fp32 = vectors.get("kgrec b64")
    print("| variant | texts/s | × naive loop | × sentence-transformers (same batch) | CPU ms/text | × ST (CPU) | "
          "max abs Δ vs ST | cos vs fp32 min / mean | RSS after load MB | peak RSS MB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    st_head = torch.tensor(ref[64]["head"]) if ref[64] else None
    for name, r in results.items():
        tps = r["texts_per_s"]
        x_naive = f"{tps / naive:.1f}×" if naive else "–"
        batch = 64 if name.endswith("b64") or name == "kgrec cache" else 256 if name.endswith("b256") else None
        x_st = f"{tps / ref[batch]['texts_per_s']:.2f}×" if batch and ref[batch] and not name.startswith("sentence") \
            else "–"
        delta = f"{(torch.tensor(r['head']) - st_head).abs().max():.1e}" if st_head is not None else "–"
        cpu_ms = r["cpu_seconds"] / r["n"] * 1000 if "cpu_seconds" in r else None
        ref_cpu = ref[batch].get("cpu_seconds", 0) / ref[batch]["n"] * 1000 if batch and ref[batch] else None
        cpu = f"{cpu_ms:.1f}" if cpu_ms else "–"
        x_cpu = f"{ref_cpu / cpu_ms:.2f}×" if cpu_ms and ref_cpu and not name.startswith("sentence") else "–"
        cos = "–"
        if fp32 is not None and name in vectors and len(vectors[name]) == len(fp32):
            c = (vectors[name] * fp32).sum(1) / (np.linalg.norm(vectors[name], axis=1) * np.linalg.norm(fp32, axis=1))
            cos = f"{c.min():.4f} / {c.mean():.4f}"
        if name == "kgrec cache":
            label = "kgrec cache hit (b64)"
        elif name.startswith("kgrec"):
            label = f"kgrec {LABELS[_kind(name)].format(precision=r.get('precision', '?'))} b{batch}"
        else:
            label = name
        print(f"| {label} | {tps:.1f} | {x_naive} | {x_st} | {cpu} | {x_cpu} | {delta} | {cos} | "
              f"{r['rss_load_mb']:.0f} | {r['rss_peak_mb']:.0f} |")
        if name == "kgrec cache":
            cold = r["n"] / r["cold_seconds"]
            x_cold = f"{cold / naive:.1f}×" if naive else "–"
            x_st_cold = f"{cold / ref[64]['texts_per_s']:.2f}×" if ref[64] else "–"
            print(f"| kgrec cache cold (b64, encode + write) | {cold:.1f} | {x_cold} | {x_st_cold} | "
                  "– | – | – | – | – | – |")
    warm = [f"{name} {r['warmup_seconds']:.1f} s" for name, r in results.items() if "warmup_seconds" in r]
    if warm:
        print("\nwarm-up (first 16 texts, once per process; int8's torch.compile): " + ", ".join(warm))


if __name__ == "__main__":
    main()
