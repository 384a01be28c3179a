"""The `/canary` command language: text → typed Command, help text, helpful errors. Pure."""

from commands.grammar import GrammarError, parse_duration, parse_service, parse_steps
from commands.help import help_text
from commands.model import Command, Verb
from commands.parse import MAX_LENGTH, CommandError, parse, parse_cohort

__all__ = [
    "MAX_LENGTH",
    "Command",
    "CommandError",
    "GrammarError",
    "Verb",
    "help_text",
    "parse",
    "parse_cohort",
    "parse_duration",
    "parse_service",
    "parse_steps",
]
