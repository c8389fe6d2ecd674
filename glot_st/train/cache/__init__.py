"""On-disk token-state cache of a frozen backbone: its identity (``keys``), the store, the batch sampler."""

from glot_st.train.cache.keys import (
    backbone_identity,
    cache_key,
    default_prompt,
    key_fingerprint,
    texts_digest,
    validate_texts,
)
from glot_st.train.cache.sampler import LengthBucketBatchSampler, iter_cached_batches
from glot_st.train.cache.store import CACHE_DTYPES, CACHE_FORMAT_VERSION, TokenCache, build_cache, open_cache

__all__ = [
    "CACHE_DTYPES",
    "CACHE_FORMAT_VERSION",
    "LengthBucketBatchSampler",
    "TokenCache",
    "backbone_identity",
    "build_cache",
    "cache_key",
    "default_prompt",
    "iter_cached_batches",
    "key_fingerprint",
    "open_cache",
    "texts_digest",
    "validate_texts",
]
