"""YAML request bodies, loaded with the alias limit kube-apiserver's YAML decoder enforces.

A YAML anchor may be referenced any number of times, and references nest: 400 bytes of
``&b [*a, *a, ...]`` levels stand for hundreds of millions of values once expanded
("billion laughs"). PyYAML composes aliases as shared nodes and constructs shared Python
objects, so the expansion happens later, when the object is serialized for the store.

kube-apiserver converts YAML with sigs.k8s.io/yaml, whose go-yaml v2 decoder counts every
node it decodes and those decoded inside an alias expansion, and fails with ``document
contains excessive aliasing`` once more than 100 alias-driven decodes make up more than a
share of all decodes: 99 % up to 400,000 decodes, falling linearly to 10 % at 4,000,000. This
module walks the composed node graph in the decoder's order with the same counters, before
anything is constructed, so a bomb is refused after a few thousand steps and an accepted
document is known to expand to a bounded number of nodes.
"""

from __future__ import annotations

from typing import Any

import yaml

_RATIO_LOW, _RATIO_HIGH = 400_000, 4_000_000


class ExcessiveAliasing(yaml.YAMLError):
    """go-yaml's refusal, worded as sigs.k8s.io/yaml passes it on."""

    def __str__(self) -> str:
        return "yaml: document contains excessive aliasing"


def _allowed_ratio(decodes: int) -> float:
    if decodes <= _RATIO_LOW:
        return 0.99
    if decodes >= _RATIO_HIGH:
        return 0.10
    return 0.99 - 0.89 * (decodes - _RATIO_LOW) / (_RATIO_HIGH - _RATIO_LOW)


def check_aliasing(root: yaml.Node) -> None:
    """Raise :class:`ExcessiveAliasing` if decoding ``root`` would expand aliases too much.

    Iterative (no recursion limit), in document order: the first visit of a node is its
    definition, a later visit outside an expansion is an alias. A self-referencing anchor
    expands forever, so it trips the same limit.
    """
    decodes = 1  # the document node
    aliased = 0
    defined: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, in_alias = stack.pop()
        if not in_alias and id(node) in defined:
            decodes += 1  # the alias node itself, then its target, all alias-driven
            stack.append((node, True))
            continue
        decodes += 1
        if in_alias:
            aliased += 1
            if aliased > 100 and decodes > 1000 and aliased / decodes > _allowed_ratio(decodes):
                raise ExcessiveAliasing()
        else:
            defined.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            stack.extend((child, in_alias) for child in reversed(node.value))
        elif isinstance(node, yaml.MappingNode):
            for key, value in reversed(node.value):
                stack.append((value, in_alias))
                stack.append((key, in_alias))


class _Loader(yaml.SafeLoader):
    """SafeLoader whose document is checked for aliasing between composing and constructing."""

    def construct_document(self, node: yaml.Node) -> Any:
        check_aliasing(node)
        return super().construct_document(node)


def load(data: bytes | str) -> Any:
    """``yaml.safe_load`` with go-yaml's aliasing limit: raises yaml.YAMLError (ExcessiveAliasing
    included), ValueError or RecursionError (nesting deeper than Python's stack) on bad input."""
    return yaml.load(data, Loader=_Loader)  # a SafeLoader subclass: plain data only
