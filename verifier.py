"""
verifier.py -- reads a model's solution back into a graph and checks it against the problem's (SPEC §4), and
turns that verdict into the GRPO rewards (SPEC §5). Pure Python, no torch: grpo.py and the tests import it cheaply.

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

The same verdict feeds the GRPO rewards (`reward`: outcome / process / strict); evaluate.py turns many of them
into pass@k tables.

Examples:
    python -c "import datagen, verifier as V; r = next(datagen.generate('ops=12 modes=reverse', n=1)); \\
               print(r['solution']); print(V.verify(r, V.gold_completion(r)))"
    python -m pytest -q tests/test_evaluate.py      # the verifier's proofs
"""

from __future__ import annotations

import re
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
