"""Loads agent definitions from YAML/JSON text and files, with errors that point at line and field.

``load_agent_file("examples/agents/acme-shop/agent.yaml")`` returns a :class:`LoadedAgent`: the
validated definition plus its knowledge documents read from disk. Any problem raises
:class:`AgentDefinitionError` listing every problem as ``file:line: field: message``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from shared.agents.models import AgentDefinition
from shared.agents.validation import Path as FieldPath
from shared.agents.validation import validate_agent

AGENT_FILE_NAMES = ("agent.yaml", "agent.yml", "agent.json")
MAX_DEFINITION_BYTES = 2_000_000
# A real definition nests about six levels and has a few thousand nodes; the limits stop
# documents that would exhaust the stack (deep nesting, recursive aliases) or memory (aliases
# that expand exponentially) before PyYAML builds them.
MAX_NESTING = 32
MAX_NODES = 200_000


@dataclass(frozen=True)
class LocatedProblem:
    source: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line else self.source
        return f"{where}: {self.field or '(document)'}: {self.message}"


class AgentDefinitionError(ValueError):
    """An agent definition is invalid; ``problems`` says where and why."""

    def __init__(self, problems: list[LocatedProblem]) -> None:
        self.problems = problems
        lines = "\n  ".join(str(p) for p in problems)
        super().__init__(f"invalid agent definition ({len(problems)} problem(s)):\n  {lines}")


@dataclass(frozen=True)
class KnowledgeText:
    doc_id: str
    title: str
    text: str


@dataclass(frozen=True)
class LoadedAgent:
    definition: AgentDefinition
    source: str
    version: int | None = None
    knowledge: tuple[KnowledgeText, ...] = field(default_factory=tuple)

    @property
    def agent_id(self) -> str:
        return self.definition.id


def _field_name(path: FieldPath) -> str:
    return ".".join(str(p) for p in path)


class _LineMap:
    """Field path -> line number (1-based) of a YAML document, built from its node tree."""

    def __init__(self, root: yaml.Node | None) -> None:
        self.lines: dict[FieldPath, int] = {}
        self.duplicates: list[tuple[FieldPath, int]] = []
        if root is not None:
            self._walk(root, ())

    def _walk(self, node: yaml.Node, path: FieldPath) -> None:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                key = str(key_node.value)
                if key in seen:
                    self.duplicates.append(((*path, key), key_node.start_mark.line + 1))
                seen.add(key)
                self.lines[(*path, key)] = key_node.start_mark.line + 1
                self._walk(value_node, (*path, key))
                self.lines[(*path, key)] = key_node.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self._walk(item, (*path, index))

    def line_of(self, path: FieldPath) -> int | None:
        """Line of the deepest known prefix of ``path`` (pydantic adds union tags to paths)."""
        best: int | None = self.lines.get(())
        current: FieldPath = ()
        for part in path:
            candidate = (*current, part)
            if candidate in self.lines:
                current = candidate
                best = self.lines[candidate]
        return best


def parse_agent(
    data: Any, *, source: str = "<definition>", lines: _LineMap | None = None
) -> AgentDefinition:
    """Validate already-parsed data (a dict from YAML, JSON or the database)."""
    lines = lines or _LineMap(None)
    problems = [
        LocatedProblem(source, line, _field_name(path), f"key '{path[-1]}' appears twice")
        for path, line in lines.duplicates
    ]
    if not isinstance(data, dict):
        kind = type(data).__name__ if data is not None else "nothing"
        problems.append(LocatedProblem(source, 1, "", f"expected a mapping of fields, got {kind}"))
        raise AgentDefinitionError(problems)
    try:
        agent = AgentDefinition.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            loc = tuple(error["loc"])
            message = error["msg"]
            if error["type"] == "extra_forbidden":
                message = f"unknown field '{loc[-1]}'"
            problems.append(LocatedProblem(source, lines.line_of(loc), _field_name(loc), message))
        raise AgentDefinitionError(problems) from None
    problems += [
        LocatedProblem(source, lines.line_of(p.path), _field_name(p.path), p.message)
        for p in validate_agent(agent)
    ]
    if problems:
        raise AgentDefinitionError(problems)
    return agent


def _too_complex(source: str, mark: Any, message: str) -> AgentDefinitionError:
    return AgentDefinitionError([LocatedProblem(source, mark.line + 1, "", message)])


def _check_shape(text: str, source: str) -> None:
    """Nesting depth and node count with every alias expanded, from the parser's event stream
    (which, unlike the composer, does not recurse)."""
    open_nodes: list[tuple[str | None, int]] = []  # (anchor, nodes so far) per open collection
    sizes: dict[str, int] = {}  # anchor -> nodes it stands for
    total = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            if len(open_nodes) >= MAX_NESTING:
                raise _too_complex(
                    source, event.start_mark, f"nested deeper than {MAX_NESTING} levels"
                )
            open_nodes.append((event.anchor, 1))
            added = 1
        elif isinstance(event, yaml.CollectionEndEvent):
            anchor, size = open_nodes.pop()
            if anchor is not None:
                sizes[anchor] = size
            if open_nodes:
                parent_anchor, parent_size = open_nodes[-1]
                open_nodes[-1] = (parent_anchor, parent_size + size)
            continue
        elif isinstance(event, yaml.AliasEvent):
            if any(anchor == event.anchor for anchor, _ in open_nodes):
                raise _too_complex(
                    source, event.start_mark, f"alias *{event.anchor} refers to a node holding it"
                )
            added = sizes.get(str(event.anchor), 1)
        elif isinstance(event, yaml.ScalarEvent):
            if event.anchor is not None:
                sizes[event.anchor] = 1
            added = 1
        else:
            continue
        total += added
        if total > MAX_NODES:
            raise _too_complex(
                source, event.start_mark, f"more than {MAX_NODES} nodes with aliases expanded"
            )
        if open_nodes and not isinstance(event, yaml.CollectionStartEvent):
            anchor, size = open_nodes[-1]
            open_nodes[-1] = (anchor, size + added)


def load_agent_text(text: str, *, source: str = "<definition>") -> AgentDefinition:
    """Parse YAML or JSON text into a validated definition."""
    if len(text.encode()) > MAX_DEFINITION_BYTES:
        raise AgentDefinitionError(
            [LocatedProblem(source, None, "", f"larger than {MAX_DEFINITION_BYTES} bytes")]
        )
    try:
        _check_shape(text, source)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(exc, "problem", None) or str(exc)
        raise AgentDefinitionError(
            [LocatedProblem(source, line, "", f"not valid YAML/JSON: {reason}")]
        ) from None
    return parse_agent(data, source=source, lines=_LineMap(root))


def agent_file_in(folder: Path) -> Path | None:
    for name in AGENT_FILE_NAMES:
        if (folder / name).is_file():
            return folder / name
    return None


def load_agent_file(path: Path | str, *, version: int | None = None) -> LoadedAgent:
    """Load a definition file (or a folder holding ``agent.yaml``) and its knowledge documents."""
    path = Path(path)
    if path.is_dir():
        found = agent_file_in(path)
        if found is None:
            raise AgentDefinitionError(
                [LocatedProblem(str(path), None, "", "folder has no agent.yaml or agent.json")]
            )
        path = found
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise AgentDefinitionError([LocatedProblem(str(path), None, "", str(exc))]) from None
    definition = load_agent_text(text, source=str(path))
    knowledge = read_knowledge(definition, base_dir=path.parent, source=str(path))
    return LoadedAgent(definition, str(path), version, knowledge)


def read_knowledge(
    definition: AgentDefinition, *, base_dir: Path | None, source: str
) -> tuple[KnowledgeText, ...]:
    """The text of each knowledge document: inline, or a file relative to ``base_dir``."""
    texts = []
    problems = []
    for index, doc in enumerate(definition.knowledge.documents):
        where = f"knowledge.documents.{index}"
        if doc.text is not None:
            texts.append(
                KnowledgeText(f"inline-{index}", doc.title or f"document {index}", doc.text)
            )
            continue
        assert doc.path is not None
        if base_dir is None:
            problems.append(
                LocatedProblem(source, None, where, "file documents need a definition on disk")
            )
            continue
        file = (base_dir / doc.path).resolve()
        if not file.is_relative_to(base_dir.resolve()):
            problems.append(LocatedProblem(source, None, where, "path leaves the agent's folder"))
            continue
        try:
            body = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(LocatedProblem(source, None, where, f"cannot read: {exc}"))
            continue
        texts.append(KnowledgeText(doc.path, doc.title or file.stem.replace("-", " "), body))
    if problems:
        raise AgentDefinitionError(problems)
    return tuple(texts)


def inline_knowledge(loaded: LoadedAgent) -> AgentDefinition:
    """The definition with its knowledge files replaced by their text (for storing in the DB)."""
    from shared.agents.models import KnowledgeDocument

    documents = [KnowledgeDocument(title=k.title, text=k.text) for k in loaded.knowledge]
    knowledge = loaded.definition.knowledge.model_copy(update={"documents": documents})
    return loaded.definition.model_copy(update={"knowledge": knowledge})


def find_agent(agents_dir: Path, agent_id: str) -> Path:
    """The definition file of ``agent_id`` under ``agents_dir`` (folder name or file stem)."""
    candidates = [
        agents_dir / agent_id,
        *(agents_dir / f"{agent_id}{ext}" for ext in (".yaml", ".yml", ".json")),
    ]
    for candidate in candidates:
        if candidate.is_dir() and agent_file_in(candidate):
            return candidate
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no agent '{agent_id}' under {agents_dir}")
