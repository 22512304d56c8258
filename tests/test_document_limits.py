"""Document limits (docs/limits.md; docs/bad-inputs.md rows G03-G14), enforced in ``prepare``."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

from anyql._document_limits import (
    MAX_EXPANDED_SELECTIONS,
    MAX_FIELDS_PER_RESPONSE_POSITION,
    scan_source,
)
from anyql.execution import Engine, RequestError
from anyql.limits import Limits
from anyql.schema import Schema
from anyql.types import OperationRequest

SDL = """
type Query { me: User  hello(name: String): String  n(x: Int): Int  list(of: [Int]): [Int] }
type User { name: String  friends(first: Int): [User!]! }
type Subscription { tick: Int }
"""


def make_engine(**options: Any) -> Engine:
    limits = options.pop("limits", Limits())
    return Engine(Schema(SDL), limits=limits, **options)


def rejected(query: str, engine: Engine | None = None, **request: Any) -> list[str]:
    """The messages of the RequestError that ``prepare`` raises for ``query``."""
    with pytest.raises(RequestError) as raised:
        (engine or make_engine()).prepare(OperationRequest(query, **request))
    return [error["message"] for error in raised.value.errors]


def friends(depth: int, inner: str = "name") -> str:
    return "friends { " * depth + inner + " }" * depth


# --- pre-parse scan ------------------------------------------------------------------


def test_G03_twenty_thousand_tokens_rejected_before_parsing() -> None:
    query = "{ " + "a " * 20_000 + "}"
    assert rejected(query) == ["Document contains more than 5000 tokens."]


def test_source_larger_than_max_query_bytes_rejected() -> None:
    engine = make_engine(limits=Limits(max_query_bytes=100))
    query = "{ hello }" + " " * 100
    assert rejected(query, engine) == ["Document is larger than the maximum of 100 bytes."]


def test_multibyte_characters_count_as_bytes() -> None:
    engine = make_engine(limits=Limits(max_query_bytes=40))
    query = '{ hello(name: "' + "é" * 15 + '") }'  # 34 characters, 49 bytes
    assert rejected(query, engine) == ["Document is larger than the maximum of 40 bytes."]


def test_deep_selection_nesting_300_levels_is_a_request_error_not_a_recursion_error() -> None:
    query = "{" + "me{" * 300 + "name" + "}" * 301
    assert rejected(query) == ["Document nesting depth exceeds the maximum of 50."]


def test_deep_list_literal_in_arguments_is_a_request_error_not_a_recursion_error() -> None:
    query = "{ list(of: " + "[" * 3000 + "1" + "]" * 3000 + ") }"
    assert rejected(query) == ["Document nesting depth exceeds the maximum of 50."]


def test_brackets_inside_strings_and_comments_are_not_nesting() -> None:
    brackets = "{[(" * 100
    query = f'{{ hello(name: "{brackets}") # {brackets}\n }}'
    make_engine().prepare(OperationRequest(query))


def test_G06_directive_overloading_rejected() -> None:
    query = "{ hello" + " @skip(if: false)" * 51 + " }"
    assert rejected(query) == ["Document has 51 directives, exceeding the maximum of 50."]


def test_scan_source_passes_an_ordinary_document() -> None:
    assert scan_source("query Q($a: Int) { n(x: $a) @include(if: true) }", Limits()) is None


def test_unterminated_strings_do_not_break_the_scan() -> None:
    assert scan_source('{ hello(name: "abc', Limits()) is None
    assert scan_source('{ hello(name: """abc', Limits()) is None
    messages = rejected('{ hello(name: "abc }')
    assert messages[0].startswith("Syntax Error")


# --- after parsing, before validation -------------------------------------------------


def test_G04_depth_over_max_depth_rejected_naming_the_limit() -> None:
    query = "{ me { " + friends(16) + " } }"
    assert rejected(query) == ["Query depth 18 exceeds the maximum of 15."]


def test_depth_at_the_limit_is_accepted() -> None:
    make_engine().prepare(OperationRequest("{ me { " + friends(13) + " } }"))


def test_G14_fragment_reused_deeper_cannot_bypass_the_depth_limit() -> None:
    # Spread at level 2 the fragment reaches depth 4; spread again at level 13 it reaches 15,
    # while the document's own selections stop at depth 12.
    query = (
        "{ me { ...F " + "friends { " * 11 + "...F" + " }" * 11 + " } }"
        " fragment F on User { friends { friends { name } } }"
    )
    make_engine().prepare(OperationRequest(query))  # depth 15 is the default maximum
    assert rejected(query, make_engine(limits=Limits(max_depth=14))) == [
        "Query depth 15 exceeds the maximum of 14."
    ]


def test_G05_alias_overloading_rejected() -> None:
    query = "{ " + " ".join(f"a{i}: hello" for i in range(10_000 // 4)) + " }"
    engine = make_engine(limits=Limits(max_tokens=20_000, max_query_bytes=1 << 20))
    assert rejected(query, engine) == [
        "Query has 2500 aliases, exceeding the maximum of 30.",
        "Query selects 2500 root fields, exceeding the maximum of 20.",
    ]


def test_aliases_in_a_fragment_count_at_every_spread() -> None:
    fragment = "fragment F on Query { " + " ".join(f"a{i}: hello" for i in range(10)) + " }"
    query = "{ me { name } ...F ...F ...F ...F } " + fragment
    engine = make_engine(limits=Limits(max_root_fields=100))
    assert rejected(query, engine) == ["Query has 40 aliases, exceeding the maximum of 30."]


def test_root_fields_limit() -> None:
    query = "{ " + " ".join(f"n(x: {i})" for i in range(21)) + " }"
    assert "Query selects 21 root fields, exceeding the maximum of 20." in rejected(query)


def test_G07_fragment_cycle_is_a_validation_error_without_recursion() -> None:
    query = "{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }"
    assert rejected(query) == ["Cannot spread fragment 'A' within itself via 'B'."]


def test_long_fragment_chain_does_not_raise_recursion_error() -> None:
    count = 1500
    chain = " ".join(f"fragment F{i} on Query {{ ...F{i + 1} }}" for i in range(count))
    query = "{ ...F0 } " + chain + f" fragment F{count} on Query {{ hello }}"
    engine = make_engine(limits=Limits(max_tokens=50_000, max_query_bytes=1 << 20))
    with contextlib.suppress(RequestError):  # graphql-core may abort validation
        engine.prepare(OperationRequest(query))  # it must just not crash


def test_fragment_bomb_rejected_by_the_expansion_budget() -> None:
    fragments = ["fragment F0 on User { name }"]
    for level in range(1, 20):
        inner = f"{{ ...F{level - 1} }}"
        fragments.append(f"fragment F{level} on User {{ friends {inner} me: friends {inner} }}")
    engine = make_engine(limits=Limits(max_depth=100, max_aliases=1000))
    query = "{ me { ...F19 } } " + " ".join(fragments)
    assert rejected(query, engine) == [
        f"Document is too complex: more than {MAX_EXPANDED_SELECTIONS} selections"
        " after expanding fragments."
    ]


def test_1000_same_named_fields_with_different_arguments_rejected_before_validate() -> None:
    query = "{" + " ".join(f"n(x:{i})" for i in range(1000)) + "}"
    assert 8_000 < len(query) < 10_000
    assert rejected(query) == ["Document contains more than 5000 tokens."]
    # Even with the token and root-field limits raised, the field-merging limit turns it
    # away before graphql-core's quadratic overlap validation runs.
    engine = make_engine(limits=Limits(max_tokens=100_000, max_root_fields=10_000))
    assert rejected(query, engine) == [
        f"Field 'n' is selected 1000 times at one position, exceeding the maximum of"
        f" {MAX_FIELDS_PER_RESPONSE_POSITION}."
    ]


def test_many_fields_merged_into_one_position_rejected_before_validate() -> None:
    count = MAX_FIELDS_PER_RESPONSE_POSITION + 1
    inner = " ".join(f"friends(first: {i}) {{ name }}" for i in range(count))
    assert rejected("{ me { " + inner + " } }") == [
        f"Field 'friends' is selected {count} times at one position, exceeding the"
        f" maximum of {MAX_FIELDS_PER_RESPONSE_POSITION}."
    ]


def test_fields_merged_across_sibling_selections_count_together() -> None:
    half = MAX_FIELDS_PER_RESPONSE_POSITION // 2 + 1
    inner = " ".join(f"friends(first: {i}) {{ name }}" for i in range(half))
    query = "{ me { friends { " + inner + " } friends { " + inner + " } } }"
    assert rejected(query)[0].startswith("Field 'friends' is selected")


# --- validation -----------------------------------------------------------------------


def test_G09_introspection_disabled_rejects_schema_and_type() -> None:
    engine = make_engine(introspection=False)
    assert (
        "introspection has been disabled" in rejected("{ __schema { types { name } } }", engine)[0]
    )
    assert (
        "introspection has been disabled"
        in rejected('{ __type(name: "User") { name } }', engine)[0]
    )
    engine.prepare(OperationRequest("{ __typename }"))


def test_G09_introspection_disabled_hides_did_you_mean_suggestions() -> None:
    assert "Did you mean" in rejected("{ helo }")[0]
    assert rejected("{ helo }", make_engine(introspection=False)) == [
        "Cannot query field 'helo' on type 'Query'."
    ]


def test_introspection_enabled_by_default() -> None:
    make_engine().prepare(OperationRequest("{ __schema { queryType { name } } }"))


def test_G12_more_than_100_validation_errors_are_capped() -> None:
    query = "{ me { " + " ".join(f"x{i}" for i in range(150)) + " } }"
    messages = rejected(query)
    assert len(messages) == 101
    assert messages[-1] == "Too many validation errors, error limit reached. Validation aborted."


def test_syntax_error_is_a_request_error_with_locations() -> None:
    engine = make_engine()
    with pytest.raises(RequestError) as raised:
        engine.prepare(OperationRequest("{ hello"))
    error = raised.value.errors[0]
    assert error["message"].startswith("Syntax Error")
    assert error["locations"] == [{"line": 1, "column": 8}]


# --- operation selection (P23) ---------------------------------------------------------


def test_P23_unknown_operation_name() -> None:
    assert rejected("query A { hello }", operation_name="B") == ["Unknown operation named 'B'."]


def test_P23_document_with_only_fragments() -> None:
    messages = rejected("fragment F on Query { hello }")
    assert messages == ["Fragment 'F' is never used."]


def test_several_operations_need_an_operation_name() -> None:
    query = "query A { hello } query B { me { name } }"
    assert rejected(query) == ["Must provide operation name if query contains multiple operations."]
    prepared = make_engine().prepare(OperationRequest(query, operation_name="B"))
    assert prepared.operation.name is not None and prepared.operation.name.value == "B"


# --- the cache --------------------------------------------------------------------------


def test_parse_cache_hit_returns_the_identical_document() -> None:
    engine = make_engine()
    first = engine.prepare(OperationRequest("{ hello }"))
    second = engine.prepare(OperationRequest("{ hello }", variables={"unused": 1}))
    assert second.document is first.document


def test_cache_is_bounded_and_least_recently_used_goes_first() -> None:
    engine = make_engine(cache_size=2)
    a = engine.prepare(OperationRequest("{ a: hello }")).document
    engine.prepare(OperationRequest("{ b: hello }"))
    assert engine.prepare(OperationRequest("{ a: hello }")).document is a  # refreshes a
    engine.prepare(OperationRequest("{ c: hello }"))  # evicts b
    assert engine.prepare(OperationRequest("{ a: hello }")).document is a
    assert len(engine._documents) == 2
    assert "{ b: hello }" not in engine._documents


def test_rejected_documents_are_cached_too() -> None:
    engine = make_engine()
    first = rejected("{ nope }", engine)
    assert rejected("{ nope }", engine) == first
    assert "{ nope }" in engine._documents


def test_prepared_operation_describes_the_operation() -> None:
    engine = make_engine()
    prepared = engine.prepare(
        OperationRequest("subscription S { ...T } fragment T on Subscription { tick }")
    )
    assert prepared.operation_type == "subscription"
    assert prepared.root_field == "Subscription.tick"
    query = engine.prepare(OperationRequest("{ hello }"))
    assert (query.operation_type, query.root_field) == ("query", None)
