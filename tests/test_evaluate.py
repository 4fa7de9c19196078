"""Tests for verifier.py and evaluate.py: the safe evaluator, the completion parser against every gold graph,
single-fault detection, robustness on garbage, the SPEC §5 reward table, pass@k against brute force, and breakdowns.
CPU only, hermetic (the problems come from datagen with fixed seeds), a few seconds."""

import itertools
import json
import math
import random
import re
import sys
import time
from fractions import Fraction
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import datagen  # noqa: E402
import evaluate as E  # noqa: E402
import verifier as V  # noqa: E402

ALL_OPS = f"ops={datagen.MIN_OP}-{datagen.MAX_OP} contexts=zoo,teachers,movies modes=forward:0.5,reverse:0.5"
LETTER_TOKEN = re.compile(r"(?<![\w'])[A-Za-z](?![\w'])")  # as the parser defines a variable
STEP_SPLIT = re.compile(r"(?=Define )")
HEAD = re.compile(r"Define (.+?) as ([A-Za-z]);")


@pytest.fixture(scope="module")
def records():
    recs = list(datagen.generate(ALL_OPS, n=3000, seed=20240601))
    assert {r["op"] for r in recs} == set(range(datagen.MIN_OP, datagen.MAX_OP + 1))
    assert {r["context"] for r in recs} == {"zoo", "teachers", "movies"}
    assert {r["mode"] for r in recs} == {"forward", "reverse"}
    return recs


def with_solution(rec, solution, answer=None):
    return f" {solution} </solution> <answer> {rec['answer'] if answer is None else answer} </answer>[EOS]"


# ----------------------------------------------------------------------------------------------------------------
# Safe evaluator

def F(a, b):
    return (Fraction(a), Fraction(b))


@pytest.mark.parametrize("text,form", [
    ("7", F(0, 7)), ("1 + 2 * 3", F(0, 7)), ("(1 + 2) * 3", F(0, 9)), ("10 - 4 - 3", F(0, 3)),
    ("2 * 3 - 4 / 2", F(0, 4)), ("-3 + 5", F(0, 2)), ("--3", F(0, 3)), ("-(2 - 5)", F(0, 3)),
    ("10 / 4", F(0, Fraction(5, 2))), ("12 / 3 / 2", F(0, 2)), ("x", F(1, 0)), ("2*x + 18", F(2, 18)),
    ("(2*x + 18) - 1", F(2, 17)), ("2 * (x + 9)", F(2, 18)), ("-x + 7", F(-1, 7)), ("4*x - 2", F(4, -2)),
    ("x / 2", F(Fraction(1, 2), 0)), ("x - x", F(0, 0)), ("(x + 1) * 3", F(3, 3)), ("3*(x+1)-(x-1)", F(2, 4)),
    ("((((1))))", F(0, 1)), ("  5  ", F(0, 5)), ("999999999999", F(0, 999999999999)),
])
def test_evaluator_values(text, form):
    assert V.evaluate_linear(text) == form
    assert all(type(c) is Fraction for c in V.evaluate_linear(text))


@pytest.mark.parametrize("text", [
    "x * x", "(x + 1) * (x - 1)", "2 * x * x", "1 / x", "3 / (x + 1)", "1 / 0", "2 / (x - x)", "4 / (2 - 2)",
    "", " ", "1 +", "+1", "* 2", "2 3", "(1", "1)", "()", "abc", "y", "X", "x2", "2x", "2(3)", "1e5", "1.5",
    "\u0663", "2 ** 3", "__import__('os')", "1 = 1", "1 + 2; 3", "1" * 13, "9" * 40,
    "1+" * 150 + "1", "(" * 60 + "1" + ")" * 60, "-" * 60 + "1", "(" * 10000 + "1" + ")" * 10000,
])
def test_evaluator_rejects(text):
    assert V.evaluate_linear(text) is None


def test_evaluator_limits_and_types():
    assert V.evaluate_linear("(" * 40 + "1" + ")" * 40) == F(0, 1)  # within the depth limit
    assert V.evaluate_linear("-" * 10 + "4") == F(0, 4)
    for bad in (None, 5, b"1 + 2", ["1"]):
        assert V.evaluate_linear(bad) is None


def _random_expr(rng, depth):
    """A random expression text and its exact linear form, computed here without any evaluator."""
    if depth == 0 or rng.random() < 0.3:
        if rng.random() < 0.3:
            return "x", (Fraction(1), Fraction(0))
        n = rng.randint(0, 50)
        return str(n), (Fraction(0), Fraction(n))
    op = rng.choice("+-*/n")
    if op == "n":
        t, f = _random_expr(rng, depth - 1)
        return f"-({t})", (f and (-f[0], -f[1]))
    lt, lf = _random_expr(rng, depth - 1)
    rt, rf = _random_expr(rng, depth - 1)
    text = f"({lt}) {op} ({rt})"
    if lf is None or rf is None:
        return text, None
    (a, b), (c, d) = lf, rf
    if op == "+":
        return text, (a + c, b + d)
    if op == "-":
        return text, (a - c, b - d)
    if op == "*":
        return text, (None if a and c else (a * d + b * c, b * d))
    return text, (None if c or not d else (a / d, b / d))


def test_evaluator_random_expressions():
    rng = random.Random(5)
    checked = 0
    for _ in range(3000):
        text, form = _random_expr(rng, 4)
        if form is not None and len(text) <= V.MAX_EXPR_CHARS:
            assert V.evaluate_linear(text) == form, text
            checked += 1
        elif form is None:
            assert V.evaluate_linear(text) is None, text
    assert checked > 1000


def test_memoised_forms_equal_the_evaluator():
    """_form_of reads plain numbers and two-number arithmetic without the parser: same forms, ints where whole."""
    rng = random.Random(12)
    texts = ["7", "0", "007", "-3", "x", "2*x + 18", "12 / 5", "-12 / -4", "3 / 0", "0 / 3", "999999999999 * 2"]
    texts += [f"{rng.randint(-99, 99)} {rng.choice('+-*/')} {rng.randint(-99, 99)}" for _ in range(2000)]
    for text in texts:
        got = _fresh_form_equals_evaluator(text)
        assert got is None or all(isinstance(c, int) for c in got if c == int(c)), text


def _fresh_form_equals_evaluator(text):
    """_form_of on empty caches, checked against the parser; returns the form."""
    V.clear_caches()
    want = V.evaluate_linear(text)
    got = V._form_of(text)
    assert (got is None) == (want is None) and got == want, text
    return got


def test_memoised_linear_forms_equal_the_evaluator():
    """_form_of reads reverse mode's `a*x + b` shapes without the parser: same forms, int coefficients."""
    rng = random.Random(13)
    texts = ["x", "-x", "2*x", "-2*x", "x + 4", "x - 4", "-x - 4", "0*x", "-0*x - 0", "007*x + 009", "2*x+3",
             "2 * x + 3", "--x", "x +  3", "x + -3", "9" * 12 + "*x", "9" * 13 + "*x", "x + " + "9" * 13]
    for _ in range(3000):
        a = rng.choice(["", f"{rng.randint(0, 10 ** rng.randint(1, 13))}*"])
        b = rng.choice(["", f" {rng.choice('+-')} {rng.randint(0, 10 ** rng.randint(1, 13))}"])
        texts.append(rng.choice(["", "-"]) + a + "x" + b)
    for text in texts:
        got = _fresh_form_equals_evaluator(text)
        assert got is None or all(type(c) is int for c in got), text


def test_evaluator_never_raises_on_fuzz():
    rng = random.Random(6)
    alphabet = "0123456789x+-*/() .=;aZ\u00e9\u0663"
    for _ in range(5000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        out = V.evaluate_linear(text)
        assert out is None or (len(out) == 2 and all(type(c) is Fraction for c in out))


def test_no_eval_in_source():
    src = (ROOT / "evaluate.py").read_text(encoding="utf-8")
    # the builtins, not methods such as model.eval()
    assert re.search(r"(?<![.\w])(eval|exec)\s*\(", src) is None


# ----------------------------------------------------------------------------------------------------------------
# The parser reproduces every gold graph

def assert_parses_to_gold(rec, completion):
    parsed = V.parse_completion(completion)
    nodes = rec["graph"]["nodes"]
    assert list(parsed.nodes) == [n["name"] for n in nodes]
    assert parsed.repeats == 0 and parsed.answer == rec["answer"] and parsed.format_ok
    x_value = next((n["value"] for n in nodes if n["name"] == rec["graph"]["unknown"]), None)
    for n in nodes:
        p = parsed.nodes[n["name"]]
        assert p.parents == frozenset(n["parents"]), (n["name"], completion)
        a, b = p.value
        if rec["mode"] == "forward":
            assert a == 0 and b == n["value"]
        else:  # the stated form, evaluated at the true x, is the node's true value
            assert a * x_value + b == n["value"]
            assert a != 0 or n["name"] != rec["graph"]["unknown"]
    res = V.verify(rec, completion)
    assert res["verified"] and res["answer_correct"] and res["format_ok"] and not res["hacked"]
    assert res["process_acc"] == 1.0 and res["extra"] == 0 and res["n_gold"] == len(nodes)
    assert res["value_mismatch"] == res["dep_mismatch"] == res["missing"] == 0
    assert res["contradiction"] == res["bad_given"] == res["bad_solve"] == 0
    return parsed


def rename_letters(solution, rng, keep_x):
    """Rename every single-letter variable by one random permutation (x fixed in reverse mode)."""
    letters = [c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz" if not (keep_x and c == "x")]
    perm = dict(zip(letters, rng.sample(letters, len(letters))))
    return LETTER_TOKEN.sub(lambda m: perm.get(m.group(0), m.group(0)), solution)


def test_gold_reproduces_and_renamed_letters(records):
    rng = random.Random(7)
    renamed_differs = 0
    for rec in records:
        gold = assert_parses_to_gold(rec, V.gold_completion(rec))
        sol = rename_letters(rec["solution"], rng, keep_x=rec["mode"] == "reverse")
        renamed_differs += sol != rec["solution"]
        again = assert_parses_to_gold(rec, with_solution(rec, sol))
        assert {k: (v.parents, v.value) for k, v in again.nodes.items()} == \
            {k: (v.parents, v.value) for k, v in gold.nodes.items()}
    assert renamed_differs > 0.95 * len(records)


def test_gold_forms_match_the_generator(records):
    """Reverse mode: the gold forms recomputed from the graph are exactly the forms the solution states."""
    for rec in records[:500]:
        gold = V.gold_of(rec)
        parsed = V.parse_completion(V.gold_completion(rec))
        assert [(name, form) for name, _, form in gold.nodes] == [(k, v.value) for k, v in parsed.nodes.items()]


def test_verify_result_is_flat_json(records):
    res = V.verify(records[0], V.gold_completion(records[0]))
    assert set(res) >= {"answer_correct", "verified", "process_acc", "value_mismatch", "dep_mismatch", "missing",
                        "extra", "hacked", "format_ok", "n_gold", "answer"}
    assert all(v is None or isinstance(v, (bool, int, float, str)) for v in res.values())
    json.dumps(res)


# ----------------------------------------------------------------------------------------------------------------
# Each single corruption is detected, and the counters say which

def steps_of(solution):
    """(preamble, [step chunks]) -- each chunk `Define N as V; ...` with its trailing space."""
    parts = STEP_SPLIT.split(solution)
    return parts[0], parts[1:]


def corrupt_value(rec, rng):
    pre, steps = steps_of(rec["solution"])
    cands = []
    for i, s in enumerate(steps):
        var = HEAD.match(s).group(2)
        if f"so {var} = " in s:
            cands.append(i)
    i = rng.choice(cands)
    s = steps[i]
    var = HEAD.match(s).group(2)
    at = s.rfind(f"so {var} = ")
    end = s.find(".", at)
    seg = s.rfind(" = ", at, end) + 3
    steps[i] = s[:seg] + s[seg:end] + " + 1" + s[end:]
    return pre + "".join(steps)


def drop_step(rec, rng):
    pre, steps = steps_of(rec["solution"])
    del steps[rng.randrange(len(steps))]
    return pre + "".join(steps)


def swap_parent(rec, rng):
    """Replace one direct parent letter in a step's symbolic expression by another quantity's letter.
    Returns (solution, whether the changed segment is also the stated value: `so l = x` copies the unknown
    in one segment, so there the value changes too)."""
    pre, steps = steps_of(rec["solution"])
    heads = [HEAD.match(s) for s in steps]
    name_of = {h.group(2): h.group(1) for h in heads}
    gold_parents = {n["name"]: set(n["parents"]) for n in rec["graph"]["nodes"]}
    options = []
    for i, (s, h) in enumerate(zip(steps, heads)):
        body = s[h.end():]
        pieces = re.split(r"([;.])", body)
        for j in range(0, len(pieces), 2):
            m = re.match(r"(\s*(?:so )?[A-Za-z] = )([^=]*)(.*)$", pieces[j], re.S)
            if not m:
                continue
            for t in LETTER_TOKEN.findall(m.group(2)):
                if t in name_of and name_of[t] in gold_parents[h.group(1)]:
                    options.append((i, h, pieces, j, m, t))
    if not options:
        return None, False
    i, h, pieces, j, m, t = rng.choice(options)
    others = [v for v in name_of if v != t]  # its own letter too: a self-reference is wrong as well
    u = rng.choice(others)
    seg0 = LETTER_TOKEN.sub(lambda mm: u if mm.group(0) == t else mm.group(0), m.group(2), count=0)
    pieces = list(pieces)
    pieces[j] = m.group(1) + seg0 + m.group(3)
    steps[i] = steps[i][:h.end()] + "".join(pieces)
    return pre + "".join(steps), "=" not in m.group(3)


def test_single_corruptions_are_detected(records):
    rng = random.Random(8)
    swapped = 0
    for rec in records[:800]:
        # one stated value changed
        r = V.verify(rec, with_solution(rec, corrupt_value(rec, rng)))
        assert not r["verified"] and r["value_mismatch"] >= 1 and r["missing"] == 0 and r["dep_mismatch"] == 0
        assert r["answer_correct"] and r["hacked"] and r["process_acc"] < 1
        # a step dropped
        r = V.verify(rec, with_solution(rec, drop_step(rec, rng)))
        assert not r["verified"] and r["missing"] >= 1 and r["process_acc"] < 1
        # a parent swapped for another quantity
        sol, value_too = swap_parent(rec, rng)
        if sol is not None:
            swapped += 1
            r = V.verify(rec, with_solution(rec, sol))
            assert not r["verified"] and r["dep_mismatch"] >= 1, sol
            assert r["missing"] == 0 and (value_too or r["value_mismatch"] == 0)
        # the answer changed
        r = V.verify(rec, with_solution(rec, rec["solution"], answer=rec["answer"] + 1))
        assert not r["answer_correct"] and not r["verified"] and not r["hacked"] and r["process_acc"] == 1
        assert r["format_ok"] and r["answer"] == rec["answer"] + 1
        # the answer tags removed (or broken)
        for bad in (f" {rec['solution']} </solution>", f" {rec['solution']} </solution> {rec['answer']}",
                    f" {rec['solution']} </solution> <answer> {rec['answer']}",
                    f" {rec['solution']} </solution> <answer> {rec['answer']}.0 </answer>"):
            r = V.verify(rec, bad)
            assert not r["format_ok"] and not r["verified"] and r["answer"] is None
        # without </solution> the answer still counts (verified does not depend on format_ok), the format not
        r = V.verify(rec, f" {rec['solution']} <answer> {rec['answer']} </answer>")
        assert not r["format_ok"] and r["verified"]
        r = V.verify(rec, f" {rec['solution']} </solution>")
        assert r["answer"] is None and not r["answer_correct"] and r["process_acc"] == 1
    assert swapped > 700


# ----------------------------------------------------------------------------------------------------------------
# Unfaithful completions that state the gold steps *and* something that contradicts them are not verified;
# consistent variants (re-stated steps, distractor steps, valid re-orderings) still are

CLOSING_AT = re.compile(r" We know [A-Za-z] = ")


def split_closing(solution):
    """(steps text, closing text): the reverse-mode closing starts at ` We know`; forward has none."""
    m = CLOSING_AT.search(solution)
    return (solution, "") if m is None else (solution[:m.start()], solution[m.start():])


def last_clause_of(step, var):
    """(start, end) of the step's final `so V = ...` clause, the end at its closing period."""
    at = step.rfind(f"so {var} = ")
    return at, step.find(".", at)


def restate_step(rec, rng, wrong):
    """One gold step Defined again after the last step, as written (wrong=False) or with its value + 1."""
    body, closing = split_closing(rec["solution"])
    pre, steps = steps_of(body)
    cands = [s for s in steps if f"so {HEAD.match(s).group(2)} = " in s]
    s = rng.choice(cands).rstrip() + " "
    if wrong:
        at, end = last_clause_of(s, HEAD.match(s).group(2))
        s = s[:end] + " + 1" + s[end:]
    return pre + "".join(steps).rstrip() + " " + s.rstrip() + closing


def restate_clause(rec, rng, wrong_first):
    """A step's variable assigned twice in the step: once from another quantity's letter (not a parent of the
    step), with the same value, before (wrong_first) or after the gold clause."""
    body, closing = split_closing(rec["solution"])
    pre, steps = steps_of(body)
    heads = [HEAD.match(s) for s in steps]
    name_of = {h.group(2): h.group(1) for h in heads}
    parents = {n["name"]: set(n["parents"]) for n in rec["graph"]["nodes"]}
    cands = [i for i, h in enumerate(heads) if f"so {h.group(2)} = " in steps[i]]
    i = rng.choice(cands)
    var, name = heads[i].group(2), heads[i].group(1)
    others = [v for v in name_of if v != var and name_of[v] not in parents[name]] or \
        [c for c in "MNOPQRSTUVW" if c not in name_of][:1]  # else a letter nothing Defines
    u = rng.choice(others)
    s = steps[i]
    at, end = last_clause_of(s, var)
    value = s[at:end].rsplit(" = ", 1)[-1]
    extra = f"{var} = {u} = {value}"
    steps[i] = s[:at] + extra + "; " + s[at:] if wrong_first else s[:end] + "; so " + extra + s[end:]
    return pre + "".join(steps).rstrip() + closing


def misquote_given(rec):
    body, closing = split_closing(rec["solution"])
    m = re.match(r" We know ([A-Za-z]) = (-?[0-9]+),", closing)
    return body + closing.replace(m.group(0), f" We know {m.group(1)} = {int(m.group(2)) + 1},", 1)


def missolve(rec):
    """The closing's last value (the solved x) changed; the answer left right."""
    body, closing = split_closing(rec["solution"])
    head, value = closing.rstrip(".").rsplit(" = ", 1)
    return body + f"{head} = {int(value) + 1}."


def reorder_steps(rec, rng):
    """Two adjacent steps swapped where the later does not use the earlier (a valid topological order)."""
    body, closing = split_closing(rec["solution"])
    pre, steps = steps_of(body)
    steps = [s.rstrip() + " " for s in steps]
    ok = [i for i in range(len(steps) - 1)
          if HEAD.match(steps[i]).group(2) not in LETTER_TOKEN.findall(steps[i + 1][HEAD.match(steps[i + 1]).end():])]
    if not ok:
        return None
    i = rng.choice(ok)
    steps[i], steps[i + 1] = steps[i + 1], steps[i]
    return pre + "".join(steps).rstrip() + closing


def test_contradicting_statements_are_not_verified(records):
    rng = random.Random(11)
    seen = {"forward": 0, "reverse": 0}
    for rec in records[:1500]:
        reverse = rec["mode"] == "reverse" and rec["graph"]["unknown"] is not None
        seen["reverse" if reverse else "forward"] += 1
        # 1. a gold quantity Defined again with another value
        r = V.verify(rec, with_solution(rec, restate_step(rec, rng, wrong=True)))
        assert not r["verified"] and r["contradiction"] == 1 and r["hacked"], rec["solution"]
        assert V.reward(r, "strict") == 0 and V.reward(r, "process") < 1
        # ... and Defined again consistently: allowed (an extra node)
        r = V.verify(rec, with_solution(rec, restate_step(rec, rng, wrong=False)))
        assert r["verified"] and r["contradiction"] == 0 and r["extra"] == 1
        # 4. a step assigns its variable twice, once from a quantity that is not its parent
        for wrong_first in (True, False):
            r = V.verify(rec, with_solution(rec, restate_clause(rec, rng, wrong_first)))
            assert not r["verified"] and r["contradiction"] == 1 and r["dep_mismatch"] == wrong_first
        # a valid re-ordering of the steps
        sol = reorder_steps(rec, rng)
        if sol is not None:
            assert V.verify(rec, with_solution(rec, sol))["verified"], sol
        if reverse:
            # 2. the unknown solved to another value, the answer right
            r = V.verify(rec, with_solution(rec, missolve(rec)))
            assert not r["verified"] and r["bad_solve"] >= 1 and r["hacked"] and r["process_acc"] == 1
            # 3. the given value misquoted
            r = V.verify(rec, with_solution(rec, misquote_given(rec)))
            assert not r["verified"] and r["bad_given"] == 1 and r["hacked"] and r["process_acc"] == 1
            # no closing at all: the steps do not reach the answer
            r = V.verify(rec, with_solution(rec, split_closing(rec["solution"])[0]))
            assert not r["verified"] and r["bad_solve"] == 1 and r["bad_given"] == 1
    assert seen["forward"] > 500 and seen["reverse"] > 500


# ----------------------------------------------------------------------------------------------------------------
# Robustness: garbage never crashes, never takes long, never verifies

def check_fast(rec, text, limit=0.5):
    t = time.perf_counter()
    r = V.verify(rec, text)
    dt = time.perf_counter() - t
    assert dt < limit, (dt, text[:80])
    json.dumps(r)
    return r


def test_random_garbage(records):
    rng = random.Random(9)
    rec = records[0]
    pieces = ["Define ", " as ", "x", "p", "; ", ". ", " = ", "so ", "(", ")", "+", "*", "/", "-", "7", "12",
              "</solution>", "<answer>", "</answer>", " ", "adult owl in Pine Ridge", "\u00e9", "\n"]
    for _ in range(300):
        raw = bytes(rng.randrange(256) for _ in range(rng.randint(0, 400)))
        assert not check_fast(rec, raw.decode("utf-8", errors="replace"))["verified"]
        assert not check_fast(rec, raw.decode("latin-1"))["verified"]
        uni = "".join(chr(rng.randrange(1, 0x2FFFF)) for _ in range(rng.randint(0, 200)))
        uni = uni.encode("utf-8", errors="ignore").decode("utf-8")
        assert not check_fast(rec, uni)["verified"]
        assert not check_fast(rec, "".join(rng.choice(pieces) for _ in range(rng.randint(0, 300))))["verified"]
    assert V.parse_completion(None).nodes == {}


def test_truncated_completions(records):
    for rec in records[:6]:
        full = V.gold_completion(rec)
        for i in range(len(full) + 1):
            r = check_fast(rec, full[:i])
            assert r["verified"] == (i == len(full))


def test_pathological_inputs(records):
    rec = records[0]
    name = rec["graph"]["nodes"][0]["name"]
    big = 100_000
    rng = random.Random(10)
    inputs = [
        "Define " * (big // 7), "Define a as b; " * (big // 15), "D" * big, " " * big, ";" * big, "=" * big,
        "Define " + "a" * big, "so p = " + "9" * big, "Define q as p; so p = " + "9" * big,
        f"Define {name} as p; so p = " + "(" * 10_000 + "1" + ")" * 10_000 + ". </solution> <answer> 1 </answer>",
        f"Define {name} as p; so p = " + "-(" * 10_000 + "1" + ")" * 10_000,
        f"Define {name} as p; so p = " + " + ".join(["p"] * 20_000),
        f"Define {name} as p; " + "A = p; " * 10_000,
        f"Define {name} as p; so p = 99999999999999999999999. </solution> <answer> 1{'0' * 40} </answer>",
        "<answer>" + " " * big + "7",
        "".join(rng.choice("Define as;.=()x+-*/0123456789 pqrs") for _ in range(big)),
        (rec["solution"] + " ") * 150,  # ~100k characters of valid steps, all repeats, but no answer
    ]
    for text in inputs:
        r = check_fast(rec, text)
        assert not r["verified"]
    huge = V.parse_completion(f"Define {name} as p; so p = 99999999999999999999999. </solution> "
                              f"<answer> 1{'0' * 40} </answer>")
    assert huge.nodes[name].value is None and huge.answer is None


def test_repeated_defines(records):
    rec = spec_record()
    line = "Define adult parrot in South Zoo as p; so p = 2. "
    r = check_fast(rec, " " + line * 1000 + "</solution> <answer> 7 </answer>")
    assert r["extra"] == 999 and r["missing"] == 2 and not r["verified"] and r["hacked"]
    # a repeat changes nothing: the first Define is the node; repeats count as extra, which is allowed
    r = check_fast(rec, " " + SPEC_SOLUTION + " " + line * 1000 + "</solution> <answer> 7 </answer>")
    assert r["verified"] and r["extra"] == 1000 and V.reward(r, "strict") == 0
    wrong_repeat = SPEC_SOLUTION.replace("so p = 2.", "so p = 2. Define adult parrot in South Zoo as p; so p = 3.")
    r = V.verify(rec, with_solution(rec, wrong_repeat))
    assert r["value_mismatch"] == 0 and r["extra"] == 1 and r["contradiction"] == 1 and not r["verified"]
    assert r["hacked"] and V.reward(r, "strict") == 0 and V.process_penalty(r) == 2
    # a repeat with no assignment asserts nothing new
    r = V.verify(rec, with_solution(rec, SPEC_SOLUTION + " Define adult parrot in South Zoo as Q;"))
    assert r["verified"] and r["contradiction"] == 0 and r["extra"] == 1


# ----------------------------------------------------------------------------------------------------------------
# Parse rules on small cases

def test_letters_inside_words_and_unresolved_letters():
    rec = spec_record()
    # "a" inside words, "t" of "don't": not variables. An unresolved letter makes the parent set wrong.
    sol = SPEC_SOLUTION.replace("so g = p + q", "so g = p + q + z - z")
    r = V.verify(rec, with_solution(rec, sol))
    assert r["dep_mismatch"] == 1 and r["value_mismatch"] == 0 and not r["verified"]
    sol = SPEC_SOLUTION.replace("so p = 2.", "so p = 2. We don't know a thing, so exists = 3.")
    assert V.verify(rec, with_solution(rec, sol))["verified"]
    # a self-reference is wrong
    sol = SPEC_SOLUTION.replace("so p = 2.", "so p = p - p + 2 = 2.")
    r = V.verify(rec, with_solution(rec, sol))
    assert r["dep_mismatch"] == 1 and not r["verified"]


def test_assignments_to_other_letters_do_not_change_the_step():
    rec = spec_record()
    sol = SPEC_SOLUTION.replace("so p = 2.", "so p = 2; Y = 12; so x = 4.")
    assert V.verify(rec, with_solution(rec, sol))["verified"]
    # a quote of a quantity must be its true value (forward mode: every gold value is known)
    for quote, bad in (("We know g = 7", 0), ("We know g = 9", 1), ("We know z = 9", 1)):
        r = V.verify(rec, with_solution(rec, SPEC_SOLUTION + f" {quote}, so x = 4."))
        assert r["bad_given"] == bad and r["verified"] == (not bad) and r["bad_solve"] == 0


def test_one_rule_for_repeated_assignments():
    """The first assignment to a quantity is the node; a later one that disagrees is a contradiction, whether
    it is in the same step or in a repeated Define. Consistent re-statements are allowed."""
    rec = spec_record()
    for before, after, value_mm, contradiction in (
            ("so p = 2.", "p = 3; so p = 2.", 1, 1),
            ("so p = 2.", "so p = 2; p = 3.", 0, 1),
            ("so p = 2.", "so p = 2; so p = 2.", 0, 0),
            ("so p = 2.", "so p = 2; so p = 1 + 1.", 0, 0),  # the same value, written otherwise
            ("so q = 3 + Y", "so q = p + 3 = 5; so q = 3 + Y", 0, 0),  # the same parent, directly
            ("so q = 3 + Y", "so q = g + 3 = 5; so q = 3 + Y", 0, 1),  # another parent first
            ("so q = 3 + Y = 3 + 2 = 5.", "so q = 3 + Y = 3 + 2 = 5; so q = g = 5.", 0, 1)):
        r = V.verify(rec, with_solution(rec, SPEC_SOLUTION.replace(before, after)))
        assert (r["value_mismatch"], r["contradiction"]) == (value_mm, contradiction), after
        assert r["verified"] == (not value_mm and not contradiction), after


def test_whitespace_in_names_and_solution_end():
    rec = spec_record()
    sol = SPEC_SOLUTION.replace("Define adult parrot in South Zoo as p", "Define adult  parrot in\nSouth Zoo as p")
    assert V.verify(rec, with_solution(rec, sol))["verified"]
    # steps after </solution> do not count
    r = V.verify(rec, " Define adult parrot in South Zoo as p; so p = 2. </solution> " + SPEC_SOLUTION +
                 " <answer> 7 </answer>")
    assert r["missing"] == 2 and not r["format_ok"]


def test_reverse_mode_forms():
    rec = next(r for r in datagen.generate("ops=6 modes=reverse", n=50, seed=3) if r["graph"]["unknown"])
    res = V.verify(rec, V.gold_completion(rec))
    assert res["verified"]
    # stating the unknown's true value instead of x is a value mismatch
    unknown = rec["graph"]["unknown"]
    xval = next(n["value"] for n in rec["graph"]["nodes"] if n["name"] == unknown)
    sol = rec["solution"].replace("as x; we don't know its value yet.", f"as x; so x = {xval}.")
    r = V.verify(rec, with_solution(rec, sol))
    assert r["value_mismatch"] >= 1 and not r["verified"] and r["hacked"]


def test_pseudo_label_answer(records):
    rec = records[1]
    comp = V.gold_completion(rec)
    assert not V.verify(rec, comp, gold_answer=rec["answer"] + 1)["answer_correct"]
    assert V.verify(rec, comp)["verified"]  # the cached gold does not keep the pseudo-label


# ----------------------------------------------------------------------------------------------------------------
# SPEC §5 worked table: op-5 problem, answer 7, three gold nodes, alpha 0.2

SPEC_SOLUTION = ("Define adult parrot in South Zoo as p; so p = 2. Define adult blue jay in South Zoo as q; "
                 "Y = p = 2; so q = 3 + Y = 3 + 2 = 5. Define total number of adult animals in South Zoo as g; "
                 "so g = p + q = 2 + 5 = 7.")


SPEC_RENAMED = ("Define adult parrot in South Zoo as a; so a = 2. Define adult blue jay in South Zoo as b; "
                "Z = a = 2; so b = 3 + Z = 3 + 2 = 5. Define total number of adult animals in South Zoo as c; "
                "so c = a + b = 2 + 5 = 7.")


def spec_record():
    P, Q, G = "adult parrot in South Zoo", "adult blue jay in South Zoo", "total number of adult animals in South Zoo"
    graph = {"nodes": [
        {"name": P, "parents": [], "combine": "const", "k": 2, "kop": None, "value": 2},
        {"name": Q, "parents": [P], "combine": "copy", "k": 3, "kop": "plus", "value": 5},
        {"name": G, "parents": [P, Q], "combine": "sum", "k": None, "kop": None, "value": 7},
    ], "query": G, "unknown": None}
    return {"id": "spec-op5-example", "op": 5, "context": "zoo", "mode": "forward", "problem": "",
            "question": f"What is the {G}?", "solution": SPEC_SOLUTION, "answer": 7, "graph": graph}


def test_spec_record_is_consistent():
    rec = spec_record()
    assert datagen.graph_op(rec["graph"]) == 5
    assert datagen.recompute_values(rec["graph"]) == {n["name"]: n["value"] for n in rec["graph"]["nodes"]}


@pytest.mark.parametrize("case,solution,answer,acc,verified,process,strict", [
    ("exact gold", SPEC_SOLUTION, 7, 1.0, True, 1.0, 1),
    ("letters renamed", SPEC_RENAMED, 7, 1.0, True, 1.0, 1),
    ("one intermediate value wrong", SPEC_SOLUTION.replace("3 + 2 = 5", "3 + 2 = 6"), 7, 0.667, False, 0.733, 0),
    ("one step skipped, value inlined",
     "Define adult parrot in South Zoo as p; so p = 2. Define total number of adult animals in South Zoo as g; "
     "so g = p + 5 = 2 + 5 = 7.", 7, 0.333, False, 0.467, 0),
    ("extra distractor step", SPEC_SOLUTION.replace("so p = 2.", "so p = 2. Define adult owl in South Zoo as w; "
                                                                  "so w = 4."), 7, 1.0, True, 0.733, 0),
    ("answer wrong", SPEC_SOLUTION, 8, 1.0, False, 0.0, 0),
])
def test_spec_reward_table(case, solution, answer, acc, verified, process, strict):
    rec = spec_record()
    r = V.verify(rec, f" {solution} </solution> <answer> {answer} </answer>[EOS]")
    assert round(r["process_acc"], 3) == acc, case
    assert r["verified"] == verified, case
    assert round(V.reward(r, "process", alpha=0.2), 3) == process, case
    assert V.reward(r, "strict") == strict, case
    assert V.reward(r, "outcome") == (1.0 if answer == 7 else 0.0)


def test_names_matter_letters_do_not():
    assert [v.var for v in V.parse_completion(" " + SPEC_RENAMED).nodes.values()] == ["a", "b", "c"]
    r = V.verify(spec_record(), " " + SPEC_SOLUTION.replace("parrot", "Parrot") + " </solution> <answer> 7 </answer>")
    assert r["missing"] == 1 and r["extra"] == 1 and not r["verified"]


def test_reward_options():
    r = V.verify(spec_record(), with_solution(spec_record(), SPEC_SOLUTION.replace("3 + 2 = 5", "3 + 2 = 6")))
    assert V.reward(r, "process", alpha=0.5) == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert V.process_penalty(r) == 1
    with pytest.raises(ValueError):
        V.reward(r, "bogus")
    assert set(V.REWARD_KINDS) == {"outcome", "process", "strict"}


# ----------------------------------------------------------------------------------------------------------------
# pass@k

def brute_pass_at_k(n, c, k):
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


def test_pass_at_k_matches_brute_force():
    for n in range(1, 9):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert E.pass_at_k(n, c, k) == pytest.approx(brute_pass_at_k(n, c, k), abs=1e-12), (n, c, k)


def test_pass_at_k_large_n_and_errors():
    prev = -1.0
    for k in E.default_ks(1024):
        p = E.pass_at_k(1024, 3, k)
        assert math.isfinite(p) and 0.0 <= p <= 1.0 and p >= prev
        prev = p
    assert E.pass_at_k(1024, 0, 1024) == 0.0 and E.pass_at_k(1024, 1, 1024) == 1.0
    assert E.pass_at_k(128, 1, 1) == pytest.approx(1 / 128)
    for bad in ((4, 1, 5), (4, 1, 0), (4, 5, 1), (4, -1, 1), (0, 0, 1), (4.0, 1, 1)):
        with pytest.raises(ValueError):
            E.pass_at_k(*bad)


def test_pass_at_k_curve_and_default_ks():
    assert E.default_ks(1) == [1]
    assert E.default_ks(8) == [1, 2, 4, 8]
    assert E.default_ks(6) == [1, 2, 4, 6]
    assert E.default_ks(128)[-1] == 128 and len(E.default_ks(128)) == 8
    with pytest.raises(ValueError):
        E.default_ks(0)
    curve = E.pass_at_k_curve([(4, 0), (4, 4), (4, 1)], [1, 2, 4])
    assert curve[1] == pytest.approx((0 + 1 + 0.25) / 3)
    assert curve[4] == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        E.pass_at_k_curve([(4, 1)], [8])


# ----------------------------------------------------------------------------------------------------------------
# Breakdowns

def test_band_of():
    assert [E.band_of(op) for op in (1, 2, 10, 11, 14, 15, 20, 21)] == \
        [None, "ID", "ID", "edge", "edge", "hard", "hard", None]
    assert E.band_of(5, {"low": (1, 5), "high": (6, 9)}) == "low"


def test_summaries(records):
    rng = random.Random(11)
    results = []
    recs = records[:40]
    for rec in recs:
        for _ in range(4):
            comp = V.gold_completion(rec) if rng.random() < 0.5 else with_solution(rec, drop_step(rec, rng))
            results.append(V.verify(rec, comp))
    for by in E.GROUP_BYS:
        table = E.summarize(results, by=by)
        assert sum(row["samples"] for row in table.values()) == len(results)
        for row in table.values():
            assert 0 <= row["pass1_verified"] <= row["pass1"] <= 1
            assert row["hacked_rate"] == pytest.approx(row["pass1"] - row["pass1_verified"])
        curves = E.pass_at_k_by(results, by=by)
        assert list(curves) == list(table)
        assert sum(c["problems"] for c in curves.values()) == len(recs)
        for g, c in curves.items():
            assert list(c["answer"]) == [1, 2, 4]
            assert c["answer"][1] == pytest.approx(table[g]["pass1"])
            assert c["verified"][1] == pytest.approx(table[g]["pass1_verified"])
            assert all(c["verified"][k] <= c["answer"][k] + 1e-12 for k in c["answer"])
    assert list(E.summarize(results, by="op")) == sorted({r["op"] for r in results})
    bands = list(E.summarize(results, by="band", bands={"z": (2, 20), "a": (21, 30)}))
    assert bands == [b for b in ("z", "a") if b in bands]
    with pytest.raises(ValueError):
        E.summarize(results, by="colour")


def test_parse_bands():
    from common import UserError, parse_bands
    assert parse_bands("ID=2-10,edge=11-14, hard=15-20") == {"ID": (2, 10), "edge": (11, 14), "hard": (15, 20)}
    assert parse_bands("2-4,5") == {"op 2-4": (2, 4), "op 5": (5, 5)}
    for bad in ("2-x", "=2-3", "ID=", "a-b"):
        with pytest.raises(UserError, match="bad band"):
            parse_bands(bad)
