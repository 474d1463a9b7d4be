"""Model providers: the live litellm provider and the chunk converters replay shares.

Nothing here imports litellm at import time.
"""

from loopspec.providers.base import ModelRequest, Provider, ProviderError, ResponseStream, StreamBroken
from loopspec.providers.chunks import delta_from_chunk_dict, delta_from_litellm_chunk, iter_sse_data
from loopspec.providers.litellm_provider import LiteLLMProvider

__all__ = [
    "ModelRequest",
    "Provider",
    "ProviderError",
    "ResponseStream",
    "StreamBroken",
    "delta_from_chunk_dict",
    "delta_from_litellm_chunk",
    "iter_sse_data",
    "LiteLLMProvider",
]
