#!/usr/bin/env python3
"""Import circles in the library's source tree.

Reads every file of src/ (the library crate; src/bin/ holds separate crates and is skipped),
resolves its module paths (`use crate::a::b`, `use super::c`, `crate::a::f(..)` in expressions,
`use child::x` in a mod.rs) to the files that define them, and reports the strongly connected
components of size > 1 among the children of each module:

- at the crate root: the top-level modules (audio, features, data, ...);
- in each folder: its child modules (a file, or a sub-folder taken as a whole).

A folder's own mod.rs (declarations, re-exports, shared settings) is reported apart from its
children's circles, since a child using its parent's type while the parent re-exports the child is
the ordinary Rust layout, not two files importing each other.

Usage: python3 scripts/import_cycles.py [ROOT]   (ROOT: the repository, default: this script's ..)
Exit status 1 when any circle among children (files or top-level modules) is found.
"""

import re
import sys
from collections import defaultdict
from pathlib import Path


def strip(text):
    """The source with comments, string and char literals blanked (newlines kept for line numbers)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append("\n" * text.count("\n", i, j))
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:i + 10]) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            m = re.match(r'r(#*)"', text[i:])
            end = '"' + m.group(1)
            j = text.find(end, i + len(m.group(0)))
            j = n if j < 0 else j + len(end)
            out.append('""' + "\n" * text.count("\n", i, j))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append('""' + "\n" * text.count("\n", i, j))
            i = j + 1
        elif c == "'":
            m = re.match(r"'(\\.[^']*|[^\\'])'", text[i:])
            if m:
                out.append("' '")
                i += len(m.group(0))
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def module_of(path, src):
    rel = path.relative_to(src).with_suffix("")
    parts = list(rel.parts)
    if parts == ["lib"]:
        return ()
    if parts[-1] == "mod":
        parts = parts[:-1]
    return tuple(parts)


def expand_use(tree):
    """`a::{b, c::{d, self}}` → [['a','b'], ['a','c','d'], ['a','c']] (renames and globs dropped)."""
    tree = re.sub(r"\s+as\s+\w+", "", tree)
    tree = re.sub(r"\s+", "", tree)

    def parse(s, prefix):
        paths = []
        depth, start, items = 0, 0, []
        for k, ch in enumerate(s):
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            elif ch == "," and depth == 0:
                items.append(s[start:k])
                start = k + 1
        items.append(s[start:])
        for item in items:
            if not item:
                continue
            if "{" in item:
                head, _, rest = item.partition("{")
                head = [p for p in head.split("::") if p]
                paths += parse(rest[:rest.rfind("}")], prefix + head)
            else:
                segs = [p for p in item.split("::") if p]
                if segs == ["self"]:
                    paths.append(prefix)
                elif segs and segs[-1] == "*":
                    paths.append(prefix + segs[:-1])
                else:
                    paths.append(prefix + segs)
        return paths

    return parse(tree, [])


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    root = Path(args[0]) if args else Path(__file__).resolve().parent.parent
    src = root / "src"
    files = [p for p in sorted(src.rglob("*.rs")) if "bin" not in p.relative_to(src).parts[:1]]
    mods = {module_of(p, src): p for p in files}
    stripped = {p: strip(p.read_text()) for p in files}

    # Exported macros live at the crate root but are defined in a file.
    macro_file = {}
    for p in files:
        for m in re.finditer(r"#\[macro_export\]\s*macro_rules!\s*(\w+)", stripped[p]):
            macro_file[m.group(1)] = module_of(p, src)

    # `pub use child::Name` in a module: a path through the re-export depends on the defining file.
    reexports = defaultdict(dict)
    for p in files:
        me = module_of(p, src)
        for m in re.finditer(r"\bpub\s+use\s+([^;]+);", stripped[p]):
            for segs in expand_use(m.group(1)):
                if not segs or segs[-1] == "self":
                    continue
                if segs[0] == "crate":
                    target = segs[1:]
                elif segs[0] in ("super", "self"):
                    continue
                else:
                    target = list(me) + segs
                reexports[me][segs[-1]] = target

    def resolve(segs, seen=0):
        """The module (file) an absolute segment list names: its longest known module prefix,
        followed through that module's re-exports."""
        if len(segs) == 1 and segs[0] in macro_file:
            return macro_file[segs[0]]
        best, k = (), 0
        for k in range(len(segs), 0, -1):
            if tuple(segs[:k]) in mods:
                best = tuple(segs[:k])
                break
        else:
            k = 0
        if k < len(segs) and segs[k] in reexports[best] and seen < 8:
            return resolve(reexports[best][segs[k]], seen + 1)
        return best

    edges = defaultdict(dict)  # module -> {target module: (file, line, text)}
    for p in files:
        me = module_of(p, src)
        text = stripped[p]
        # Inline modules (`mod tests { ... }`) shift what `super` means inside them.
        opens = []
        depth = 0
        inline_at = []  # (start offset, end offset) of inline module bodies
        for m in re.finditer(r"\bmod\s+\w+\s*\{|[{}]", text):
            tok = m.group(0)
            if tok == "}":
                depth -= 1
                if opens and opens[-1][1] == depth:
                    start, _ = opens.pop()
                    inline_at.append((start, m.start()))
            else:
                if tok.startswith("mod"):
                    opens.append((m.end(), depth))
                depth += 1

        def nesting(offset):
            return sum(1 for a, b in inline_at if a <= offset < b)

        def absolute(segs, offset):
            base = list(me)
            inner = nesting(offset)
            if segs[0] == "crate":
                return segs[1:]
            if segs[0] in ("super", "self"):
                ups = 0
                while segs and segs[0] in ("super", "self"):
                    ups += segs[0] == "super"
                    segs = segs[1:]
                ups = max(0, ups - inner)
                if ups > len(base):
                    return None
                return base[: len(base) - ups] + segs
            if inner == 0 and tuple(base + [segs[0]]) in mods:
                return base + segs
            return None

        def add(segs, offset, what):
            a = absolute(segs, offset)
            if a is None:
                return
            target = resolve(a)
            if target != me:
                line = text.count("\n", 0, offset) + 1
                edges[me].setdefault(target, (p.relative_to(root), line, what))

        for m in re.finditer(r"\buse\s+([^;]+);", text):
            for segs in expand_use(m.group(1)):
                if segs:
                    add(segs, m.start(), "use " + "::".join(segs))
        for m in re.finditer(r"(?<![\w:])((?:crate|super|self)(?:::\w+)+)", text):
            # Already counted when inside a use statement; counting twice is harmless.
            add(m.group(1).split("::"), m.start(), m.group(1))

    def children_of(parent):
        return sorted({m[: len(parent) + 1] for m in mods if len(m) > len(parent) and m[: len(parent)] == parent})

    def scc(nodes, adj):
        index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

        def visit(v):
            index[v] = low[v] = counter[0]
            counter[0] += 1
            stack.append(v)
            on.add(v)
            for w in adj.get(v, ()):
                if w not in index:
                    visit(w)
                    low[v] = min(low[v], low[w])
                elif w in on:
                    low[v] = min(low[v], index[w])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))

        for v in nodes:
            if v not in index:
                visit(v)
        return out

    def name(m):
        return "crate::" + "::".join(m) if m else "crate"

    found = 0
    parents = sorted({m[:k] for m in mods for k in range(len(m))})
    for parent in parents:
        kids = children_of(parent)
        if len(kids) < 2 and parent not in mods:
            continue
        own = parent + ("<mod.rs>",)
        adj, witness = defaultdict(set), {}
        def node(m):
            if m == parent or len(m) <= len(parent) or m[: len(parent)] != parent:
                return own if m == parent else None
            return m[: len(parent) + 1]
        for src_mod, targets in edges.items():
            a = node(src_mod)
            if a is None:
                continue
            for t, w in targets.items():
                b = node(t)
                if b is None or a == b:
                    continue
                adj[a].add(b)
                witness.setdefault((a, b), w)
        nodes = kids + [own]
        label = (lambda v: "mod.rs" if v == own else v[-1])
        for comp in scc(nodes, adj):
            with_parent = own in comp
            kids_only = [v for v in comp if v != own]
            # A circle among the children alone, with the parent left out?
            sub = scc(kids_only, {v: {w for w in adj[v] if w != own} for v in kids_only})
            where = "top-level modules" if parent == () else f"files of {name(parent)}"
            for c in sub:
                found += 1
                print(f"CIRCLE among {where}: {' <-> '.join(label(v) for v in c)}")
                for a in c:
                    for b in c:
                        if (a, b) in witness:
                            f, line, what = witness[(a, b)]
                            print(f"    {label(a)} -> {label(b)}: {f}:{line} {what}")
            if with_parent and not sub:
                print(f"(parent) {name(parent)}: mod.rs and {', '.join(label(v) for v in kids_only)} "
                      "refer to each other through mod.rs")
    if "--edges" in sys.argv:
        for a in sorted(edges):
            for b in sorted(edges[a]):
                if a[:1] != b[:1]:
                    print(f"edge {name(a)} -> {name(b)}: {edges[a][b]}")
    print(f"{found} circle(s) among sibling files or top-level modules")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
