"""Which provider serves a litellm model name, and which environment variables it needs.

Answered from a table, without importing litellm: ``loopspec run`` must be able to say "set
OPENAI_API_KEY" or "unknown provider 'opnai'" in well under a second, and importing litellm alone
takes several. The table covers the providers loopspec documents; a prefix it does not know is a
usage error with a did-you-mean (a typo would otherwise surface as a ``bad_request`` turn after the
import). tests/cli/test_cli.py checks every name here against the pinned litellm's provider list.
"""

from __future__ import annotations

from loopspec.language.errors import LoopspecError

import os
from dataclasses import dataclass
from difflib import get_close_matches
from typing import Mapping


# provider -> alternatives; each alternative is a set of variables that together suffice.
# An empty tuple: nothing to check here (a local server, or credentials the machine itself
# supplies, such as an AWS instance role or Google application-default credentials).
PROVIDER_ENV: dict[str, tuple[tuple[str, ...], ...]] = {
    "openai": (("OPENAI_API_KEY",),),
    "text-completion-openai": (("OPENAI_API_KEY",),),
    "azure": (("AZURE_API_KEY", "AZURE_API_BASE", "AZURE_API_VERSION"),),
    "anthropic": (("ANTHROPIC_API_KEY",), ("ANTHROPIC_AUTH_TOKEN",)),
    "groq": (("GROQ_API_KEY",),),
    "openrouter": (("OPENROUTER_API_KEY",),),
    "deepseek": (("DEEPSEEK_API_KEY",),),
    "mistral": (("MISTRAL_API_KEY",),),
    "codestral": (("CODESTRAL_API_KEY",),),
    "gemini": (("GEMINI_API_KEY",), ("GOOGLE_API_KEY",)),
    "cohere": (("COHERE_API_KEY",),),
    "cohere_chat": (("COHERE_API_KEY",),),
    "together_ai": (("TOGETHERAI_API_KEY",),),
    "fireworks_ai": (("FIREWORKS_AI_API_KEY",), ("FIREWORKS_API_KEY",), ("FIREWORKSAI_API_KEY",), ("FIREWORKS_AI_TOKEN",)),
    "xai": (("XAI_API_KEY",),),
    "perplexity": (("PERPLEXITYAI_API_KEY",),),
    "cerebras": (("CEREBRAS_API_KEY",),),
    "deepinfra": (("DEEPINFRA_API_KEY",),),
    "huggingface": (("HUGGINGFACE_API_KEY",),),
    "nvidia_nim": (("NVIDIA_NIM_API_KEY",),),
    "replicate": (("REPLICATE_API_KEY",),),
    "ai21_chat": (("AI21_API_KEY",),),
    "cloudflare": (("CLOUDFLARE_API_KEY", "CLOUDFLARE_ACCOUNT_ID"), ("CLOUDFLARE_API_KEY", "CLOUDFLARE_API_BASE")),
    "bedrock": (),
    "sagemaker": (),
    "vertex_ai": (),
    "ollama": (),
    "ollama_chat": (),
    "lm_studio": (),
    "hosted_vllm": (),
    "llamafile": (),
}

# Model names litellm routes without a prefix; anything else bare needs PROVIDER/MODEL.
_BARE_PREFIXES: tuple[tuple[str, str], ...] = (
    ("gpt-", "openai"),
    ("chatgpt-", "openai"),
    ("ft:gpt-", "openai"),
    ("o1", "openai"),
    ("o3", "openai"),
    ("o4", "openai"),
    ("claude-", "anthropic"),
)


class UnknownProvider(LoopspecError, ValueError):
    """The model name names no provider this table knows; the message says what to write instead."""


@dataclass(frozen=True)
class Credentials:
    provider: str
    missing: tuple[str, ...]
    """Variables to set, empty when the environment already has what the provider needs."""


def provider_of(model: str) -> str:
    """The provider that serves ``model`` (``openai/gpt-4o-mini`` -> ``openai``, ``claude-3-5-haiku``
    -> ``anthropic``); raises :class:`UnknownProvider` with a did-you-mean otherwise."""
    if not model.strip():
        raise UnknownProvider("the model name is empty; write it as PROVIDER/MODEL, e.g. 'openai/gpt-4o-mini'")
    if "/" in model:
        prefix, _, rest = model.partition("/")
        if not rest.strip():
            raise UnknownProvider(f"model '{model}' names no model after the '/'; e.g. '{prefix or 'openai'}/gpt-4o-mini'")
        if prefix in PROVIDER_ENV:
            return prefix
        close = get_close_matches(prefix, PROVIDER_ENV, n=1, cutoff=0.6)
        hint = f"did you mean '{close[0]}/{rest}'?" if close else f"known providers: {', '.join(sorted(PROVIDER_ENV))}"
        raise UnknownProvider(f"unknown provider '{prefix}' in model '{model}'; {hint}")
    for start, provider in _BARE_PREFIXES:
        if model.startswith(start):
            return provider
    head = model.split("-", 1)[0].lower()
    example = f"e.g. '{head}/{model}'" if head in PROVIDER_ENV else f"e.g. 'openai/{model}' for an OpenAI-compatible --api-base"
    raise UnknownProvider(f"cannot tell which provider serves model '{model}'; write it as PROVIDER/MODEL ({example})")


def check_credentials(model: str, environ: Mapping[str, str] | None = None) -> Credentials:
    """Whether the environment holds the credentials ``model``'s provider needs. Never imports litellm."""
    env = os.environ if environ is None else environ
    provider = provider_of(model)
    alternatives = PROVIDER_ENV[provider]
    if not alternatives or any(all(env.get(v) for v in alt) for alt in alternatives):
        return Credentials(provider, ())
    first = alternatives[0]
    return Credentials(provider, tuple(v for v in first if not env.get(v)))


__all__ = ["PROVIDER_ENV", "UnknownProvider", "Credentials", "provider_of", "check_credentials"]
