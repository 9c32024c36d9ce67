"""Strings as tensor metric states, so text metrics sync under DDP.

torchmetrics gathers only tensors across ranks. Caption and VQA metrics need the raw strings of
the whole evaluated set (CIDEr's IDF, METEOR's corpus aggregate, BLEU's corpus counts), so each
string is stored as its UTF-8 bytes in a ``uint8`` tensor plus a length tensor. ``cat`` states of
uneven size are gathered by torchmetrics (it pads and trims), and every state of one metric is
gathered in the same rank order, so the decoded lists stay aligned sample by sample.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def encode_texts(texts: Sequence[str]) -> tuple[Tensor, Tensor]:
    """Pack strings into a byte tensor and a length tensor.

    Args:
        texts: N strings (any unicode).

    Returns:
        ``(data, lengths)``: ``data`` is a ``uint8`` tensor of shape ``(sum of byte lengths,)``,
        ``lengths`` an ``int64`` tensor of shape ``(N,)`` holding each string's byte length.
    """
    encoded = [t.encode("utf-8") for t in texts]
    lengths = torch.tensor([len(b) for b in encoded], dtype=torch.int64)
    data = torch.frombuffer(bytearray(b"".join(encoded)), dtype=torch.uint8) if lengths.sum() else (
        torch.zeros(0, dtype=torch.uint8)
    )
    return data.clone(), lengths


def decode_texts(data: Tensor | list[Tensor], lengths: Tensor | list[Tensor]) -> list[str]:
    """Inverse of :func:`encode_texts`; accepts the list form a state has before sync.

    Args:
        data: ``uint8`` tensor ``(total_bytes,)`` or a list of such tensors.
        lengths: ``int64`` tensor ``(N,)`` or a list of such tensors.

    Returns:
        The N strings in order.
    """
    data = _cat(data, torch.uint8)
    lengths = _cat(lengths, torch.int64)
    raw = bytes(data.cpu().numpy().tobytes())
    out, start = [], 0
    for n in lengths.tolist():
        out.append(raw[start : start + n].decode("utf-8"))
        start += n
    if start != len(raw):
        raise ValueError(f"text state is corrupt: lengths cover {start} bytes, data has {len(raw)}")
    return out


def encode_groups(groups: Sequence[Sequence[str]]) -> tuple[Tensor, Tensor, Tensor]:
    """Pack a list of string lists (e.g. references per sample).

    Returns:
        ``(data, lengths, counts)`` where ``counts`` (shape ``(N,)``) is the number of strings in
        each group, ``lengths`` (shape ``(sum(counts),)``) the byte length of each string.
    """
    flat = [s for g in groups for s in g]
    data, lengths = encode_texts(flat)
    counts = torch.tensor([len(g) for g in groups], dtype=torch.int64)
    return data, lengths, counts


def decode_groups(
    data: Tensor | list[Tensor], lengths: Tensor | list[Tensor], counts: Tensor | list[Tensor]
) -> list[list[str]]:
    """Inverse of :func:`encode_groups`."""
    flat = decode_texts(data, lengths)
    out, start = [], 0
    for c in _cat(counts, torch.int64).tolist():
        out.append(flat[start : start + c])
        start += c
    return out


def _cat(x: Tensor | list[Tensor], dtype: torch.dtype) -> Tensor:
    if isinstance(x, Tensor):
        return x.reshape(-1)
    if not x:
        return torch.zeros(0, dtype=dtype)
    return torch.cat([t.reshape(-1) for t in x])
