"""
datagen.py -- synthetic math word problems whose full solution graph is known.

Every problem is built from a small DAG of quantities (after the iGSM / GSM-Infinite generator):

    The number of adult parrot in South Zoo equals 2. The number of adult blue jay in South Zoo
    equals 3 plus the number of adult parrot in South Zoo. ...  What is the total number of adult
    animals in South Zoo?

and its target solution defines every needed quantity once, in topological order:

    Define adult parrot in South Zoo as p; so p = 2. Define adult blue jay in South Zoo as q;
    Y = p = 2; so q = 3 + Y = 3 + 2 = 5. Define total number of adult animals in South Zoo as g;
    so g = p + q = 2 + 5 = 7.

The difficulty `op` is the number of edges of the solution DAG (each constant counts as one edge), and
the generator hits any requested op in 2..30 exactly, by construction. Every instance quantity of the
problem has one defining sentence, needed or not (distractors); aggregates ("total number of ... in P")
are never defined by a sentence -- the rule "aggregate = sum of P's quantities" is learned from data.
In reverse mode one leaf is unknown, the final value is given, and the solution solves a linear equation.

At every op the problems are built like the paper's (the GSM-Infinite "realistic" generator): the question
mostly asks for a place's total, a total's quantities are mostly `k plus` / `k times` one another or further
totals, operands are reused so the DAG is deep and ends in one or two constants, and distractors are as many as
there. `python bench.py fidelity` prints these statistics next to the reference's (fidelity_reference.json); where
ours differs on purpose it is a named `Options` field whose default is the paper's (SPEC §2).

Records are JSON lines with fields id, op, context, mode, problem, question, solution, answer, graph
(see SPEC §2). The id hashes what the problem *is* (not sentence order or letters); splits
(train / rl / val / test) and dedup are decided from it, so a problem can never sit on both sides of a split.
Generation is a pure function of (seed, index): the same command gives byte-identical output whatever
the number of worker processes.

A *recipe* is a named mixture over (op, context, mode), written in a small spec language:

    ops=2-10 contexts=zoo,teachers,movies                   # uniform over ops 2..10 and 3 contexts
    ops=2-4:.2,5-7:.3,8-10:.5                                # weight per range, spread evenly inside it
    0.99*ops=2-20 contexts=zoo + 0.01*ops=2 contexts=teachers   # a joint mixture of two parts
    ops=11-14 modes=forward:0.8,reverse:0.2                  # 20% reverse-mode problems
    ops=2-5 distractors=0.5 operands=2                       # scale-downs (Options): fewer distractors, sums of 2

Examples:
    python datagen.py --recipe pretrain_uniform --n 100000 --seed 0 --split train --out data/pt.jsonl
    python datagen.py --ops 2-20 --contexts zoo,teachers --modes forward,reverse --n 1000 --out eval.jsonl
    python datagen.py --recipe rl_11_14 --split rl --n 5000 --workers 2 --out data/rl.jsonl
    python datagen.py --help        # lists every named recipe
"""

from __future__ import annotations

import gc
import hashlib
import json
import math
import os
import random
import re
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

from common import UserError, atomic_write, opt, run_main

MIN_OP, MAX_OP = 2, 30
MAX_VALUE = 1000  # every quantity on the solution path is an integer in 1..MAX_VALUE


@dataclass(frozen=True)
class Options:
    """Where our generator may differ from the paper's (GSM-Infinite) on purpose. Every default is the paper's;
    none of them moves the structure statistics (`python bench.py fidelity`)."""
    unknown_max: int = 4  # reverse mode: the unknown's value is drawn from 1..unknown_max (paper: 1-4, like every
    #                       constant; e.g. 20 keeps the answer from being guessable from the constants' range)
    repair: bool = False  # a solution value out of 1..MAX_VALUE: False = redraw the problem (the paper rejects it);
    #                       True = repair it in place (a difference written larger-first, `k times` -> `k plus`)
    valid_distractors: bool = False  # False = distractors' values go unchecked (the paper's); True = a distractor
    #                                  whose value would leave 1..MAX_VALUE is repaired, else becomes a constant
    # scale-downs for models too small for the paper's problems (recipe items `distractors=` and `operands=`):
    distractors: float = 1.0  # the mean number of distractor sentences at each op, times this (paper: 1)
    max_operands: int = 0  # cap on a solution sum's operands and on the types a total sums (0 = none, the paper's);
    #                        2 keeps every step type of op 6-10 within op 2-5 (SPEC §2, "Scale-downs")
    letters: str = "random"  # the solution's variable letters: random distinct letters (the paper's) or sequential,
    #                          a run of consecutive letters from a random start (recipe item `letters=sequential`)


PAPER = Options()
LETTERS = [c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwyz"]  # every letter but x (the unknown)
SPLITS = {"train": 0.85, "rl": 0.05, "val": 0.05, "test": 0.05}  # share of the id space per split
REVERSE_PREAMBLE = "The question is difficult, so we use equations to solve it."
UNKNOWN_NOTE = "we don't know its value yet"


# ----------------------------------------------------------------------------------------------------------------
# Contexts: the names a problem is written with (data, in contexts.json)

CONTEXTS_FILE = Path(__file__).with_name("contexts.json")


@dataclass(frozen=True)
class Context:
    """A two-level hierarchy of names: places (layer 0) hold item types (layer 1). Each problem takes one
    sub-list of places and one sub-list of types; `aggregate` names the per-place total."""
    id: str
    letter: str
    places: tuple[tuple[str, ...], ...]
    types: tuple[tuple[str, ...], ...]
    aggregate: str


_BAD_NAME_CHARS = set(";.=<>:,0123456789")


def load_contexts(path: str | Path = CONTEXTS_FILE) -> dict[str, Context]:
    """Read and check the context file. A new context is a new entry there -- names only, no code change."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"context file {str(path)!r} not found") from None
    except json.JSONDecodeError as e:
        raise UserError(f"context file {str(path)!r} is not valid JSON: {e}") from None
    out = {}
    for cid, c in raw.items():
        where = f"context {cid!r} in {path}"
        try:
            places = tuple(tuple(s) for s in c["places"])
            types = tuple(tuple(s) for s in c["types"])
            agg = c["aggregate"]
        except (KeyError, TypeError):
            raise UserError(f"{where}: needs 'places' and 'types' (lists of name lists) and 'aggregate'") from None
        names = [n for sub in places + types for n in sub] + [agg]
        for n in names:
            if not isinstance(n, str) or not n.strip() or n != n.strip() or set(n) & _BAD_NAME_CHARS:
                raise UserError(f"{where}: bad name {n!r} (non-empty, no digits and none of ; . = < > : ,)")
        if len(set(names)) != len(names):
            raise UserError(f"{where}: names must be distinct")
        if any(len(s) < 2 for s in places + types):
            raise UserError(f"{where}: every sub-list needs at least 2 names")
        out[cid] = Context(cid, c.get("letter", ""), places, types, agg)
    return out



def _sample(rand, seq, k: int) -> list:
    """k distinct items of seq in random order (a partial Fisher-Yates on rand(): several times faster than
    random.sample for the tiny lists used here, and just as deterministic)."""
    a = list(seq)
    n = len(a)
    for i in range(k):
        j = i + int(rand() * (n - i))
        a[i], a[j] = a[j], a[i]
    return a[:k]


def _shuffled(rand, seq) -> list:
    return _sample(rand, seq, len(seq))


# ----------------------------------------------------------------------------------------------------------------
# The solution skeleton: a DAG with exactly `op` edges, built top-down from the query

# A node is an instance quantity ("T in P", defined by a sentence) or an aggregate ("total ... in P" = sum of
# all of P's instance quantities). Node 0 is the query. Nodes are created top-down and defined in creation
# order (a FIFO), and a node only takes parents created after it, so parent index > child index: the graph is
# acyclic by construction, and the nodes still undefined are exactly those with a larger index.
#
# Budget rule: every undefined node costs at least one edge (a constant), so with `b` edges left and `f` other
# undefined nodes, a definition of cost `e` that creates `n_new` new nodes is allowed iff e + n_new <= b - f;
# when nothing is left undefined, the edges must be used up exactly. That makes any op reachable.

MAX_SOLUTION_INSTANCES = 20  # leaves room in the 5x5 structure graph for distractors
MAX_AGGREGATES = 4  # one of the 5 places stays open for quantities that no total sums
SUM_ARITY = (2, 2, 2, 3, 3, 4)  # distractors: operands of a sum, drawn uniformly from this tuple
# The shape of the solution DAG, calibrated so that its statistics match the reference generator's
# (fidelity_reference.json; `python bench.py fidelity` prints both):
AGG_FAN_IN = (1, 1, 2, 2, 3, 3)  # types a total sums, drawn uniformly (capped by the budget and the types)
P_CONST = 0.01  # an instance quantity is a constant before the budget forces one
# cumulative thresholds of one operand / sum of two / difference (the rest: a sum of 3-4), for a quantity a total
# sums (or the query) and for the others
FORMS_OWNED, FORMS_FREE = (0.6, 0.85, 0.9), (0.4, 0.75, 0.8)
FORMS_MANY = (0.2, 0.5, 0.55)  # the same for a total's operand with many operands, each with a k op as often as a
#                                single one (per-op chance, SHAPE_BY_OP)
# `k plus` / `k times` outside one operand of a quantity no total sums; outside a sum or difference
P_KOP_UNARY, P_KOP = 0.3, 0.15
# Distractors (quantities no step needs): a constant, else a copy / sum / difference below the cumulative
# thresholds, of solution quantities or earlier distractors, with `k plus` / `k times` outside w.p. DIS_KOP
DIS_CONST, DIS_COPY, DIS_SUM, DIS_KOP = 0.45, 0.8, 0.95, 0.3
# Per-op knobs. The reference draws every problem from an op band (op_max 3, 4, 6, 10, 15, 20, 25, 30) and keeps
# those that land on the requested op, so its shape jumps from op to op (at op 6 a third of the k ops of op 5,
# twice the distractors); one smooth setting cannot follow it, so these are fitted per op and mode against the
# reference figures (`python bench.py fidelity` prints both). Ops past 20 use op 20's. Each entry:
#   P(the query is a place's total),
#   P(`k plus` / `k times` outside one operand of a total, or of the query),
#   P(an operand reuses a quantity already asked for, not a new one: fewer leaves, a deeper DAG),
#   types a total sums beyond AGG_FAN_IN's draw (0-2, as two chances: 0.5 = one more half the time),
#   mean number of distractors (exponentially distributed: mostly few, now and then many),
#   P(a quantity no total sums is itself a total; every solution holds at least one total),
#   P(a total's operand takes its form from FORMS_MANY: several operands, often with a k op).
SHAPE_BY_OP = {
    "forward": {
        2: (1.00, 0.00, 0.35, 0.00, 4.50, 0.60, 0.00),
        3: (0.50, 0.00, 0.35, 0.00, 2.85, 0.60, 0.00),
        4: (0.91, 0.75, 0.35, 0.50, 3.53, 0.60, 0.00),
        5: (0.89, 1.00, 0.65, 1.00, 3.48, 0.60, 0.00),
        6: (0.78, 1.00, 0.50, 0.50, 6.19, 0.60, 0.00),
        7: (0.78, 0.75, 0.50, 0.50, 3.89, 0.60, 0.00),
        8: (0.72, 0.75, 0.35, 0.00, 3.67, 0.60, 0.00),
        9: (0.80, 1.00, 0.65, 0.50, 3.82, 0.60, 0.00),
        10: (0.91, 1.00, 0.80, 0.00, 1.29, 0.95, 0.40),
        11: (0.86, 1.00, 0.80, 0.50, 1.72, 0.95, 0.00),
        12: (0.94, 0.90, 0.80, 0.00, 0.69, 0.95, 1.00),
        13: (0.91, 1.00, 0.95, 0.00, 0.66, 0.95, 1.00),
        14: (0.85, 1.00, 0.80, 0.00, 1.93, 0.95, 0.40),
        15: (0.74, 1.00, 0.65, 0.50, 2.36, 0.95, 0.00),
        16: (0.92, 0.90, 0.95, 0.00, 0.79, 0.95, 1.00),
        17: (0.87, 1.00, 0.95, 0.00, 1.08, 0.95, 0.40),
        18: (0.92, 1.00, 0.80, 0.00, 0.93, 0.60, 0.40),
        19: (0.94, 1.00, 0.95, 0.00, 0.51, 0.95, 1.00),
        20: (0.86, 1.00, 0.95, 0.50, 0.85, 0.95, 0.40),
    },
    "reverse": {
        2: (1.00, 0.00, 0.35, 0.00, 1.01, 0.60, 0.00),
        3: (0.57, 0.00, 0.35, 0.00, 2.24, 0.60, 0.00),
        4: (0.97, 0.75, 0.35, 0.50, 2.70, 0.60, 0.00),
        5: (0.91, 1.00, 0.65, 1.00, 2.50, 0.60, 0.00),
        6: (0.91, 0.75, 0.35, 1.50, 5.21, 0.60, 0.00),
        7: (0.99, 0.75, 0.35, 0.50, 4.05, 0.60, 0.00),
        8: (0.97, 1.00, 0.65, 0.50, 3.40, 0.60, 0.00),
        9: (0.98, 1.00, 0.50, 0.00, 2.36, 0.60, 0.00),
        10: (1.00, 1.00, 0.80, 0.00, 1.60, 0.95, 0.80),
        11: (0.99, 1.00, 0.65, 0.00, 2.06, 0.95, 0.40),
        12: (1.00, 0.90, 0.80, 0.00, 0.88, 0.95, 1.00),
        13: (0.99, 1.00, 0.95, 0.00, 0.94, 0.95, 1.00),
        14: (0.96, 1.00, 0.80, 0.00, 1.60, 0.60, 0.40),
        15: (0.97, 1.00, 0.65, 0.00, 1.76, 0.60, 0.00),
        16: (1.00, 1.00, 0.95, 0.00, 0.76, 0.95, 0.80),
        17: (1.00, 1.00, 0.95, 0.00, 0.96, 0.95, 0.80),
        18: (0.97, 1.00, 0.80, 0.50, 0.96, 0.95, 0.00),
        19: (1.00, 1.00, 0.95, 0.00, 0.44, 0.95, 1.00),
        20: (1.00, 1.00, 0.95, 0.50, 0.79, 0.95, 0.40),
    },
}


def shape_knobs(op: int, reverse: bool) -> tuple[float, ...]:
    table = SHAPE_BY_OP["reverse" if reverse else "forward"]
    return table[min(max(op, min(table)), max(table))]


class Skeleton:
    """Parallel lists, one entry per node; node 0 is the query."""
    __slots__ = ("combine", "parents", "kop", "is_agg", "owner")

    def __init__(self):
        self.combine: list[str] = [""]  # "const" | "copy" | "sum" | "diff"
        self.parents: list[list[int]] = [[]]
        self.kop: list[str | None] = [None]  # "plus" | "times" | None: a constant applied outside the combination
        self.is_agg: list[bool] = [False]  # aggregates are "sum" nodes over all quantities of their place
        self.owner: list[int] = [-1]  # for a parent of an aggregate: that aggregate (same place); else -1

    def add(self, n: int, owner: int = -1) -> list[int]:
        first = len(self.combine)
        self.combine += [""] * n
        self.parents += [[] for _ in range(n)]
        self.kop += [None] * n
        self.is_agg += [False] * n
        self.owner += [owner] * n
        return list(range(first, first + n))


def _skeleton(rng: random.Random, op: int, max_types: int, reverse: bool = False, max_operands: int = 0
              ) -> Skeleton | None:
    """A solution DAG with exactly `op` edges (None on a rare dead end; the caller retries).

    Shaped like the reference's solutions: the query is usually a place's total, the quantities summed by a total
    are defined from one another or from further totals (mostly `k plus` / `k times` one quantity), operands are
    reused rather than created, so the DAG is deep and narrow and ends in one or two constants."""
    sk = Skeleton()
    budget, i, n_agg = op, 0, 0
    rand = rng.random
    p_query_agg, p_kop_owned, p_reuse, p_wider, _, p_free_agg, p_many = shape_knobs(op, reverse)
    max_sum = max_operands or 4
    if max_operands:
        max_types = min(max_types, max_operands)
    while i < len(sk.combine):
        f = len(sk.combine) - i - 1  # other undefined nodes; each is a reuse candidate (index > i)
        slack = budget - f
        chosen = None
        owned = sk.owner[i] >= 0
        if not owned and n_agg < MAX_AGGREGATES and slack >= 2 and (
                rand() < p_query_agg if i == 0 else (n_agg == 0 or budget == 2 and f == 0 or rand() < p_free_agg)):
            wider = (rand() < p_wider) + (rand() < p_wider - 1.0)  # p_wider in 0..2: up to two types more
            fan_in = min(AGG_FAN_IN[int(rand() * len(AGG_FAN_IN))] + wider, max_types, slack // 2)
            # (not a total of one quantity left with exactly two edges: that one would be a bare copy of a constant)
            if len(sk.combine) + fan_in <= MAX_SOLUTION_INSTANCES + n_agg + 1 and \
                    not (fan_in == 1 and f == 0 and budget == 3 and n_agg):
                chosen = ("agg", fan_in, fan_in, None, fan_in)
        for _ in range(12 if chosen is None else 0):
            many = False
            if f == 0 and budget == 1 or rand() < P_CONST:
                form, n_par = "const", 0
            else:
                r = rand()
                many = p_many and (owned or i == 0) and rand() < p_many
                unary, sum2, diff = FORMS_MANY if many else FORMS_OWNED if owned or i == 0 else FORMS_FREE
                form, n_par = ("copy", 1) if r < unary else ("sum", 2) if r < sum2 else \
                    ("diff", 2) if r < diff else ("sum", min(3 + (rand() < 0.3), max_sum))
            kop = None
            if form != "const" and rand() < (p_kop_owned if many or n_par == 1 and (owned or i == 0) else
                                             P_KOP if n_par > 1 else P_KOP_UNARY):
                kop = "plus" if rand() < 0.5 else "times"
            n_new = n_par
            if f:  # each operand reuses a node still undefined with probability p_reuse
                for _ in range(n_par):
                    n_new -= rand() < p_reuse
                if n_par - n_new > f:
                    n_new = n_par - f
            cost = (n_par or 1) + (kop is not None)
            if cost + n_new > slack or (f + n_new == 0 and cost != budget):
                continue
            if n_agg == 0 and (n_new == 0 or slack - cost - n_new < 1):  # leave a new node room to be a total
                continue
            if f == 1 and n_new == 0 and budget - cost == 2 and sk.owner[i + 1] >= 0:
                continue  # the last quantity, summed by a total, would be a bare copy of a new constant
            if len(sk.combine) + n_new > MAX_SOLUTION_INSTANCES + n_agg:
                continue
            chosen = (form, n_par, n_new, kop, cost)
            break
        if chosen is None:  # no draw fits: a copy of a node still undefined or a constant (always feasible while
            #                 others remain; a copy of one rather than a new constant keeps the leaves few), else a
            #                 copy of a new node
            chosen = ("copy", 1, 0, None, 1) if f > 0 and rand() < p_reuse else \
                ("const", 0, 0, None, 1) if f > 0 or budget == 1 else ("copy", 1, 1, None, 1)
            if len(sk.combine) + chosen[2] > MAX_SOLUTION_INSTANCES + n_agg:
                return None
        form, n_par, n_new, kop, cost = chosen
        if form == "agg":
            sk.is_agg[i] = True
            sk.combine[i] = "sum"
            sk.parents[i] = sk.add(n_par, owner=i)
            n_agg += 1
        else:
            sk.combine[i] = form
            sk.kop[i] = kop
            pars = _sample(rand, range(i + 1, len(sk.combine)), n_par - n_new) if n_par > n_new else []
            if n_new:
                pars += sk.add(n_new)
            sk.parents[i] = _shuffled(rand, pars) if len(pars) > 1 else pars
        budget -= cost
        i += 1
    return sk if budget == 0 else None


def _combine(combine: str, vals: list, kop: str | None, k: int | None):
    """Apply a node's rule to its parents' values (ints, or (a, b) linear forms a*x + b)."""
    if combine == "const":
        return k
    if combine == "copy":
        v = vals[0]
    elif combine == "sum":
        v = vals[0]
        for w in vals[1:]:
            v = v + w if isinstance(v, int) else (v[0] + w[0], v[1] + w[1])
    else:  # diff
        a, b = vals
        v = a - b if isinstance(a, int) else (a[0] - b[0], a[1] - b[1])
    if kop == "plus":
        return v + k if isinstance(v, int) else (v[0], v[1] + k)
    if kop == "times":
        return v * k if isinstance(v, int) else (v[0] * k, v[1] * k)
    return v


def _as_form(v) -> tuple[int, int]:
    return v if isinstance(v, tuple) else (0, v)


def node_cost(n_parents: int, k) -> int:
    """Edges a node adds to op: its parents, plus one for a constant (a "const" node's k is its one edge)."""
    return n_parents + (1 if k is not None else 0)


# ----------------------------------------------------------------------------------------------------------------
# Values: assign constants bottom-up, keep every value a positive integer <= MAX_VALUE

def _assign_values(rng, combine, parents, kop, k, values, order, unknown=-1, unknown_max=4, repair=False,
                   strict=True) -> bool:
    """Fill `values` for nodes in `order` (parents first). Returns False as soon as a value leaves 1..MAX_VALUE
    (strict), unless `repair`: then local repairs keep values in range without changing any edge count (a
    difference is written larger-first, or becomes a sum if both are equal; `k times` becomes `k plus` when the
    product would pass MAX_VALUE), and a node still out of range fails (strict) or becomes a constant (not strict:
    distractors). Not strict and not repair: any value is kept."""
    for i in order:
        c = combine[i]
        if c == "const":
            if k[i] is None:
                k[i] = int(rng.random() * unknown_max) + 1 if i == unknown else int(rng.random() * 4) + 1
            values[i] = k[i]
            continue
        ps = parents[i]
        if not repair:
            if kop[i] is not None and k[i] is None:
                k[i] = int(rng.random() * 4) + 1 if kop[i] == "plus" else int(rng.random() * 3) + 2
            v = values[i] = _combine(c, [values[p] for p in ps], kop[i], k[i])
            if strict and not 1 <= v <= MAX_VALUE:
                return False
            continue
        if c == "diff":
            a, b = values[ps[0]], values[ps[1]]
            if a < b:
                ps.reverse()
            elif a == b:
                combine[i] = c = "sum"
        if kop[i] is not None and k[i] is None:
            k[i] = int(rng.random() * 4) + 1 if kop[i] == "plus" else int(rng.random() * 3) + 2
        v = _combine(c, [values[p] for p in ps], kop[i], k[i])
        if kop[i] == "times" and v > MAX_VALUE:
            kop[i] = "plus"
            v = _combine(c, [values[p] for p in ps], "plus", k[i])
        if not 1 <= v <= MAX_VALUE:
            if strict:
                return False
            combine[i], parents[i], kop[i], k[i] = "const", [], None, int(rng.random() * 4) + 1
            v = k[i]
        values[i] = v
    return True


# ----------------------------------------------------------------------------------------------------------------
# One problem

def _fmt_form(a: int, b: int) -> str:
    """Canonical text of the linear form a*x + b: `5`, `x`, `3*x`, `4*x + 2`, `-x + 7`."""
    if a == 0:
        return str(b)
    term = "x" if a == 1 else "-x" if a == -1 else f"{a}*x"
    return term if b == 0 else f"{term} + {b}" if b > 0 else f"{term} - {-b}"


def _operand(s: str) -> str:
    """A value written inside a larger expression: compound forms get parentheses."""
    return f"({s})" if " " in s or s.startswith("-") else s


def _assign(var: str, sym: str, sub: str, val: str) -> str:
    """`V = sym = substituted = value`, dropping repeats (`Y = p = 2`, not `Y = p = 2 = 2`)."""
    segs = [var, sym]
    for s in (sub, val):
        if s != segs[-1]:
            segs.append(s)
    return " = ".join(segs)


def make_problem(rng: random.Random, op: int, ctx: Context, mode: str = "forward", opts: Options = PAPER) -> dict:
    """One record (SPEC §2) with exactly `op` edges in its solution, drawn from `rng`."""
    reverse = mode == "reverse"
    places_sub = ctx.places[int(rng.random() * len(ctx.places))]
    types_sub = ctx.types[int(rng.random() * len(ctx.types))]
    n_types = len(types_sub)
    while True:
        pb = _try_problem(rng, op, ctx, places_sub, types_sub, n_types, reverse, opts)
        if pb is not None:
            return render_problem(pb, rng, opts.letters)


class Problem:
    """A problem before it is written down: node i has a rule (combine, parents, kop, k), a value, a type and a
    place; nodes 0..n_sol-1 are the solution (0 = the query), the rest are distractors."""
    __slots__ = ("ctx", "reverse", "n_sol", "combine", "parents", "kop", "k", "values", "forms", "is_agg",
                 "tname", "pname", "unknown")

    def __init__(self, **kw):
        for key, v in kw.items():
            setattr(self, key, v)


def _try_problem(rng, op, ctx, places_sub, types_sub, n_types, reverse, opts=PAPER) -> Problem | None:
    """Build a problem's structure (None on a dead end; the caller retries with the same rng)."""
    rand = rng.random
    sk = _skeleton(rng, op, n_types, reverse, opts.max_operands)
    if sk is None:
        return None
    n_sol = len(sk.combine)
    combine, parents, kop, is_agg = sk.combine, sk.parents, sk.kop, sk.is_agg
    k: list = [None] * n_sol
    values: list = [0] * n_sol
    unknown = -1
    if reverse:
        leaves = [i for i in range(n_sol) if combine[i] == "const"]
        unknown = leaves[int(rand() * len(leaves))]
    if not _assign_values(rng, combine, parents, kop, k, values, range(n_sol - 1, -1, -1), unknown, opts.unknown_max,
                          opts.repair):
        return None
    forms = None
    if reverse:  # the same rules over linear forms in x; the unknown is x itself
        forms = [None] * n_sol
        for i in range(n_sol - 1, -1, -1):
            forms[i] = (1, 0) if i == unknown else _as_form(
                _combine(combine[i], [_as_form(forms[p]) for p in parents[i]], kop[i], k[i]))
        if forms[0][0] == 0:  # the x terms cancel: no equation to solve
            return None

    # --- structure graph: places for aggregates, (type, place) slots for every instance quantity
    n_agg = sum(is_agg)
    free = [i for i in range(n_sol) if not is_agg[i] and sk.owner[i] < 0]
    open_places = len(places_sub) - n_agg
    capacity = open_places * n_types - len(free)
    if capacity < 0 or (free and open_places == 0):
        return None
    n_dis = min(capacity, int(shape_knobs(op, reverse)[4] * opts.distractors * -math.log(1.0 - rand()) + 0.5))
    need = len(free) + n_dis
    place_order = _shuffled(rand, places_sub)
    n_open = 0 if need == 0 else -(-need // n_types) + int(rand() * (open_places - (-(-need // n_types)) + 1))
    slots = [(types_sub[j % n_types], place_order[n_agg + j // n_types])
             for j in _sample(rand, range(n_open * n_types), need)]
    tname: list = [None] * n_sol  # type name, or None for an aggregate
    pname: list = [None] * n_sol
    agg_places = iter(place_order[:n_agg])
    for i in range(n_sol):
        if is_agg[i]:
            pname[i] = next(agg_places)
            for p, t in zip(parents[i], _sample(rand, types_sub, len(parents[i]))):
                tname[p], pname[p] = t, pname[i]
    for i, (t, p) in zip(free, slots):
        tname[i], pname[i] = t, p

    # --- distractors: defined from any solution quantity or earlier distractor, never needed
    n_all = n_sol + n_dis
    for j in range(n_dis):
        i = n_sol + j
        t, p = slots[len(free) + j]
        tname.append(t)
        pname.append(p)
        r = rand()
        pool = n_sol + j
        if r < DIS_CONST:
            c, ps = "const", []
        elif r < DIS_COPY:
            c, ps = "copy", [int(rand() * pool)]
        elif r < DIS_SUM:
            c, ps = "sum", _sample(rand, range(pool), min(pool, SUM_ARITY[int(rand() * len(SUM_ARITY))]))
            if len(ps) == 1:
                c = "copy"
        else:
            c, ps = ("diff", _sample(rand, range(pool), 2)) if pool >= 2 else ("copy", [0])
        combine.append(c)
        parents.append(ps)
        kop.append(None if c == "const" or rand() >= DIS_KOP else ("plus" if rand() < 0.5 else "times"))
        k.append(None)
        values.append(0)
        is_agg.append(False)
    _assign_values(rng, combine, parents, kop, k, values, range(n_sol, n_all), repair=opts.valid_distractors,
                   strict=False)
    return Problem(ctx=ctx, reverse=reverse, n_sol=n_sol, combine=combine, parents=parents, kop=kop, k=k,
                   values=values, forms=forms, is_agg=is_agg, tname=tname, pname=pname, unknown=unknown)


def _post_order(parents: list, n_sol: int) -> list[int]:
    """The solution's quantities in depth-first post-order from the query (node 0): each once, parents first."""
    order: list[int] = []
    seen = [False] * n_sol
    seen[0] = True
    stack = [(0, iter(parents[0]))]  # iterative DFS: no recursion, no closure cycle for the GC to collect
    while stack:
        i, todo = stack[-1]
        for p in todo:
            if not seen[p]:
                seen[p] = True
                stack.append((p, iter(parents[p])))
                break
        else:
            stack.pop()
            order.append(i)
    return order


def _closing(query_var: str, form: tuple, given: int, xval: int) -> str:
    """A reverse problem's last step: the query's form a*x + b set equal to its given value, solved for x."""
    a, b = form
    eq = [f"We know {query_var} = {given}, so {_fmt_form(a, b)} = {given}"]
    if b != 0:
        eq.append(f"so {_fmt_form(a, 0)} = {given} {'-' if b > 0 else '+'} {abs(b)} = {given - b}")
    if a != 1:
        eq.append(f"so x = {given - b} / {a} = {xval}")
    return "; ".join(eq) + "."


def render_problem(pb: Problem, rng: random.Random, letter_order: str = "random") -> dict:
    """Write a problem as a record. Sentence order and variable letters come from `rng`; the id does not
    depend on them (it hashes the rules, names, numbers, mode and question)."""
    rand = rng.random
    ctx, reverse, n_sol, unknown = pb.ctx, pb.reverse, pb.n_sol, pb.unknown
    combine, parents, kop, k, values, forms = pb.combine, pb.parents, pb.kop, pb.k, pb.values, pb.forms
    is_agg, tname, pname = pb.is_agg, pb.tname, pb.pname
    n_all = len(combine)

    # --- names and sentences
    agg_name = ctx.aggregate
    names = [f"{agg_name} in {pname[i]}" if is_agg[i] else f"{tname[i]} in {pname[i]}" for i in range(n_all)]
    refs = [f"the {names[i]}" if is_agg[i] else f"the number of {names[i]}" for i in range(n_all)]
    sentences = []
    canon = []
    for i in range(n_all):
        if is_agg[i]:
            continue
        c, ps = combine[i], parents[i]
        if i == unknown:
            sentences.append(f"The number of {names[i]} exists, and its number is greater than 0.")
            canon.append(f"{names[i]}=unknown")
            continue
        if c == "const":
            rhs = str(k[i])
        else:
            r = [refs[q] for q in ps]
            if c == "copy":
                rhs = r[0]
            elif c == "diff":
                rhs = f"the difference between {r[0]} and {r[1]}"
            elif len(r) == 2:
                rhs = f"the sum of {r[0]} and {r[1]}"
            else:
                rhs = f"the sum of {', '.join(r[:-1])}, and {r[-1]}"
            if kop[i] is not None:
                rhs = f"{k[i]} {kop[i]} {rhs}"
        sentences.append(f"The number of {names[i]} equals {rhs}.")
        pn = [names[q] for q in ps] if ps else ()
        canon.append(f"{names[i]}={c}:{kop[i]}:{k[i]}:{'|'.join(sorted(pn) if c == 'sum' else pn)}")
    if reverse:
        sentences.append(f"It is known that {refs[0]} is {values[0]}.")
        target = unknown
    else:
        target = 0
    sentences = _shuffled(rand, sentences)
    question = (f"What is the {names[target]}?" if is_agg[target]
                else f"How many {tname[target]} does {pname[target]} have?")

    # --- solution text, in depth-first post-order from the query (each quantity once, parents first)
    order = _post_order(parents, n_sol)
    n_letters = sum(1 + max(0, len(parents[i]) - 2) + (kop[i] is not None) for i in range(n_sol))
    if letter_order == "sequential":  # each new variable takes the letter after the last one's, wrapping around
        start = int(rand() * len(LETTERS))
        letters = iter([LETTERS[(start + j) % len(LETTERS)] for j in range(n_letters)])
    else:
        letters = iter(_sample(rand, LETTERS, n_letters))
    var: list = [None] * n_sol
    val_s = [_fmt_form(*forms[i]) for i in range(n_sol)] if reverse else [str(v) for v in values[:n_sol]]
    steps = [REVERSE_PREAMBLE] if reverse else []
    for i in order:
        v = var[i] = "x" if i == unknown else next(letters)
        head = f"Define {names[i]} as {v};"
        if i == unknown:
            steps.append(f"{head} {UNKNOWN_NOTE}.")
            continue
        c, ps = combine[i], parents[i]
        if c == "const":
            steps.append(f"{head} so {v} = {k[i]}.")
            continue
        clauses = []
        target_var = v if kop[i] is None else next(letters)
        cur_sym, cur_val = var[ps[0]], val_s[ps[0]]
        cur_num = forms[ps[0]] if reverse else values[ps[0]]
        if len(ps) == 1:
            clauses.append(_assign(target_var, cur_sym, cur_val, cur_val))
            cur_sym = target_var
        else:
            sign = " - " if c == "diff" else " + "
            for j, q in enumerate(ps[1:], start=2):
                tv = target_var if j == len(ps) else next(letters)
                q_num = forms[q] if reverse else values[q]
                if reverse:
                    cur_num = (cur_num[0] - q_num[0], cur_num[1] - q_num[1]) if c == "diff" else \
                        (cur_num[0] + q_num[0], cur_num[1] + q_num[1])
                    res = _fmt_form(*cur_num)
                else:
                    cur_num = cur_num - q_num if c == "diff" else cur_num + q_num
                    res = str(cur_num)
                clauses.append(_assign(tv, cur_sym + sign + var[q],
                                       _operand(cur_val) + sign + _operand(val_s[q]), res))
                cur_sym, cur_val = tv, res
        if kop[i] is not None:
            sign = " + " if kop[i] == "plus" else " * "
            clauses.append(_assign(v, f"{k[i]}{sign}{cur_sym}", f"{k[i]}{sign}{_operand(cur_val)}", val_s[i]))
        clauses[-1] = "so " + clauses[-1]
        steps.append(f"{head} {'; '.join(clauses)}.")
    if reverse:
        steps.append(_closing(var[0], forms[0], values[0], values[unknown]))

    graph_nodes = [{"name": names[i], "parents": [names[q] for q in parents[i]], "combine": combine[i], "k": k[i],
                    "kop": kop[i], "value": values[i]} for i in order]
    mode = "reverse" if reverse else "forward"
    canon.sort()
    key = f"{ctx.id}|{mode}|{names[0]}|{names[unknown] if reverse else ''}|{values[0] if reverse else ''}|" + \
        "|".join(canon)
    return {
        "id": hashlib.blake2b(key.encode(), digest_size=8).hexdigest(),
        "op": sum(node_cost(len(parents[i]), k[i]) for i in range(n_sol)),
        "context": ctx.id,
        "mode": mode,
        "problem": " ".join(sentences),
        "question": question,
        "solution": " ".join(steps),
        "answer": values[target],
        "graph": {"nodes": graph_nodes, "query": names[0], "unknown": names[unknown] if reverse else None},
    }


# ----------------------------------------------------------------------------------------------------------------
# Checking a record from its graph alone

def graph_op(graph: dict) -> int:
    return sum(node_cost(len(n["parents"]), n["k"]) for n in graph["nodes"])


def recompute_values(graph: dict) -> dict[str, int]:
    """Every node's value from the graph alone (combine the parents, then apply `kop k`)."""
    vals: dict[str, int] = {}
    for n in graph["nodes"]:
        vals[n["name"]] = _combine(n["combine"], [vals[p] for p in n["parents"]], n["kop"], n["k"])
    return vals


def split_of(problem_id: str) -> str:
    """The split a problem belongs to, decided by its content hash alone."""
    u = int(problem_id[:8], 16) / 2 ** 32
    acc = 0.0
    for name, share in SPLITS.items():
        acc += share
        if u < acc:
            return name
    return name


# ----------------------------------------------------------------------------------------------------------------
# Fidelity: the structure statistics of a set of records, next to the reference generator's (fidelity_reference.json)

FIDELITY_FILE = Path(__file__).with_name("fidelity_reference.json")
_RHS_KIND = (("plus", re.compile(r"\d+ plus ")), ("times", re.compile(r"\d+ times ")), ("const", re.compile(r"\d+\.$")),
             ("sum", re.compile(r"the sum of ")), ("diff", re.compile(r"the difference between ")))
_QUANTITY_SENTENCE = re.compile(r"The number of .+? (?:equals (.+?\.)|exists, and its number is greater than 0\.)"
                                r"(?= The | It is known |$)")
# The fidelity rows and their absolute tolerance; each must also pass if within 20% relative.
# Problem length is held in sentences for every context and in words only for the measured one (names differ).
FIDELITY_ROWS = {"query is an aggregate": 0.05, "of which aggregates (mean)": 0.5, "sol kinds: any k op": 0.05,
                 "solution leaves = constants (mean)": 0.5, "depth of solution DAG (mean; min/med/max)": 0.5,
                 "distractor sentences (mean; min/med/max)": 0.5, "problem sentences (mean; min/med/max)": 0.5,
                 "problem words (mean)": 0.5}


def _sentence_kind(rhs: str | None) -> str:
    if rhs is None:
        return "const"  # reverse mode: the unknown's sentence
    for kind, pattern in _RHS_KIND:
        if pattern.match(rhs):
            return kind
    return "copy"


def structure_stats(records: list[dict], contexts: dict[str, Context] | None = None) -> dict[str, float]:
    """Per-record structure statistics averaged over `records`, keyed like the rows of fidelity_reference.json
    (shares as fractions). Everything is read from the record's text and graph, as the reference was measured."""
    contexts = contexts if contexts is not None else load_contexts()
    acc: dict[str, list[float]] = {}

    def add(key, v):
        acc.setdefault(key, []).append(float(v))

    for rec in records:
        agg_prefix = contexts[rec["context"]].aggregate + " in "
        nodes = rec["graph"]["nodes"]
        by_name = {n["name"]: n for n in nodes}
        is_agg = {n["name"]: n["name"].startswith(agg_prefix) for n in nodes}
        inst = [n for n in nodes if not is_agg[n["name"]]]
        depth: dict[str, int] = {}
        for n in nodes:
            depth[n["name"]] = 1 + max(depth[p] for p in n["parents"]) if n["parents"] else 0
        query = rec["graph"]["query"]
        sentences = _QUANTITY_SENTENCE.findall(rec["problem"])
        problem = rec["problem"]
        add("problem chars (mean)", len(problem))
        add("problem words (mean)", len(problem.split()))
        add("problem sentences (mean; min/med/max)", len(sentences) + (rec["mode"] == "reverse"))
        add("distractor sentences (mean; min/med/max)", len(sentences) - len(inst))
        add("solution steps = Defines (mean; min/med/max)", len(nodes))
        add("of which aggregates (mean)", len(nodes) - len(inst))
        add("solution inst. quantities (mean)", len(inst))
        add("query is an aggregate", is_agg[query])
        add("solution leaves = constants (mean)", sum(n["combine"] == "const" for n in inst))
        add("depth of solution DAG (mean; min/med/max)", depth[query])
        add("answer <= 4 share", rec["answer"] <= 4)
        for n in inst:
            kind = "const" if n["combine"] == "const" else n["kop"] or n["combine"]
            for k, label in (("const", "const"), ("copy", "copy (bare)"), ("sum", "sum (bare)"),
                             ("diff", "diff (bare)"), ("plus", "any 'k plus'"), ("times", "any 'k times'")):
                add(f"sol kinds: {label}", kind == k)
            add("sol kinds: any k op", kind in ("plus", "times"))
        for rhs in sentences:
            kind = _sentence_kind(rhs or None)
            for k in ("const", "copy", "sum", "diff"):
                add(f"all sentences: {k}", kind == k)
            add("all sentences: k plus", kind == "plus")
            add("all sentences: k times", kind == "times")
        for n in nodes:
            if is_agg[n["name"]]:
                add("aggregate fan-in (mean; min/max)", len(n["parents"]))
        for prev, n in zip(nodes, nodes[1:]):
            add("step i uses step i-1 (share of steps)", prev["name"] in n["parents"])
        if rec["mode"] == "reverse":
            unknown = rec["graph"]["unknown"]
            add("rev: unknown is step 1", nodes[0]["name"] == unknown)
            dist = {unknown: 0}  # longest path from the unknown, over nodes that depend on it
            for n in nodes:
                ds = [dist[p] for p in n["parents"] if p in dist]
                if ds and n["name"] != unknown:
                    dist[n["name"]] = 1 + max(ds)
            add("rev: longest path unknown->query (mean)", dist.get(query, 0))
            add("rev: given value min/median/max", by_name[query]["value"])
    return {key: sum(v) / len(v) for key, v in acc.items()}


STEP_TYPES = ("constant", "copy", "k plus / k times", "sum of 2", "sum of 3+", "difference", "total of 1",
              "total of 2", "total of 3+")


def step_types(rec: dict, contexts: dict[str, Context]) -> set[str]:
    """The kinds of step (STEP_TYPES) a record's solution uses. A total's width is the number of types it sums."""
    agg_prefix = contexts[rec["context"]].aggregate + " in "
    kinds = set()
    for n in rec["graph"]["nodes"]:
        width = len(n["parents"])
        if n["name"].startswith(agg_prefix):
            kinds.add(f"total of {width}" if width < 3 else "total of 3+")
            continue
        kinds.add({"const": "constant", "copy": "copy", "diff": "difference"}.get(n["combine"]) or
                  (f"sum of {width}" if width < 3 else "sum of 3+"))
        if n["kop"]:
            kinds.add("k plus / k times")
    return kinds


def load_fidelity_reference(path: str | Path = FIDELITY_FILE) -> dict:
    """The reference figures: {"source", "method", "cells": {"forward 5": {row: "figure as published"}}}, plus the
    derived acceptance row "sol kinds: any k op" (k plus + k times), and the acceptance rows measured the same way
    at the ops in between ("extra": its own source and method), merged into "cells"."""
    try:
        ref = json.loads(Path(path).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError) as e:
        raise UserError(f"reference file {str(path)!r} is missing or not JSON ({e}); restore it from git") from None
    for cell in ref["cells"].values():
        kops = _ref_number(cell["sol kinds: any 'k plus'"]) + _ref_number(cell["sol kinds: any 'k times'"])
        cell["sol kinds: any k op"] = f"{100 * kops:.0f}%"
    for key, cell in ref.get("extra", {}).get("cells", {}).items():  # the ops in between, measured the same way
        ref["cells"].setdefault(key, {}).update(cell)
    return ref


def _ref_number(text: str) -> float:
    """The leading figure of a published cell: `1.6; 1/2/4` -> 1.6, `87%` -> 0.87."""
    s = re.match(r"-?[\d.]+%?", text.strip()).group(0)
    return float(s[:-1]) / 100 if s.endswith("%") else float(s)


def reference_figure(reference: dict, mode: str, op: int, row: str) -> tuple[float, bool] | None:
    """The reference's figure for `row` at `op` -- measured, or linearly interpolated between the two nearest
    measured ops (second value True) -- or None outside the measured range."""
    cells = reference["cells"]
    measured = sorted(int(key.split()[1]) for key in cells if key.split()[0] == mode and row in cells[key])
    if op in measured:
        return _ref_number(cells[f"{mode} {op}"][row]), False
    lower = [o for o in measured if o < op]
    upper = [o for o in measured if o > op]
    if not lower or not upper:
        return None
    a, b = lower[-1], upper[0]
    ya, yb = _ref_number(cells[f"{mode} {a}"][row]), _ref_number(cells[f"{mode} {b}"][row])
    return ya + (yb - ya) * (op - a) / (b - a), True


def within_tolerance(ours: float, ref: float, abs_tol: float) -> bool:
    """The fidelity rule: within 20% of the reference (relative), or within an absolute margin for small figures."""
    return abs(ours - ref) <= max(0.2 * abs(ref), abs_tol)


def fidelity_table(op: int, mode: str, n: int = 200, context: str = "zoo", seed: int = 0,
                   contexts: dict[str, Context] | None = None, reference: dict | None = None) -> list[tuple]:
    """Rows (metric, ours, reference, interpolated, ok) for `n` problems of one (op, mode, context) cell. The
    reference was measured on zoo; its structure does not depend on the names, so every context is held to it
    (all but the length in words). `reference` is None where the row was not measured; `ok` is None outside the
    acceptance rows."""
    contexts = contexts if contexts is not None else load_contexts()
    reference = reference if reference is not None else load_fidelity_reference()
    parts = parse_recipe(f"ops={op} contexts={context} modes={mode}", contexts)
    ours = structure_stats([sample_at(parts, seed, i, contexts) for i in range(n)], contexts)
    rows = []
    for key, value in ours.items():
        fig = reference_figure(reference, mode, op, key)
        ref, interp = fig if fig else (None, False)
        checked = key in FIDELITY_ROWS and (key != "problem words (mean)" or context == reference.get("context"))
        ok = within_tolerance(value, ref, FIDELITY_ROWS[key]) if ref is not None and checked else None
        rows.append((key, value, ref, interp, ok))
    return rows


# ----------------------------------------------------------------------------------------------------------------
# Recipes: named mixtures over (op, context, mode)

PAPER_CONTEXTS = "zoo,teachers,movies"


def _context_recipe(exposure_pct: float, b_ops: str) -> str:
    e = exposure_pct / 100
    return f"{1 - e:.6g}*ops=2-20 contexts=zoo + {e:.6g}*ops={b_ops} contexts=teachers"


RECIPES: dict[str, tuple[str, str]] = {
    # pre-training (op 2..10), SPEC §2
    "pretrain_uniform": ("ops=2:.11,3:.11,4:.11,5:.11,6:.11,7:.11,8:.11,9:.11,10:.12",
                         "pre-training, ~uniform op 2-10"),
    "pretrain_emh_235": ("ops=2:.06,3:.06,4:.08,5:.10,6:.10,7:.10,8:.16,9:.16,10:.18",
                         "easy/medium/hard (op 2-4/5-7/8-10) = 0.2/0.3/0.5"),
    "pretrain_emh_532": ("ops=2:.18,3:.16,4:.16,5:.10,6:.10,7:.10,8:.08,9:.06,10:.06",
                         "easy/medium/hard = 0.5/0.3/0.2"),
    **{f"pretrain_rarehard_{h:g}": (f"ops=2-4:{(1 - h / 100) / 2:.6g},5-7:{(1 - h / 100) / 2:.6g},8-10:{h / 100:.6g}",
                                    f"easy/medium/hard = {(1 - h / 100) / 2:.4g}/{(1 - h / 100) / 2:.4g}/{h / 100:g}")
       for h in (0.1, 1, 10)},
    # appendix A.7: share of hard (upper-range) data in pre-training
    **{f"pretrain_hardshare_{h}": (("ops=8-10" if h == 100 else "ops=2-7" if h == 0
                                    else f"ops=2-7:{1 - h / 100:g},8-10:{h / 100:g}"),
                                   f"pre-training with {h}% op 8-10")
       for h in (0, 20, 50, 100)},
    # RL pools and mid-training
    **{f"rl_{a}_{a + 3}": (f"ops={a}-{a + 3}", f"RL pool, uniform op {a}-{a + 3}") for a in (7, 9, 11, 17)},
    "midtrain": ("ops=2-10:.2,11-14:.8", "mid-training: 20% op 2-10 + 80% op 11-14"),
    # context study (F2): A = zoo op 2-20; B = teachers at 0 / 0.1 / 1 / 10 %
    **{f"context_v1_{e:g}": (_context_recipe(e, "2-20"), f"zoo op 2-20 + {e:g}% teachers over op 2-20")
       for e in (0, 0.1, 1, 10)},
    **{f"context_v2_{e:g}": (_context_recipe(e, "2"), f"zoo op 2-20 + {e:g}% teachers at op 2 only")
       for e in (0, 0.1, 1, 10)},
    "context_rl": ("ops=2-20 contexts=zoo,teachers", "context-study RL: 50% zoo / 50% teachers, op 2-20"),
    # evaluation
    "eval_2_20": ("ops=2-20", "evaluation over ID (2-10), edge (11-14) and hard (15-20) bands"),
}


@dataclass
class Part:
    weight: float
    ops: dict[int, float]
    contexts: dict[str, float]
    modes: dict[str, float]
    options: dict = field(default_factory=dict)  # Options fields this part sets (`distractors=`, `operands=`)


def _parse_option(key: str, text: str) -> dict:
    """A recipe item that sets an Options field: `distractors=0.5` (a factor >= 0), `operands=2` (0 or >= 2),
    `letters=sequential` (or random)."""
    if key == "letters":
        if text not in ("random", "sequential"):
            raise UserError(f"recipe: letters={text!r} must be random (the paper's) or sequential")
        return {"letters": text}
    try:
        value = float(text) if key == "distractors" else int(text)
    except ValueError:
        value = None
    if key == "distractors" and (value is None or not math.isfinite(value) or value < 0):
        raise UserError(f"recipe: distractors={text!r} must be a factor >= 0, like 0.5 (1 = the paper's)")
    if key == "operands" and (value is None or value == 1 or value < 0):
        raise UserError(f"recipe: operands={text!r} must be 0 (no cap, the paper's) or a cap >= 2")
    return {"distractors": value} if key == "distractors" else {"max_operands": value}


def _parse_dist(key: str, text: str, parse_value) -> dict:
    """`a,b:2,c-d:0.5` -> {value: weight}; a range's weight is spread evenly over its values."""
    out: dict = {}
    for entry in text.split(","):
        entry = entry.strip()
        if not entry:
            continue
        name, _, w = entry.partition(":")
        weight = _weight(w, f"{key}={text}") if w else 1.0
        vals = parse_value(name.strip())
        for v in vals:
            out[v] = out.get(v, 0.0) + weight / len(vals)
    if not out or sum(out.values()) <= 0:
        raise UserError(f"recipe: {key}= needs at least one entry with a positive weight")
    if not math.isfinite(sum(out.values())):
        raise UserError(f"recipe: the weights in {key}={text} overflow; use relative weights like 2:0.3,3:0.7")
    return out


def _weight(text: str, where: str) -> float:
    """A recipe weight: a finite number >= 0 (inf or nan would send every problem to one entry)."""
    try:
        weight = float(text)
    except ValueError:
        raise UserError(f"recipe: bad weight {text!r} in {where}; use a number like 0.5") from None
    if not math.isfinite(weight) or weight < 0:
        raise UserError(f"recipe: weight {text!r} in {where} must be a finite number >= 0")
    return weight


def _parse_ops(text: str) -> list[int]:
    lo, _, hi = text.partition("-")
    try:
        a, b = int(lo), int(hi or lo)
    except ValueError:
        raise UserError(f"recipe: bad op {text!r}; use a number like 5 or a range like 2-10") from None
    if a > b:
        raise UserError(f"recipe: op range {text!r} is reversed; write {b}-{a}")
    if not MIN_OP <= a <= b <= MAX_OP:
        raise UserError(f"recipe: op {text!r} outside {MIN_OP}..{MAX_OP}")
    return list(range(a, b + 1))


def parse_recipe(spec: str, contexts: dict[str, Context] | None = None) -> list[Part]:
    """A recipe name or spec -> its parts, each weight normalized. See the module docstring for the language."""
    contexts = contexts if contexts is not None else load_contexts()
    text = RECIPES[spec][0] if spec in RECIPES else spec
    if "=" not in text:
        raise UserError(f"unknown recipe {spec!r}; named recipes: {', '.join(RECIPES)} (or write a spec, see --help)")

    def parse_ctx(name):
        if name == "all":
            return list(contexts)
        if name not in contexts:
            raise UserError(f"unknown context {name!r}; known: {', '.join(contexts)} (add one in contexts.json)")
        return [name]

    def parse_mode(name):
        if name not in ("forward", "reverse"):
            raise UserError(f"unknown mode {name!r}; use forward and/or reverse")
        return [name]

    parts = []
    for chunk in text.split("+"):
        chunk = chunk.strip()
        weight = 1.0
        if "*" in chunk:
            w, _, chunk = chunk.partition("*")
            weight = _weight(w, repr(spec))
        fields = {"ops": None, "contexts": PAPER_CONTEXTS, "modes": "forward"}
        options = {}
        for item in chunk.split():
            key, eq, val = item.partition("=")
            if eq and key in ("distractors", "operands", "letters"):
                options.update(_parse_option(key, val))
                continue
            if not eq or key not in fields:
                raise UserError(f"recipe: bad item {item!r} in {spec!r}; use ops=..., contexts=..., modes=... "
                                f"(and the scale-downs distractors=..., operands=..., letters=...)")
            fields[key] = val
        if fields["ops"] is None:
            raise UserError(f"recipe: part {chunk!r} of {spec!r} has no ops=")
        if weight > 0:
            parts.append(Part(weight, _parse_dist("ops", fields["ops"], _parse_ops),
                              _parse_dist("contexts", fields["contexts"], parse_ctx),
                              _parse_dist("modes", fields["modes"], parse_mode), options))
    if not parts:
        raise UserError(f"recipe {spec!r} has no part with a positive weight")
    total = sum(p.weight for p in parts)
    if not math.isfinite(total):
        raise UserError(f"recipe: the part weights of {spec!r} overflow; use relative weights like 0.2*... + 0.8*...")
    for p in parts:
        p.weight /= total
        for d in (p.ops, p.contexts, p.modes):
            s = sum(d.values())
            for key in d:
                d[key] /= s
    return parts


def override_modes(parts: list[Part], modes: str) -> None:
    """Give every part of a recipe the same forward/reverse share (`forward:0.8,reverse:0.2`)."""
    for p in parts:
        p.modes = parse_recipe(f"ops=2 modes={modes}")[0].modes


def expected_op_shares(parts: list[Part]) -> dict[int, float]:
    out: dict[int, float] = {}
    for p in parts:
        for op, w in p.ops.items():
            out[op] = out.get(op, 0.0) + p.weight * w
    return out


def _pick(rand, dist: dict):
    r = rand()
    for key, w in dist.items():
        r -= w
        if r < 0:
            return key
    return key


# ----------------------------------------------------------------------------------------------------------------
# Streams: pure functions of (seed, index), in parallel, deterministic

def sample_at(parts: list[Part], seed: int, index: int, contexts: dict[str, Context], opts: Options = PAPER) -> dict:
    """Problem number `index` of the stream `seed` -- the same whatever process computes it."""
    rng = random.Random(f"{seed}/{index}")
    part = parts[_pick(rng.random, {i: p.weight for i, p in enumerate(parts)})] if len(parts) > 1 else parts[0]
    op = _pick(rng.random, part.ops)
    ctx = contexts[_pick(rng.random, part.contexts)]
    mode = _pick(rng.random, part.modes)
    return make_problem(rng, op, ctx, mode, replace(opts, **part.options) if part.options else opts)


CHUNK = 256  # indices per unit of work
_JSON = json.JSONEncoder(ensure_ascii=False, check_circular=False)


class Line(NamedTuple):
    """One generated problem: its identity, and the record as one JSON line."""
    id: str
    op: int
    context: str
    mode: str
    json: str


def _chunk(args) -> list[Line]:
    """Worker: the records of indices [start, start + CHUNK) that fall in `split`, as JSON lines."""
    parts, seed, start, split, contexts, opts = args
    out = []
    gc_was_on = gc.isenabled()
    gc.disable()  # ~5% faster: each record allocates many small containers, and none of them form cycles
    try:
        for index in range(start, start + CHUNK):
            rec = sample_at(parts, seed, index, contexts, opts)
            if split == "all" or split_of(rec["id"]) == split:
                out.append(Line(rec["id"], rec["op"], rec["context"], rec["mode"], _JSON.encode(rec)))
    finally:
        if gc_was_on:
            gc.enable()
    return out


def generate_lines(parts: list[Part], n: int, seed: int = 0, split: str = "all", workers: int = 1,
                   contexts: dict[str, Context] | None = None, progress: bool = False, opts: Options = PAPER,
                   distinct: bool = True):
    """Yield a `Line` for each of the first `n` distinct problems of the stream that fall
    in `split`. Indices are processed in order and deduplicated by id in the parent, so the output is
    identical for any `workers`. With `distinct=False` every draw is kept: the mixture's weights then hold
    (deduplication starves an op with few distinct problems -- op 2 of one context has a few hundred -- and
    hands its share to the others), and such an op's problems repeat."""
    if split != "all" and split not in SPLITS:
        raise UserError(f"unknown split {split!r}; use one of {', '.join(SPLITS)} or all")
    contexts = contexts if contexts is not None else load_contexts()
    seen: set[str] = set()
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=n, unit="problem", smoothing=0.1, dynamic_ncols=True)
    pool = None
    if workers > 1:
        import multiprocessing as mp
        # not "fork": a forked child of a process with threads (torch's, a DDP rank's) can deadlock
        pool = mp.get_context("forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn").Pool(workers)
    try:
        done, start = 0, 0
        while done < n:
            batch = [(parts, seed, start + j * CHUNK, split, contexts, opts) for j in range(max(1, workers) * 4)]
            start += len(batch) * CHUNK
            results = pool.imap(_chunk, batch) if pool else map(_chunk, batch)
            for chunk in results:
                for item in chunk:
                    if distinct:
                        if item.id in seen:
                            continue
                        seen.add(item.id)
                    yield item
                    done += 1
                    if bar:
                        bar.update(1)
                    if done >= n:
                        break
                if done >= n:
                    break
            if start > 100 * n / SPLITS.get(split, 1.0) + 1_000_000:
                raise UserError(f"this recipe has too few distinct problems in split {split!r} for n={n}")
    finally:
        if pool:
            pool.terminate()
        if bar:
            bar.close()


def generate(recipe: str | list[Part], n: int, seed: int = 0, split: str = "all", workers: int = 1,
             opts: Options = PAPER):
    """Yield `n` record dicts of a recipe (a name, a spec, or parsed parts)."""
    parts = parse_recipe(recipe) if isinstance(recipe, str) else recipe
    for item in generate_lines(parts, n, seed, split, workers, opts=opts):
        yield json.loads(item.json)


def iter_jsonl(path: str | Path, limit: int = 0):
    """Stream the records of a JSONL file (the first `limit`; 0 = all), checking each line is a record;
    a bad line is an error naming the file and line."""
    try:
        f = open(path, encoding="utf-8")
    except (FileNotFoundError, IsADirectoryError):
        raise UserError(f"data file {str(path)!r} not found") from None
    with f:
        count = 0
        try:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    raise UserError(f"{path}:{lineno}: not valid JSON ({e})") from None
                missing = [k for k in RECORD_FIELDS if not isinstance(rec, dict) or k not in rec]
                if missing:
                    raise UserError(f"{path}:{lineno}: not a problem record (missing {', '.join(missing)})")
                problem = record_problem(rec)
                if problem:
                    raise UserError(f"{path}:{lineno}: {problem}; regenerate the file with datagen.py")
                yield rec
                count += 1
                if count == limit:
                    return
        except UnicodeDecodeError:
            raise UserError(f"{path}: not a UTF-8 text file; give a .jsonl of problem records (datagen.py --out)") \
                from None


def read_jsonl(path: str | Path) -> list[dict]:
    return list(iter_jsonl(path))


def write_jsonl(path: str | Path, records: list[dict]) -> None:
    """One record per line, written atomically (a crash leaves the old file or the new one, never half of one)."""
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    atomic_write(path, lambda f: f.write(lines), binary=False)


def load_problems(source: str, n: int, seed: int = 0, split: str = "all") -> list[dict]:
    """Problem records from a .jsonl file (its first n; n = 0: all) or the first n of a recipe's stream in `split`."""
    if source.endswith(".jsonl") or Path(source).is_file():
        records = read_jsonl(source)
        if not records:
            raise UserError(f"{source} holds no problems")
        return records[:n] if n else records
    return list(generate(source, n, seed=seed, split=split))


RECORD_FIELDS = ("id", "op", "context", "mode", "problem", "question", "solution", "answer", "graph")
_COMBINES = ("const", "copy", "sum", "diff")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _node_ok(n, earlier: set) -> bool:
    """One graph node as the verifier reads it: its rule, and parents that are nodes before it."""
    if not (isinstance(n, dict) and isinstance(n.get("name"), str) and isinstance(n.get("parents"), list)):
        return False
    parents, combine, kop, k = n["parents"], n.get("combine"), n.get("kop"), n.get("k")
    if combine not in _COMBINES or kop not in (None, "plus", "times") or \
            not all(isinstance(q, str) and q in earlier for q in parents):
        return False
    if combine == "const" or kop is not None:
        return _is_int(k)
    return len(parents) == 2 if combine == "diff" else len(parents) >= 1


def record_problem(rec: dict) -> str | None:
    """What is wrong with the fields of a record (types, and the graph's shape), or None. Checked on reading, so
    a bad record fails before any sampling rather than being scored wrong (a string answer never matches)."""
    for key in ("id", "context", "problem", "question", "solution"):
        if not isinstance(rec[key], str):
            return f"{key!r} must be a string, got {rec[key]!r}"
    for key in ("op", "answer"):
        if not _is_int(rec[key]):
            return f"{key!r} must be an integer, got {rec[key]!r}"
    if rec["mode"] not in ("forward", "reverse"):
        return f"'mode' must be forward or reverse, got {rec['mode']!r}"
    graph = rec["graph"]
    if not isinstance(graph, dict) or not isinstance(graph.get("nodes"), list) or not graph["nodes"]:
        return "'graph' must be an object with a non-empty 'nodes' list"
    names: set = set()
    for i, n in enumerate(graph["nodes"]):
        if not _node_ok(n, names):
            return (f"graph node {i} is malformed (needs a name, parents named before it, combine one of "
                    f"{', '.join(_COMBINES)}, kop plus/times/null and an integer k where one is used)")
        names.add(n["name"])
    if graph.get("query") not in names or graph.get("unknown") not in (None, *names):
        return "graph 'query' (and 'unknown', if set) must name nodes of the graph"
    return None


# ----------------------------------------------------------------------------------------------------------------
# Command line

@dataclass
class Config:
    recipe: str = opt("", "a named recipe (see the list above) or a recipe spec; empty = use --ops/--contexts")
    ops: str = opt("", "ad-hoc mixture: op range and weights, e.g. 2-20 or 2-10:.2,11-14:.8")
    contexts: str = opt(PAPER_CONTEXTS, "ad-hoc mixture: contexts, e.g. zoo,teachers or zoo:.99,teachers:.01")
    modes: str = opt("", "forward/reverse share, e.g. forward,reverse or forward:.8,reverse:.2 (overrides the recipe)")
    n: int = opt(1000, "number of distinct problems to write")
    seed: int = opt(0, "stream seed: problem i is a pure function of (seed, i)")
    split: str = opt("all", "keep only problems whose id falls in this split: train, rl, val, test or all")
    out: str = opt("", "output JSONL path (required)")
    workers: int = opt(1, "worker processes; the output does not depend on it")
    unknown_max: int = opt(PAPER.unknown_max, "reverse mode: the unknown's value is drawn from 1..unknown_max")
    repair: bool = opt(PAPER.repair, "repair a solution value out of range in place instead of redrawing the problem")
    valid_distractors: bool = opt(PAPER.valid_distractors, "keep every distractor's value in range too")
    progress: bool = opt(True, "show a progress bar")


def recipe_listing() -> str:
    lines = ["", "named recipes:"]
    for name, (spec, desc) in RECIPES.items():
        lines.append(f"  {name:<24} {desc}")
        lines.append(f"  {'':<24}   {spec}")
    return "\n".join(lines)


def build_parts(cfg: Config) -> list[Part]:
    if cfg.recipe and cfg.ops:
        raise UserError("give either --recipe or --ops (an ad-hoc mixture), not both")
    if not cfg.recipe and not cfg.ops:
        raise UserError("give --recipe NAME (see --help for the list) or an ad-hoc --ops range like 2-20")
    parts = parse_recipe(cfg.recipe or f"ops={cfg.ops} contexts={cfg.contexts}")
    if cfg.modes:
        override_modes(parts, cfg.modes)
    return parts


def main(cfg: Config) -> dict:
    if cfg.n <= 0:
        raise UserError(f"--n must be positive, got {cfg.n}")
    if not cfg.out:
        raise UserError("--out PATH is required (a .jsonl file to write)")
    if cfg.workers < 1:
        raise UserError(f"--workers must be >= 1, got {cfg.workers}")
    if cfg.unknown_max < 1:
        raise UserError(f"--unknown_max must be >= 1, got {cfg.unknown_max}")
    opts = Options(cfg.unknown_max, cfg.repair, cfg.valid_distractors)
    parts = build_parts(cfg)
    out = Path(cfg.out)
    if out.is_dir():
        raise UserError(f"--out {cfg.out!r} is a folder; give a file path like {out / 'problems.jsonl'}")
    tmp = out.parent / f".{out.name}.tmp"  # a killed run's leftover has the same name and is overwritten
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        f = open(tmp, "w", encoding="utf-8")
    except OSError as e:
        raise UserError(f"cannot write {cfg.out!r}: {e.strerror}") from None
    by_op, by_ctx, by_mode = Counter(), Counter(), Counter()
    t0 = time.time()
    try:
        with f:
            for _id, op, ctx, mode, line in generate_lines(parts, cfg.n, cfg.seed, cfg.split, cfg.workers,
                                                           progress=cfg.progress, opts=opts):
                f.write(line + "\n")
                by_op[op] += 1
                by_ctx[ctx] += 1
                by_mode[mode] += 1
        os.replace(tmp, out)
    except BaseException:  # an error, Ctrl-C or SIGTERM: no half-written file stays behind
        tmp.unlink(missing_ok=True)
        raise
    dt = time.time() - t0
    summary = {"n": cfg.n, "seconds": round(dt, 2), "problems_per_s": round(cfg.n / dt, 1),
               "by_op": dict(sorted(by_op.items())), "by_context": dict(by_ctx), "by_mode": dict(by_mode)}
    print(f"wrote {cfg.n} problems to {out} in {dt:.1f}s ({cfg.n / dt:,.0f} problems/s, {cfg.workers} worker(s))")
    print("  by op:      " + "  ".join(f"{k}:{v}" for k, v in sorted(by_op.items())))
    print("  by context: " + "  ".join(f"{k}:{v}" for k, v in by_ctx.items()))
    print("  by mode:    " + "  ".join(f"{k}:{v}" for k, v in by_mode.items()))
    return summary


if __name__ == "__main__":
    run_main(main, Config, doc=__doc__ + recipe_listing())
