"""Batches over a token-state cache: a length-bucketing batch sampler and the cached-batch iterator."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from glot_st.train.cache.store import TokenCache

__all__ = ["LengthBucketBatchSampler", "iter_cached_batches"]



class LengthBucketBatchSampler(torch.utils.data.Sampler):
    """Batches of item indices, optionally sorted by length inside buckets; deterministic per (seed, epoch).

    Each epoch: permute the items (if ``shuffle``), cut the permutation into buckets of ``bucket_size``
    items, sort each bucket by length (longest first, stable) and cut it into batches, then permute the batch
    order (if ``shuffle``). Batches of similar lengths pad less.

    Args:
        lengths: (N,) ints, a length per item (e.g. tokens per text, or the longer text of a pair).
        batch_size: items per batch.
        shuffle: permute items and batches each epoch.
        seed: seed of the permutations; the RNG of epoch e is ``np.random.default_rng([seed, e])``.
        bucket_size: items per sorting bucket (rounded up to a multiple of ``batch_size``); ``None`` = no
            sorting.
        drop_last: drop the epoch's last batch if it is short.
    """

    def __init__(
        self,
        lengths: Sequence[int] | np.ndarray,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        bucket_size: int | None = None,
        drop_last: bool = False,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if bucket_size is not None and bucket_size < 1:
            raise ValueError(f"bucket_size must be >= 1 or None, got {bucket_size}")
        self.lengths = np.asarray(lengths, dtype=np.int64).reshape(-1)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.bucket_size = None if bucket_size is None else math.ceil(bucket_size / batch_size) * batch_size
        self.drop_last = drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose order ``__iter__`` yields."""
        self.epoch = int(epoch)

    def batches(self) -> list[np.ndarray]:
        """All batches of the current epoch: a list of int64 index arrays."""
        n = self.lengths.shape[0]
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(n) if self.shuffle else np.arange(n)
        batches: list[np.ndarray] = []
        if self.bucket_size is None:
            batches = [order[i : i + self.batch_size] for i in range(0, n, self.batch_size)]
        else:
            for lo in range(0, n, self.bucket_size):
                bucket = order[lo : lo + self.bucket_size]
                bucket = bucket[np.argsort(-self.lengths[bucket], kind="stable")]
                batches.extend(bucket[i : i + self.batch_size] for i in range(0, len(bucket), self.batch_size))
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        if self.shuffle and batches:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.batches():
            yield batch.tolist()

    def __len__(self) -> int:
        n = self.lengths.shape[0]
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)


def iter_cached_batches(
    cache: TokenCache,
    batch_sampler: Sequence[Sequence[int]] | torch.utils.data.Sampler,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Yield cached batches in the sampler's order.

    Args:
        cache: the :class:`TokenCache` to read.
        batch_sampler: iterable of index lists (e.g. :class:`LengthBucketBatchSampler`).

    Yields:
        ``(indices, token_states, attention_mask)``: long (B,), float32 (B, Lb, d), long (B, Lb).
    """
    for batch in batch_sampler:
        states, mask = cache.get_batch(batch)
        yield torch.as_tensor(list(batch), dtype=torch.long), states, mask
