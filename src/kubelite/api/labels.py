"""Label selectors, parsed and matched exactly as apimachinery's ``labels`` package does.

Three producers of selectors meet here: the ``?labelSelector=`` string of list and watch
requests, a ``metav1.LabelSelector`` object (Deployments, ReplicaSets, EndpointSlice
controllers) and a plain map (a Service's ``spec.selector``). All become one immutable
:class:`Selector` so that the API server, the informers and the controllers agree on what
matches.

The parser is a port of Kubernetes' hand-written lexer and recursive-descent parser rather
than a regular expression: its quirks are observable (``in`` is a valid key, ``x in ()``
means the empty value, values are sorted and de-duplicated, errors say ``found 'x',
expected: ...``) and clients see its error texts in 400 responses. The cost is a longer
module; the gain is that any selector kubectl accepts, we accept, and vice versa.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kubelite.api.errors import aggregate, invalid, not_supported
from kubelite.api.validation.meta import go_string_slice
from kubelite.api.validation.names import is_qualified_name, is_valid_label_value


class SelectorError(ValueError):
    """A selector that cannot be parsed; the API server answers it with 400 BadRequest and this text."""


# selection.Operator values: the text Kubernetes prints in errors ("expected: in, notin, ...").
EQUALS = "="
DOUBLE_EQUALS = "=="
NOT_EQUALS = "!="
IN = "in"
NOT_IN = "notin"
EXISTS = "exists"
DOES_NOT_EXIST = "!"
GREATER_THAN = "gt"
LESS_THAN = "lt"

_BINARY_OPERATORS = (IN, NOT_IN, EQUALS, DOUBLE_EQUALS, NOT_EQUALS, GREATER_THAN, LESS_THAN)
_INT64 = re.compile(r"[+-]?[0-9]+")


def _parse_int64(text: str) -> int | None:
    """strconv.ParseInt(text, 10, 64), which refuses what Python's int() tolerates (``1_0``, spaces)."""
    if not _INT64.fullmatch(text):
        return None
    n = int(text)
    return n if -(2**63) <= n < 2**63 else None


@dataclass(frozen=True)
class Requirement:
    """One ``key op values`` term; build it with :func:`new_requirement` to get Kubernetes' checks."""

    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        op = self.operator
        if op in (IN, EQUALS, DOUBLE_EQUALS):
            return self.key in labels and labels[self.key] in self.values
        if op in (NOT_IN, NOT_EQUALS):
            return self.key not in labels or labels[self.key] not in self.values
        if op == EXISTS:
            return self.key in labels
        if op == DOES_NOT_EXIST:
            return self.key not in labels
        if op in (GREATER_THAN, LESS_THAN):
            if self.key not in labels or len(self.values) != 1:
                return False
            have, want = _parse_int64(labels[self.key]), _parse_int64(self.values[0])
            if have is None or want is None:
                return False
            return have > want if op == GREATER_THAN else have < want
        return False

    def __str__(self) -> str:
        if self.operator == EXISTS:
            return self.key
        if self.operator == DOES_NOT_EXIST:
            return "!" + self.key
        # Several values print sorted, whatever order they were given in.
        values = self.values[0] if len(self.values) == 1 else ",".join(sorted(self.values))
        if self.operator in (IN, NOT_IN):
            return f"{self.key} {self.operator} ({values})"
        symbol = {GREATER_THAN: ">", LESS_THAN: "<"}.get(self.operator, self.operator)
        return f"{self.key}{symbol}{values}"


def new_requirement(key: str, operator: str, values: Iterable[str], path: str = "") -> Requirement:
    """labels.NewRequirement: validate key, operator arity and values, or raise SelectorError.

    ``path`` prefixes the field paths of the errors (Kubernetes' field.WithPath option);
    without one they read ``key`` and ``values[0][key]`` as in Kubernetes.
    """
    vals = tuple(values)
    prefix = path + "." if path else ""
    errs: list[str] = []
    key_msgs = is_qualified_name(key)
    if key_msgs:
        errs.append(str(invalid(prefix + "key", key, "; ".join(key_msgs))))
    values_path = prefix + "values"
    if operator in (IN, NOT_IN):
        if not vals:
            errs.append(f"{values_path}: Invalid value: {go_string_slice(vals)}: "
                        "for 'in', 'notin' operators, values set can't be empty")
    elif operator in (EQUALS, DOUBLE_EQUALS, NOT_EQUALS):
        if len(vals) != 1:
            errs.append(f"{values_path}: Invalid value: {go_string_slice(vals)}: "
                        "exact-match compatibility requires one single value")
    elif operator in (EXISTS, DOES_NOT_EXIST):
        if vals:
            errs.append(f"{values_path}: Invalid value: {go_string_slice(vals)}: "
                        "values set must be empty for exists and does not exist")
    elif operator in (GREATER_THAN, LESS_THAN):
        if len(vals) != 1:
            errs.append(f"{values_path}: Invalid value: {go_string_slice(vals)}: "
                        "for 'Gt', 'Lt' operators, exactly one value is required")
        for i, v in enumerate(vals):
            if _parse_int64(v) is None:
                errs.append(str(invalid(f"{values_path}[{i}]", v,
                                        "for 'Gt', 'Lt' operators, the value must be an integer")))
    else:
        errs.append(str(not_supported(prefix + "operator", operator, (*_BINARY_OPERATORS, EXISTS, DOES_NOT_EXIST))))
    for i, v in enumerate(vals):
        msgs = is_valid_label_value(v)
        if msgs:
            errs.append(str(invalid(f"{values_path}[{i}][{key}]", v, "; ".join(msgs))))
    if errs:
        raise SelectorError(aggregate(errs))
    return Requirement(key, operator, vals)


@dataclass(frozen=True)
class Selector:
    """An AND of requirements, sorted by key; ``nothing`` is the selector that matches no object."""

    requirements: tuple[Requirement, ...] = ()
    nothing: bool = False

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.nothing:
            return False
        return all(r.matches(labels) for r in self.requirements)

    @property
    def empty(self) -> bool:
        """True when the selector selects everything (the nothing-selector is not empty)."""
        return not self.nothing and not self.requirements

    def requires_exact_match(self, key: str) -> str | None:
        """The one value ``key`` must have, as RequiresExactMatch decides: the first term on the key rules."""
        for r in self.requirements:
            if r.key == key:
                if r.operator in (EQUALS, DOUBLE_EQUALS, IN) and len(r.values) == 1:
                    return r.values[0]
                return None
        return None

    def exact_matches(self) -> dict[str, str]:
        """Every ``key=value`` the selector pins down: what an index on label values can serve."""
        out: dict[str, str] = {}
        for key in dict.fromkeys(r.key for r in self.requirements):
            value = self.requires_exact_match(key)
            if value is not None:
                out[key] = value
        return out

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


EVERYTHING = Selector()
NOTHING = Selector(nothing=True)


def _sorted(requirements: Iterable[Requirement]) -> Selector:
    return Selector(tuple(sorted(requirements, key=lambda r: r.key)))


def selector_from_map(labels: Mapping[str, str] | None) -> Selector:
    """labels.SelectorFromSet: equality on every pair, unvalidated; empty or None selects everything."""
    if not labels:
        return EVERYTHING
    return _sorted(Requirement(k, EQUALS, (v,)) for k, v in labels.items())


_LABEL_SELECTOR_OPERATORS = {"In": IN, "NotIn": NOT_IN, "Exists": EXISTS, "DoesNotExist": DOES_NOT_EXIST}


def selector_from_label_selector(obj: Mapping[str, Any] | None) -> Selector:
    """metav1.LabelSelectorAsSelector: None matches nothing, an empty selector everything."""
    if obj is None:
        return NOTHING
    match_labels: Mapping[str, str] = obj.get("matchLabels") or {}
    expressions: list[Mapping[str, Any]] = obj.get("matchExpressions") or []
    if not match_labels and not expressions:
        return EVERYTHING
    reqs = [new_requirement(k, EQUALS, [v]) for k, v in match_labels.items()]
    for expr in expressions:
        op = _LABEL_SELECTOR_OPERATORS.get(expr.get("operator", ""))
        if op is None:
            raise SelectorError(f'"{expr.get("operator", "")}" is not a valid pod selector operator')
        reqs.append(new_requirement(expr.get("key", ""), op, expr.get("values") or []))
    return _sorted(reqs)


# -- the string syntax -------------------------------------------------------------------


class _Tok(enum.Enum):
    ERROR = enum.auto()
    END = enum.auto()
    CLOSE_PAR = enum.auto()
    COMMA = enum.auto()
    NOT = enum.auto()
    DOUBLE_EQUALS = enum.auto()
    EQUALS = enum.auto()
    GREATER = enum.auto()
    IDENTIFIER = enum.auto()
    IN = enum.auto()
    LESS = enum.auto()
    NOT_EQUALS = enum.auto()
    NOT_IN = enum.auto()
    OPEN_PAR = enum.auto()


_LITERALS = {
    ")": _Tok.CLOSE_PAR, ",": _Tok.COMMA, "!": _Tok.NOT, "==": _Tok.DOUBLE_EQUALS, "=": _Tok.EQUALS,
    ">": _Tok.GREATER, "in": _Tok.IN, "<": _Tok.LESS, "!=": _Tok.NOT_EQUALS, "notin": _Tok.NOT_IN,
    "(": _Tok.OPEN_PAR,
}
_OPERATOR_TOKENS = {
    _Tok.IN: IN, _Tok.EQUALS: EQUALS, _Tok.DOUBLE_EQUALS: DOUBLE_EQUALS, _Tok.GREATER: GREATER_THAN,
    _Tok.LESS: LESS_THAN, _Tok.NOT_IN: NOT_IN, _Tok.NOT_EQUALS: NOT_EQUALS,
}
_SPECIAL = frozenset("=!(),><")
_WHITESPACE = frozenset(" \t\r\n")


def _lex(text: str) -> list[tuple[_Tok, str]]:
    """Kubernetes' Lexer: identifiers run until a special symbol or whitespace."""
    items: list[tuple[_Tok, str]] = []
    pos, n = 0, len(text)
    while True:
        while pos < n and text[pos] in _WHITESPACE:
            pos += 1
        if pos >= n:
            items.append((_Tok.END, ""))
            return items
        if text[pos] in _SPECIAL:
            # Longest run of special symbols that still spells an operator ("!=" but "=" then "(").
            buf, last = "", None
            while pos < n and text[pos] in _SPECIAL:
                buf += text[pos]
                if buf in _LITERALS:
                    last = (_LITERALS[buf], buf)
                elif last is not None:
                    break
                pos += 1
            items.append(last or (_Tok.ERROR, f"error expected: keyword found '{buf}'"))
        else:
            start = pos
            while pos < n and text[pos] not in _SPECIAL and text[pos] not in _WHITESPACE:
                pos += 1
            word = text[start:pos]
            items.append((_LITERALS.get(word, _Tok.IDENTIFIER), word))


class _Parser:
    def __init__(self, text: str) -> None:
        self.items = _lex(text)
        self.pos = 0

    def _token(self, index: int, values: bool) -> tuple[_Tok, str]:
        tok, lit = self.items[index]
        # Among values, the keywords "in" and "notin" are ordinary words.
        if values and tok in (_Tok.IN, _Tok.NOT_IN):
            tok = _Tok.IDENTIFIER
        return tok, lit

    def lookahead(self, values: bool = True) -> tuple[_Tok, str]:
        return self._token(self.pos, values)

    def consume(self, values: bool = True) -> tuple[_Tok, str]:
        self.pos += 1
        return self._token(self.pos - 1, values)

    def parse(self) -> list[Requirement]:
        reqs: list[Requirement] = []
        while True:
            tok, lit = self.lookahead()
            if tok in (_Tok.IDENTIFIER, _Tok.NOT):
                try:
                    reqs.append(self.requirement())
                except SelectorError as e:
                    raise SelectorError(f"unable to parse requirement: {e}") from None
                tok, lit = self.consume()
                if tok == _Tok.END:
                    return reqs
                if tok != _Tok.COMMA:
                    raise SelectorError(f"found '{lit}', expected: ',' or 'end of string'")
                tok, lit = self.lookahead()
                if tok not in (_Tok.IDENTIFIER, _Tok.NOT):
                    raise SelectorError(f"found '{lit}', expected: identifier after ','")
            elif tok == _Tok.END:
                return reqs
            else:
                raise SelectorError(f"found '{lit}', expected: !, identifier, or 'end of string'")

    def requirement(self) -> Requirement:
        key, operator = self.key_and_operator()
        if operator in (EXISTS, DOES_NOT_EXIST):
            return new_requirement(key, operator, [])
        tok, lit = self.consume(values=False)
        operator = _OPERATOR_TOKENS.get(tok, "")
        if not operator:
            raise SelectorError(f"found '{lit}', expected: {', '.join(_BINARY_OPERATORS)}")
        values = self.value_set() if operator in (IN, NOT_IN) else self.exact_value()
        return new_requirement(key, operator, sorted(values))

    def key_and_operator(self) -> tuple[str, str]:
        operator = ""
        tok, lit = self.consume()
        if tok == _Tok.NOT:
            operator = DOES_NOT_EXIST
            tok, lit = self.consume()
        if tok != _Tok.IDENTIFIER:
            raise SelectorError(f"found '{lit}', expected: identifier")
        msgs = is_qualified_name(lit)
        if msgs:
            # The parser's field path is nil, which Go prints as "<nil>".
            raise SelectorError(str(invalid("<nil>", lit, "; ".join(msgs))))
        if self.lookahead()[0] in (_Tok.END, _Tok.COMMA) and operator != DOES_NOT_EXIST:
            operator = EXISTS
        return lit, operator

    def value_set(self) -> set[str]:
        tok, lit = self.consume()
        if tok != _Tok.OPEN_PAR:
            raise SelectorError(f"found '{lit}' expected: '('")
        tok, lit = self.lookahead()
        if tok in (_Tok.IDENTIFIER, _Tok.COMMA):
            values = self.identifiers()
            self.consume()  # the ')' that identifiers() saw ahead
            return values
        if tok == _Tok.CLOSE_PAR:
            self.consume()
            return {""}
        raise SelectorError(f"found '{lit}', expected: ',', ')' or identifier")

    def identifiers(self) -> set[str]:
        # Empty items are the empty value: "(a,)", "(,a)" and "(a,,b)" all contain "".
        values: set[str] = set()
        while True:
            tok, lit = self.consume()
            if tok == _Tok.IDENTIFIER:
                values.add(lit)
                tok2, lit2 = self.lookahead()
                if tok2 == _Tok.COMMA:
                    continue
                if tok2 == _Tok.CLOSE_PAR:
                    return values
                raise SelectorError(f"found '{lit2}', expected: ',' or ')'")
            if tok == _Tok.COMMA:
                if not values:
                    values.add("")
                tok2, _ = self.lookahead()
                if tok2 == _Tok.CLOSE_PAR:
                    values.add("")
                    return values
                if tok2 == _Tok.COMMA:
                    values.add("")
            else:
                raise SelectorError(f"found '{lit}', expected: ',', or identifier")

    def exact_value(self) -> set[str]:
        if self.lookahead()[0] in (_Tok.END, _Tok.COMMA):
            return {""}
        tok, lit = self.consume()
        if tok == _Tok.IDENTIFIER:
            return {lit}
        raise SelectorError(f"found '{lit}', expected: identifier")


def parse_selector(text: str) -> Selector:
    """labels.Parse: the ``?labelSelector=`` syntax; the empty string selects everything."""
    return _sorted(_Parser(text).parse())
