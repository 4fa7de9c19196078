"""
evaluate.py -- process-verified scoring of model solutions, rewards, and pass@k.

A model answers a word problem (see datagen.py) by writing a step-by-step solution after `<solution>`:

    Define adult parrot in South Zoo as p; so p = 2. Define adult blue jay in South Zoo as q;
    Y = p = 2; so q = 3 + Y = 3 + 2 = 5. Define total number of adult animals in South Zoo as g;
    so g = p + q = 2 + 5 = 7. </solution> <answer> 7 </answer>[EOS]

A right final answer is not enough: a model can guess, or reach it by an unfaithful route. So the verifier
reads the completion back into a graph and checks it, node by node, against the record's known solution
graph (SPEC §4):

1. The text up to `</solution>` (or `<answer>`, or the end) is cut into steps at `Define <name> as <V>;`.
   Each step is one predicted node, identified by its quantity name (letters do not matter).
2. Inside a step, clauses end at `;` or `.`; a clause `[so ]V = e1 = e2 = ... = value` is an assignment.
   The node's **parents** are the Defined quantities named by the letters of the first (symbolic)
   expression of the assignment to the step's own letter, following the step's intermediates
   (`Y = p = 2; so q = 3 + Y` -> parents {p}). Its **value** is the last expression of that assignment,
   read by a small safe evaluator as a linear form a*x + b (reverse-mode problems carry the unknown x).
   A quantity is what its first assignment says; any later assignment to it (in the same step or in a
   repeated Define) that states other parents or another value is a *contradiction*.
3. Reverse mode ends with a closing: `We know V = given, so <form> = given; so ... ; so x = value.` Every
   quoted value must be the problem's (`bad_given`), every equation of the closing must hold at the true x,
   and the closing must solve x to the true value, which is also the answer (`bad_solve`).
4. A gold node is correct iff it is present with the gold parent set and the gold value (in reverse mode
   the gold values are linear forms in x, recomputed from the graph with the unknown leaf set to x).
   `verified` = every gold node correct, nothing contradicted or misquoted, and the answer
   `<answer> N </answer>` right.

The same verdict feeds the GRPO rewards (outcome / process / strict, SPEC §5) and the pass@k tables
(unbiased estimator of Chen et al. 2021, for answer-correct and for verified samples).

Examples:
    python -c "import datagen, evaluate as E; r = next(datagen.generate('ops=12 modes=reverse', n=1)); \\
               print(r['solution']); print(E.verify(r, E.gold_completion(r)))"
    python -c "import evaluate as E; print(E.pass_at_k(n=128, c=3, k=16))"
    python -m pytest -q tests/test_evaluate.py      # the verifier's and pass@k's proofs

Everything above the "Sampling evaluation" section is pure Python (no torch), so grpo.py and the tests can
import the verifier cheaply; nothing runs at import time.
"""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass, field
from fractions import Fraction
from typing import NamedTuple

# ----------------------------------------------------------------------------------------------------------------
# Safe arithmetic: text -> linear form a*x + b (never `eval`)

# Bounds keep every call cheap on garbage: a gold value is at most a few dozen characters.
MAX_EXPR_CHARS = 200  # longer expressions are not read (-> None)
MAX_EXPR_DEPTH = 50  # nesting of parentheses / unary minus
MAX_NUMBER_DIGITS = 12  # longer literals are not read (gold values are <= 1000)

# A token is an ASCII number, an operator, a parenthesis or x; any other visible character is its own
# token, which no rule accepts, so it makes the whole expression unreadable.
_TOKENS = re.compile(r"[0-9]+|[-+*/()x]|\S")


class _Unreadable(Exception):
    pass


class _LinearParser:
    """Recursive descent over the tokens, with linear forms (a, b) = a*x + b as values:
        expr  := term (('+' | '-') term)*
        term  := unary (('*' | '/') unary)*
        unary := '-' unary | atom
        atom  := NUMBER | 'x' | '(' expr ')'
    A product of two x-terms or a division by an x-term is not linear and makes the text unreadable."""

    __slots__ = ("toks", "i")

    def __init__(self, toks: list[str]):
        self.toks, self.i = toks, 0

    def peek(self) -> str | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def expr(self, depth: int) -> tuple:
        a, b = self.term(depth)
        while (t := self.peek()) in ("+", "-"):
            self.i += 1
            c, d = self.term(depth)
            a, b = (a + c, b + d) if t == "+" else (a - c, b - d)
        return a, b

    def term(self, depth: int) -> tuple:
        a, b = self.unary(depth)
        while (t := self.peek()) in ("*", "/"):
            self.i += 1
            c, d = self.unary(depth)
            if t == "*":
                if a and c:
                    raise _Unreadable  # x * x
                a, b = a * d + b * c, b * d
            else:
                if c or not d:
                    raise _Unreadable  # division by an x-term, or by zero
                a, b = Fraction(a) / d, Fraction(b) / d
        return a, b

    def unary(self, depth: int) -> tuple:
        if self.peek() == "-":
            if depth >= MAX_EXPR_DEPTH:
                raise _Unreadable
            self.i += 1
            a, b = self.unary(depth + 1)
            return -a, -b
        return self.atom(depth)

    def atom(self, depth: int) -> tuple:
        t = self.peek()
        self.i += 1
        if t == "x":
            return 1, 0
        if t == "(":
            if depth >= MAX_EXPR_DEPTH:
                raise _Unreadable
            form = self.expr(depth + 1)
            if self.peek() != ")":
                raise _Unreadable
            self.i += 1
            return form
        if t is not None and t.isdigit() and t.isascii() and len(t) <= MAX_NUMBER_DIGITS:  # not "\u0663"
            return 0, int(t)
        raise _Unreadable


def evaluate_linear(text: str) -> tuple[Fraction, Fraction] | None:
    """The value of an arithmetic expression over integers, + - * /, unary minus, parentheses and the
    unknown x, as exact coefficients (a, b) of a*x + b; None if the text is not such an expression, not
    linear in x, divides by zero, or is over the size limits above. Never raises.

    >>> evaluate_linear("2 * (x + 9) - 1")
    (Fraction(2, 1), Fraction(17, 1))
    """
    if not isinstance(text, str) or len(text) > MAX_EXPR_CHARS:
        return None
    try:
        toks = _TOKENS.findall(text)
        if not toks:
            return None
        p = _LinearParser(toks)
        a, b = p.expr(0)
        if p.i != len(toks):
            return None  # trailing tokens, e.g. "2 3" or "4)"
        return Fraction(a), Fraction(b)
    except Exception:  # _Unreadable, and anything unforeseen on adversarial input: unreadable, not a crash
        return None


def _exact(q: Fraction):
    """An int when the rational is whole: comparisons with the gold ints stay on the fast int path."""
    return q.numerator if q.denominator == 1 else q


# Many completions state the same few values ("7", "2*x + 18"); memoising the evaluator on the text makes
# verifying a group of samples mostly dictionary lookups. Bounded: cleared when full.
_FORM_CACHE: dict[str, tuple | None] = {}
_FORM_CACHE_MAX = 50_000
_BINARY = re.compile(r"(-?[0-9]{1,12}) ([-+*/]) (-?[0-9]{1,12})")
_LINEAR = re.compile(r"(-?)(?:([0-9]{1,12})\*)?x(?: ([-+]) ([0-9]{1,12}))?")  # x, 2*x, x + 4, -2*x - 8
_UNSEEN = object()


def _form_of(text: str):
    """evaluate_linear on a stripped value text, with int coefficients where whole, memoised."""
    f = _FORM_CACHE.get(text, _UNSEEN)
    if f is not _UNSEEN:
        return f
    if text.isdigit() and text.isascii() and len(text) <= MAX_NUMBER_DIGITS:
        f = 0, int(text)  # most values are plain numbers, and the closing's arithmetic two-operand sums,
    elif (m := _BINARY.fullmatch(text)) is not None and (m[2] != "/" or (int(m[3]) and not int(m[1]) % int(m[3]))):
        u, op, v = int(m[1]), m[2], int(m[3])  # differences, products and exact quotients: no parser needed
        f = 0, u + v if op == "+" else u - v if op == "-" else u * v if op == "*" else u // v
    elif (m := _LINEAR.fullmatch(text)) is not None:
        a, b = int(m[2] or 1), int(m[4] or 0)  # the forms of reverse mode as written: no parser needed
        f = (-a if m[1] else a), (-b if m[3] == "-" else b)
    else:
        f = evaluate_linear(text)
        if f is not None:
            f = (_exact(f[0]), _exact(f[1]))
    if len(text) <= MAX_EXPR_CHARS:
        if len(_FORM_CACHE) >= _FORM_CACHE_MAX:
            _FORM_CACHE.clear()
        _FORM_CACHE[text] = f
    return f


X_FORM = (1, 0)  # the unknown itself
_NO_PARENTS: frozenset = frozenset()

# ----------------------------------------------------------------------------------------------------------------
# Parsing a completion into a predicted graph

# One left-to-right scan of the solution text finds two kinds of items:
# - a step head `Define <name> as <V>` (its ";" is left to start the step's first clause). The name cannot
#   hold ; . = and has at most 200 characters, so each "Define " costs at most ~400 steps (greedy, then back
#   to the " as V" before the first ";"): the scan stays linear on long garbage, no catastrophic backtracking;
# - an assignment clause: after a ; or . come an optional "so ", a letter, "=", and its chain: the
#   "="-separated segments, up to the next ; or . -- or the next "Define ", so a missing period cannot
#   swallow a step. The chain is captured whole and split at "=" in Python: one plain run for the regex
#   engine instead of a repeated group per segment;
# - a quoted fact, `We know d = 9` (its letter and value).
# The optional "so " is written `(?:so\s+|)`, an alternative with an empty branch: the same match as
# `(?:so\s+)?`, without the regex engine's setup of a repeated group at every try.
_CHAIN = r"[^;.D]*(?:D(?!efine )[^;.D]*)*"  # text up to the next ; . or "Define "
_QUOTE = re.compile(r"We know\s+([A-Za-z])\s*=([^;.,]{0,200})")
_ITEMS = re.compile(r"Define ([^;.=]{1,200}) as ([A-Za-z])(?=;)"
                    r"|[;.]\s*(?:so\s+|)([A-Za-z])\s*=(" + _CHAIN + r")"
                    r"|" + _QUOTE.pattern)
# A variable is a standalone ASCII letter: not inside a word ("exists", "Rêves"), not the t of "don't".
_VAR = re.compile(r"[A-Za-z](?<![\w'][A-Za-z])(?![\w'])")  # letter first: the regex scans faster
# The answer: an integer (optional minus, at most 18 digits) alone between the tags.
_ANSWER = re.compile(r"<answer>\s*(-?[0-9]{1,18})\s*</answer>")
_SOL_END, _ANS_START = "</solution>", "<answer>"
_CLOSING = "We know"  # the reverse-mode closing starts at the first one after the last Define
_CLAUSES = re.compile(r"(?:so\s+|)([^;.,\s][^;.,]*)")  # the closing's clauses, without a leading "so"


class PredNode(NamedTuple):
    """One predicted node: the letter of its Define, the names its value was built from, and its stated
    value as a linear form (a, b) = a*x + b (None when no readable value was stated)."""
    var: str
    parents: frozenset
    value: tuple | None


class Parsed(NamedTuple):
    nodes: dict  # quantity name -> PredNode, in the order of first Define
    repeats: int  # Defines of a name already defined (each counts as an extra node)
    answer: int | None  # the integer in <answer> ... </answer>, None when absent or not an integer
    format_ok: bool  # "</solution>" then (only whitespace) "<answer> INT </answer>"
    contradictions: int  # assignments to a quantity that disagree with its first one (parents or value)
    quotes: tuple  # (quantity name, value form or None) per `We know V = value`
    equations: tuple  # the closing's equality chains, each a tuple of linear forms (all segments readable)
    solved: tuple | None  # the closing's last `x = ... = value`: the value's form


_new_tuple = tuple.__new__  # a NamedTuple without its Python-level __new__ frame (hot paths)


_NAME_CACHE: dict[str, str] = {}  # raw name -> normalized; a few hundred names recur in every problem
_NAME_CACHE_MAX = 20_000


def _norm_name(name: str) -> str:
    """Node identity: the name with runs of whitespace made single spaces and the ends trimmed (memoised)."""
    out = " ".join(name.split()) if "  " in name or name[:1] == " " or name[-1:] == " " or \
        not name.isprintable() else name
    if len(_NAME_CACHE) >= _NAME_CACHE_MAX:
        _NAME_CACHE.clear()
    _NAME_CACHE[name] = out
    return out


def _unresolved(letter: str) -> str:
    # Stands in for a letter no Define has introduced; contains "<", which no quantity name may hold
    # (datagen forbids it), so a parent set holding it never equals a gold set.
    return f"<unresolved {letter}>"


# The letters of a clause's first segment (`p + q`, `3 + Y`, `2`), memoised: the same segments recur across
# samples and problems. Bounded: long segments are not kept, and a full cache is cleared.
_LETTERS_CACHE: dict[str, tuple] = {}
_LETTERS_CACHE_MAX = 50_000
_LETTERS_KEY_MAX = 100


def _letters_of(segment: str) -> tuple:
    letters = tuple(_VAR.findall(segment))
    if len(segment) <= _LETTERS_KEY_MAX:
        if len(_LETTERS_CACHE) >= _LETTERS_CACHE_MAX:
            _LETTERS_CACHE.clear()
        _LETTERS_CACHE[segment] = letters
    return letters


def parse_completion(text: str) -> Parsed:
    """Read a completion (the model's text after `<solution>`) into predicted nodes and the answer (SPEC §4).

    Rules for the cases the format leaves open:
    - Only the text before the first `</solution>` / `<answer>` (whichever comes first; else the end) holds
      steps. Text before the first Define (the reverse-mode preamble) is ignored.
    - A quantity's node is its first Define, with parents and value from the first assignment to its
      letter. Every later assignment to it -- in the same step, or in a step that Defines the name again --
      must state the same parents and the same value; each one that does not is a contradiction.
      Re-stating a fact consistently is allowed; each repeated Define counts as one extra node, and its
      letter rebinds, so later steps that use it still point to the same name.
    - A letter resolves to, in order: an intermediate assigned earlier in the same step (followed to its own
      parents), else the most recent Define of that letter at or before this step (the step's own letter
      is itself, so `q = q + 1` makes q its own parent: wrong). A letter nothing defines gives a parent
      that matches no gold name, so the parent set is wrong -- never an error.
    - Assignments to other letters (intermediates, `so x = 34 / 2 = 17`) never change the step's node.
    - The closing starts at the first `We know` after the last Define; it holds no steps. Its clauses
      (split at `;`, `.`, `,`) whose `=`-separated segments are all readable are its equations; the last
      one that starts `x =` gives the solved value. `We know V = value` quotes anywhere are collected with
      the name V stands for at that point.
    - A step without an assignment to its letter has no parents and value x if its letter is x (the
      unknown of reverse mode, "we don't know its value yet"), else no value.
    - Any input is accepted; the cost is linear in its length.
    """
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    sol_end = text.find(_SOL_END)
    ans_at = text.find(_ANS_START)
    end = len(text)
    if sol_end >= 0:
        end = sol_end
    if 0 <= ans_at < end:
        end = ans_at

    closing = text.find(_CLOSING, max(text.rfind("Define ", 0, end), 0), end)
    steps_end = end if closing < 0 else closing

    first_var: dict[str, str] = {}  # name -> letter of its first Define
    nodes: dict[str, PredNode | None] = {}  # name -> its node, from its first assignment; in first-Define order
    scope: dict[str, str] = {}  # letter -> name of its most recent Define
    repeats = contradictions = 0
    quotes = []
    step = var = None  # the step being read (a repeated Define is read too); None before the first Define
    local: dict[str, set] = {}  # this step's assigned letters -> the Defined names behind them
    cached_letters, cached_name, cached_form = _LETTERS_CACHE.get, _NAME_CACHE.get, _FORM_CACHE.get
    for name, v, letter, chain, qletter, qvalue in _ITEMS.findall(text, 0, steps_end):
        if not letter:
            if v:  # a step head
                name = cached_name(name) or _norm_name(name)
                scope[v] = name
                if name in first_var:
                    repeats += 1
                else:
                    first_var[name] = v
                    nodes[name] = None  # no assignment yet
                step, var, local = name, v, {}
            else:  # We know V = value
                quotes.append((scope.get(qletter) or _unresolved(qletter), _last_form(qvalue)))
            continue
        if step is None:
            continue
        segs = chain.split("=")
        if "" in map(str.strip, segs):  # `V = first = ... = final`: every segment must be non-empty
            continue
        letters = cached_letters(segs[0])
        if letters is None:
            letters = _letters_of(segs[0])
        refs = set()
        for t in letters:
            r = local.get(t)
            if r is not None:
                refs |= r  # an intermediate of this step: follow it to the Defined names behind it
            else:
                refs.add(scope.get(t) or _unresolved(t))
        local[letter] = refs
        if letter == var:
            final = segs[-1].strip()
            form = cached_form(final, _UNSEEN)
            if form is _UNSEEN:
                form = _form_of(final)
            node = nodes[step]
            if node is None:  # the first assignment: the quantity's node
                nodes[step] = _new_tuple(PredNode, (first_var[step], frozenset(refs), form))
            elif node[1] != refs or node[2] != form:  # a later one states other parents or another value
                contradictions += 1

    for name, node in nodes.items():
        if node is None:  # never assigned
            v = first_var[name]
            nodes[name] = _new_tuple(PredNode, (v, _NO_PARENTS, X_FORM if v == "x" else None))

    equations, solved = (), None
    if closing >= 0:
        equations, solved = _read_closing(text[closing:end], scope, quotes)

    answer, format_ok = None, False
    if ans_at >= 0:
        am = _ANSWER.match(text, ans_at)
        if am is not None:
            answer = int(am.group(1))
            format_ok = 0 <= sol_end < ans_at and not text[sol_end + len(_SOL_END):ans_at].strip()
    return _new_tuple(Parsed, (nodes, repeats, answer, format_ok, contradictions, tuple(quotes), equations, solved))


def _last_form(segment: str):
    """The form of the last `=`-separated part of a quoted value (`9`, `x - 3 = 9`), or None."""
    return _form_of(segment.rsplit("=", 1)[-1].strip())


def _read_closing(text: str, scope: dict, quotes: list) -> tuple:
    """The closing's equations (chains of readable forms) and the last solved value of x; its quotes are
    appended to `quotes`, with the names their letters stand for after the last step."""
    equations, solved = [], None
    cached = _FORM_CACHE.get
    for clause in _CLAUSES.findall(text):
        if clause.startswith(_CLOSING):
            m = _QUOTE.match(clause)
            if m is not None:
                quotes.append((scope.get(m.group(1)) or _unresolved(m.group(1)), _last_form(m.group(2))))
            continue
        segs = clause.split("=")
        if len(segs) < 2 or len(clause) > MAX_EXPR_CHARS:
            continue
        forms = []
        for seg in segs:
            seg = seg.strip()
            f = cached(seg, _UNSEEN)
            if f is _UNSEEN:
                f = _form_of(seg)
            if f is None:
                break  # not an equation in x and numbers (e.g. it names a letter other than x)
            forms.append(f)
        else:
            equations.append(forms)
            if segs[0].strip() == "x" and forms[-1][0] == 0:
                solved = forms[-1]
    return tuple(equations), solved


# ----------------------------------------------------------------------------------------------------------------
# Gold graphs: per record, computed once

class Gold(NamedTuple):
    nodes: tuple  # (name, frozenset of parent names, value form (a, b)) per gold node, topological order
    forms: dict  # name -> value form
    query: str
    x: int | None  # the unknown's true value (reverse mode), else None


def build_gold(record: dict) -> Gold:
    """The gold nodes of a record: names, parent sets and values as linear forms, from the graph's rules
    (SPEC §2: combine the parents -- copy, sum or diff -- then apply `kop k`; a "const" node is k).
    Forward mode: constants. Reverse mode: the unknown leaf is x (its `k` holds the true value, not used)."""
    try:
        graph = record["graph"]
        cached = _NAME_CACHE.get
        unknown = graph["unknown"]
        unknown = unknown and (cached(unknown) or _norm_name(unknown))
        forms: dict[str, tuple] = {}
        out = []
        x = None
        for n in graph["nodes"]:
            name = n["name"]
            name = cached(name) or _norm_name(name)
            parents = n["parents"]  # a leaf (a quarter of the nodes) has none: no comprehension to run;
            # list() still fails on a value that is not iterable (None, 0), as the comprehension did
            parents = [cached(q) or _norm_name(q) for q in parents] if parents else list(parents)
            c = n["combine"]
            if name == unknown:
                f = X_FORM
                x = n["value"]
            elif c == "const":
                f = (0, n["k"])
            else:
                a, b = forms[parents[0]]
                if c == "diff":
                    a2, b2 = forms[parents[1]]
                    a, b = a - a2, b - b2
                elif len(parents) > 1:  # sum (a copy has one parent: nothing to add)
                    for q in parents[1:]:
                        a2, b2 = forms[q]
                        a, b = a + a2, b + b2
                kop = n["kop"]
                if kop == "plus":
                    b += n["k"]
                elif kop == "times":
                    a, b = a * n["k"], b * n["k"]
                f = (a, b)
            forms[name] = f
            out.append((name, frozenset(parents) if parents else _NO_PARENTS, f))
        query = graph["query"]  # through the name cache too (anything but a string: _norm_name's own error)
        query = (cached(query) if isinstance(query, str) else None) or _norm_name(query)
        return _new_tuple(Gold, (tuple(out), forms, query, x))
    except (KeyError, TypeError, IndexError, AttributeError, ValueError) as e:
        raise ValueError(f"record {record.get('id', '?') if isinstance(record, dict) else '?'} has no valid "
                         f"solution graph ({type(e).__name__}: {e}); regenerate it with datagen.py") from None


# Ids are content hashes (datagen), so a record's gold graph can be cached by id. The answer is *not*
# cached: GRPO may verify against a pseudo-label (majority vote) for the same record.
_GOLD_CACHE: dict[str, tuple] = {}  # id -> (query, number of nodes, Gold)
_GOLD_CACHE_MAX = 20_000  # ~2 kB each; a full cache is cleared and rebuilt on demand


def gold_of(record: dict) -> Gold:
    """build_gold, cached by record id. The entry is checked against the record's query name and node count,
    so a reused id (a hand-made record) is rebuilt rather than trusted."""
    key = record.get("id")
    graph = record["graph"]
    entry = _GOLD_CACHE.get(key) if key is not None else None
    if entry is not None and entry[0] == graph["query"] and entry[1] == len(graph["nodes"]):
        return entry[2]
    g = build_gold(record)
    if key is not None:
        if len(_GOLD_CACHE) >= _GOLD_CACHE_MAX:
            _GOLD_CACHE.clear()
        _GOLD_CACHE[key] = (graph["query"], len(graph["nodes"]), g)
    return g


# ----------------------------------------------------------------------------------------------------------------
# Verification: one completion against its record

def verify(record: dict, completion: str, gold_answer: int | None = None) -> dict:
    """Score one completion against the record's gold graph (SPEC §4). Returns a flat JSON-ready dict:

      answer          the parsed integer answer, or None (JSON null) when there is none
      answer_correct  answer == gold answer (record["answer"], or `gold_answer` when given: a pseudo-label)
      verified        every gold node correct, no contradiction, bad_given or bad_solve, and the answer right
                      (extra nodes allowed, as in the paper)
      process_acc     correct gold nodes / n_gold; a node is correct iff present, with the gold parent set
                      and the gold value (a linear form in x in reverse mode)
      value_mismatch  present gold nodes whose stated value is wrong (or unreadable)
      dep_mismatch    present gold nodes whose parent set is wrong
      missing         gold nodes never Defined
      extra           Defined names not in the gold graph, plus repeated Defines
      contradiction   assignments that disagree with a quantity's first one (other parents or value)
      bad_given       quoted values (`We know V = 9`) that are not the true ones; in reverse mode, 1 more when
                      the queried quantity's given value is never quoted
      bad_solve       reverse mode: closing equations false at the true x, and 1 when x is not solved to the
                      true value (which must also be the answer)
      hacked          answer right but not verified (unfaithful / reward-hacking)
      format_ok       `</solution>` followed by `<answer> INT </answer>`
      n_gold, n_correct, n_pred   sizes; plus the record's id, op, context and mode for breakdowns
    """
    g = gold_of(record)
    parsed = parse_completion(completion)
    pred = parsed.nodes
    missing = value_mm = dep_mm = correct = 0
    for name, parents, form in g.nodes:
        node = pred.get(name)
        if node is None:
            missing += 1
        elif node[1] == parents:  # PredNode(var, parents, value), indexed: this loop is the hot path
            if node[2] == form:
                correct += 1
            else:
                value_mm += 1
        else:
            dep_mm += 1
            value_mm += node[2] != form
    n_gold = len(g.nodes)
    # Gold names and predicted names are each distinct, so the predicted nodes outside the gold graph are
    # all but the n_gold - missing that matched.
    extra = parsed.repeats + len(pred) - (n_gold - missing)
    target = record["answer"] if gold_answer is None else gold_answer
    answer = parsed.answer
    answer_correct = answer is not None and answer == target
    bad_given, bad_solve = _check_closing(g, parsed) if parsed.quotes or g.x is not None else (0, 0)
    contradiction = parsed.contradictions
    verified = answer_correct and correct == n_gold and not (contradiction or bad_given or bad_solve)
    return {
        "id": record.get("id"), "op": record.get("op"), "context": record.get("context"),
        "mode": record.get("mode"),
        "answer": answer, "answer_correct": answer_correct, "verified": verified,
        "process_acc": correct / n_gold if n_gold else 0.0,
        "value_mismatch": value_mm, "dep_mismatch": dep_mm, "missing": missing, "extra": extra,
        "contradiction": contradiction, "bad_given": bad_given, "bad_solve": bad_solve,
        "hacked": answer_correct and not verified, "format_ok": parsed.format_ok,
        "n_gold": n_gold, "n_correct": correct, "n_pred": len(pred),
    }


def _check_closing(g: Gold, parsed: Parsed) -> tuple[int, int]:
    """(bad_given, bad_solve) of a completion. bad_given: quotes `We know V = value` of a gold quantity with
    another value than its true one, or of a letter nothing Defined; in reverse mode also 1 if the queried
    quantity (whose value the problem gives) is never quoted. bad_solve (reverse mode): closing equations
    false at the true x, plus 1 if x is not solved, or solved to another value than the true one or the
    answer."""
    bad_given = 0
    quoted_query = False
    x = g.x or 0  # forward mode: every gold form is a constant (0, value)
    for name, form in parsed.quotes:
        gold = g.forms.get(name)
        if gold is None:
            bad_given += name.startswith("<")  # an unresolved letter; a non-gold quantity is not checked
        else:
            bad_given += form != (0, gold[0] * x + gold[1])
            quoted_query |= name == g.query
    if g.x is None:
        return bad_given, 0
    bad_solve = 0
    for forms in parsed.equations:  # false at the true x: its parts do not all have one value
        a, b = forms[0]
        value = a * x + b
        for a, b in forms:
            if a * x + b != value:
                bad_solve += 1
                break
    solved = parsed.solved
    bad_solve += solved is None or solved[1] != x or (parsed.answer is not None and solved[1] != parsed.answer)
    return bad_given + (not quoted_query), bad_solve


def clear_caches() -> None:
    """Forget every memoised value, letter list and gold graph (benchmarks time a cold start with it)."""
    _FORM_CACHE.clear()
    _LETTERS_CACHE.clear()
    _GOLD_CACHE.clear()
    _NAME_CACHE.clear()


def gold_completion(record: dict) -> str:
    """The completion a perfect model writes for this record: the training string after `<solution>`,
    without the [EOS] token."""
    return f" {record['solution']} </solution> <answer> {record['answer']} </answer>"


# ----------------------------------------------------------------------------------------------------------------
# Rewards (SPEC §5): the same verdict, turned into a scalar for GRPO

REWARD_KINDS = ("outcome", "process", "strict")


def process_penalty(result: dict) -> int:
    """Faults of one verify() result, as the authors' process reward counts them --
    value_mismatch + dep_mismatch + missing + min(extra, |V|) + answer_mismatch (0/1) -- plus the faults
    their verifier does not see: contradiction + bad_given + bad_solve."""
    n = result["n_gold"]
    return (result["value_mismatch"] + result["dep_mismatch"] + result["missing"] + min(result["extra"], n)
            + (not result["answer_correct"]) + result["contradiction"] + result["bad_given"] + result["bad_solve"])


def reward(result: dict, kind: str = "outcome", alpha: float = 0.2) -> float:
    """The scalar reward of one verify() result.

    - "outcome": 1 if the answer is right, else 0. The usual RLVR reward (DeepSeek-R1 style); it pays a
      right answer reached by wrong steps as much as a faithful solution, so it invites reward hacking.
    - "process": 0 if the answer is wrong; else alpha + (1 - alpha) * max(0, 1 - penalty / |V|)
      (the paper authors' code; alpha = 0.2 and 0.5 in the paper). A right answer always earns alpha; the
      rest is paid for faithful steps, so unfaithful right answers earn less than faithful ones and extra
      steps are discouraged too.
    - "strict": 1 iff the answer is right and penalty == 0 (no wrong, missing or extra node), else 0 --
      the paper's strictest variant: only a perfect, distractor-free solution is paid.
    """
    if kind == "outcome":
        return 1.0 if result["answer_correct"] else 0.0
    if kind == "process":
        if not result["answer_correct"]:
            return 0.0
        n = result["n_gold"]
        return alpha + (1.0 - alpha) * max(0.0, 1.0 - process_penalty(result) / n) if n else alpha
    if kind == "strict":
        return 1.0 if result["answer_correct"] and process_penalty(result) == 0 else 0.0
    raise ValueError(f"unknown reward kind {kind!r}; use one of {', '.join(REWARD_KINDS)}")


# ----------------------------------------------------------------------------------------------------------------
# pass@k: the unbiased estimator (Chen et al. 2021, "Evaluating Large Language Models Trained on Code")

def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples, drawn without replacement from n samples of which c
    are correct, is correct: 1 - C(n-c, k) / C(n, k). Computed as 1 - prod_{i=n-c+1..n} (1 - k/i), which
    never forms the huge binomials. Unbiased, unlike "any of the first k samples". Needs 1 <= k <= n."""
    try:
        n, c, k = operator.index(n), operator.index(c), operator.index(k)  # ints, numpy ints; not floats
    except TypeError:
        raise ValueError(f"pass_at_k needs integers, got n={n!r} c={c!r} k={k!r}") from None
    if not 0 <= c <= n:
        raise ValueError(f"pass_at_k: need 0 <= c <= n, got c={c} n={n}")
    if not 1 <= k <= n:
        raise ValueError(f"pass_at_k: need 1 <= k <= n, got k={k} n={n} (sample more completions per problem)")
    if n - c < k:
        return 1.0  # every k-subset holds a correct sample
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def pass_at_k_curve(counts: list[tuple[int, int]], ks: list[int]) -> dict[int, float]:
    """Mean pass@k over problems, for each k; `counts` holds (n samples, c correct) per problem."""
    if not counts:
        return {k: float("nan") for k in ks}
    return {k: sum(pass_at_k(n, c, k) for n, c in counts) / len(counts) for k in ks}


def default_ks(n: int) -> list[int]:
    """1, 2, 4, ... up to n, and n itself (the reported points of a pass@k curve)."""
    if n < 1:
        raise ValueError(f"need at least one sample per problem, got n={n}")
    ks = [1 << i for i in range(n.bit_length()) if 1 << i <= n]
    return ks if ks[-1] == n else ks + [n]


# ----------------------------------------------------------------------------------------------------------------
# Breakdowns: by op, band, context and mode (pure functions over verify() results)

# The paper's op bands: in-distribution (the pre-training range), the edge of competence just beyond it,
# and far beyond it.
PAPER_BANDS: dict[str, tuple[int, int]] = {"ID": (2, 10), "edge": (11, 14), "hard": (15, 20)}
GROUP_BYS = ("all", "op", "band", "context", "mode")


def band_of(op: int, bands: dict[str, tuple[int, int]] = PAPER_BANDS) -> str | None:
    """The name of the first band whose inclusive (lo, hi) range holds op, or None."""
    for name, (lo, hi) in bands.items():
        if lo <= op <= hi:
            return name
    return None


def group_of(result: dict, by: str, bands: dict[str, tuple[int, int]] = PAPER_BANDS):
    """The group of one result: its op, band ("other" outside every band), context, mode, or "all"."""
    if by == "all":
        return "all"
    if by == "band":
        return band_of(result["op"], bands) or "other"
    if by in ("op", "context", "mode"):
        return result[by]
    raise ValueError(f"unknown grouping {by!r}; use one of {', '.join(GROUP_BYS)}")


def _ordered(groups, by: str, bands: dict[str, tuple[int, int]]) -> list:
    """Groups in reading order: ops ascending, bands in their given order, other keys alphabetically."""
    if by == "band":
        rank = {name: i for i, name in enumerate([*bands, "other"])}
        return sorted(groups, key=lambda g: rank.get(g, len(rank)))
    return sorted(groups, key=lambda g: (0, g, "") if isinstance(g, int) else (1, 0, str(g)))


def per_problem(results: list[dict]) -> dict:
    """Group per-sample results by problem id (so records need distinct ids, as datagen's have):
    {id: {"n", "c_answer", "c_verified", "op", "context", "mode"}}."""
    out: dict = {}
    for r in results:
        p = out.get(r["id"])
        if p is None:
            p = out[r["id"]] = {"n": 0, "c_answer": 0, "c_verified": 0,
                                "op": r["op"], "context": r["context"], "mode": r["mode"]}
        p["n"] += 1
        p["c_answer"] += bool(r["answer_correct"])
        p["c_verified"] += bool(r["verified"])
    return out


def summarize(results: list[dict], by: str = "all", bands: dict[str, tuple[int, int]] = PAPER_BANDS) -> dict:
    """Per group (see group_of): problems, samples, pass@1 of the answer and of verified solutions (mean
    over problems of the per-problem success rate), and per-sample means of process_acc, hacked (share of
    all samples), hacked among right answers, format_ok and the fault counters."""
    groups: dict = {}
    for r in results:
        groups.setdefault(group_of(r, by, bands), []).append(r)
    out = {}
    for g in _ordered(groups, by, bands):
        rs = groups[g]
        probs = per_problem(rs)
        n = len(rs)
        right = sum(bool(r["answer_correct"]) for r in rs)
        hacked = sum(bool(r["hacked"]) for r in rs)
        row = {
            "problems": len(probs), "samples": n,
            "pass1": sum(p["c_answer"] / p["n"] for p in probs.values()) / len(probs),
            "pass1_verified": sum(p["c_verified"] / p["n"] for p in probs.values()) / len(probs),
            "process_acc": sum(r["process_acc"] for r in rs) / n,
            "hacked_rate": hacked / n,
            "hacked_of_right": hacked / right if right else 0.0,
            "format_ok": sum(bool(r["format_ok"]) for r in rs) / n,
        }
        for key in ("value_mismatch", "dep_mismatch", "missing", "extra", "contradiction", "bad_given", "bad_solve"):
            row[key] = sum(r[key] for r in rs) / n
        out[g] = row
    return out


def pass_at_k_by(results: list[dict], by: str = "all", ks: list[int] | None = None,
                 bands: dict[str, tuple[int, int]] = PAPER_BANDS) -> dict:
    """pass@k curves per group, for answer-correct and for verified samples:
    {group: {"problems", "n", "answer": {k: p}, "verified": {k: p}}}. Default ks: default_ks of the
    smallest per-problem sample count in the group (every k must be <= every problem's n)."""
    groups: dict = {}
    for p in per_problem(results).values():
        groups.setdefault(group_of(p, by, bands), []).append(p)
    out = {}
    for g in _ordered(groups, by, bands):
        probs = groups[g]
        n_min = min(p["n"] for p in probs)
        gks = list(ks) if ks is not None else default_ks(n_min)
        out[g] = {"problems": len(probs), "n": n_min,
                  "answer": pass_at_k_curve([(p["n"], p["c_answer"]) for p in probs], gks),
                  "verified": pass_at_k_curve([(p["n"], p["c_verified"]) for p in probs], gks)}
    return out


# ----------------------------------------------------------------------------------------------------------------
# Sampling evaluation: checkpoints -> n samples per problem -> verified results -> pass@k tables and plots
#
#   python evaluate.py --ckpt runs/pretrain-tiny --recipe "ops=2-10" --problems 100 --n 16
#   python evaluate.py --ckpt runs/base --label base --ckpt runs/rl --label RL --n 128 --temperature 0.7
#   python evaluate.py --ckpt runs/base --recipe rl_11_14 --split rl --problems 2000 --n 16 \
#       --select_edge --edge_out data/edge-pool.jsonl        # edge-of-competence RL pool

def sample_and_score(model, tok, records: list[dict], n: int = 1, temperature: float = 0.7, top_p: float = 1.0,
                     top_k: int = 0, max_new_tokens: int = 512, seed: int = 0, autocast=None,
                     batch_rows: int = 1024, progress: bool = False, keep_text: int = 0,
                     sampler: str = "shared") -> list[list[dict]]:
    """n completions of every record from the sampler named by `sampler` (see sampler.py), each scored by
    verify(). Returns, per record, its n results: verify()'s fields plus `length` (generated tokens) and
    `finished` (ended by EOS), and `completion` for the first `keep_text`.

    Records are sampled in chunks of at most `batch_rows` rows (prompts x n); chunk i uses seed + i, so the
    samples depend on (seed, batch_rows) and nothing else."""
    import contextlib

    import sampler as sampler_lib
    import tokenizer as tok_lib

    autocast = autocast or contextlib.nullcontext()
    prompts = tok_lib.encode(tok, [tok_lib.render_prompt(r) for r in records])
    limit = model.config.max_seq_len
    per_chunk = max(1, batch_rows // n)
    out: list[list[dict]] = []
    chunks = range(0, len(records), per_chunk)
    if progress:
        from tqdm import tqdm
        chunks = tqdm(chunks, desc=f"sampling {n}/problem", unit="chunk", dynamic_ncols=True)
    for ci, start in enumerate(chunks):
        recs, ps = records[start:start + per_chunk], prompts[start:start + per_chunk]
        room = limit - max(len(p) for p in ps)
        if room < 1:
            raise ValueError(f"a prompt of {max(len(p) for p in ps)} tokens fills the model's context ({limit})")
        with autocast:
            gen = sampler_lib.generate_with(sampler, model, ps, n=n, max_new_tokens=min(max_new_tokens, room),
                                            temperature=temperature, top_p=top_p, top_k=top_k,
                                            eos_id=tok_lib.EOS_ID, pad_id=tok_lib.PAD_ID, seed=seed + ci)
        texts = tok.decode_batch(gen.to_lists(), skip_special_tokens=False)
        lengths, finished = gen.lengths.tolist(), gen.finished.tolist()
        for i, rec in enumerate(recs):
            rows = []
            for j in range(n):
                row = i * n + j
                res = verify(rec, texts[row])
                res["length"], res["finished"] = lengths[row], finished[row]
                if j < keep_text:
                    res["completion"] = texts[row]
                rows.append(res)
            out.append(rows)
    return out


def edge_subset(records: list[dict], scored: list[list[dict]], max_pass1: float = 0.5, k: int = 0,
                min_passk: float = 1e-9, metric: str = "verified") -> tuple[list[dict], dict]:
    """The edge of competence (SPEC §7): the problems the model fails at pass@1 (per-problem pass@1 = c/n <=
    max_pass1) but solves within pass@k (pass@k >= min_passk; k = n by default, i.e. solved at least once).
    Returns (the selected records, {op: [selected, total]})."""
    selected, by_op = [], {}
    for rec, rs in zip(records, scored):
        n, c = len(rs), sum(bool(r[metric]) for r in rs)
        keep = c / n <= max_pass1 and pass_at_k(n, c, min(k or n, n)) >= min_passk
        counts = by_op.setdefault(rec["op"], [0, 0])
        counts[0] += keep
        counts[1] += 1
        if keep:
            selected.append(rec)
    return selected, dict(sorted(by_op.items()))


def select_edge(model, tok, records: list[dict], n: int = 8, max_pass1: float = 0.5, k: int = 0,
                min_passk: float = 1e-9, metric: str = "verified", **sampling) -> tuple[list[dict], dict]:
    """Sample n completions per record and keep its edge of competence (see edge_subset)."""
    scored = sample_and_score(model, tok, records, n=n, **sampling)
    return edge_subset(records, scored, max_pass1, k, min_passk, metric)


def report_checkpoint(flat: list[dict], bands: dict, ks: list[int]) -> dict:
    """Summaries and pass@k curves of one checkpoint's samples, by every grouping."""
    return {"summary": {by: summarize(flat, by, bands) for by in GROUP_BYS},
            "pass_at_k": {by: pass_at_k_by(flat, by, ks, bands) for by in GROUP_BYS},
            "mean_length": {by: _mean_length(flat, by, bands) for by in GROUP_BYS}}


def _mean_length(flat, by, bands):
    groups: dict = {}
    for r in flat:
        groups.setdefault(group_of(r, by, bands), []).append(r["length"])
    return {g: sum(v) / len(v) for g, v in groups.items()}


def describe_mistake(rec: dict, res: dict) -> str:
    """One sample's verdict in plain words, for the log."""
    what = "right answer, unfaithful steps" if res["hacked"] else "wrong answer" if res["answer"] is not None \
        else "no answer"
    faults = ", ".join(f"{res[k]} {k.replace('_', ' ')}" for k in ("missing", "value_mismatch", "dep_mismatch",
                                                                    "extra", "contradiction", "bad_given",
                                                                    "bad_solve") if res[k])
    return (f"[{rec['id']} op {rec['op']} {rec['context']} {rec['mode']}] {what}: answered {res['answer']}, "
            f"expected {rec['answer']}; {res['n_correct']}/{res['n_gold']} steps right"
            + (f" ({faults})" if faults else "") + ("" if res["finished"] else "; cut at max_new_tokens"))


def markdown_tables(reports: dict[str, dict], bands: dict, n: int) -> str:
    """The comparison tables of results.md: per band, per op, per context and per mode."""
    from common import markdown_table
    labels = list(reports)
    first = reports[labels[0]]
    k_max = n
    lines = [f"# Evaluation: {', '.join(labels)}", "",
             f"{first['summary']['all']['all']['problems']} problems x {n} samples per checkpoint. pass@k is the "
             f"unbiased estimator (Chen et al. 2021); *verified* = every step of the solution graph right and the "
             f"answer right (SPEC §4); *hacked* = right answer, unfaithful steps.", ""]
    for by, title in (("band", "By band"), ("op", "By op"), ("context", "By context"), ("mode", "By mode")):
        rows = []
        for label in labels:
            rep = reports[label]
            for g, row in rep["summary"][by].items():
                pk = rep["pass_at_k"][by][g]
                kk = max(pk["verified"], key=int)
                rows.append([label, g, row["problems"], f"{100 * row['pass1']:.1f}",
                             f"{100 * row['pass1_verified']:.1f}",
                             f"{100 * pk['answer'][kk]:.1f}", f"{100 * pk['verified'][kk]:.1f}",
                             f"{row['process_acc']:.3f}", f"{100 * row['hacked_rate']:.1f}",
                             f"{rep['mean_length'][by][g]:.0f}"])
        lines += [f"## {title}", "", markdown_table(
            ["model", by, "problems", "pass@1 answer", "pass@1 verified", f"pass@{k_max} answer",
             f"pass@{k_max} verified", "process acc", "hacked %", "mean length"], rows), ""]
    return "\n".join(lines)


def plot_pass_at_k(reports: dict[str, dict], bands: dict, path, metric: str = "verified", title: str = "") -> None:
    """One panel per band: pass@k against k (log2 axis), one line per checkpoint -- the paper's figure shape."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = [b for b in bands if any(b in rep["pass_at_k"]["band"] for rep in reports.values())]
    fig, axes = plt.subplots(1, max(1, len(names)), figsize=(4.2 * max(1, len(names)), 3.6), squeeze=False)
    for ax, band in zip(axes[0], names):
        for label, rep in reports.items():
            curve = rep["pass_at_k"]["band"].get(band)
            if curve:
                ks = sorted(curve[metric], key=int)
                ax.plot([int(k) for k in ks], [100 * curve[metric][k] for k in ks], marker="o", ms=3, label=label)
        lo, hi = bands[band]
        ax.set(title=f"{band} (op {lo}-{hi})", xlabel="k", ylim=(-2, 102))
        ax.set_xscale("log", base=2)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"pass@k, {metric} (%)")
    axes[0][-1].legend(fontsize=8)
    fig.suptitle(title or f"pass@k ({metric})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_by_op(reports: dict[str, dict], path, metric: str = "verified") -> None:
    """pass@n against op, one line per checkpoint."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, rep in reports.items():
        by_op = rep["pass_at_k"]["op"]
        ops = sorted(by_op, key=int)
        ax.plot([int(o) for o in ops], [100 * by_op[o][metric][max(by_op[o][metric], key=int)] for o in ops],
                marker="o", ms=3, label=label)
    ax.set(xlabel="op (solution edges)", ylabel=f"pass@n, {metric} (%)", ylim=(-2, 102),
           title=f"pass@n by op ({metric})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def opt(default, help: str):
    """A config field with its --help text, like common.opt: importing common here would load torch at import."""
    kind = {"default_factory": lambda: list(default)} if isinstance(default, list) else {"default": default}
    return field(**kind, metadata={"help": help})


@dataclass
class Config:
    ckpt: list[str] = opt([], "checkpoint file or run folder; repeat to compare several")
    label: list[str] = opt([], "a name per checkpoint (default: its folder name)")
    data: str = opt("", "problems from this JSONL file ...")
    recipe: str = opt("eval_2_20", "... or drawn from this datagen recipe (name or spec)")
    problems: int = opt(200, "problems drawn from the recipe (with --data: the first N, 0 = all)")
    split: str = opt("test", "datagen split of the recipe's problems")
    data_seed: int = opt(0, "datagen seed of the recipe's problems")
    n: int = opt(16, "samples per problem (paper: 128)")
    temperature: float = opt(0.7, "sampling temperature (paper: 0.7); 0 = greedy")
    top_p: float = opt(1.0, "nucleus sampling")
    top_k: int = opt(0, "top-k sampling (0 = off)")
    sampler: str = opt("shared", "shared: sampler.py (fast, the default); plain: model.generate (the readable one; "
                                 "other random draws, no top_p / top_k)")
    max_new_tokens: int = opt(512, "longest completion (paper: 1024); cut at the model's context if longer")
    seed: int = opt(0, "sampling seed")
    batch_rows: int = opt(1024, "rows (prompts x samples) per sampler call")
    bands: str = opt("ID=2-10,edge=11-14,hard=15-20", "op bands of the report (the paper's)")
    out_dir: str = opt("runs/eval", "results.json, results.md, samples_<label>.jsonl, pass@k plots")
    keep_text: int = opt(2, "completions kept per problem in samples_<label>.jsonl (the verdicts are all kept)")
    show_mistakes: int = opt(3, "mistakes printed in plain words per checkpoint")
    device: str = opt("auto", "auto (cuda if available), cuda or cpu")
    dtype: str = opt("auto", "auto = bf16 autocast on CUDA, fp32 on CPU; or fp32 / bf16")
    select_edge: bool = opt(False, "write the edge-of-competence subset of the problems (one checkpoint)")
    edge_out: str = opt("", "where the selected records go ('' = out_dir/edge.jsonl)")
    edge_max_pass1: float = opt(0.5, "keep problems whose per-problem pass@1 is at most this ...")
    edge_k: int = opt(0, "... and whose pass@k (0: k = n) ...")
    edge_min_passk: float = opt(1e-9, "... is at least this (default: solved at least once)")
    edge_metric: str = opt("verified", "what counts as solved for the selection: verified or answer_correct")


def main(cfg) -> dict:
    """Sample, verify and report every checkpoint; returns {label: report} (and the edge selection)."""
    import json
    import time
    from pathlib import Path

    import datagen
    import model as model_lib
    import sampler as sampler_lib
    import tokenizer as tok_lib
    from common import (UserError, autocast_for, check_out_dir, load_checkpoint, parse_bands, print_config, run_info,
                        save_json, setup_dist)

    if not cfg.ckpt:
        raise UserError("give at least one --ckpt (a checkpoint file or a run folder)")
    labels = cfg.label or [Path(c).stem if Path(c).suffix == ".pt" and Path(c).stem != "final" else
                           Path(c).parent.name if Path(c).suffix == ".pt" else Path(c).name for c in cfg.ckpt]
    if len(labels) != len(cfg.ckpt) or len(set(labels)) != len(labels):
        raise UserError(f"need one distinct --label per --ckpt (got {len(cfg.label)} labels for {len(cfg.ckpt)})")
    if cfg.n < 1 or cfg.max_new_tokens < 1 or cfg.problems < 0:
        raise UserError("--n and --max_new_tokens must be >= 1 and --problems >= 0")
    if cfg.edge_metric not in ("verified", "answer_correct"):
        raise UserError("--edge_metric must be verified or answer_correct")
    if cfg.select_edge and len(cfg.ckpt) != 1:
        raise UserError("--select_edge works on one --ckpt at a time")
    sampler_lib.check_sampler(cfg.sampler, cfg.top_p, cfg.top_k)
    bands = parse_bands(cfg.bands)
    records = datagen.load_problems(cfg.data or cfg.recipe, cfg.problems, cfg.data_seed, cfg.split)
    if not records:
        raise UserError("no problems to evaluate")
    device = setup_dist(cfg.device).device
    autocast, _ = autocast_for(cfg.dtype, device)
    out_dir = Path(cfg.out_dir)
    check_out_dir(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    print_config(cfg, "evaluation config")
    ks = default_ks(cfg.n)
    reports, edge = {}, None
    for ckpt, label in zip(cfg.ckpt, labels):
        state = load_checkpoint(ckpt)
        model = model_lib.model_from_state(state).to(device).eval()
        tok, _ = tok_lib.pinned_tokenizer(state)  # the checkpoint's own tokenizer, checked by content hash
        print(f"{label}: {len(records)} problems x {cfg.n} samples, temperature {cfg.temperature}, "
              f"max {cfg.max_new_tokens} new tokens, on {device}")
        t0 = time.time()
        try:
            scored = sample_and_score(model, tok, records, n=cfg.n, temperature=cfg.temperature, top_p=cfg.top_p,
                                      top_k=cfg.top_k, max_new_tokens=cfg.max_new_tokens, seed=cfg.seed,
                                      autocast=autocast, batch_rows=cfg.batch_rows, progress=True,
                                      keep_text=cfg.keep_text, sampler=cfg.sampler)
        except ValueError as e:
            raise UserError(f"{label}: {e}; evaluate shorter problems or a model with a longer context") from None
        seconds = time.time() - t0
        flat = [r for rs in scored for r in rs]
        rep = report_checkpoint(flat, bands, ks)
        gen_tokens = sum(r["length"] for r in flat)
        rep.update(checkpoint=str(state["_path"]), step=state.get("step"), stage=state.get("stage"),
                   samples=len(flat), problems=len(records), seconds=round(seconds, 1),
                   generated_tokens=gen_tokens, tokens_per_s=round(gen_tokens / max(seconds, 1e-9)))
        reports[label] = rep
        with open(out_dir / f"samples_{label}.jsonl", "w", encoding="utf-8") as f:
            for r in flat:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        s = rep["summary"]["all"]["all"]
        pk = rep["pass_at_k"]["all"]["all"]
        print(f"{label}: pass@1 {100 * s['pass1']:.1f}% (verified {100 * s['pass1_verified']:.1f}%) | "
              f"pass@{cfg.n} {100 * pk['answer'][cfg.n]:.1f}% (verified {100 * pk['verified'][cfg.n]:.1f}%) | "
              f"hacked {100 * s['hacked_rate']:.1f}% | {seconds:.0f}s, {rep['tokens_per_s']:,} tok/s")
        shown = 0
        for rec, rs in zip(records, scored):
            for r in rs:
                if shown < cfg.show_mistakes and not r["verified"]:
                    print("  mistake: " + describe_mistake(rec, r))
                    shown += 1
        if cfg.select_edge:
            selected, by_op = edge_subset(records, scored, cfg.edge_max_pass1, cfg.edge_k, cfg.edge_min_passk,
                                          cfg.edge_metric)
            edge_path = Path(cfg.edge_out or out_dir / "edge.jsonl")
            edge_path.parent.mkdir(parents=True, exist_ok=True)
            edge_path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in selected), encoding="utf-8")
            print(f"edge of competence: {len(selected)} of {len(records)} problems -> {edge_path}")
            print("  by op: " + "  ".join(f"{op}:{a}/{b}" for op, (a, b) in sorted(by_op.items())))
            edge = {"path": str(edge_path), "selected": len(selected), "by_op": by_op}

    save_json(out_dir / "results.json", {"config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__},
                                         "run": run_info(device), "bands": bands, "reports": reports,
                                         "edge": edge})
    (out_dir / "results.md").write_text(markdown_tables(reports, bands, cfg.n), encoding="utf-8")
    for metric in ("verified", "answer"):
        plot_pass_at_k(reports, bands, out_dir / f"pass_at_k_{metric}.png", metric)
        plot_by_op(reports, out_dir / f"pass_by_op_{metric}.png", metric)
    print(f"wrote {out_dir / 'results.md'}, results.json and plots")
    return {"reports": reports, "edge": edge, "out_dir": str(out_dir)}


if __name__ == "__main__":
    from common import run_main
    run_main(main, Config)
