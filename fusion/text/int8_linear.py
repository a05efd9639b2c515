"""An ``nn.Linear`` computed in int8 (W8A8): the CPU-serving form of the text encoder's layers.

Usage::

    from fusion.text.int8_linear import Int8Linear, quantize_linears
    layer = Int8Linear.from_linear(nn.Linear(384, 1536))
    quantize_linears(model)           # every nn.Linear of a model, in place

The product is ``torch._int_mm`` (int8 x int8 -> int32, exact) between the row-quantized
input and the column-quantized weight. Run eagerly, the quantize and rescale steps are
separate passes over memory that cost more than the int8 product saves (MiniLM-L6's FFN,
[3840 x 384] x [384 x 1536], 2 threads: 32.5 ms against 18.0 ms in fp32); inside a
``torch.compile``-d model they fuse with their neighbours (8.4 ms for that layer), which is
how :meth:`fusion.text.encoder.TextEncoder.quantize` runs them (on CPUs with VNNI or AMX).
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from fusion.text.cpu import cpu_flags


@torch.library.custom_op("kgrec::int_mm", mutates_args=())
def int_mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``torch._int_mm(a, b)`` (int8 [M, K] x int8 [K, N] -> int32 [M, N]) as an opaque
    operator: ``torch.compile`` calls it as it is instead of generating its own int8 GEMM,
    whose CPU code corrupted the heap in about one process in four (torch 2.15, dynamic
    shapes; "corrupted size vs. prev_size"), while the eager operator never did."""
    return torch._int_mm(a, b)


@int_mm.register_fake
def _int_mm_shape(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a.new_empty((a.shape[0], b.shape[1]), dtype=torch.int32)


def w8a8_linear(x: torch.Tensor, weight_q: torch.Tensor, weight_scale: torch.Tensor,
                bias: torch.Tensor) -> torch.Tensor:
    """``x @ W.T + b`` with ``x`` [M, K] float32 quantized per row and ``W`` per output
    channel (``weight_q`` int8 [K, N], ``weight_scale`` [N], ``bias`` [N]): float32 [M, N]."""
    scale = x.abs().amax(1, keepdim=True).clamp(min=1e-8) / 127.0             # [M, 1]
    x_q = torch.round(x / scale).to(torch.int8)                               # [M, K]
    return int_mm(x_q, weight_q).float() * scale * weight_scale + bias  # [M, N]


@functools.lru_cache(maxsize=None)
def weight_bits() -> int:
    """8 on CPUs with VNNI or AMX (int8 products accumulated in 32 bits), else 7: plain
    AVX2 kernels add pairs of u8 x s8 products in 16 bits, which 7-bit weights keep from
    saturating (255 * 63 * 2 < 2**15)."""
    return 8 if cpu_flags() & {"avx512_vnni", "avx_vnni", "amx_int8"} else 7


class Int8Linear(nn.Module):
    r"""A linear layer with int8 weights and int8 activations (W8A8), for inference on a CPU.

    The weight :math:`W \in \mathbb{R}^{N \times K}` is quantized once, per output channel
    :math:`n`, symmetrically: :math:`s^W_n = \max_k |W_{nk}| / q_W`, :math:`Q^W_{nk} =
    \mathrm{round}(W_{nk} / s^W_n)` (:math:`q_W = 127`, or 63 where :func:`weight_bits` is 7).
    Each input row :math:`x_m \in \mathbb{R}^K` (one token) is quantized at run time with its
    own scale :math:`s^x_m = \max_k |x_{mk}| / 127`, :math:`Q^x_{mk} = \mathrm{round}(x_{mk} /
    s^x_m)`, so a token's error does not depend on the other texts of its batch. Then

    .. math::
        y_{mn} = s^x_m \, s^W_n \sum_k Q^x_{mk} Q^W_{nk} + b_n

    with the integer sum exact in int32. Input ``[..., K]`` float32, output ``[..., N]``
    float32. On MiniLM-L6 (every Linear converted) the text embeddings keep cosine >= 0.995
    to fp32 (per-tensor 7/8-bit activations, ``torch.ao``'s dynamic quantization: 0.96 / 0.986).

    Args:
        weight_q: int8 [K, N] (the transposed quantized weight, column-major as ``_int_mm``
            prefers).
        weight_scale: float32 [N].
        bias: float32 [N] (zeros when the layer had none).
    """

    def __init__(self, weight_q: torch.Tensor, weight_scale: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("weight_q", weight_q)
        self.register_buffer("weight_scale", weight_scale)
        self.register_buffer("bias", bias)
        self.in_features, self.out_features = int(weight_q.shape[0]), int(weight_q.shape[1])

    @classmethod
    def from_linear(cls, linear: nn.Linear, bits: int | None = None) -> Int8Linear:
        """The int8 form of ``linear`` (``bits``: weight bits, default :func:`weight_bits`)."""
        qmax = float(2 ** ((bits or weight_bits()) - 1) - 1)
        w = linear.weight.detach().float()                                     # [N, K]
        scale = w.abs().amax(1).clamp(min=1e-8) / qmax                         # [N]
        q = torch.round(w / scale[:, None]).clamp(-qmax, qmax).to(torch.int8)  # [N, K]
        bias = linear.bias.detach().float() if linear.bias is not None else torch.zeros_like(scale)
        return cls(q.t(), scale, bias.clone())   # q.t(): [K, N], column-major

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        y = w8a8_linear(x.reshape(-1, shape[-1]).float(), self.weight_q, self.weight_scale, self.bias)
        return y.reshape(*shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"weights=int{weight_bits()} per channel, activations=int8 per token")


def quantize_linears(model: nn.Module) -> nn.Module:
    """Replace every ``nn.Linear`` of ``model`` by an :class:`Int8Linear`, in place."""
    for name, child in list(model.named_children()):
        if type(child) is nn.Linear:
            setattr(model, name, Int8Linear.from_linear(child))
        else:
            quantize_linears(child)
    return model
