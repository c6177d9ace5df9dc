"""Read our Dockerfile the way the builder does, so tests can run exactly what the image would run.

Covers the syntax the Dockerfile uses: line continuations, comment lines (also inside a continuation),
stages (`FROM ... AS name`), `ENV k=v` with `$VAR`/`${VAR}` expansion, and exec-form (JSON) commands.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

DOCKERFILE = Path(__file__).resolve().parents[2] / "Dockerfile"
_VARIABLE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY, ENV ...
    arguments: str
    line: int  # where it starts, 1-based


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None

    def env(self, inherited: dict[str, str]) -> dict[str, str]:
        """The stage's ENV on top of `inherited` (the base image's), expanded in order as the builder does."""
        environment = dict(inherited)
        for instruction in self.all("ENV"):
            for key, value in parse_env(instruction.arguments):
                environment[key] = expand(value, environment)
        return environment

    def exec_form(self, keyword: str) -> list[str]:
        instruction = self.last(keyword)
        if instruction is None:
            return []
        return exec_form(instruction.arguments, instruction.line)


def instructions(text: str) -> list[Instruction]:
    found: list[Instruction] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue  # comment lines are dropped even inside a continuation; blank lines between instructions
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        found.append(Instruction(keyword.upper(), arguments.strip(), start))
        pending = ""
    return found


def stages(text: str) -> list[Stage]:
    result: list[Stage] = []
    for instruction in instructions(text):
        if instruction.keyword == "FROM":
            words = instruction.arguments.split()
            if words and words[0].startswith("--platform"):
                words = words[1:]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else str(len(result))
            result.append(Stage(words[0], name))
        elif result:
            result[-1].instructions.append(instruction)
    return result


def parse_env(arguments: str) -> list[tuple[str, str]]:
    words = shlex.split(arguments, posix=True)
    if words and "=" not in words[0]:
        return [(words[0], arguments.split(None, 1)[1] if len(words) > 1 else "")]  # legacy `ENV key value`
    return [tuple(word.split("=", 1)) for word in words]  # type: ignore[misc]


def expand(value: str, environment: dict[str, str]) -> str:
    return _VARIABLE.sub(lambda m: environment.get(m.group(1) or m.group(2), ""), value)


def exec_form(arguments: str, line: int) -> list[str]:
    try:
        command = json.loads(arguments)
    except json.JSONDecodeError:
        raise ValueError(f"Dockerfile line {line}: not in exec (JSON) form: {arguments}") from None
    if not (isinstance(command, list) and all(isinstance(word, str) for word in command)):
        raise ValueError(f"Dockerfile line {line}: exec form must be a JSON list of strings")
    return command


def healthcheck(stage: Stage) -> tuple[dict[str, str], list[str]]:
    """The HEALTHCHECK's options (--interval ...) and its exec-form command."""
    instruction = stage.last("HEALTHCHECK")
    if instruction is None:
        return {}, []
    options: dict[str, str] = {}
    rest = instruction.arguments
    while rest.startswith("--"):
        option, _, rest = rest.partition(" ")
        key, _, value = option[2:].partition("=")
        options[key] = value
        rest = rest.lstrip()
    keyword, _, command = rest.partition(" ")
    if keyword.upper() != "CMD":
        raise ValueError(f"Dockerfile line {instruction.line}: HEALTHCHECK must run a CMD")
    return options, exec_form(command.strip(), instruction.line)


def copy_sources(instruction: Instruction) -> tuple[dict[str, str], list[str], str]:
    """A COPY's flags (--from=builder ...), its sources and its destination."""
    words = shlex.split(instruction.arguments)
    flags = dict(word[2:].partition("=")[::2] for word in words if word.startswith("--"))
    paths = [word for word in words if not word.startswith("--")]
    return flags, paths[:-1], paths[-1]
