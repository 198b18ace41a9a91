"""Label selectors: parsing, matching, printing and errors, against Kubernetes' behaviour.

Expected error texts are copied from Kubernetes (its sources and real kube-apiserver
answers), never computed with the code under test.
"""

from __future__ import annotations

from typing import Any

import pytest

from kubelite.api.labels import (
    NOTHING,
    SelectorError,
    parse_selector,
    selector_from_label_selector,
    selector_from_map,
)
from kubelite.api.validation.meta import validate_label_selector

QUALIFIED_NAME_PART = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
    "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
LABEL_VALUE = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used "
    "for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("", ""),
        ("a=b", "a=b"),
        ("a==b", "a==b"),
        ("a!=b", "a!=b"),
        ("x in (foo,,baz),y,z notin ()", "x in (,baz,foo),y,z notin ()"),
        ("b, !a", "!a,b"),  # sorted by key
        ("  a =  b ,\tc\n", "a=b,c"),
        ("a in(z,y,y)", "a in (y,z)"),  # values de-duplicated and sorted
        ("in in (in,notin)", "in in (in,notin)"),  # keywords are ordinary words as keys and values
        ("a=", "a="),
        ("a>1,b<2", "a>1,b<2"),
        ("example.com/app=web", "example.com/app=web"),
    ],
)
def test_parse_canonical_form(text: str, canonical: str) -> None:
    assert str(parse_selector(text)) == canonical


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("app:monolith", f'unable to parse requirement: <nil>: Invalid value: "app:monolith": {QUALIFIED_NAME_PART}'),
        (
            "a/b/c ?=? def",
            'unable to parse requirement: <nil>: Invalid value: "a/b/c": a qualified name must consist of '
            "alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character "
            "(e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
            "'([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' "
            "(e.g. 'example.com/MyName')",
        ),
        ("a=b_", f'unable to parse requirement: values[0][a]: Invalid value: "b_": {LABEL_VALUE}'),
        ("a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"),
        ("a=b c", "found 'c', expected: ',' or 'end of string'"),
        ("a,", "found '', expected: identifier after ','"),
        (",a", "found ',', expected: !, identifier, or 'end of string'"),
        ("!a=b", "found '=', expected: ',' or 'end of string'"),
        ("!", "unable to parse requirement: found '', expected: identifier"),
        ("a in (b", "unable to parse requirement: found '', expected: ',' or ')'"),
        ("a in b", "unable to parse requirement: found 'b' expected: '('"),
        ("a in (=)", "unable to parse requirement: found '=', expected: ',', ')' or identifier"),
        ("a=(b)", "unable to parse requirement: found '(', expected: identifier"),
        ("a>b", "unable to parse requirement: values[0]: Invalid value: \"b\": "
                "for 'Gt', 'Lt' operators, the value must be an integer"),
    ],
)
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(SelectorError) as e:
        parse_selector(text)
    assert str(e.value) == message


def test_matching() -> None:
    labels = {"app": "web", "tier": "front", "n": "10"}
    assert parse_selector("").matches(labels)
    assert parse_selector("app=web,tier in (front,back)").matches(labels)
    assert not parse_selector("app=web,tier notin (front)").matches(labels)
    assert parse_selector("missing notin (x),missing!=y,!missing").matches(labels)
    assert not parse_selector("missing").matches(labels)
    assert not parse_selector("missing in (x)").matches(labels)
    assert parse_selector("n>9,n<11").matches(labels)
    assert not parse_selector("app>1").matches(labels)  # not an integer: no match
    assert parse_selector("tier in (,front)").matches(labels)
    assert parse_selector("empty in ()").matches({"empty": ""})


def test_empty_and_exact_matches() -> None:
    assert parse_selector("").empty
    assert not parse_selector("a").empty
    sel = parse_selector("a=1,b in (2),c in (3,4),d!=5,e")
    assert sel.exact_matches() == {"a": "1", "b": "2"}
    assert sel.requires_exact_match("c") is None


def test_label_selector_object() -> None:
    assert selector_from_label_selector(None) is NOTHING
    assert not NOTHING.matches({}) and not NOTHING.empty
    assert selector_from_label_selector({}).empty
    sel = selector_from_label_selector(
        {
            "matchLabels": {"z": "1", "a": "2"},
            "matchExpressions": [
                {"key": "m", "operator": "In", "values": ["y", "x"]},
                {"key": "gone", "operator": "DoesNotExist"},
            ],
        }
    )
    assert str(sel) == "a=2,!gone,m in (x,y),z=1"
    assert sel.matches({"a": "2", "m": "x", "z": "1"})
    assert not sel.matches({"a": "2", "m": "x", "z": "1", "gone": ""})


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]},
         '"Gt" is not a valid pod selector operator'),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]},
         "values: Invalid value: []string{}: for 'in', 'notin' operators, values set can't be empty"),
        ({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]},
         'values: Invalid value: []string{"x"}: values set must be empty for exists and does not exist'),
        ({"matchLabels": {"a_": "b"}}, f'key: Invalid value: "a_": {QUALIFIED_NAME_PART}'),
    ],
)
def test_label_selector_object_errors(obj: dict[str, Any], message: str) -> None:
    with pytest.raises(SelectorError) as e:
        selector_from_label_selector(obj)
    assert str(e.value) == message


def test_selector_from_map() -> None:
    assert selector_from_map(None).empty
    sel = selector_from_map({"b": "2", "a": "1"})
    assert str(sel) == "a=1,b=2"
    assert sel.matches({"a": "1", "b": "2", "c": "3"})
    assert not sel.matches({"a": "1"})


def test_validate_label_selector() -> None:
    errs = validate_label_selector(
        {
            "matchLabels": {"ok": "v_"},
            "matchExpressions": [
                {"key": "a", "operator": "In"},
                {"key": "b", "operator": "Exists", "values": ["x"]},
                {"key": "c", "operator": "Near"},
            ],
        },
        "spec.selector",
    )
    assert [str(e) for e in errs] == [
        f'spec.selector.matchLabels: Invalid value: "v_": {LABEL_VALUE}',
        "spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'",
        "spec.selector.matchExpressions[1].values: Forbidden: may not be specified when `operator` is "
        "'Exists' or 'DoesNotExist'",
        'spec.selector.matchExpressions[2].operator: Invalid value: "Near": not a valid selector operator',
    ]
