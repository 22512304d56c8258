"""Limits on a GraphQL document, enforced without recursion before validation runs.

Owns ``DocumentCache`` (source text -> parsed and validated document, or its errors), the
flat pre-parse scan (source size, tokens, bracket nesting, directives) and the post-parse
analysis (selection depth, aliases, root fields, fields merged into one response
position, fragment expansion). Both run before graphql-core's ``validate``: the
parser and the validation rules recurse, and ``OverlappingFieldsCanBeMergedRule`` is
quadratic in the number of fields sharing a response position, so a small hostile document
must be turned away here, in time linear in its size. Imports ``graphql`` and the standard
library only (never anyio); the execution layer calls it.

The analysis expands fragment spreads *at every spread location* (a fragment's depth counts
wherever it is spread, so reusing a fragment cannot bypass the depth limit) and skips a
spread already being expanded on the current path, so cycles end the walk (they are
reported by graphql-core's ``NoFragmentCyclesRule`` afterwards). The total number of
expanded selections is bounded, so fragment "bombs" cannot make the walk itself expensive.
"""

from __future__ import annotations

import re
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    ASTValidationRule,
    GraphQLError,
    GraphQLSchema,
    parse,
    specified_rules,
    validate,
)
from graphql.language import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    Node,
    OperationDefinitionNode,
    SelectionSetNode,
)
from graphql.validation import NoSchemaIntrospectionCustomRule

from .limits import Limits

__all__ = [
    "MAX_EXPANDED_SELECTIONS",
    "MAX_FIELDS_PER_RESPONSE_POSITION",
    "MAX_VALIDATION_ERRORS",
    "CheckedDocument",
    "DocumentCache",
    "check_document",
    "scan_source",
]

#: Fields merged into one response position (same response names from the root, after
#: expanding fragments). graphql-core's overlap validation is quadratic in this number.
MAX_FIELDS_PER_RESPONSE_POSITION = Limits().max_fields_per_position
#: Selections visited while expanding every fragment spread of a document.
MAX_EXPANDED_SELECTIONS = Limits().max_expanded_selections
#: Validation stops after this many errors (graphql-core adds one saying so).
MAX_VALIDATION_ERRORS = 100


@dataclass(frozen=True, slots=True)
class CheckedDocument:
    """The parsed, valid document, or the errors that make the source unusable.

    ``plans`` is the execution layer's store of operation plans for this document: kept
    here so that a plan lives exactly as long as its document stays cached.
    """

    document: DocumentNode | None
    errors: tuple[GraphQLError, ...]
    plans: dict[Any, Any] = field(default_factory=dict, compare=False, repr=False)


class DocumentCache:
    """Scan, parse, check and validate sources, remembering the outcome per source text.

    Args:
        schema: the schema documents are validated against.
        limits: the document limits.
        introspection: False adds graphql-core's ``NoSchemaIntrospectionCustomRule`` and
            hides "Did you mean" suggestions.
        size: entries kept; the least recently used goes first.
        extra_rules: validation rules run after the built-in ones (and after the
            introspection rule); a source they reject is cached as rejected.
    """

    def __init__(
        self,
        schema: GraphQLSchema,
        limits: Limits,
        *,
        introspection: bool,
        size: int,
        extra_rules: Sequence[type[ASTValidationRule]] = (),
    ) -> None:
        self.schema = schema
        self.limits = limits
        self.introspection = introspection
        self.size = size
        self._entries: OrderedDict[str, CheckedDocument] = OrderedDict()
        rules = list(specified_rules)
        if not introspection:
            rules.append(NoSchemaIntrospectionCustomRule)
        rules.extend(extra_rules)
        self._rules = tuple(rules)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, source: object) -> bool:
        return source in self._entries

    def get(self, source: str) -> CheckedDocument:
        """The checked document for ``source``, from the cache or made now."""
        entries = self._entries
        checked = entries.get(source)
        if checked is not None:
            entries.move_to_end(source)
            return checked
        checked = self._check(source)
        if len(source) <= self.limits.max_query_bytes:  # never keep oversized sources
            entries[source] = checked
            if len(entries) > self.size:
                entries.popitem(last=False)
        return checked

    def _check(self, source: str) -> CheckedDocument:
        limits = self.limits
        error = scan_source(source, limits)
        if error is not None:
            return CheckedDocument(None, (error,))
        try:
            document = parse(source, max_tokens=limits.max_tokens)
        except GraphQLError as syntax_error:
            return CheckedDocument(None, (syntax_error,))
        errors: Sequence[GraphQLError] = check_document(document, limits) or validate(
            self.schema,
            document,
            self._rules,
            max_errors=MAX_VALIDATION_ERRORS,
            hide_suggestions=not self.introspection,
        )
        if errors:
            return CheckedDocument(None, tuple(errors))
        return CheckedDocument(document, ())


# One match per lexical token (comments included, as graphql-core's ``max_tokens`` does).
# Whitespace, commas and anything unknown are skipped by ``finditer``; parse reports those.
_TOKEN = re.compile(
    r'"""(?:\\"""|[\s\S])*?(?:"""|\Z)'  # block string, possibly unterminated
    r'|"(?:[^"\\\n\r]|\\.)*"?'  # string, possibly unterminated
    r"|#[^\n\r]*"  # comment
    r"|\.\.\."  # spread
    r"|[!$&()\[\]{}:=@|]"  # punctuators
    r"|[-+.\w]+"  # names and numbers
)
_OPENERS = frozenset("{([")
_CLOSERS = frozenset("})]")


def scan_source(source: str, limits: Limits) -> GraphQLError | None:
    """Check size, tokens, bracket nesting and directives of ``source`` before parsing.

    Args:
        source: the document text as the client sent it.
        limits: ``max_query_bytes``, ``max_tokens``, ``max_nesting`` and ``max_directives``
            are read.

    Returns:
        The error for the first limit exceeded, or None when the source may be parsed.
    """
    max_bytes = limits.max_query_bytes
    if len(source) > max_bytes or len(source.encode("utf-8", "replace")) > max_bytes:
        return GraphQLError(f"Document is larger than the maximum of {max_bytes} bytes.")
    depth = directives = 0
    for tokens, match in enumerate(_TOKEN.finditer(source), start=1):
        if tokens > limits.max_tokens:
            return GraphQLError(f"Document contains more than {limits.max_tokens} tokens.")
        first = match.group()[0]
        if first in _OPENERS:
            depth += 1
            if depth > limits.max_nesting:
                return GraphQLError(
                    f"Document nesting depth exceeds the maximum of {limits.max_nesting}."
                )
        elif first in _CLOSERS:
            depth = max(depth - 1, 0)
        elif first == "@":
            directives += 1
    if directives > limits.max_directives:
        return GraphQLError(
            f"Document has {directives} directives, exceeding the maximum of"
            f" {limits.max_directives}."
        )
    return None


@dataclass(slots=True)
class _Tally:
    """What one walk from a root definition found."""

    depth: int = 0
    aliases: int = 0
    root_fields: int = 0
    crowded_name: str | None = None
    crowded_count: int = 0


class _Walker:
    """Expands one document's selections, sharing the expansion budget across roots."""

    def __init__(self, document: DocumentNode, budget: int) -> None:
        self.fragments = {
            definition.name.value: definition
            for definition in document.definitions
            if isinstance(definition, FragmentDefinitionNode)
        }
        self.budget = budget
        self.reached: set[str] = set()

    def walk(self, selection_set: SelectionSetNode) -> _Tally | None:
        """Tally the selections under ``selection_set``; None when the budget ran out."""
        tally = _Tally()
        positions: dict[tuple[int, str], int] = {}
        counts: Counter[int] = Counter()
        # (selection set, field level, response position of its parent, spread chain)
        stack: list[tuple[SelectionSetNode, int, int, _Chain | None]] = [
            (selection_set, 1, 0, None)
        ]
        while stack:
            selections, level, parent, chain = stack.pop()
            for selection in selections.selections:
                self.budget -= 1
                if self.budget < 0:
                    return None
                if isinstance(selection, FieldNode):
                    name = (selection.alias or selection.name).value
                    position = positions.setdefault((parent, name), len(positions) + 1)
                    counts[position] += 1
                    if counts[position] > tally.crowded_count:
                        tally.crowded_name, tally.crowded_count = name, counts[position]
                    tally.depth = max(tally.depth, level)
                    tally.aliases += selection.alias is not None
                    tally.root_fields += level == 1
                    if selection.selection_set is not None:
                        stack.append((selection.selection_set, level + 1, position, chain))
                elif isinstance(selection, InlineFragmentNode):
                    stack.append((selection.selection_set, level, parent, chain))
                elif isinstance(selection, FragmentSpreadNode):
                    spread = selection.name.value
                    fragment = self.fragments.get(spread)
                    if fragment is None or _on_chain(chain, spread):
                        continue
                    self.reached.add(spread)
                    stack.append((fragment.selection_set, level, parent, _Chain(spread, chain)))
        return tally


@dataclass(frozen=True, slots=True)
class _Chain:
    """The fragments being expanded on the current path (a linked list, innermost first)."""

    name: str
    outer: _Chain | None


def _on_chain(chain: _Chain | None, name: str) -> bool:
    while chain is not None:
        if chain.name == name:
            return True
        chain = chain.outer
    return False


def check_document(document: DocumentNode, limits: Limits) -> list[GraphQLError]:
    """Check depth, aliases, root fields and field merging of every definition.

    Operations are checked with their fragments expanded at each spread; fragments no
    operation reaches are checked on their own (they would still be validated).

    Args:
        document: the parsed document.
        limits: ``max_depth``, ``max_aliases`` and ``max_root_fields`` are read.

    Returns:
        The limit errors, empty when the document may be validated.
    """
    walker = _Walker(document, limits.max_expanded_selections)
    errors: list[GraphQLError] = []
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    for operation in operations:
        errors.extend(_check_root(walker, operation, limits, is_operation=True))
    for name, fragment in walker.fragments.items():
        if name not in walker.reached:
            errors.extend(_check_root(walker, fragment, limits, is_operation=False))
    return errors


def _check_root(
    walker: _Walker,
    definition: OperationDefinitionNode | FragmentDefinitionNode,
    limits: Limits,
    *,
    is_operation: bool,
) -> list[GraphQLError]:
    tally = walker.walk(definition.selection_set)
    if tally is None:
        message = (
            f"Document is too complex: more than {limits.max_expanded_selections} selections"
            " after expanding fragments."
        )
        return [_error(message, definition)]
    errors: list[GraphQLError] = []
    if tally.depth > limits.max_depth:
        message = f"Query depth {tally.depth} exceeds the maximum of {limits.max_depth}."
        errors.append(_error(message, definition))
    if tally.crowded_count > limits.max_fields_per_position:
        message = (
            f"Field '{tally.crowded_name}' is selected {tally.crowded_count} times at one"
            f" position, exceeding the maximum of {limits.max_fields_per_position}."
        )
        errors.append(_error(message, definition))
    if not is_operation:
        return errors
    if tally.aliases > limits.max_aliases:
        message = (
            f"Query has {tally.aliases} aliases, exceeding the maximum of {limits.max_aliases}."
        )
        errors.append(_error(message, definition))
    if tally.root_fields > limits.max_root_fields:
        message = (
            f"Query selects {tally.root_fields} root fields, exceeding the maximum of"
            f" {limits.max_root_fields}."
        )
        errors.append(_error(message, definition))
    return errors


def _error(message: str, node: Node) -> GraphQLError:
    return GraphQLError(message, node)
