"""pipesynth: natural-language ML task -> ranked instructions -> code -> sandboxed run -> graded score."""

from src.config import register_resolvers

register_resolvers()
